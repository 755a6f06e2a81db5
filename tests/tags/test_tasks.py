"""The Celery task and the nightly schedule created by the data migration."""

from __future__ import annotations

import json

from django_celery_beat.models import PeriodicTask

from tags.models import ConsumerTag, RunStatus, TaggingRun
from tags.tasks import tags_compute_task

from .conftest import AS_OF


def test_task_computes_tags(world, approve_activity):
    approve_activity("tagging")
    world.consumers(3, country="SG")
    result = tags_compute_task.delay(families=["country"], as_of=AS_OF.isoformat()).get()
    assert result["status"] == "succeeded"
    assert result["families"][0]["assigned"] == 3
    assert ConsumerTag.objects.count() == 3
    run = TaggingRun.objects.get()
    assert run.actor == "task:tags.compute" and run.status == RunStatus.SUCCEEDED


def test_task_is_idempotent(world, approve_activity):
    approve_activity("tagging")
    world.consumers(3, country="SG")
    tags_compute_task.delay(families=["country"], as_of=AS_OF.isoformat()).get()
    rows = set(ConsumerTag.objects.values_list("consumer_id", "tag_id"))
    tags_compute_task.delay(families=["country"], as_of=AS_OF.isoformat()).get()
    assert set(ConsumerTag.objects.values_list("consumer_id", "tag_id")) == rows


def test_task_refusal_is_recorded_where_operators_look_and_not_retried(world):
    world.consumers(3, country="SG")
    result = tags_compute_task.delay(families=["country"]).get()
    assert result == {"status": "refused", "reason": "no approved processing activity in the register"}
    run = TaggingRun.objects.get()
    assert run.status == RunStatus.REFUSED
    assert "no approved processing activity" in run.error
    assert not ConsumerTag.objects.exists()


def test_task_retries_database_outages_with_backoff():
    from django.db import OperationalError

    assert OperationalError in tags_compute_task.autoretry_for
    assert tags_compute_task.retry_backoff and tags_compute_task.max_retries


def test_nightly_tagging_is_scheduled_and_editable_in_the_admin(db):
    task = PeriodicTask.objects.get(name="Nightly tagging")
    assert task.task == "tags.compute"
    assert task.enabled
    assert json.loads(task.kwargs) == {}
    assert (task.crontab.minute, task.crontab.hour) == ("30", "1")


def test_enqueue_runs_the_task_after_commit(world, approve_activity, django_capture_on_commit_callbacks):
    import pytest

    from tags.rules import UnknownFamily
    from tags.services import tags_compute_enqueue

    approve_activity("tagging")
    world.consumers(2, country="SG")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        tags_compute_enqueue(families=["country"])
    assert not ConsumerTag.objects.exists()  # nothing before the commit
    for callback in callbacks:
        callback()
    assert ConsumerTag.objects.count() == 2
    with pytest.raises(UnknownFamily):
        tags_compute_enqueue(families=["hobbies"])
