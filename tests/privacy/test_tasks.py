import time

import pytest
from django_celery_beat.models import PeriodicTask

from privacy.audit import audit_record
from privacy.models import AuditEntry
from privacy.tasks import audit_chain_verify_task


def test_chain_verification_is_scheduled_and_editable_in_the_admin(db):
    task = PeriodicTask.objects.get(task="privacy.audit_chain_verify")
    assert task.enabled
    assert task.crontab is not None


def test_verification_task_records_its_outcome(db):
    first = audit_record(actor="task:test", action="x")
    outcome = audit_chain_verify_task.delay().get()
    # The head goes to the logs too: a witness of the chain's end outside the database.
    assert outcome == {"checked": 1, "intact": True, "head_id": first.pk, "head_hash": first.entry_hash}
    assert AuditEntry.objects.filter(action="audit.chain_verified").count() == 1


@pytest.mark.worker
def test_a_real_worker_runs_the_task_from_the_broker(celery_worker_process):
    audit_record(actor="task:test", action="x")
    audit_chain_verify_task.delay()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        entry = AuditEntry.objects.filter(action="audit.chain_verified").first()
        if entry is not None:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the worker did not run the task within 60 s:\n" + celery_worker_process.log[-3000:])
    assert {key: entry.details[key] for key in ("checked", "intact")} == {"checked": 1, "intact": True}
    assert entry.actor == "task:privacy.audit_chain_verify"
