"""Segment lifecycle: create, edit, refresh (version guard, failures, retries), schedules, deletion."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from merchants.errors import Conflict, Unprocessable
from privacy.models import AuditEntry
from segments import services
from segments.models import RefreshPolicy, Segment, SegmentKind, SegmentSnapshot, SegmentStatus, SnapshotStatus
from segments.selectors import segment_latest_snapshot, snapshot_members
from segments.services import (
    InvalidDefinition,
    RefreshFailed,
    _version_bump,
    segment_create,
    segment_delete,
    segment_refresh,
    segment_refresh_request,
    segment_refresh_run,
    segment_update,
)
from segments.tasks import REFRESH_MAX_RETRIES, segments_refresh_due_task


def test_create_queues_a_refresh_after_commit(
    big_world, merchant, tagging_approved, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        segment = segment_create(
            merchant=merchant, name="SG sports", actor="test", expression="country:sg AND interest:sports"
        )
        assert segment_latest_snapshot(segment_id=segment.pk) is None  # nothing before the commit
    # One refresh queued (the audit log's checkpoint update also waits for the commit).
    assert len([c for c in callbacks if not c.__qualname__.startswith("audit_record")]) == 1
    segment.refresh_from_db()
    assert segment.status == SegmentStatus.READY and segment.version == segment.pending_version == 1
    assert segment.definition == "country:SG AND interest:sports"
    assert segment.definition_json == {
        "and": [{"tag": {"family": "country", "value": "SG"}}, {"tag": {"family": "interest", "value": "sports"}}]
    }
    snapshot = segment_latest_snapshot(segment_id=segment.pk)
    assert snapshot.size == 150 and snapshot.entered == 150 and snapshot.exited == 0
    assert snapshot_members(snapshot) == big_world.ids(range(150))
    entry = AuditEntry.objects.filter(action="segment.refreshed").last()
    assert entry.counts == {"size": 150, "entered": 150, "exited": 0}
    assert entry.purpose == "tagging" and entry.merchant_id == merchant.pk


def test_bad_definitions_are_rejected_with_their_position(world, merchant):
    with pytest.raises(InvalidDefinition) as caught:
        segment_create(merchant=merchant, name="x", actor="test", expression="country:SG AND")
    assert caught.value.details["column"] == 15
    assert not Segment.objects.exists()


def test_editing_the_definition_refreshes_and_counts_who_entered_and_left(
    big_world, merchant, tagging_approved, django_capture_on_commit_callbacks
):
    segment = segment_create(merchant=merchant, name="s", actor="test", expression="country:SG")
    segment_refresh(segment_id=segment.pk, actor="test")
    with django_capture_on_commit_callbacks(execute=True):
        segment_update(segment=segment, actor="test", expression="interest:sports OR discount_sensitivity:high")
    snapshot = segment_latest_snapshot(segment_id=segment.pk)
    # was 0-199; now 0-299: 100 entered, none left
    assert (snapshot.size, snapshot.entered, snapshot.exited) == (300, 100, 0)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        segment_update(
            segment=segment, actor="test", name="renamed", expression="interest:sports OR discount_sensitivity:high"
        )
    assert callbacks == []  # same definition: no refresh
    with django_capture_on_commit_callbacks(execute=True):
        segment_update(segment=segment, actor="test", expression="country:MY")
    snapshot = segment_latest_snapshot(segment_id=segment.pk)
    assert (snapshot.size, snapshot.entered, snapshot.exited) == (200, 100, 200)


def test_editing_into_a_cycle_is_rejected(world, merchant):
    a = segment_create(merchant=merchant, name="a", actor="test", expression="country:SG")
    b = segment_create(merchant=merchant, name="b", actor="test", expression=f"segment:{a.pk}")
    with pytest.raises(InvalidDefinition) as caught:
        segment_update(segment=a, actor="test", expression=f"interest:sports AND segment:{b.pk}")
    assert caught.value.details["column"] == 21 and "leads back" in caught.value.message
    a.refresh_from_db()
    assert a.definition == "country:SG"


def test_a_superseded_run_skips_itself(big_world, merchant, tagging_approved):
    segment = segment_create(merchant=merchant, name="s", actor="test", expression="country:SG")  # v1 queued
    v2 = segment_refresh_request(segment_id=segment.pk, actor="test")
    assert segment_refresh_run(segment_id=segment.pk, version=1, actor="test") is None
    assert segment_refresh_run(segment_id=segment.pk, version=v2, actor="test").version == v2
    # and an older run arriving late never overwrites the newer snapshot
    assert segment_refresh_run(segment_id=segment.pk, version=1, actor="test") is None
    assert SegmentSnapshot.objects.filter(segment=segment).count() == 1


def test_a_run_overtaken_while_computing_writes_nothing(big_world, merchant, tagging_approved, monkeypatch):
    segment = segment_create(merchant=merchant, name="s", actor="test", expression="country:SG")
    compute = services._compute_members

    def slow_compute(seg):
        result = compute(seg)
        # Meanwhile the merchant edits the definition: a newer version is requested.
        Segment.objects.filter(pk=seg.pk).update(
            definition="country:MY", definition_json={"tag": {"family": "country", "value": "MY"}}
        )
        _version_bump(seg.pk)
        return result

    monkeypatch.setattr(services, "_compute_members", slow_compute)
    assert segment_refresh_run(segment_id=segment.pk, version=1, actor="test") is None
    assert not SegmentSnapshot.objects.filter(segment=segment).exists()
    monkeypatch.setattr(services, "_compute_members", compute)
    snapshot = segment_refresh_run(segment_id=segment.pk, version=2, actor="test")
    assert snapshot_members(snapshot) == big_world.ids(range(200, 400))


def test_refresh_without_a_legal_basis_fails_visibly(big_world, merchant, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        segment = segment_create(merchant=merchant, name="s", actor="test", expression="country:SG")
    segment.refresh_from_db()
    assert segment.status == SegmentStatus.FAILED
    assert "approved processing activity" in segment.last_error
    failed = SegmentSnapshot.objects.get(segment=segment)
    assert failed.status == SnapshotStatus.FAILED and failed.error == segment.last_error
    assert segment_latest_snapshot(segment_id=segment.pk) is None
    with pytest.raises(RefreshFailed):
        segment_refresh(segment_id=segment.pk, actor="test")


def test_transient_failures_are_retried_and_recorded(
    big_world, merchant, tagging_approved, monkeypatch, django_capture_on_commit_callbacks
):
    compute = services._compute_members
    calls = {"n": 0}
    seen_errors = []

    def flaky(seg):
        calls["n"] += 1
        seen_errors.append(Segment.objects.get(pk=seg.pk).last_error)
        if calls["n"] <= 2:
            raise OperationalError("connection reset")
        return compute(seg)

    monkeypatch.setattr(services, "_compute_members", flaky)
    with django_capture_on_commit_callbacks(execute=True):
        segment = segment_create(merchant=merchant, name="s", actor="test", expression="country:SG")
    assert calls["n"] == 3
    assert seen_errors[2].startswith("Attempt 2 failed, retrying: Unexpected error (OperationalError)")
    segment.refresh_from_db()
    assert segment.status == SegmentStatus.READY and segment.last_error == ""


def test_persistent_failures_end_failed_after_the_retries(
    big_world, merchant, tagging_approved, monkeypatch, django_capture_on_commit_callbacks
):
    calls = {"n": 0}

    def broken(seg):
        calls["n"] += 1
        raise OperationalError("database is gone")

    monkeypatch.setattr(services, "_compute_members", broken)
    with django_capture_on_commit_callbacks(execute=True):
        segment = segment_create(merchant=merchant, name="s", actor="test", expression="country:SG")
    assert calls["n"] == REFRESH_MAX_RETRIES + 1
    segment.refresh_from_db()
    assert segment.status == SegmentStatus.FAILED
    assert segment.last_error == "Unexpected error (OperationalError); it has been logged and the refresh is retried."
    assert "database is gone" not in segment.last_error
    assert SegmentSnapshot.objects.filter(segment=segment, status=SnapshotStatus.FAILED).count() == 1


def test_only_the_newest_snapshots_keep_their_members(big_world, merchant, tagging_approved):
    segment = segment_create(merchant=merchant, name="s", actor="test", expression="country:SG")
    for _ in range(5):
        segment_refresh(segment_id=segment.pk, actor="test")
    kept = list(SegmentSnapshot.objects.filter(segment=segment).order_by("id").values_list("members_kept", "size"))
    assert kept == [(False, 200), (False, 200), (True, 200), (True, 200), (True, 200)]


def test_custom_policy_is_a_periodic_task(world, merchant, tagging_approved):
    segment = segment_create(
        merchant=merchant,
        name="s",
        actor="test",
        expression="country:SG",
        refresh_policy=RefreshPolicy.CUSTOM,
        crontab="15 */6 * * 1-5",
    )
    task = PeriodicTask.objects.get(pk=segment.schedule_id)
    assert task.task == "segments.refresh_scheduled" and task.args == f"[{segment.pk}]"
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("15", "*/6", "1-5")
    assert services.segment_crontab(segment) == "15 */6 * * 1-5"
    with pytest.raises(Unprocessable, match="not a valid crontab"):
        segment_update(segment=segment, actor="test", crontab="every day")
    segment_update(segment=segment, actor="test", refresh_policy=RefreshPolicy.DAILY)
    segment.refresh_from_db()
    assert segment.schedule_id is None and not PeriodicTask.objects.filter(pk=task.pk).exists()


def test_scheduled_task_refreshes_its_segment(big_world, merchant, tagging_approved):
    from segments.tasks import segment_refresh_scheduled_task

    segment = segment_create(merchant=merchant, name="s", actor="test", expression="country:SG")
    segment_refresh_scheduled_task.apply(args=[segment.pk])  # runs the queued refresh eagerly on commit
    assert Segment.objects.get(pk=segment.pk).pending_version == 2


def test_beat_entries_for_hourly_daily_and_real_time_refresh_exist(db):
    entries = dict(PeriodicTask.objects.filter(task="segments.refresh_due").values_list("name", "kwargs"))
    assert entries == {
        "segments: refresh hourly segments": '{"policy": "hourly"}',
        "segments: refresh daily segments": '{"policy": "daily"}',
        # Real-time segments stream between refreshes; a nightly full refresh brings in what tagging changed.
        "segments: refresh real-time segments": '{"policy": "realtime"}',
    }
    assert PeriodicTask.objects.filter(task="segments.membership_sweep", enabled=True, interval__every=60).exists()


def test_refresh_segments_command(big_world, merchant, tagging_approved, django_capture_on_commit_callbacks):
    manual = segment_create(merchant=merchant, name="manual", actor="test", expression="country:SG")
    hourly = segment_create(
        merchant=merchant, name="hourly", actor="test", expression="country:MY", refresh_policy=RefreshPolicy.HOURLY
    )
    daily = segment_create(
        merchant=merchant, name="daily", actor="test", expression="interest:sports", refresh_policy=RefreshPolicy.DAILY
    )
    recently = timezone.now() - timedelta(minutes=90)
    Segment.objects.filter(pk__in=[hourly.pk, daily.pk]).update(last_refreshed_at=recently)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("refresh_segments")
    assert set(Segment.objects.filter(version__gt=0).values_list("name", flat=True)) == {"hourly"}
    with django_capture_on_commit_callbacks(execute=True):
        call_command("refresh_segments", "--all")
    assert Segment.objects.filter(status=SegmentStatus.READY).count() == 3
    assert manual.snapshots.count() == 1


def test_due_task_works_in_bounded_batches(world, merchant, tagging_approved, monkeypatch):
    from segments import tasks

    monkeypatch.setattr(tasks, "DUE_BATCH", 2)
    for i in range(5):
        segment_create(
            merchant=merchant, name=f"s{i}", actor="test", expression="country:SG", refresh_policy=RefreshPolicy.HOURLY
        )
    first = Segment.objects.order_by("pk").first()
    result = segments_refresh_due_task.apply(kwargs={"policy": "hourly"}).get()
    # eager: the follow-up runs re-queue themselves until the table is done
    assert result == {
        "segments": 2,
        "refreshed": 2,
        "failed": 0,
        "superseded": 0,
        "queued": 0,
        "after_id": first.pk + 1,
        "round": 0,
    }
    assert set(Segment.objects.values_list("version", "status")) == {(2, "ready")}


def test_persona_segments_are_one_persona_tag(world, merchant):
    segment = segment_create(
        merchant=merchant, name="p", actor="test", kind=SegmentKind.PERSONA, expression="persona:bargain-hunters"
    )
    assert segment.kind == SegmentKind.PERSONA
    with pytest.raises(Unprocessable):
        segment_create(merchant=merchant, name="q", actor="test", kind=SegmentKind.PERSONA, expression="country:SG")


def test_names_are_unique_per_merchant(world, merchant, other_merchant):
    segment_create(merchant=merchant, name="s", actor="test", expression="country:SG")
    segment_create(merchant=other_merchant, name="s", actor="test", expression="country:SG")
    with pytest.raises(Conflict):
        segment_create(merchant=merchant, name="s", actor="test", expression="country:MY")


def test_segments_in_use_cannot_be_deleted(world, merchant):
    inner = segment_create(merchant=merchant, name="inner", actor="test", expression="country:SG")
    outer = segment_create(merchant=merchant, name="outer", actor="test", expression=f"segment:{inner.pk}")
    with pytest.raises(Conflict, match="used by the segment 'outer'"):
        segment_delete(segment=inner, actor="test")
    segment_delete(segment=outer, actor="test")
    segment_delete(segment=inner, actor="test")
    assert not Segment.objects.exists()


def test_batch_refresh_records_a_broken_segment_and_refreshes_the_rest(big_world, merchant, tagging_approved):
    from segments.services import segments_refresh_batch
    from tags.models import Tag

    good = segment_create(merchant=merchant, name="good", actor="test", expression="country:SG")
    broken = segment_create(merchant=merchant, name="broken", actor="test", expression="country:SG AND interest:sports")
    Tag.objects.filter(family="interest", value="sports").delete()  # the catalogue no longer has it
    result = segments_refresh_batch(segment_ids=[good.pk, broken.pk], actor="test")
    assert result == {"refreshed": 1, "failed": 1, "superseded": 0}
    assert segment_latest_snapshot(segment_id=good.pk).size == 200
    broken.refresh_from_db()
    assert broken.status == SegmentStatus.FAILED
    assert broken.last_error.startswith("The definition no longer works: Unknown value 'sports'")
    assert "column 16" in broken.last_error


def test_batch_refresh_without_a_legal_basis_fails_every_segment_visibly(big_world, merchant):
    from segments.services import segments_refresh_batch

    ids = [segment_create(merchant=merchant, name=f"s{i}", actor="test", expression="country:SG").pk for i in range(3)]
    assert segments_refresh_batch(segment_ids=ids, actor="test") == {"refreshed": 0, "failed": 3, "superseded": 0}
    assert set(Segment.objects.values_list("status", flat=True)) == {SegmentStatus.FAILED}
    assert not SegmentSnapshot.objects.filter(status=SnapshotStatus.READY).exists()


# ------------------------------------------------------------------------------------------------ clone


def test_a_clone_copies_definition_policy_and_schedule_under_a_free_name(
    big_world, merchant, tagging_approved, django_capture_on_commit_callbacks
):
    from segments.services import segment_clone

    inner = segment_create(merchant=merchant, name="inner", actor="test", expression="country:SG")
    with django_capture_on_commit_callbacks(execute=True):
        original = segment_create(
            merchant=merchant,
            name="Weekday sports",
            description="for the weekday push",
            actor="test",
            expression=f"interest:sports AND segment:{inner.pk}",
            refresh_policy=RefreshPolicy.CUSTOM,
            crontab="15 6 * * 1-5",
        )
    with django_capture_on_commit_callbacks(execute=True):
        first = segment_clone(segment=original, actor="test")
    second = segment_clone(segment=original, actor="test")
    third = segment_clone(segment=first, actor="test")

    assert [first.name, second.name, third.name] == [
        "Copy of Weekday sports",
        "Copy of Weekday sports (2)",
        "Copy of Copy of Weekday sports",
    ]
    first.refresh_from_db()
    assert (first.definition, first.definition_json, first.description) == (
        original.definition,
        original.definition_json,
        original.description,
    )
    assert first.refresh_policy == RefreshPolicy.CUSTOM and first.kind == SegmentKind.RULE
    assert services.segment_crontab(first) == "15 6 * * 1-5" and first.schedule_id != original.schedule_id
    assert list(first.depends_on.all()) == [inner]
    # A new segment: refreshed at once, its own members and history.
    assert first.status == SegmentStatus.READY
    assert snapshot_members(segment_latest_snapshot(segment_id=first.pk)) == snapshot_members(
        segment_latest_snapshot(segment_id=original.pk)
    )
    assert first.snapshots.count() == 1


def test_a_segment_name_is_refused_only_where_another_of_the_merchants_segments_has_it(world, merchant, other_merchant):
    segment_create(merchant=other_merchant, name="Shared", actor="test", expression="country:SG")
    shared = segment_create(merchant=merchant, name="Shared", actor="test", expression="country:SG")
    second = segment_create(merchant=merchant, name="Second", actor="test", expression="country:MY")
    with pytest.raises(Conflict, match="already have a segment called 'Shared'") as refused:
        segment_create(merchant=merchant, name="Shared", actor="test", expression="country:MY")
    assert refused.value.code == "duplicate_name"
    with pytest.raises(Conflict, match="already have a segment called 'Shared'"):
        segment_update(segment=second, actor="test", name="Shared")
    assert segment_update(segment=shared, actor="test", name="Shared", description="kept").description == "kept"
    assert segment_update(segment=second, actor="test", name="Renamed").name == "Renamed"


def test_a_clone_of_a_200_character_name_fits_and_a_given_name_must_be_free(world, merchant):
    from segments.services import segment_clone

    long = segment_create(merchant=merchant, name="x" * 200, actor="test", expression="country:SG")
    copies = [segment_clone(segment=long, actor="test") for _ in range(3)]
    assert [len(c.name) for c in copies] == [200, 200, 200]
    assert copies[0].name.startswith("Copy of xxx") and copies[1].name.endswith(" (2)")
    assert len({c.name for c in copies}) == 3
    with pytest.raises(Conflict, match="already have a segment called 'x"):
        segment_clone(segment=long, actor="test", name="x" * 200)
    named = segment_clone(segment=long, actor="test", name="Singapore again")
    assert named.name == "Singapore again" and named.definition == "country:SG"


def test_a_clone_of_a_lookalike_keeps_its_seed_and_recipe(world, merchant):
    from segments.services import segment_clone

    seed = segment_create(merchant=merchant, name="seed", actor="test", expression="country:SG")
    lookalike = Segment.objects.create(
        merchant=merchant,
        name="like seed",
        kind=SegmentKind.LOOKALIKE,
        seed=seed,
        lookalike_spec={"size": 100},
        definition=f"lookalike of segment:{seed.pk}",
    )
    clone = segment_clone(segment=lookalike, actor="test")
    assert (clone.kind, clone.seed_id, clone.lookalike_spec) == (SegmentKind.LOOKALIKE, seed.pk, {"size": 100})


def test_deleting_a_used_segment_names_everything_that_uses_it(world, merchant):
    inner = segment_create(merchant=merchant, name="inner", actor="test", expression="country:SG")
    segment_create(merchant=merchant, name="outer", actor="test", expression=f"segment:{inner.pk}")
    Segment.objects.create(merchant=merchant, name="like inner", kind=SegmentKind.LOOKALIKE, seed=inner)
    with pytest.raises(Conflict) as refused:
        segment_delete(segment=inner, actor="test")
    assert refused.value.code == "segment_in_use"
    assert "the segment 'outer'" in refused.value.message and "the lookalike 'like inner'" in refused.value.message
    assert refused.value.details == {"segments": ["outer"], "lookalikes": ["like inner"]}
    assert Segment.objects.filter(pk=inner.pk).exists()


def test_a_name_taken_by_a_racing_request_is_a_409_not_a_500(merchant, monkeypatch):
    """Two requests (a double-submitted persuadables form) can both pass the name check before either inserts: the
    unique constraint refuses the second, and that is the same 409 as the check's, with the caller's transaction
    still usable."""
    from django.db import transaction

    from merchants.errors import Conflict
    from segments import services
    from segments.models import Segment, SegmentKind

    Segment.objects.create(merchant=merchant, name="Persuadables", kind=SegmentKind.PERSUADABLE, definition="x")
    monkeypatch.setattr(services, "segment_name_require_free", lambda **kwargs: None)  # the other request's view
    with transaction.atomic():
        with pytest.raises(Conflict) as refused:
            services.segment_named_create(
                merchant_id=merchant.pk, name="Persuadables", kind=SegmentKind.PERSUADABLE, definition="y"
            )
        assert refused.value.code == "duplicate_name"
        assert Segment.objects.filter(merchant=merchant).count() == 1  # the transaction goes on
