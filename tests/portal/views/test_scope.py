"""The scope switch: "in the whole marketplace" or "among your customers" on the builder, the live estimate, the
segment pages, the tag explorer and the dashboard; every count says which, and each scope is its own release."""

import json

import pytest

from segments.models import Segment, SegmentScope
from segments.services import segment_create, segment_refresh
from tags.reach import REACH_PRECISION
from tests.release_helpers import released_public


@pytest.fixture
def customers(population, merchant, other_merchant):
    """Consumers 0-99 and 400-449 viewed something at the merchant's store: its customers (100 in SG, 50 in MY);
    the rest only shopped at another merchant."""
    from consumers.models import EventType
    from segments.evaluation import behaviour_cache_invalidate
    from tests.factories import event_row, events_ingest_rows

    mine = [*range(100), *range(400, 450)]
    rows = [
        event_row(consumer=population.consumers[i], merchant=merchant, sku="P1", event_type=EventType.VIEW)
        for i in mine
    ] + [
        event_row(consumer=c, merchant=other_merchant, sku="Q1", event_type=EventType.VIEW)
        for c in population.consumers[100:400]
    ]
    events_ingest_rows(rows)
    behaviour_cache_invalidate()
    return population


def _released(subject, count, precision="standard"):
    public = released_public(subject, count, precision)
    return {k: public[k] for k in ("display", "hidden", "error_bound", "precision")}


def test_the_live_estimate_takes_the_scope_and_says_it(portal_client, customers, merchant):
    from privacy.release import canonical_subject
    from segments.evaluation import definition_resolve
    from segments.language import parse, to_json

    def ask(scope=None):
        body = {"expression": "country:SG", **({"scope": scope} if scope else {})}
        return portal_client.post("/segments/estimate/", json.dumps(body), content_type="application/json")

    subject = canonical_subject(to_json(definition_resolve(parse("country:SG"), merchant=merchant).node))
    whole, mine = ask().json(), ask("my_customers").json()
    assert whole["scope"] == "marketplace" and whole["scope_label"] == "in the whole marketplace"
    assert mine["scope"] == "my_customers" and mine["scope_label"] == "among your customers"
    assert whole["size"] == _released(f"size:{subject}", 400, "preview")
    assert mine["size"] == _released(f"size:{subject}:my_customers:{merchant.pk}", 100, "preview")
    assert ask("everyone").status_code == 400


def test_the_segment_form_saves_the_scope_and_every_page_shows_it(
    portal_client, customers, merchant, django_capture_on_commit_callbacks
):
    form = portal_client.get("/segments/new/").content.decode()
    assert 'name="scope"' in form and "Among my customers" in form
    with django_capture_on_commit_callbacks(execute=True):
        response = portal_client.post(
            "/segments/new/",
            {"name": "SG customers", "expression": "country:SG", "refresh_policy": "manual", "scope": "my_customers"},
        )
    segment = Segment.objects.get(merchant=merchant, name="SG customers")
    assert response.status_code == 302 and segment.scope == SegmentScope.MY_CUSTOMERS
    assert segment.snapshots.get().size == 100
    page = portal_client.get(response["Location"]).content.decode()
    assert "among your customers" in page
    assert released_public(f"segment:{segment.pk}:size", 100)["display"] in page
    listing = portal_client.get("/segments/").content.decode()
    assert "among your customers" in listing
    # The edit form starts from the segment's scope; switching back counts the whole marketplace.
    edit = portal_client.get(f"/segments/{segment.pk}/edit/").content.decode()
    assert '<option value="my_customers" selected>' in edit
    with django_capture_on_commit_callbacks(execute=True):
        portal_client.post(
            f"/segments/{segment.pk}/edit/",
            {"name": "SG customers", "expression": "country:SG", "refresh_policy": "manual", "scope": "marketplace"},
        )
    segment.refresh_from_db()
    assert segment.scope == SegmentScope.MARKETPLACE and segment.snapshots.order_by("-id").first().size == 400


def test_tag_explorer_and_dashboard_switch_scope_and_remember_it(portal_client, customers, merchant):
    page = portal_client.get("/tags/").content.decode()
    assert "in the whole marketplace" in page
    assert released_public("tag:country:SG:reach", 400, REACH_PRECISION)["display"] in page
    page = portal_client.get("/tags/", {"scope": "my_customers"}).content.decode()
    assert "among your customers" in page
    sg = released_public(f"tag:country:SG:reach:my_customers:{merchant.pk}", 100, REACH_PRECISION)
    assert sg["display"] in page
    # Remembered for the merchant: the dashboard (and the next visit) counts its customers too.
    dashboard = portal_client.get("/").content.decode()
    assert "Reachable by your campaigns, among your customers" in dashboard
    assert released_public(f"population:live:my_customers:{merchant.pk}", 150)["display"] in dashboard
    dashboard = portal_client.get("/", {"scope": "marketplace"}).content.decode()
    assert released_public("population:live", 600)["display"] in dashboard
    # An unknown scope is the default, not an error.
    assert portal_client.get("/tags/", {"scope": "bogus"}).status_code == 200


def test_a_saved_my_customers_segment_refreshes_among_them(customers, merchant, approve_activity):
    segment = segment_create(
        merchant=merchant, name="MY", expression="country:MY", actor="test", scope=SegmentScope.MY_CUSTOMERS
    )
    assert segment_refresh(segment_id=segment.pk, actor="test").size == 50


def test_builder_suggestions_offer_own_products_with_released_reach_in_the_scope(portal_client, customers, merchant):
    body = portal_client.get("/segments/values.json", {"argument": "product", "scope": "my_customers"}).json()
    assert body["values"] == ["P1"] and body["scope_label"] == "among your customers"
    (item,) = body["items"]
    expected = released_public(f"product:{merchant.pk}:P1:reach:my_customers:{merchant.pk}", 150, "preview")
    assert item["reach"]["display"] == expected["display"]
    assert portal_client.get("/segments/values.json", {"argument": "colour"}).status_code == 400
    assert portal_client.get("/segments/values.json", {"argument": "brand", "scope": "all"}).status_code == 400
