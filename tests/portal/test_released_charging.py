"""Who pays for figures that already exist: the merchant's first view of a value, once; repeats are free; scheduled
jobs never spend; and a spent budget withholds new figures without breaking a page (docs/privacy.md)."""

from __future__ import annotations

import pytest

from privacy.models import BudgetPeriod, PrivacyBudget
from privacy.services import release_figures
from segments.services import segment_create, segment_refresh
from tests.release_helpers import released_public


def _spent(merchant) -> float:
    return BudgetPeriod.objects.filter(merchant=merchant).values_list("spent_rho", flat=True).first() or 0.0


@pytest.mark.django_db
def test_a_scheduled_refresh_spends_nothing_and_the_first_view_pays_once(portal_client, population, merchant):
    segment = segment_create(merchant=merchant, name="SG", expression="country:SG", actor="test")
    segment_refresh(segment_id=segment.pk, actor="task:segments.refresh")  # what beat runs
    assert _spent(merchant) == 0.0
    first = portal_client.get("/segments/").content.decode()
    paid = _spent(merchant)
    assert paid > 0
    again = portal_client.get("/segments/").content.decode()
    assert _spent(merchant) == paid  # a repeat is free
    shown = released_public(f"segment:{segment.pk}:size", 400)["display"]
    assert shown in first and shown in again


@pytest.mark.django_db
def test_a_spent_budget_withholds_new_figures_and_keeps_released_ones(portal_client, population, merchant):
    sg = segment_create(merchant=merchant, name="SG", expression="country:SG", actor="test")
    segment_refresh(segment_id=sg.pk, actor="test")
    shown = released_public(f"segment:{sg.pk}:size", 400)["display"]
    assert shown in portal_client.get("/segments/").content.decode()  # released and paid while there is budget
    PrivacyBudget.objects.create(merchant=merchant, allowance_rho=_spent(merchant))  # nothing left
    my = segment_create(merchant=merchant, name="MY", expression="country:MY", actor="test")
    segment_refresh(segment_id=my.pk, actor="test")
    response = portal_client.get("/segments/")
    page = response.content.decode()
    assert response.status_code == 200
    assert shown in page  # already released this period: read back, free
    assert "not released until" in page  # MY's size: withheld, no number
    assert released_public(f"segment:{my.pk}:size", 200)["display"] not in page.split("MY")[1][:400]


@pytest.mark.django_db
def test_withheld_figures_carry_no_number(merchant):
    PrivacyBudget.objects.create(merchant=merchant, allowance_rho=0.0)
    (count,) = release_figures(merchant_id=merchant.pk, figures=[("segment:1:size", 5_000)])
    assert count.withheld and count.value is None and count.public()["withheld"] is True
    assert "5" not in count.display.split("until")[0]
