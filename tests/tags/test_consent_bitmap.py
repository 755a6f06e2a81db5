"""The direct-marketing consent bitmap is fresh on every read: a withdrawal shows on the next estimate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.test import TestCase
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privacy.models import ConsentKind, ConsentRecord, ConsentState, ConsentStatus, Purpose
from privacy.services import ConsentChange, consents_record
from tags.bitmaps import DIRECT_MARKETING_CONSENT_KEY, bitmap_cache_clear
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


def test_a_withdrawal_long_after_the_opt_in_is_reflected(world):
    alice, bob = world.consumer(), world.consumer()
    consent(alice)
    consent(bob)
    direct_marketing_consent_bitmap()
    # A day passes: the opt-ins and the bitmap's mark are old news.
    day_ago = timezone.now() - timedelta(days=1)
    ConsentRecord.objects.update(recorded_at=day_ago)
    ConsentState.objects.update(updated_at=day_ago)
    StoredBitmap.objects.filter(key=DIRECT_MARKETING_CONSENT_KEY).update(source_mark=day_ago)
    consent(bob, status=ConsentStatus.WITHDRAWN)
    assert set(direct_marketing_consent_bitmap()) == {alice.pk}


def test_a_change_committed_late_with_an_older_stamp_is_still_picked_up(world):
    """recorded_at is stamped before commit: a record can become visible after a newer one was read."""
    early, late = world.consumer(), world.consumer()
    consent(late)
    direct_marketing_consent_bitmap()  # the mark is now late's stamp
    mark = StoredBitmap.objects.get(key=DIRECT_MARKETING_CONSENT_KEY).source_mark
    # An opt-in stamped 30 s before the mark, becoming visible only now.
    consent(early)
    ConsentRecord.objects.filter(consumer=early).update(recorded_at=mark - timedelta(seconds=30))
    assert early.pk in direct_marketing_consent_bitmap()
    # Its withdrawal, stamped 10 s before the mark.
    consent(early, status=ConsentStatus.WITHDRAWN)
    ConsentRecord.objects.filter(consumer=early, status=ConsentStatus.WITHDRAWN).update(
        recorded_at=mark - timedelta(seconds=10)
    )
    assert early.pk not in direct_marketing_consent_bitmap()


# Opt-ins and withdrawals arriving (each stamped up to the overlap before it commits), reads and the clock moving
# on, in any order: the incrementally kept bitmap always equals the current consent state.
CHANGES = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.integers(0, 3), st.integers(0, 119)),
        st.tuples(st.just("withdraw"), st.integers(0, 3), st.integers(0, 119)),
        st.tuples(st.just("wait"), st.just(0), st.integers(1, 400)),
        st.tuples(st.just("read"), st.just(0), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=CHANGES)
def test_the_incremental_consent_bitmap_always_equals_the_consent_state(world, monkeypatch, changes):
    ConsentRecord.objects.all().delete()
    ConsentState.objects.all().delete()
    StoredBitmap.objects.all().delete()
    bitmap_cache_clear()
    clock = [datetime(2026, 3, 1, 12, 0, tzinfo=UTC)]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])
    people = [world.consumer() for _ in range(4)]
    for action, who, amount in [*changes, ("read", 0, 0)]:
        if action == "wait":
            clock[0] += timedelta(seconds=amount)
        elif action == "read":
            with TestCase.captureOnCommitCallbacks(execute=True):
                current = set(direct_marketing_consent_bitmap())
            expected = set(
                ConsentState.objects.filter(
                    purpose=Purpose.DIRECT_MARKETING, status=ConsentStatus.GRANTED, kind=ConsentKind.EXPRESS
                ).values_list("consumer_id", flat=True)
            )
            assert current == expected
        else:
            newest = ConsentRecord.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
            status = ConsentStatus.GRANTED if action == "grant" else ConsentStatus.WITHDRAWN
            consent(people[who], status=status)
            ConsentRecord.objects.filter(pk__gt=newest).update(recorded_at=clock[0] - timedelta(seconds=amount))
