"""Segments made from a campaign's results: "those who clicked but did not buy", and the like.

The group is fixed (a snapshot written once through segments.services.segment_members_write): it is who reacted
that way to that campaign, within its attribution window. Only the campaign's treatment group counts (those who
received the message); the test-send inbox and the control group never do. The merchant sees the segment's size
released like any other segment's, never a list of consumers.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from pyroaring import BitMap

from merchants.errors import Invalid, NotFound, Unprocessable
from segments.models import Segment, SegmentKind
from segments.services import segment_members_write, segment_named_create

from .models import Campaign, CampaignStatus, Delivery, Group
from .selectors import delivery_rows


@dataclass(frozen=True)
class Response:
    label: str  # how the segment's definition reads
    condition: str  # which delivery rows, by the report's own flags


RESPONSES = {
    "clicked_not_bought": Response("clicked but did not buy", "clicked_not_converted"),
    "opened_not_clicked": Response("opened but did not click", "opened_not_clicked"),
    "bought": Response("bought", "converted"),
}


def _members(campaign: Campaign, response: str) -> BitMap:
    rows, converted = delivery_rows(campaign)
    rows = rows.filter(group=Group.TREATMENT)
    if response == "clicked_not_bought":
        rows = rows.filter(clicked=True).exclude(converted)
    elif response == "opened_not_clicked":
        rows = rows.filter(opened=True, clicked=False)
    else:
        rows = rows.filter(converted)
    return BitMap(rows.values_list("consumer_id", flat=True))


def response_segment_create(
    *, campaign_id: int, merchant_id: int, response: str, actor: str, name: str = ""
) -> Segment:
    """A segment of the consumers who reacted to one of the merchant's launched campaigns as `response` says.

    NotFound for another merchant's or a missing campaign (the same answer); Unprocessable for a draft (nobody
    has received it yet); Invalid for an unknown response; Conflict for a name already taken.
    """
    if response not in RESPONSES:
        raise Invalid(
            f"response must be one of {', '.join(RESPONSES)}.", code="invalid", details={"response": response}
        )
    campaign = Campaign.objects.filter(pk=campaign_id, merchant_id=merchant_id).first()
    if campaign is None:
        raise NotFound("No such campaign.", code="not_found")
    if campaign.status in (CampaignStatus.DRAFT,) or not Delivery.objects.filter(campaign=campaign).exists():
        raise Unprocessable("Nobody has received this campaign yet.", code="campaign_not_sent")
    label = RESPONSES[response].label
    name = (name or f"{campaign.name}: {label}")[:200]
    members = _members(campaign, response)
    with transaction.atomic():
        segment = segment_named_create(
            merchant_id=merchant_id,
            name=name,
            kind=SegmentKind.RESPONSE,
            description=f"Consumers who received “{campaign.name}” and {label} within its attribution window.",
            definition=f"{response} of campaign:{campaign.pk}",
            lookalike_spec={"campaign": campaign.pk, "response": response},
            created_by=actor,
        )
        segment_members_write(
            segment_id=segment.pk,
            members=members,
            method=f"response:{response}",  # at most 32 characters (SegmentSnapshot.method)
            definition=segment.definition,
            actor=actor,
            detail={"campaign": campaign.pk, "response": response},
        )
    segment.refresh_from_db()
    return segment
