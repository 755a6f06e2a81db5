"""factory_boy factories per app. Each `_create` calls the app's write service with keyword arguments, so the
data tests build obeys the same invariants, pseudonymisation and audit trail as real data.

merchants: MerchantFactory, UserFactory, OfficerFactory, MembershipFactory, ApiKeyFactory
privacy: ProcessingActivityFactory, ConsentFactory (and consents_record_for for many at once)
consumers: ConsumerFactory, EventFactory (ingestion), ProductFactory (no catalogue service; see its note)
tags: TaggingRunFactory (a real tagging run with given assignments), tags_assign, bitmaps_refresh
segments: SegmentFactory; campaigns: CampaignFactory
"""

from .campaigns import CampaignFactory
from .consumers import (
    ConsumerFactory,
    EventFactory,
    ProductFactory,
    consumers_create,
    consumers_ingest,
    event_row,
    events_ingest_rows,
)
from .merchants import ApiKeyFactory, MembershipFactory, MerchantFactory, OfficerFactory, UserFactory, member_create
from .privacy import (
    LAWFUL_ACTIVITIES,
    ConsentFactory,
    ProcessingActivityFactory,
    approved_activity,
    basis_for,
    consents_record_for,
)
from .segments import SegmentFactory
from .tags import GivenRule, TaggingRunFactory, bitmaps_refresh, family_members, tags_assign

__all__ = [
    "LAWFUL_ACTIVITIES",
    "ApiKeyFactory",
    "CampaignFactory",
    "ConsentFactory",
    "ConsumerFactory",
    "EventFactory",
    "GivenRule",
    "MembershipFactory",
    "MerchantFactory",
    "OfficerFactory",
    "ProcessingActivityFactory",
    "ProductFactory",
    "SegmentFactory",
    "TaggingRunFactory",
    "UserFactory",
    "approved_activity",
    "basis_for",
    "bitmaps_refresh",
    "consents_record_for",
    "consumers_create",
    "consumers_ingest",
    "event_row",
    "events_ingest_rows",
    "family_members",
    "member_create",
    "tags_assign",
]
