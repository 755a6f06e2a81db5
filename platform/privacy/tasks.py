"""Scheduled privacy jobs. Thin: each calls a service and records what happened."""

from __future__ import annotations

import logging

from celery import shared_task

from .audit import audit_chain_verify, audit_record

logger = logging.getLogger("dmp.privacy")


@shared_task(
    name="privacy.audit_chain_verify", acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5
)
def audit_chain_verify_task() -> dict:
    """Verify the audit chain (daily via beat) and record the outcome in the chain itself.

    A broken chain is logged at ERROR so monitoring catches it; officers also see
    the `audit.chain_verified` entries (with `intact: false`) in the admin.
    """
    report = audit_chain_verify()
    # The head's hash and length go to the logs too: a copy of the checkpoint outside the database and this host.
    outcome = {"checked": report.checked, "intact": report.intact, "head_id": report.head_id}
    outcome["head_hash"] = report.head_hash
    if report.first_break is not None:
        outcome["first_broken_entry"] = report.first_break.entry_id
        outcome["reason"] = report.first_break.reason
        logger.error("audit.chain_broken", extra={"fields": outcome})
    else:
        logger.info("audit.chain_verified", extra={"fields": outcome})
    audit_record(actor="task:privacy.audit_chain_verify", action="audit.chain_verified", details=outcome)
    return outcome


@shared_task(name="privacy.release_spending_audit", acks_late=True, autoretry_for=(OSError,), retry_backoff=True)
def release_spending_audit_task(day: str | None = None) -> int:
    """Audit yesterday's (or `day`'s, ISO date) privacy-budget spending: one entry per merchant (daily via beat)."""
    from datetime import date, timedelta

    from django.utils import timezone

    from .services import release_spending_audit

    target = date.fromisoformat(day) if day else timezone.now().date() - timedelta(days=1)
    written = release_spending_audit(day=target)
    logger.info("privacy_budget.audited", extra={"fields": {"day": target.isoformat(), "merchants": written}})
    return written
