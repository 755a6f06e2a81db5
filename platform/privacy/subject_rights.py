"""Data-subject requests: access, erasure and objection to direct marketing.

The operator submits a request with the consumer's raw identifier; it is
pseudonymised at once (as at ingestion) and only the pseudonym and a keyed
digest of it are kept. A privacy officer processes access and erasure
requests in the admin; an objection takes effect the moment it is received,
because direct marketing must stop before the next send.

Access and erasure go through the handler registry in `subject_data.py`, so
this module never imports the apps that hold the data. Erasure runs every
handler, from the highest layer down, in one transaction, then blanks the
pseudonym (and any access document) on every request of the same subject, and
proves what it removed with counts per table. See docs/subject-rights.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from .audit import audit_record
from .models import (
    OPEN_REQUEST_STATUSES,
    ConsentKind,
    ConsentStatus,
    DataSubjectRequest,
    Purpose,
    RequestKind,
    RequestStatus,
    Suppression,
    SuppressionReason,
    SuppressionScope,
)
from .pseudonyms import InvalidIdentifier, pseudonymise
from .services import ConsentChange, consents_record
from .subject_data import consumer_id_for, handlers

logger = logging.getLogger("dmp.privacy")


class SubjectRequestError(Exception):
    """A request cannot move the way it was asked to; the message says why (and never names the subject)."""

    code = "invalid_request_state"


class InvalidSubjectIdentifier(SubjectRequestError):
    code = "invalid_identifier"


class DuplicateOpenRequest(SubjectRequestError):
    code = "duplicate_request"

    def __init__(self, existing_id: int, kind: str):
        self.existing_id = existing_id
        super().__init__(f"An open {kind} request for this consumer already exists (request {existing_id}).")


class RequestNotOpen(SubjectRequestError):
    code = "request_closed"


def due_days() -> int:
    return settings.SUBJECT_REQUEST_DUE_DAYS


def subject_digest(pseudonym: str) -> str:
    """A keyed digest of the pseudonym that recognises a repeat request but joins to no consumer table."""
    key = settings.PSEUDONYM_KEY.encode()
    return hmac.new(key, f"subject-request:{pseudonym}".encode(), hashlib.sha256).hexdigest()


def _jsonable(value):
    """Datetimes, decimals and UUIDs as strings, so the result is what the JSON column will hand back."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _officer_actor(officer: AbstractBaseUser | None, fallback: str) -> str:
    return f"user:{officer.pk}" if officer is not None else fallback


def subject_request_submit(*, kind: str, raw_identifier: str, actor: str) -> DataSubjectRequest:
    """Record a request. The raw identifier is pseudonymised here and goes no further.

    An objection is carried out at once (consent withdrawn, every future send
    suppressed); access and erasure wait for an officer.
    """
    if kind not in RequestKind.values:
        raise SubjectRequestError(f"Unknown request kind {kind!r}; expected one of {', '.join(RequestKind.values)}.")
    try:
        pseudonym = pseudonymise(raw_identifier)
    except InvalidIdentifier as exc:
        raise InvalidSubjectIdentifier(f"The consumer identifier {exc}.") from None
    digest = subject_digest(pseudonym)
    now = timezone.now()
    existing = _open_request_id(digest, kind)
    if existing is not None:
        raise DuplicateOpenRequest(existing, kind)
    try:
        with transaction.atomic():
            request = DataSubjectRequest.objects.create(
                kind=kind,
                pseudonym=pseudonym,
                subject_digest=digest,
                submitted_by=actor,
                received_at=now,
                due_at=now + timedelta(days=due_days()),
            )
            audit_record(
                actor=actor,
                action="subject_request.received",
                object_type="DataSubjectRequest",
                object_id=request.pk,
                details={"kind": kind, "due_at": request.due_at.isoformat()},
            )
    except IntegrityError:
        # A concurrent submission won the partial unique constraint.
        existing = _open_request_id(digest, kind)
        raise DuplicateOpenRequest(existing or 0, kind) from None
    logger.info("subject_request.received", extra={"fields": {"request_id": request.pk, "kind": kind}})
    if kind == RequestKind.OBJECTION:
        try:
            request = subject_request_process(request_id=request.pk, actor=actor)
        except Exception:  # recorded on the request (error) for an officer to retry
            request.refresh_from_db()
    return request


def subject_request_start(*, request_id: int, officer: AbstractBaseUser) -> DataSubjectRequest:
    """An officer takes the request on: received → in progress."""
    with transaction.atomic():
        request = DataSubjectRequest.objects.select_for_update().get(pk=request_id)
        if request.status != RequestStatus.RECEIVED:
            raise RequestNotOpen(f"Request {request.pk} is {request.get_status_display().lower()}, not received.")
        request.status = RequestStatus.IN_PROGRESS
        request.started_at = timezone.now()
        request.handled_by = officer
        request.save(update_fields=["status", "started_at", "handled_by", "updated_at"])
        audit_record(
            actor=f"user:{officer.pk}",
            action="subject_request.started",
            object_type="DataSubjectRequest",
            object_id=request.pk,
            details={"kind": request.kind},
        )
    return request


def subject_request_reject(*, request_id: int, officer: AbstractBaseUser, reason: str) -> DataSubjectRequest:
    """Close a request without acting on it, with the reason the consumer will be given."""
    reason = (reason or "").strip()
    if not reason:
        raise SubjectRequestError("A rejection needs a reason the consumer can be given.")
    with transaction.atomic():
        request = DataSubjectRequest.objects.select_for_update().get(pk=request_id)
        if not request.is_open:
            raise RequestNotOpen(f"Request {request.pk} is already {request.get_status_display().lower()}.")
        now = timezone.now()
        request.status = RequestStatus.REJECTED
        request.rejection_reason = reason
        request.handled_by = officer
        request.started_at = request.started_at or now
        request.completed_at = now
        request.save()
        audit_record(
            actor=f"user:{officer.pk}",
            action="subject_request.rejected",
            object_type="DataSubjectRequest",
            object_id=request.pk,
            details={"kind": request.kind},
        )
    logger.info("subject_request.rejected", extra={"fields": {"request_id": request.pk}})
    return request


def subject_request_process(
    *, request_id: int, officer: AbstractBaseUser | None = None, actor: str = ""
) -> DataSubjectRequest:
    """Carry the request out and complete it.

    The work runs in one transaction: if any handler fails, nothing of it is
    kept, the request stays in progress and `error` says which part failed.
    """
    actor = _officer_actor(officer, actor or "system")
    with transaction.atomic():
        request = DataSubjectRequest.objects.select_for_update().get(pk=request_id)
        if not request.is_open:
            raise RequestNotOpen(f"Request {request.pk} is already {request.get_status_display().lower()}.")
        if request.status == RequestStatus.RECEIVED:
            request.status = RequestStatus.IN_PROGRESS
            request.started_at = timezone.now()
        if officer is not None:
            request.handled_by = officer
        request.save(update_fields=["status", "started_at", "handled_by", "updated_at"])

    work = {
        RequestKind.ACCESS: _carry_out_access,
        RequestKind.ERASURE: _carry_out_erasure,
        RequestKind.OBJECTION: _carry_out_objection,
    }[request.kind]
    stage = {"name": "start"}
    try:
        with transaction.atomic():
            request = DataSubjectRequest.objects.select_for_update().get(pk=request_id)
            result, counts = work(request, actor, stage)
            request.result = _jsonable(result)
            request.status = RequestStatus.COMPLETED
            request.completed_at = timezone.now()
            request.error = ""
            request.save()
            audit_record(
                actor=actor,
                action="subject_request.completed",
                object_type="DataSubjectRequest",
                object_id=request.pk,
                counts=counts,
                details={"kind": request.kind, "subject_known": result.get("subject_known", False)},
            )
    except Exception as exc:
        # The type and the failing part only: database errors can quote the values they choked on.
        error = f"{stage['name']} failed: {type(exc).__name__}; nothing was changed. Retry or contact the operator."
        DataSubjectRequest.objects.filter(pk=request_id).update(error=error, updated_at=timezone.now())
        logger.error(
            "subject_request.failed",
            extra={"fields": {"request_id": request_id, "stage": stage["name"], "error": type(exc).__name__}},
        )
        raise
    logger.info(
        "subject_request.completed",
        extra={"fields": {"request_id": request.pk, "kind": request.kind, "counts": counts}},
    )
    return request


def _flat_counts(per_handler: dict[str, dict[str, int]]) -> dict[str, int]:
    return {f"{name}.{table}": int(n) for name, tables in per_handler.items() for table, n in tables.items()}


def _request_history(request: DataSubjectRequest) -> list[dict]:
    return [
        {
            "id": r.pk,
            "kind": r.kind,
            "status": r.status,
            "received_at": r.received_at,
            "completed_at": r.completed_at,
        }
        for r in DataSubjectRequest.objects.filter(subject_digest=request.subject_digest).order_by("received_at")
    ]


def subject_access_document(*, pseudonym: str) -> dict:
    """Everything held about the consumer, one section per registered handler (highest layer first)."""
    consumer_id = consumer_id_for(pseudonym)
    sections: dict = {}
    if consumer_id is not None:
        for handler in handlers():
            sections[handler.name] = handler.access(consumer_id)
    return {"subject_known": consumer_id is not None, "sections": _jsonable(sections)}


def _carry_out_access(request: DataSubjectRequest, actor: str, stage: dict) -> tuple[dict, dict]:
    stage["name"] = "access"
    document = subject_access_document(pseudonym=request.pseudonym)
    document = {
        "request_id": request.pk,
        "generated_at": timezone.now(),
        **document,
        "subject_requests": _request_history(request),
    }
    return document, section_counts(document["sections"])


def section_counts(sections: dict) -> dict[str, int]:
    """How many records each part of an access document holds, as `handler.table` → count."""
    counts = {}
    for name, section in sections.items():
        if isinstance(section, dict):
            for key, value in section.items():
                counts[f"{name}.{key}"] = len(value) if isinstance(value, list) else 1
        else:
            counts[name] = len(section) if isinstance(section, list) else 1
    return counts


@dataclass(frozen=True)
class RequestPreview:
    """What processing a request will do, for the officer's confirmation page, before anything is changed."""

    request_id: int
    kind: str
    subject_known: bool
    held: dict[str, int]  # `handler.table` → records held about the subject (what an erasure removes)
    consequence: str

    @property
    def total(self) -> int:
        return sum(self.held.values())


def subject_request_preview(*, request_id: int, officer: AbstractBaseUser) -> RequestPreview:
    """Count what the platform holds about the request's subject and say what processing will do. Changes nothing
    but the audit log, which records that an officer looked (the counts, never the records)."""
    request = DataSubjectRequest.objects.get(pk=request_id)
    document = subject_access_document(pseudonym=request.pseudonym) if request.pseudonym else {"sections": {}}
    held = {key: n for key, n in section_counts(document["sections"]).items() if n}
    known = bool(document.get("subject_known"))
    if request.kind == RequestKind.ERASURE:
        consequence = (
            f"Erases {sum(held.values())} records about this consumer from every part of the platform, removes "
            "them from segment snapshots and bitmaps, and blanks the pseudonym on all their requests. This cannot "
            "be undone."
            if known
            else "The platform holds nothing about this consumer; the request is completed with nothing erased."
        )
    elif request.kind == RequestKind.ACCESS:
        consequence = f"Generates an access document listing the {sum(held.values())} records held."
    else:
        consequence = "Withdraws direct-marketing consent and suppresses every future message to this consumer."
    audit_record(
        actor=_officer_actor(officer, "system"),
        action="subject_request.previewed",
        object_type="DataSubjectRequest",
        object_id=request.pk,
        counts=held,
        details={"kind": request.kind, "subject_known": known},
    )
    return RequestPreview(request.pk, request.kind, known, held, consequence)


def _carry_out_erasure(request: DataSubjectRequest, actor: str, stage: dict) -> tuple[dict, dict]:
    consumer_id = consumer_id_for(request.pseudonym) if request.pseudonym else None
    removed: dict[str, dict[str, int]] = {}
    if consumer_id is not None:
        for handler in handlers():
            stage["name"] = f"erasure by {handler.name}"
            removed[handler.name] = {table: int(n) for table, n in handler.erase(consumer_id).items()}
    stage["name"] = "redacting earlier requests"
    # Every request of this subject loses the pseudonym and any access document it carried.
    earlier = DataSubjectRequest.objects.filter(subject_digest=request.subject_digest).exclude(pk=request.pk)
    redacted_documents = (
        earlier.filter(kind=RequestKind.ACCESS).exclude(result={}).update(result={"redacted": "the subject was erased"})
    )
    redacted = earlier.exclude(pseudonym="").update(pseudonym="")
    request.pseudonym = ""
    removed["privacy_requests"] = {"pseudonyms_blanked": redacted + 1, "access_documents_redacted": redacted_documents}
    total = sum(n for name, tables in removed.items() if name != "privacy_requests" for n in tables.values())
    result = {
        "subject_known": consumer_id is not None,
        "erased_at": timezone.now(),
        "removed": removed,
        "total_rows_removed": total,
    }
    return result, _flat_counts(removed)


def _carry_out_objection(request: DataSubjectRequest, actor: str, stage: dict) -> tuple[dict, dict]:
    stage["name"] = "objection"
    consumer_id = consumer_id_for(request.pseudonym)
    if consumer_id is None:
        return {"subject_known": False, "consent_withdrawn": False, "suppressed": False}, {}
    now = timezone.now()
    consents_record(
        changes=[
            ConsentChange(
                consumer_id=consumer_id,
                purpose=Purpose.DIRECT_MARKETING,
                status=ConsentStatus.WITHDRAWN,
                kind=ConsentKind.EXPRESS,
                source=f"subject_request:{request.pk}",
                occurred_at=now,
            )
        ],
        actor=actor,
    )
    suppression = Suppression.objects.filter(
        consumer_id=consumer_id, reason=SuppressionReason.OBJECTION, scope=SuppressionScope.ALL, lifted_at__isnull=True
    ).first()
    created = suppression is None
    if created:
        suppression = Suppression.objects.create(
            consumer_id=consumer_id,
            reason=SuppressionReason.OBJECTION,
            scope=SuppressionScope.ALL,
            reference=f"request:{request.pk}",
        )
    result = {
        "subject_known": True,
        "consent_withdrawn": True,
        "suppressed": True,
        "suppression_id": suppression.pk,
        "effective_at": now,
    }
    return result, {"consent_withdrawn": 1, "suppressions_created": int(created)}


def open_requests(queryset: QuerySet[DataSubjectRequest] | None = None) -> QuerySet[DataSubjectRequest]:
    """Requests still waiting on an officer (received or in progress), narrowed from `queryset` if given."""
    base = DataSubjectRequest.objects.all() if queryset is None else queryset
    return base.filter(status__in=OPEN_REQUEST_STATUSES)


def overdue_requests(
    queryset: QuerySet[DataSubjectRequest] | None = None, *, now: datetime | None = None
) -> QuerySet[DataSubjectRequest]:
    """Open requests past their due date."""
    return open_requests(queryset).filter(due_at__lt=now or timezone.now())


def _open_request_id(digest: str, kind: str) -> int | None:
    """The open request of this kind for this subject, if any (at most one, by the partial unique constraint)."""
    return open_requests().filter(subject_digest=digest, kind=kind).values_list("pk", flat=True).first()
