from datetime import timedelta

import pytest
from django.utils import timezone

from consumers.models import Event
from consumers.tasks import EVENT_DERIVED_TAG_FAMILIES, EVENTS_PURGE_TASK, RETAG_TASK, events_purge_expired
from privacy.models import AuditEntry
from tests.privacy.rights_data import make_consumer, make_event


@pytest.fixture
def retag_calls():
    """Stands in for the tags layer's task under its registered name, recording what it was asked to do."""
    from config.celery import app

    calls = []
    app.loader.import_default_modules()  # so the real task, where there is one, is registered first and restored
    previous = app.tasks.pop(RETAG_TASK, None)

    @app.task(name=RETAG_TASK)
    def fake_retag(**kwargs):
        calls.append(kwargs)

    yield calls
    app.tasks.pop(RETAG_TASK, None)
    if previous is not None:
        app.tasks.register(previous)


@pytest.fixture
def aged_events(merchant, settings):
    settings.EVENT_RETENTION_DAYS = 400
    consumer = make_consumer("old-timer")
    old = [make_event(consumer, merchant, days_ago=400 + d) for d in range(1, 12)]
    recent = [make_event(consumer, merchant, days_ago=d) for d in (1, 100, 399)]
    return old, recent


def test_purge_deletes_events_past_retention_and_keeps_the_rest(
    aged_events, retag_calls, django_capture_on_commit_callbacks
):
    old, recent = aged_events
    with django_capture_on_commit_callbacks(execute=True):
        result = events_purge_expired.delay().get()
    assert result == {"deleted": 11, "total": 11, "round": 0, "requeued": False}
    assert set(Event.objects.values_list("pk", flat=True)) == {e.pk for e in recent}
    entry = AuditEntry.objects.get(action="retention.events_purged")
    assert entry.counts == {"deleted": 11, "deleted_this_run": 11}
    assert entry.details["retention_days"] == 400
    assert entry.details["hard_limit_reached"] is False
    assert entry.actor == f"task:{EVENTS_PURGE_TASK}"
    # Re-tagging of the event-derived families follows, once.
    assert retag_calls == [{"families": list(EVENT_DERIVED_TAG_FAMILIES)}]


def test_purge_works_in_bounded_batches_and_requeues_itself(
    aged_events, retag_calls, settings, django_capture_on_commit_callbacks
):
    settings.RETENTION_PURGE_BATCH = 2
    settings.RETENTION_PURGE_BATCHES_PER_TASK = 2
    settings.RETENTION_PURGE_MAX_ROUNDS = 10
    with django_capture_on_commit_callbacks(execute=True):
        events_purge_expired.delay()
    rounds = list(AuditEntry.objects.filter(action="retention.events_purged").order_by("id"))
    # 11 events, at most 4 per round: 4 + 4 + 3.
    assert [r.counts["deleted"] for r in rounds] == [4, 4, 3]
    assert [r.details["round"] for r in rounds] == [0, 1, 2]
    assert len({r.details["cutoff"] for r in rounds}) == 1, "one run keeps one cutoff"
    assert rounds[-1].counts["deleted_this_run"] == 11
    assert Event.objects.count() == 3
    assert len(retag_calls) == 1


def test_the_hard_limit_stops_a_run_and_the_next_run_carries_on(
    aged_events, retag_calls, settings, django_capture_on_commit_callbacks
):
    settings.RETENTION_PURGE_BATCH = 2
    settings.RETENTION_PURGE_BATCHES_PER_TASK = 1
    settings.RETENTION_PURGE_MAX_ROUNDS = 3
    with django_capture_on_commit_callbacks(execute=True):
        events_purge_expired.delay()
    rounds = list(AuditEntry.objects.filter(action="retention.events_purged").order_by("id"))
    assert [r.counts["deleted"] for r in rounds] == [2, 2, 2]
    assert rounds[-1].details["hard_limit_reached"] is True
    assert Event.objects.count() == 3 + 5
    assert len(retag_calls) == 1, "what was deleted so far is re-tagged even when the run stops early"

    with django_capture_on_commit_callbacks(execute=True):
        events_purge_expired.delay()
    assert Event.objects.count() == 3


def test_nothing_to_purge_triggers_no_retagging(merchant, retag_calls, django_capture_on_commit_callbacks):
    make_event(make_consumer("fresh"), merchant, days_ago=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert events_purge_expired.delay().get()["deleted"] == 0
    assert retag_calls == []
    assert AuditEntry.objects.get(action="retention.events_purged").counts["deleted"] == 0


def test_the_retention_setting_decides(aged_events, retag_calls, settings, django_capture_on_commit_callbacks):
    settings.EVENT_RETENTION_DAYS = 50
    with django_capture_on_commit_callbacks(execute=True):
        events_purge_expired.delay()
    assert Event.objects.count() == 1
    assert Event.objects.get().occurred_at > timezone.now() - timedelta(days=50)


def test_beat_runs_the_purge_and_the_risk_scan_daily(db):
    from django_celery_beat.models import PeriodicTask

    from config.celery import app

    tasks = dict(PeriodicTask.objects.values_list("task", "crontab__hour"))
    assert tasks["consumers.events_purge_expired"] == "3"
    assert tasks["consumers.risk_scan"] == "4"
    app.loader.import_default_modules()
    for name in tasks:
        if name.startswith("consumers."):
            assert name in app.tasks, f"beat names {name}, which no worker would know"


def test_purge_events_command_runs_the_same_job(aged_events, retag_calls):
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("purge_events", stdout=out)
    assert '"deleted": 11' in out.getvalue()
    assert Event.objects.count() == 3


@pytest.mark.worker
def test_a_real_worker_purges_round_by_round_through_the_broker(celery_worker_process, merchant):
    import time

    consumer = make_consumer("worker-old-timer")
    for d in range(7):
        make_event(consumer, merchant, days_ago=500 + d)
    keep = make_event(consumer, merchant, days_ago=2)
    events_purge_expired.apply_async(kwargs={"batch_size": 2, "batches_per_task": 1, "max_rounds": 10})
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rounds = list(AuditEntry.objects.filter(action="retention.events_purged").order_by("id"))
        if rounds and not rounds[-1].details["more_to_delete"]:
            break
        time.sleep(0.3)
    else:
        pytest.fail("the purge did not finish within 90 s:\n" + celery_worker_process.log[-3000:])
    assert [r.counts["deleted"] for r in rounds] == [2, 2, 2, 1]
    assert list(Event.objects.values_list("pk", flat=True)) == [keep.pk]


def test_purge_retags_through_the_tags_layers_own_task(
    aged_events, approve_activity, django_capture_on_commit_callbacks
):
    """Eager mode: the task named tags.compute (the tags layer's) runs in-process for the event-derived families."""
    pytest.importorskip("tags.tasks", reason="needs the tags layer")
    from privacy.models import Purpose
    from tags.models import TaggingRun
    from tags.rules import FAMILIES

    assert set(EVENT_DERIVED_TAG_FAMILIES) <= set(FAMILIES), "every family named is one the tags layer knows"
    approve_activity(Purpose.TAGGING)
    with django_capture_on_commit_callbacks(execute=True):
        events_purge_expired.delay()
    run = TaggingRun.objects.get()
    assert set(run.families) == set(EVENT_DERIVED_TAG_FAMILIES)
    assert run.status == "succeeded", run.error
    assert run.actor == "task:tags.compute"
