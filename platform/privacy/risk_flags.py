"""Risk flags, their offer suppressions, counter statements and the operator's blacklist.

The rules that find risky accounts read events and live in the consumers app
(`consumers/risk.py`); they hand their findings to `risk_flags_record`, which
keeps one active flag per consumer and reason, suppresses flagged consumers
from campaigns that carry an offer, and audits the run under the approved
risk-control activity. A consumer adversely affected can file a counter
statement; an officer who upholds it lifts the flag and its suppression in the
same transaction. Every step lands in the audit log with counts and ids only.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from .audit import audit_record
from .models import (
    CounterStatement,
    RiskFlag,
    RiskFlagStatus,
    RiskReason,
    StatementStatus,
    Suppression,
    SuppressionReason,
    SuppressionScope,
)
from .services import ProcessingBasis
from .subject_data import consumer_id_for

logger = logging.getLogger("dmp.privacy")

# Why a flag was lifted. Only a review outcome keeps the same evidence from raising the flag again.
LIFT_COUNTER_STATEMENT = "counter_statement_upheld"
LIFT_OFFICER = "lifted_by_officer"
LIFT_EXPIRED = "expired"
REVIEW_LIFTS = (LIFT_COUNTER_STATEMENT, LIFT_OFFICER)


class RiskReviewError(Exception):
    code = "invalid"


class UnknownSubject(RiskReviewError):
    code = "unknown_consumer"


class UnknownFlag(RiskReviewError):
    code = "unknown_flag"


class AlreadyReviewed(RiskReviewError):
    code = "already_reviewed"


@dataclass(frozen=True)
class RiskFinding:
    """One consumer caught by one rule: the rule's main measure and the counts behind it."""

    consumer_id: int
    reason: str
    score: int
    evidence: dict = field(default_factory=dict)


def suppression_reference(flag_id: int) -> str:
    return f"risk_flag:{flag_id}"


def risk_flags_record(
    *,
    findings: Iterable[RiskFinding],
    basis: ProcessingBasis,
    rule_version: str,
    actor: str,
    flag_ttl_days: int,
    now: datetime | None = None,
) -> dict[str, int]:
    """Bring the flags in line with a scan's findings, in one transaction.

    - a finding with an active flag refreshes its evidence and last-seen time;
    - a finding whose flag an officer lifted after review is skipped unless the
      evidence has grown since (the review answered the evidence it saw);
    - a new finding creates a flag and an offers-only suppression;
    - an active flag not seen again for `flag_ttl_days` expires, suppression too.
    """
    now = now or timezone.now()
    findings = list(findings)
    counts: Counter[str] = Counter()
    with transaction.atomic():
        consumer_ids = {f.consumer_id for f in findings}
        active = {
            (flag.consumer_id, flag.reason): flag
            for flag in RiskFlag.objects.select_for_update().filter(
                status=RiskFlagStatus.ACTIVE, consumer_id__in=consumer_ids
            )
        }
        reviewed: dict[tuple[int, str], int] = {}
        for consumer_id, reason, score in RiskFlag.objects.filter(
            status=RiskFlagStatus.LIFTED, lift_reason__in=REVIEW_LIFTS, consumer_id__in=consumer_ids
        ).values_list("consumer_id", "reason", "score"):
            key = (consumer_id, reason)
            reviewed[key] = max(score, reviewed.get(key, score))

        to_update, to_create = [], []
        for finding in findings:
            key = (finding.consumer_id, finding.reason)
            flag = active.get(key)
            if flag is not None:
                flag.evidence, flag.score, flag.last_seen_at = finding.evidence, finding.score, now
                flag.rule_version, flag.activity_id = rule_version, basis.activity_id
                to_update.append(flag)
                counts["refreshed"] += 1
            elif key in reviewed and finding.score <= reviewed[key]:
                counts["kept_lifted_after_review"] += 1
            else:
                to_create.append(
                    RiskFlag(
                        consumer_id=finding.consumer_id,
                        reason=finding.reason,
                        rule_version=rule_version,
                        evidence=finding.evidence,
                        score=finding.score,
                        activity_id=basis.activity_id,
                        created_at=now,
                        last_seen_at=now,
                    )
                )
                counts[f"new.{finding.reason}"] += 1
        RiskFlag.objects.bulk_update(to_update, ["evidence", "score", "last_seen_at", "rule_version", "activity_id"])
        created = RiskFlag.objects.bulk_create(to_create)
        Suppression.objects.bulk_create(
            [
                Suppression(
                    consumer_id=flag.consumer_id,
                    reason=SuppressionReason.RISK_FLAG,
                    scope=SuppressionScope.OFFERS,
                    reference=suppression_reference(flag.pk),
                )
                for flag in created
            ]
        )
        counts["new"] = len(created)
        counts["suppressions_created"] = len(created)

        stale = RiskFlag.objects.select_for_update().filter(
            status=RiskFlagStatus.ACTIVE, last_seen_at__lt=now - timedelta(days=flag_ttl_days)
        )
        expired = _lift(list(stale), reason=LIFT_EXPIRED, now=now)
        counts["expired"] = expired["flags_lifted"]
        counts["active_after"] = RiskFlag.objects.filter(status=RiskFlagStatus.ACTIVE).count()
        audit_record(
            actor=actor,
            action="risk_flags.recorded",
            purpose=basis.purpose,
            legal_basis=basis.legal_basis,
            activity_id=basis.activity_id,
            object_type="RiskFlag",
            counts=dict(counts),
            details={"rule_version": rule_version, "flag_ttl_days": flag_ttl_days},
        )
    return dict(counts)


def _lift(flags: list[RiskFlag], *, reason: str, now: datetime) -> dict[str, int]:
    if not flags:
        return {"flags_lifted": 0, "suppressions_lifted": 0}
    ids = [f.pk for f in flags]
    lifted = RiskFlag.objects.filter(pk__in=ids, status=RiskFlagStatus.ACTIVE).update(
        status=RiskFlagStatus.LIFTED, lifted_at=now, lift_reason=reason
    )
    suppressions = Suppression.objects.filter(
        reason=SuppressionReason.RISK_FLAG,
        reference__in=[suppression_reference(i) for i in ids],
        lifted_at__isnull=True,
    ).update(lifted_at=now)
    return {"flags_lifted": lifted, "suppressions_lifted": suppressions}


def risk_flags_lift(*, flag_ids: list[int], officer: AbstractBaseUser, note: str = "") -> dict[str, int]:
    """An officer lifts flags directly (outside a counter statement); audited."""
    with transaction.atomic():
        flags = list(RiskFlag.objects.select_for_update().filter(pk__in=flag_ids, status=RiskFlagStatus.ACTIVE))
        counts = _lift(flags, reason=LIFT_OFFICER, now=timezone.now())
        audit_record(
            actor=f"user:{officer.pk}",
            action="risk_flags.lifted",
            purpose="risk_control",
            object_type="RiskFlag",
            object_id=",".join(str(f.pk) for f in flags)[:100],
            counts=counts,
            details={"note_given": bool(note.strip())},
        )
    return counts


def counter_statement_file(*, pseudonym: str, statement: str, flag_id: int | None, actor: str) -> CounterStatement:
    """A consumer's statement against a flag (or all their active flags), awaiting an officer's review."""
    statement = (statement or "").strip()
    if not statement:
        raise RiskReviewError("The statement is empty.")
    consumer_id = consumer_id_for(pseudonym)
    if consumer_id is None:
        raise UnknownSubject("No consumer with that identifier is held.")
    with transaction.atomic():
        flag = None
        if flag_id is not None:
            # Another consumer's flag is answered the same as a missing one.
            flag = RiskFlag.objects.filter(pk=flag_id, consumer_id=consumer_id).first()
            if flag is None:
                raise UnknownFlag(f"Risk flag {flag_id} is not one of this consumer's flags.")
        elif not RiskFlag.objects.filter(consumer_id=consumer_id).exists():
            raise UnknownFlag("This consumer has no risk flags to contest.")
        counter = CounterStatement.objects.create(
            consumer_id=consumer_id,
            flag=flag,
            statement=statement,
            submitted_by=actor,
            created_at=timezone.now(),
        )
        audit_record(
            actor=actor,
            action="counter_statement.received",
            purpose="risk_control",
            object_type="CounterStatement",
            object_id=counter.pk,
            details={"flag_id": flag.pk if flag else None},
        )
    logger.info("counter_statement.received", extra={"fields": {"statement_id": counter.pk}})
    return counter


def _review(statement_id: int, officer: AbstractBaseUser) -> CounterStatement:
    counter = CounterStatement.objects.select_for_update().get(pk=statement_id)
    if counter.status != StatementStatus.RECEIVED:
        raise AlreadyReviewed(f"Counter statement {counter.pk} was already {counter.get_status_display().lower()}.")
    counter.reviewed_by = officer
    counter.reviewed_at = timezone.now()
    return counter


def counter_statement_uphold(*, statement_id: int, officer: AbstractBaseUser, note: str = "") -> dict[str, int]:
    """Uphold: the contested flag (or every active flag of the consumer) and its suppression lift at once."""
    with transaction.atomic():
        counter = _review(statement_id, officer)
        flags = RiskFlag.objects.select_for_update().filter(status=RiskFlagStatus.ACTIVE)
        flags = flags.filter(pk=counter.flag_id) if counter.flag_id else flags.filter(consumer_id=counter.consumer_id)
        counts = _lift(list(flags), reason=LIFT_COUNTER_STATEMENT, now=counter.reviewed_at)
        counter.status = StatementStatus.UPHELD
        counter.review_note = note.strip()
        counter.save()
        audit_record(
            actor=f"user:{officer.pk}",
            action="counter_statement.upheld",
            purpose="risk_control",
            object_type="CounterStatement",
            object_id=counter.pk,
            counts=counts,
            details={"flag_id": counter.flag_id},
        )
    logger.info("counter_statement.upheld", extra={"fields": {"statement_id": counter.pk, **counts}})
    return counts


def counter_statement_dismiss(*, statement_id: int, officer: AbstractBaseUser, note: str) -> CounterStatement:
    """Dismiss with the reason the consumer will be given; the flag stays."""
    note = (note or "").strip()
    if not note:
        raise RiskReviewError("Dismissing a counter statement needs a reason the consumer can be given.")
    with transaction.atomic():
        counter = _review(statement_id, officer)
        counter.status = StatementStatus.DISMISSED
        counter.review_note = note
        counter.save()
        audit_record(
            actor=f"user:{officer.pk}",
            action="counter_statement.dismissed",
            purpose="risk_control",
            object_type="CounterStatement",
            object_id=counter.pk,
            details={"flag_id": counter.flag_id},
        )
    return counter


def blacklist_summary() -> dict:
    """Counts for the operator: flagged consumers, and active flags per reason."""
    active = RiskFlag.objects.filter(status=RiskFlagStatus.ACTIVE)
    by_reason = dict(active.values("reason").annotate(n=Count("id")).values_list("reason", "n"))
    return {
        "consumers": active.values("consumer_id").distinct().count(),
        "flags": sum(by_reason.values()),
        "by_reason": {reason: by_reason.get(reason, 0) for reason in RiskReason.values},
    }


def blacklist_page(*, limit: int, offset: int) -> list[dict]:
    """One page of flagged consumers: pseudonym, and each active flag's reason code and evidence counts."""
    consumer_ids = list(
        RiskFlag.objects.filter(status=RiskFlagStatus.ACTIVE)
        .order_by("consumer_id")
        .values_list("consumer_id", flat=True)
        .distinct()[offset : offset + limit]
    )
    entries: dict[int, dict] = {}
    for row in (
        RiskFlag.objects.filter(status=RiskFlagStatus.ACTIVE, consumer_id__in=consumer_ids)
        .order_by("consumer_id", "reason")
        .values("pk", "consumer_id", "consumer__pseudonym", "reason", "score", "evidence", "created_at", "last_seen_at")
    ):
        entry = entries.setdefault(row["consumer_id"], {"pseudonym": row["consumer__pseudonym"], "flags": []})
        entry["flags"].append(
            {
                "id": row["pk"],
                "reason": row["reason"],
                "score": row["score"],
                "evidence": row["evidence"],
                "flagged_at": row["created_at"],
                "last_seen_at": row["last_seen_at"],
            }
        )
    return [entries[cid] for cid in consumer_ids if cid in entries]
