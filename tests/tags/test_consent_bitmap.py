"""The direct-marketing consent bitmap is fresh on every read: a withdrawal shows on the next estimate."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from privacy.models import ConsentKind, ConsentState, ConsentStatus, Purpose
from privacy.services import ConsentChange, consents_record
from tags.bitmaps import DIRECT_MARKETING_CONSENT_KEY
from tags.models import StoredBitmap
from tags.selectors import direct_marketing_consent_bitmap
from tags.services import tags_compute

from .conftest import AS_OF


def consent(consumer, status=ConsentStatus.GRANTED, kind=ConsentKind.EXPRESS, purpose=Purpose.DIRECT_MARKETING):
    consents_record(
        changes=[
            ConsentChange(
                consumer_id=consumer.pk,
                purpose=purpose,
                status=status,
                kind=kind,
                source="app settings v3",
                occurred_at=timezone.now(),
            )
        ],
        actor="test",
    )


def stored_version() -> int:
    return StoredBitmap.objects.get(key=DIRECT_MARKETING_CONSENT_KEY).version


def test_only_express_opt_ins_for_direct_marketing_are_in_the_bitmap(world):
    express, deemed, other_purpose, withdrawn, silent = (world.consumer() for _ in range(5))
    consent(express)
    consent(deemed, kind=ConsentKind.DEEMED)
    consent(other_purpose, purpose=Purpose.RECOMMENDATION)
    consent(withdrawn)
    consent(withdrawn, status=ConsentStatus.WITHDRAWN)
    assert set(direct_marketing_consent_bitmap()) == {express.pk}
    assert silent.pk not in direct_marketing_consent_bitmap()


def test_a_withdrawal_is_reflected_on_the_next_read(world):
    alice, bob = world.consumer(), world.consumer()
    consent(alice)
    consent(bob)
    assert set(direct_marketing_consent_bitmap()) == {alice.pk, bob.pk}
    consent(bob, status=ConsentStatus.WITHDRAWN)
    assert set(direct_marketing_consent_bitmap()) == {alice.pk}
    consent(bob)  # and a renewed opt-in too
    assert set(direct_marketing_consent_bitmap()) == {alice.pk, bob.pk}


def test_a_withdrawal_after_a_tagging_run_is_reflected_too(world, approve_activity):
    approve_activity("tagging")
    alice = world.consumer(country="SG")
    consent(alice)
    report = tags_compute(families=["country"], actor="test", as_of=AS_OF)
    assert report.consent_opt_ins == 1
    consent(alice, status=ConsentStatus.WITHDRAWN)
    assert alice.pk not in direct_marketing_consent_bitmap()


def test_reads_without_changes_do_not_rewrite_the_bitmap(world):
    consent(world.consumer())
    direct_marketing_consent_bitmap()
    version = stored_version()
    for _ in range(3):
        direct_marketing_consent_bitmap()
    assert stored_version() == version
    consent(world.consumer())
    direct_marketing_consent_bitmap()
    assert stored_version() == version + 1


def test_a_change_committed_late_with_an_older_stamp_is_still_picked_up(world):
    """updated_at is stamped before commit: a row can appear after a newer one was read."""
    early, late = world.consumer(), world.consumer()
    consent(late)
    direct_marketing_consent_bitmap()  # the mark is now late's stamp
    mark = StoredBitmap.objects.get(key=DIRECT_MARKETING_CONSENT_KEY).source_mark
    # A withdrawal stamped 30 s before the mark, becoming visible only now.
    consent(early)
    ConsentState.objects.filter(consumer=early).update(updated_at=mark - timedelta(seconds=30))
    direct_marketing_consent_bitmap()
    assert early.pk in direct_marketing_consent_bitmap()
    ConsentState.objects.filter(consumer=early).update(
        status=ConsentStatus.WITHDRAWN, updated_at=mark - timedelta(seconds=10)
    )
    assert early.pk not in direct_marketing_consent_bitmap()
