"""Predicted traits in a real browser: the officer's model card in the admin, the merchant's tag explorer."""

from __future__ import annotations

import pytest

from predict.models import ModelCard
from predict.services import predictions_compute
from tags.services import tags_compute
from tests.predict.conftest import AS_OF, marketplace

PHONE = {"width": 390, "height": 844}
TABLET = {"width": 820, "height": 1180}


@pytest.fixture
def predicted(transactional_db, approve_activity):
    approve_activity("tagging")
    marketplace(consumers=600)
    tags_compute(families=["age_range", "country"], actor="test", as_of=AS_OF)
    predictions_compute(actor="test", as_of=AS_OF, families=["purchase_propensity", "churn_risk"])


def test_officer_reads_a_model_card_and_merchant_reads_its_summary(browsing, officer, merchant_user, predicted):
    page = browsing.page
    browsing.sign_in("officer", "officer-pass-123", path="/admin/login/")
    browsing.goto("/admin/predict/modelcard/")
    assert "purchase_propensity" in page.content()
    browsing.shot("model_cards")
    card = ModelCard.objects.get(family="purchase_propensity")
    browsing.goto(f"/admin/predict/modelcard/{card.pk}/change/")
    assert "Recency/frequency baseline" in page.content() and "Population share" in page.content()
    browsing.shot("model_card")

    browsing.context.clear_cookies()
    browsing.sign_in("marketer", "marketer-pass-123")
    browsing.goto("/tags/#family-purchase_propensity")
    assert "Predicted by a model trained on" in page.content()
    browsing.shot("tag_explorer_laptop")
    page.set_viewport_size(TABLET)
    browsing.shot("tag_explorer_tablet", full_page=False)
    page.set_viewport_size(PHONE)
    browsing.shot("tag_explorer_phone", full_page=False)
