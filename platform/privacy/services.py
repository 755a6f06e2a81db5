"""Write operations of the privacy core: the register, the processing guard, the consent ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from .audit import audit_record
from .models import (
    ActivityStatus,
    ConsentKind,
    ConsentRecord,
    ConsentState,
    ConsentStatus,
    ProcessingActivity,
    Purpose,
    rule_violations,
)


class ProcessingNotPermitted(Exception):
    """A job tried to process consumer data for a purpose with no approved legal basis."""

    def __init__(self, purpose: str, reason: str):
        self.purpose = purpose
        self.reason = reason
        super().__init__(f"Processing for {purpose!r} is not permitted: {reason}")


@dataclass(frozen=True)
class ProcessingBasis:
    """What a job runs under; it goes into the job's audit entry."""

    activity_id: int
    purpose: str
    legal_basis: str


def processing_basis_require(*, purpose: str) -> ProcessingBasis:
    """The one guard every job calls before it touches consumer data.

    Returns the approved activity (the most recently approved, if several);
    raises ProcessingNotPermitted when none is approved or the one found no
    longer satisfies the register's rules (someone edited it behind the admin's back).
    """
    if purpose not in Purpose.values:
        raise ProcessingNotPermitted(purpose, "unknown purpose")
    row = _latest_approved_activity(purpose)
    if row is None:
        raise ProcessingNotPermitted(purpose, "no approved processing activity in the register")
    activity_id, legal_basis, assessment, disclosure_url, counter_statement_channel = row
    errors = rule_violations(
        purpose=purpose,
        legal_basis=legal_basis,
        assessment=assessment,
        disclosure_url=disclosure_url,
        counter_statement_channel=counter_statement_channel,
    )
    if errors:
        reason = f"the approved activity breaks the register's rules: {ValidationError(errors)}"
        raise ProcessingNotPermitted(purpose, reason)
    return ProcessingBasis(activity_id=activity_id, purpose=purpose, legal_basis=legal_basis)


def _latest_approved_activity(purpose: str) -> tuple | None:
    """(id, legal basis, assessment, disclosure URL, counter-statement channel) of the newest approved activity.

    Plain SQL: every live estimate and every recommendation request passes this guard, and building the ORM
    query cost ten times what PostgreSQL took to answer it.
    """
    table = connection.ops.quote_name(ProcessingActivity._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, legal_basis, assessment, disclosure_url, counter_statement_channel "  # noqa: S608
            f"FROM {table} WHERE purpose = %s AND status = %s ORDER BY approved_at DESC, id DESC LIMIT 1",
            [str(purpose), ActivityStatus.APPROVED.value],
        )
        return cursor.fetchone()


def activity_approve(*, activity: ProcessingActivity, officer: AbstractBaseUser) -> ProcessingActivity:
    activity.full_clean()  # the register's rules; raises ValidationError naming the field
    with transaction.atomic():
        activity.status = ActivityStatus.APPROVED
        activity.approved_by = officer
        activity.approved_at = timezone.now()
        activity.save()
        audit_record(
            actor=f"user:{officer.pk}",
            action="processing_activity.approved",
            purpose=activity.purpose,
            legal_basis=activity.legal_basis,
            activity_id=activity.pk,
            object_type="ProcessingActivity",
            object_id=activity.pk,
        )
    return activity


def activity_suspend(*, activity: ProcessingActivity, officer: AbstractBaseUser) -> ProcessingActivity:
    with transaction.atomic():
        activity.status = ActivityStatus.SUSPENDED
        activity.save(update_fields=["status", "updated_at"])
        audit_record(
            actor=f"user:{officer.pk}",
            action="processing_activity.suspended",
            purpose=activity.purpose,
            legal_basis=activity.legal_basis,
            activity_id=activity.pk,
            object_type="ProcessingActivity",
            object_id=activity.pk,
        )
    return activity


def activity_revert_to_draft(*, activity: ProcessingActivity, officer: AbstractBaseUser) -> ProcessingActivity:
    """Save an edited activity back as a draft: an edit voids its approval, so it needs approving again.

    `activity` carries the officer's unsaved edits; they are saved with the new status.
    """
    previous_status = str(activity.status)
    with transaction.atomic():
        activity.status = ActivityStatus.DRAFT
        activity.approved_by = None
        activity.approved_at = None
        activity.save()
        audit_record(
            actor=f"user:{officer.pk}",
            action="processing_activity.reverted_to_draft",
            purpose=activity.purpose,
            legal_basis=activity.legal_basis,
            activity_id=activity.pk,
            object_type="ProcessingActivity",
            object_id=activity.pk,
            details={"previous_status": previous_status},
        )
    return activity


@dataclass(frozen=True)
class ConsentChange:
    consumer_id: int
    purpose: str
    status: str
    kind: str
    source: str
    occurred_at: datetime


def consents_record(*, changes: list[ConsentChange], actor: str) -> dict[str, int]:
    """Append consent events to the ledger and bring the derived current state up to date.

    The latest event by occurred_at wins, so late-arriving older events are
    kept in the ledger without overriding a newer decision.
    """
    if not changes:
        return {"recorded": 0, "state_changed": 0}
    with transaction.atomic():
        ConsentRecord.objects.bulk_create(
            [
                ConsentRecord(
                    consumer_id=c.consumer_id,
                    purpose=c.purpose,
                    status=c.status,
                    kind=c.kind,
                    source=c.source,
                    occurred_at=c.occurred_at,
                )
                for c in changes
            ]
        )
        latest: dict[tuple[int, str], ConsentChange] = {}
        for c in changes:
            key = (c.consumer_id, c.purpose)
            if key not in latest or c.occurred_at >= latest[key].occurred_at:
                latest[key] = c
        state_changed = _consent_states_apply(latest)
        withdrawn = sum(1 for c in latest.values() if c.status == ConsentStatus.WITHDRAWN)
        audit_record(
            actor=actor,
            action="consent.recorded",
            counts={
                "records": len(changes),
                "state_changed": state_changed,
                "withdrawn": withdrawn,
            },
        )
    return {"recorded": len(changes), "state_changed": state_changed}


def _consent_states_apply(latest: dict[tuple[int, str], ConsentChange]) -> int:
    """Make each (consumer, purpose) state follow its latest decision; safe against concurrent writers.

    Two requests may carry the first decision for the same consumer at the same moment. The missing states are
    therefore inserted with ON CONFLICT DO NOTHING: the database makes the second writer wait for the first and
    then skip its insert instead of failing on the unique constraint. Every state is then locked and re-read, and
    a decision replaces it only when it is at least as recent, so the latest decision by decision time wins
    whatever order the requests commit in. Inserts and locks go in (consumer, purpose) order, so two writers
    never wait on each other in a cycle. Returns how many states were created or changed.
    """
    keys = sorted(latest)
    consumer_ids = {consumer_id for consumer_id, _ in keys}
    purposes = {purpose for _, purpose in keys}
    in_keys = ConsentState.objects.filter(consumer_id__in=consumer_ids, purpose__in=purposes)
    existed = {key for key in in_keys.values_list("consumer_id", "purpose") if key in latest}
    ConsentState.objects.bulk_create(
        [
            ConsentState(
                consumer_id=c.consumer_id, purpose=c.purpose, status=c.status, kind=c.kind, occurred_at=c.occurred_at
            )
            for c in (latest[key] for key in keys if key not in existed)
        ],
        ignore_conflicts=True,
    )
    changed, to_update = 0, []
    for state in in_keys.select_for_update().order_by("consumer_id", "purpose"):
        c = latest.get((state.consumer_id, state.purpose))
        if c is None:
            continue
        decision = (c.status, c.kind, c.occurred_at)
        if (c.consumer_id, c.purpose) not in existed and (state.status, state.kind, state.occurred_at) == decision:
            changed += 1  # the row this call inserted (or an identical decision a concurrent writer stored)
        elif c.occurred_at >= state.occurred_at:
            state.status, state.kind, state.occurred_at = decision
            state.updated_at = timezone.now()  # bulk_update skips auto_now; readers key on updated_at
            to_update.append(state)
    ConsentState.objects.bulk_update(to_update, ["status", "kind", "occurred_at", "updated_at"])
    return changed + len(to_update)


__all__ = [
    "ConsentChange",
    "ConsentKind",
    "ConsentStatus",
    "ProcessingBasis",
    "ProcessingNotPermitted",
    "activity_approve",
    "activity_suspend",
    "consents_record",
    "processing_basis_require",
]
