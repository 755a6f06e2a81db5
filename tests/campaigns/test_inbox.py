"""The operator's inbox: a message once, only the treatment group, withdrawals respected."""

from campaigns.inbox import inbox_messages_take
from campaigns.models import Delivery, DeliveryStatus, Group

from .conftest import treated, withdraw_consent


def test_inbox_returns_a_message_once_and_marks_it_delivered(sent_campaign):
    delivery = treated(sent_campaign).first()
    [message] = inbox_messages_take(pseudonym=delivery.consumer.pseudonym)
    assert message.delivery_id == delivery.pk and message.body == "Your picks" and message.store_name == "Acme Outdoor"
    assert inbox_messages_take(pseudonym=delivery.consumer.pseudonym) == []
    delivery.refresh_from_db()
    assert delivery.delivered_at is not None


def test_inbox_holds_nothing_for_the_control_group(sent_campaign):
    held_out = Delivery.objects.filter(campaign=sent_campaign, group=Group.CONTROL).select_related("consumer").first()
    assert inbox_messages_take(pseudonym=held_out.consumer.pseudonym) == []


def test_inbox_withdraws_a_message_whose_consumer_withdrew_before_reading(sent_campaign):
    delivery = treated(sent_campaign).first()
    withdraw_consent([delivery.consumer_id])
    assert inbox_messages_take(pseudonym=delivery.consumer.pseudonym) == []
    delivery.refresh_from_db()
    assert (
        delivery.status == DeliveryStatus.WITHDRAWN and "withdrawn before the message was read" in delivery.last_error
    )
    sent_campaign.refresh_from_db()
    assert sent_campaign.withdrawn_count == 1 and sent_campaign.dispatched_count == sent_campaign.treatment_count - 1


def test_inbox_of_an_unknown_pseudonym_is_none(db):
    assert inbox_messages_take(pseudonym="0" * 64) is None
