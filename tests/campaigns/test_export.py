"""The merchant's audience export: consented treatment group only, as merchant-scoped pseudonyms."""

import pytest

from campaigns.export import InvalidCursor, campaign_audience_export
from consumers.models import Consumer
from merchants.errors import Conflict
from privacy.models import AuditEntry, Suppression, SuppressionReason
from privacy.pseudonyms import merchant_pseudonym

from .conftest import make_campaign, treated, withdraw_consent


def test_export_pages_through_the_consented_treatment_audience_as_merchant_pseudonyms(sent_campaign, merchant):
    deliveries = list(treated(sent_campaign))
    gone = deliveries[0]
    withdraw_consent([gone.consumer_id])
    expected = {merchant_pseudonym(merchant_id=merchant.pk, pseudonym=d.consumer.pseudonym) for d in deliveries[1:]}
    seen, cursor, pages = [], None, 0
    while True:
        page = campaign_audience_export(campaign=sent_campaign, actor="apikey:1", cursor=cursor, limit=50)
        seen.extend(page.pseudonyms)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) and set(seen) == expected
    raw = set(Consumer.objects.values_list("pseudonym", flat=True))
    assert raw.isdisjoint(seen)  # never the platform's own pseudonyms
    entries = AuditEntry.objects.filter(action="campaign.audience_exported")
    assert entries.count() == pages
    assert sum(e.counts["exported"] for e in entries) == len(expected)
    assert all(e.purpose == "direct_marketing" and e.activity_id for e in entries)


def test_export_pseudonyms_differ_between_merchants(db):
    assert merchant_pseudonym(merchant_id=1, pseudonym="a" * 64) != merchant_pseudonym(
        merchant_id=2, pseudonym="a" * 64
    )


def test_export_refuses_a_cursor_from_elsewhere_and_a_campaign_not_sent(sent_campaign, merchant):
    page = campaign_audience_export(campaign=sent_campaign, actor="a", cursor=None, limit=10)
    with pytest.raises(InvalidCursor):
        campaign_audience_export(campaign=sent_campaign, actor="a", cursor=page.next_cursor + "x", limit=10)
    draft = make_campaign(merchant, status="draft")
    with pytest.raises(Conflict):
        campaign_audience_export(campaign=draft, actor="a", cursor=None, limit=10)


def test_export_leaves_out_suppressed_consumers(sent_campaign):
    first = treated(sent_campaign).first()
    Suppression.objects.create(consumer_id=first.consumer_id, reason=SuppressionReason.OBJECTION)
    page = campaign_audience_export(campaign=sent_campaign, actor="a", cursor=None, limit=10_000)
    assert len(page.pseudonyms) == treated(sent_campaign).count() - 1
