"""Journey messages reach the consumer through the operator's inbox, beside campaign messages: once, and never
after the consumer has withdrawn."""

from __future__ import annotations

from datetime import timedelta

from journeys.models import JourneySend, SendStatus
from tests.campaigns.conftest import withdraw_consent

from .conftest import CART, MORNING, at, event, shoppers, tick

H = timedelta(hours=1)


def _inbox(operator_client, consumer):
    response = operator_client.get(f"/api/v1/inbox/{consumer.pseudonym}")
    assert response.status_code == 200, response.content
    return response.json()["messages"]


def test_the_nudge_is_in_the_inbox_once(abandoned_cart, merchant, catalogue, operator_client):
    [shopper] = shoppers(1)
    event(merchant, shopper, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    tick(MORNING + 2 * H + timedelta(minutes=3))

    with at(MORNING + 2 * H + timedelta(minutes=10)):
        [message] = _inbox(operator_client, shopper)
        assert message["kind"] == "journey"
        assert message["journey_id"] == abandoned_cart.pk
        assert message["campaign_id"] is None
        assert message["title"] == "Still thinking about Alpine tent?"
        assert message["store_name"] == merchant.name
        assert _inbox(operator_client, shopper) == []  # taken: never shown twice
    assert JourneySend.objects.get(journey=abandoned_cart).delivered_at is not None


def test_a_message_written_before_a_withdrawal_is_withdrawn_not_shown(
    abandoned_cart, merchant, catalogue, operator_client
):
    [shopper] = shoppers(1)
    event(merchant, shopper, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    tick(MORNING + 2 * H + timedelta(minutes=3))
    with at(MORNING + 2 * H + timedelta(minutes=5)):
        withdraw_consent([shopper.pk])
        assert _inbox(operator_client, shopper) == []
    send = JourneySend.objects.get(journey=abandoned_cart)
    assert send.status == SendStatus.WITHDRAWN
    assert send.withdrawn_reason


def test_a_message_never_shows_another_stores_product(
    abandoned_cart, merchant, other_merchant, catalogue, operator_client
):
    from tests.factories import ProductFactory

    [shopper] = shoppers(1)
    event(merchant, shopper, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    tick(MORNING + 2 * H + timedelta(minutes=3))
    foreign = ProductFactory(merchant=other_merchant, sku="THEIRS-1", title="Their gadget")
    send = JourneySend.objects.get(journey=abandoned_cart)
    JourneySend.objects.filter(pk=send.pk).update(product_ids=[*send.product_ids, foreign.pk])
    with at(MORNING + 2 * H + timedelta(minutes=10)):
        [message] = _inbox(operator_client, shopper)
    assert "THEIRS-1" not in [p["sku"] for p in message["products"]]
