"""Risk control: rules over ingested signals that flag fraud and coupon abuse (purpose `risk_control`).

Runs only under an approved Legitimate Interests activity for risk control;
the register already insists that such an activity records its balancing
test, a public disclosure URL and a counter-statement channel, and
`processing_basis_require` refuses otherwise, before a single event is read.

The rules (thresholds below, documented in docs/privacy.md):

shared_device
    One device fingerprint (Event.device, a pseudonymised device id) used by at
    least SHARED_DEVICE_MIN_ACCOUNTS (5) distinct accounts within
    DEVICE_WINDOW_DAYS (30). Ordinary households share a tablet between two to
    four people, so four accounts on one device is never flagged. Score: the
    most accounts seen on one of the consumer's devices.
offer_multi_account
    One device making discounted purchases (discount > 0, i.e. redeeming an
    offer) through at least OFFER_DEVICE_MIN_ACCOUNTS (3) distinct accounts
    within DEVICE_WINDOW_DAYS. The accounts that redeemed on it are flagged.
    Score: accounts redeeming on the device.
cancellation_ratio
    At least CANCELLATION_MIN_ORDERS (4) orders within CANCELLATION_WINDOW_DAYS
    (90) and cancellations / orders >= CANCELLATION_MIN_RATIO_PERCENT (50 %).
    Orders and cancellations are counted by distinct order reference (one order
    may span several event lines); lines without a reference count one each.
    Score: the ratio in percent.

Every rule is one grouped SQL query; only the flagged consumers come back to
Python. Evidence holds counts and a short digest of the device ("ring"), so
an officer can see which accounts shared one device without any identifier.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, F, Q
from django.utils import timezone

from privacy.models import Purpose, RiskReason
from privacy.risk_flags import RiskFinding, risk_flags_record
from privacy.services import processing_basis_require

from .models import Event, EventType

logger = logging.getLogger("dmp.consumers")

RULE_VERSION = "risk-1"
DEVICE_WINDOW_DAYS = 30
SHARED_DEVICE_MIN_ACCOUNTS = 5
OFFER_DEVICE_MIN_ACCOUNTS = 3
CANCELLATION_WINDOW_DAYS = 90
CANCELLATION_MIN_ORDERS = 4
CANCELLATION_MIN_RATIO_PERCENT = 50
# An active flag whose evidence no scan has found again for this long is lifted.
FLAG_TTL_DAYS = 90


@dataclass(frozen=True)
class RiskScanResult:
    activity_id: int
    findings: int
    counts: dict[str, int]


def _ring(device: str) -> str:
    """A short, non-reversible label for a device, so a ring of accounts is visible as one group."""
    return hashlib.sha256(f"ring:{device}".encode()).hexdigest()[:12]


def _device_findings(
    *, reason: str, since: datetime, min_accounts: int, events_filter: Q, count_key: str
) -> list[RiskFinding]:
    events = Event.objects.filter(events_filter, occurred_at__gte=since).exclude(device="")
    devices = (
        events.values("device")
        .annotate(accounts=Count("consumer_id", distinct=True))
        .filter(accounts__gte=min_accounts)
    )
    accounts_on = dict(devices.values_list("device", "accounts"))
    if not accounts_on:
        return []
    per_consumer: dict[int, dict] = defaultdict(lambda: {"devices": set(), "events": 0})
    for consumer_id, device, n in (
        events.filter(device__in=list(accounts_on))
        .values("consumer_id", "device")
        .annotate(n=Count("id"))
        .values_list("consumer_id", "device", "n")
    ):
        entry = per_consumer[consumer_id]
        entry["devices"].add(device)
        entry["events"] += n
    findings = []
    for consumer_id, entry in per_consumer.items():
        top = max(entry["devices"], key=lambda d: (accounts_on[d], d))
        findings.append(
            RiskFinding(
                consumer_id=consumer_id,
                reason=reason,
                score=accounts_on[top],
                evidence={
                    count_key: accounts_on[top],
                    "flagged_devices": len(entry["devices"]),
                    "events_on_flagged_devices": entry["events"],
                    "window_days": DEVICE_WINDOW_DAYS,
                    "threshold": min_accounts,
                    "ring": _ring(top),
                },
            )
        )
    return findings


def shared_device_findings(*, now: datetime) -> list[RiskFinding]:
    return _device_findings(
        reason=RiskReason.SHARED_DEVICE,
        since=now - timedelta(days=DEVICE_WINDOW_DAYS),
        min_accounts=SHARED_DEVICE_MIN_ACCOUNTS,
        events_filter=Q(),
        count_key="accounts_on_device",
    )


def offer_multi_account_findings(*, now: datetime) -> list[RiskFinding]:
    return _device_findings(
        reason=RiskReason.OFFER_MULTI_ACCOUNT,
        since=now - timedelta(days=DEVICE_WINDOW_DAYS),
        min_accounts=OFFER_DEVICE_MIN_ACCOUNTS,
        events_filter=Q(event_type=EventType.PURCHASE, discount__gt=0),
        count_key="accounts_redeeming_on_device",
    )


def _distinct_orders(event_type: int) -> Count:
    return Count("order_ref", distinct=True, filter=Q(event_type=event_type) & ~Q(order_ref=""))


def _unreferenced_lines(event_type: int) -> Count:
    return Count("id", filter=Q(event_type=event_type, order_ref=""))


def cancellation_ratio_findings(*, now: datetime) -> list[RiskFinding]:
    rows = (
        Event.objects.filter(
            occurred_at__gte=now - timedelta(days=CANCELLATION_WINDOW_DAYS),
            event_type__in=[EventType.PURCHASE, EventType.CANCEL],
        )
        .values("consumer_id")
        .annotate(
            orders=_distinct_orders(EventType.PURCHASE) + _unreferenced_lines(EventType.PURCHASE),
            cancels=_distinct_orders(EventType.CANCEL) + _unreferenced_lines(EventType.CANCEL),
        )
        .filter(orders__gte=CANCELLATION_MIN_ORDERS)
        .alias(cancels_x100=F("cancels") * 100, orders_x_min=F("orders") * CANCELLATION_MIN_RATIO_PERCENT)
        .filter(cancels_x100__gte=F("orders_x_min"))
        .values_list("consumer_id", "orders", "cancels")
    )
    return [
        RiskFinding(
            consumer_id=consumer_id,
            reason=RiskReason.CANCELLATION_RATIO,
            score=round(100 * cancels / orders),
            evidence={
                "orders": orders,
                "cancellations": cancels,
                "ratio_percent": round(100 * cancels / orders),
                "window_days": CANCELLATION_WINDOW_DAYS,
                "threshold_percent": CANCELLATION_MIN_RATIO_PERCENT,
                "min_orders": CANCELLATION_MIN_ORDERS,
            },
        )
        for consumer_id, orders, cancels in rows
    ]


RULES = (shared_device_findings, offer_multi_account_findings, cancellation_ratio_findings)


def risk_scan(*, actor: str, now: datetime | None = None) -> RiskScanResult:
    """Run every rule and record the flags. Refuses (ProcessingNotPermitted) before reading anything
    unless an approved Legitimate Interests activity for risk control is in the register."""
    basis = processing_basis_require(purpose=Purpose.RISK_CONTROL)
    now = now or timezone.now()
    findings = [finding for rule in RULES for finding in rule(now=now)]
    counts = risk_flags_record(
        findings=findings,
        basis=basis,
        rule_version=RULE_VERSION,
        actor=actor,
        flag_ttl_days=FLAG_TTL_DAYS,
        now=now,
    )
    logger.info("risk_scan.completed", extra={"fields": {"findings": len(findings), **counts}})
    return RiskScanResult(activity_id=basis.activity_id, findings=len(findings), counts=counts)
