"""Write operations of the privacy core: the register, the processing guard, the consent ledger."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, F, Sum
from django.utils import timezone
from pyroaring import AbstractBitMap

from merchants.errors import LimitExceeded

from .audit import audit_record
from .budget import period_renews_at, period_start
from .models import (
    ActivityStatus,
    BudgetPeriod,
    ConsentKind,
    ConsentRecord,
    ConsentState,
    ConsentStatus,
    ProcessingActivity,
    Purpose,
    ReleaseLedger,
    rule_violations,
)
from .release import (
    STANDARD,
    ReleasedCount,
    ReleasedSum,
    clamped_sum,
    count_from_noisy,
    keyed_noise,
    precision_spec,
    release_key,
    sum_from_noisy,
    withheld_count,
)
from .selectors import budget_allowance, budget_remaining


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


def activity_approve(*, activity: ProcessingActivity, officer: User) -> ProcessingActivity:
    activity.full_clean()  # the register's rules; raises ValidationError naming the field
    with transaction.atomic():
        activity.status = ActivityStatus.APPROVED
        activity.approved_by = officer
        activity.approved_at = timezone.now()
        activity.save()
        _activity_change_audit(activity=activity, officer=officer, action="processing_activity.approved")
    return activity


def activity_suspend(*, activity: ProcessingActivity, officer: User) -> ProcessingActivity:
    with transaction.atomic():
        activity.status = ActivityStatus.SUSPENDED
        activity.save(update_fields=["status", "updated_at"])
        _activity_change_audit(activity=activity, officer=officer, action="processing_activity.suspended")
    return activity


def activity_revert_to_draft(*, activity: ProcessingActivity, officer: User) -> ProcessingActivity:
    """Save an edited activity back as a draft: an edit voids its approval, so it needs approving again.

    `activity` carries the officer's unsaved edits; they are saved with the new status.
    """
    previous_status = str(activity.status)
    with transaction.atomic():
        activity.status = ActivityStatus.DRAFT
        activity.approved_by = None
        activity.approved_at = None
        activity.save()
        _activity_change_audit(
            activity=activity,
            officer=officer,
            action="processing_activity.reverted_to_draft",
            details={"previous_status": previous_status},
        )
    return activity


def _activity_change_audit(
    *, activity: ProcessingActivity, officer: User, action: str, details: dict | None = None
) -> None:
    """Audit an officer's change to a register entry: who, and the activity's purpose, basis and id."""
    audit_record(
        actor=f"user:{officer.pk}",
        action=action,
        purpose=activity.purpose,
        legal_basis=activity.legal_basis,
        activity_id=activity.pk,
        object_type="ProcessingActivity",
        object_id=activity.pk,
        details=details,
    )


@dataclass(frozen=True)
class ConsentChange:
    consumer_id: int
    purpose: str
    status: str
    kind: str
    source: str
    occurred_at: datetime


# Consumers per statement when the consent states are inserted and locked (well under every backend's
# parameter limit), and rows per UPDATE ... CASE when they are written back.
_STATE_CHUNK = 900
_WRITE_BATCH = 1000


def consents_record(*, changes: list[ConsentChange], actor: str) -> dict[str, int]:
    """Append consent events to the ledger and bring the derived current state up to date.

    The latest event by occurred_at wins, so late-arriving older events are
    kept in the ledger without overriding a newer decision.

    Any number of changes is recorded in one transaction, with one lock order whatever their order or number:
    first every (consumer, purpose) state of the whole batch, by key, then the ledger, then the audit log's lock
    (for one entry). Two batches over the same consumers, or a batch and an objection, therefore never hold one
    of these while waiting for another the other holds; a caller must not take the audit lock before calling.
    """
    if not changes:
        return {"recorded": 0, "state_changed": 0}
    with transaction.atomic():
        latest: dict[tuple[int, str], ConsentChange] = {}
        for c in changes:
            key = (c.consumer_id, c.purpose)
            if key not in latest or c.occurred_at >= latest[key].occurred_at:
                latest[key] = c
        state_changed = _consent_states_apply(latest)
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
            ],
            batch_size=_WRITE_BATCH,
        )
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


def _consumer_chunks(keys: list[tuple[int, str]]) -> list[list[tuple[int, str]]]:
    """Sorted keys in parts of at most _STATE_CHUNK consumers, each consumer's keys all in one part."""
    parts: list[list[tuple[int, str]]] = []
    consumers = 0
    previous = None
    for key in keys:
        if key[0] != previous:
            if not parts or consumers == _STATE_CHUNK:
                parts.append([])
                consumers = 0
            consumers += 1
            previous = key[0]
        parts[-1].append(key)
    return parts


def _consent_states_apply(latest: dict[tuple[int, str], ConsentChange]) -> int:
    """Make each (consumer, purpose) state follow its latest decision; safe against concurrent writers.

    Two requests may carry the first decision for the same consumer at the same moment. The missing states are
    therefore inserted with ON CONFLICT DO NOTHING: the database makes the second writer wait for the first and
    then skip its insert instead of failing on the unique constraint. Every state is then locked and re-read, and
    a decision replaces it only when it is at least as recent, so the latest decision by decision time wins
    whatever order the requests commit in. Returns how many states were created or changed.

    The order is the same for every writer, so two never wait on each other in a cycle: first the missing states
    of the whole batch are inserted, then all its states are locked, each pass in (consumer, purpose) order over
    the whole batch. The passes go in parts of whole consumers, so the parts' order is the keys' order too.
    """
    parts = _consumer_chunks(sorted(latest))

    def in_part(part: list[tuple[int, str]]):
        consumer_ids = {consumer_id for consumer_id, _ in part}
        purposes = {purpose for _, purpose in part}
        return ConsentState.objects.filter(consumer_id__in=consumer_ids, purpose__in=purposes)

    existed: set[tuple[int, str]] = set()
    for part in parts:
        found = {key for key in in_part(part).values_list("consumer_id", "purpose") if key in latest}
        existed |= found
        ConsentState.objects.bulk_create(
            [
                ConsentState(
                    consumer_id=c.consumer_id,
                    purpose=c.purpose,
                    status=c.status,
                    kind=c.kind,
                    occurred_at=c.occurred_at,
                )
                for c in (latest[key] for key in part if key not in found)
            ],
            ignore_conflicts=True,
        )
    changed, to_update = 0, []
    for part in parts:
        for state in in_part(part).select_for_update().order_by("consumer_id", "purpose"):
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
    ConsentState.objects.bulk_update(
        to_update, ["status", "kind", "occurred_at", "updated_at"], batch_size=_WRITE_BATCH
    )
    return changed + len(to_update)


# ------------------------------------------------------------------------------------------------ released numbers


class PrivacyBudgetExhausted(LimitExceeded):
    """A merchant asked for a new release its privacy budget for the period cannot pay for (HTTP 429 at the doors).

    Repeats of figures already released stay free and keep working; so do background jobs (charge=False).
    """

    def __init__(self, *, renews_at: datetime, allowance: float, spent: float, needed: float):
        self.renews_at = renews_at
        self.allowance = allowance
        self.spent = spent
        self.needed = needed
        super().__init__(
            f"The privacy budget for this period is spent (ρ {spent:.4f} of {allowance:.4f} used; this needs "
            f"{needed:.4f} more). New figures are available again from {renews_at:%Y-%m-%d %H:%M} UTC; figures "
            "already released can still be viewed.",
            code="privacy_budget_exhausted",
            details={
                "renews_at": renews_at.isoformat(),
                "allowance": round(allowance, 6),
                "spent": round(spent, 6),
                "needed": round(needed, 6),
                "retry_after_seconds": max(1, int((renews_at - timezone.now()).total_seconds())),
            },
        )


def release_counts(
    *,
    merchant_id: int | None,
    subjects: Sequence[str],
    counts: Sequence[int],
    precision: str,
    data_version: str = "",
    charge: bool = True,
) -> list[ReleasedCount]:
    """Release several questions' counts together (all or none: one budget check).

    subjects: each question in its canonical form (privacy.release.canonical_subject), with a prefix naming what is
    counted ("size:", "reachable:"); counts: their exact values. The noise is keyed by the subject and the exact
    value (privacy.release.release_key). With charge (a merchant asking), every release not yet given to this
    merchant in the period spends its ρ, read-back repeats are free, and a shortfall raises PrivacyBudgetExhausted
    before anything is released. charge=False is for background jobs (scheduled refreshes, sends): the same
    numbers, never spent, never refused.
    """
    spec = precision_spec(precision)
    counts = [int(c) for c in counts]
    keys = [
        release_key(subject=subject, value=c, measure="count", precision=precision, data_version=data_version)
        for subject, c in zip(subjects, counts, strict=True)
    ]
    value_of = dict(zip(keys, counts, strict=True))
    if not charge or merchant_id is None:
        return [
            count_from_noisy(noisy=value_of[k] + keyed_noise(key=k, sigma=spec.sigma), precision=precision, key=k)
            for k in keys
        ]
    noisy = _ledger_release(
        merchant_id=merchant_id,
        keys=keys,
        draw=lambda k: value_of[k] + keyed_noise(key=k, sigma=spec.sigma),
        rho_each=spec.rho,
        measure="count",
        precision=precision,
    )
    return [count_from_noisy(noisy=noisy[k], precision=precision, key=k) for k in keys]


def release_count(
    *,
    merchant_id: int | None,
    subject: str,
    members: AbstractBitMap | None = None,
    count: int | None = None,
    precision: str,
    data_version: str = "",
    charge: bool = True,
) -> ReleasedCount:
    """One question's count, released (see release_counts): give the member set or its size."""
    if members is not None and count is None:
        size = len(members)
    elif count is not None and members is None:
        size = int(count)
    else:
        raise ValueError("Give exactly one of members or count.")
    return release_counts(
        merchant_id=merchant_id,
        subjects=[subject],
        counts=[size],
        precision=precision,
        data_version=data_version,
        charge=charge,
    )[0]


def release_figures(
    *,
    merchant_id: int | None,
    figures: Sequence[tuple[str, int]],
    precision: str = STANDARD,
    charge: bool = True,
) -> list[ReleasedCount]:
    """Release the counts a page or report shows, (subject, exact count) each; never refuses.

    For views of figures that already exist (a saved segment's size, a campaign report, tag reach): the same
    numbers as release_counts (one subject, one value, one number on every page), paid once per period and free
    on every repeat. When the budget cannot pay for the new ones, the page still renders: figures this merchant
    was already given this period are read back, and the rest are withheld (withheld_count: "not released until
    <renewal>", no number, no noise drawn), so a spent budget never shows a fresh figure and never breaks a page.
    """
    if not figures:
        return []
    subjects = [subject for subject, _ in figures]
    counts = [int(count) for _, count in figures]
    try:
        return release_counts(
            merchant_id=merchant_id, subjects=subjects, counts=counts, precision=precision, charge=charge
        )
    except PrivacyBudgetExhausted as exc:
        assert merchant_id is not None  # only a merchant's charged release can find its budget spent
        keys = [
            release_key(subject=subject, value=c, measure="count", precision=precision)
            for subject, c in zip(subjects, counts, strict=True)
        ]
        known = _ledger_values(merchant_id=merchant_id, start=period_start(), keys=set(keys))
        return [
            count_from_noisy(noisy=known[k], precision=precision, key=k)
            if k in known
            else withheld_count(precision=precision, renews_at=exc.renews_at)
            for k in keys
        ]


def release_figure_sum(
    *,
    merchant_id: int | None,
    subject: str,
    members: AbstractBitMap,
    values: Iterable[int],
    clamp: int,
    name: str,
    precision: str = STANDARD,
    charge: bool = True,
) -> tuple[ReleasedSum, ReleasedCount]:
    """release_sum for a report (a clamped per-consumer sum and its count), withheld instead of refused."""
    try:
        return release_sum(
            merchant_id=merchant_id,
            subject=subject,
            members=members,
            values=values,
            clamp=clamp,
            name=name,
            precision=precision,
            charge=charge,
        )
    except PrivacyBudgetExhausted as exc:
        (count,) = release_figures(
            merchant_id=merchant_id, figures=[(subject, len(members))], precision=precision, charge=charge
        )
        spec = precision_spec(precision)
        bound = spec.sigma * clamp
        withheld = ReleasedSum(
            None, True, f"not released until {exc.renews_at:%Y-%m-%d} (privacy budget spent)", bound, precision
        )
        if count.withheld:
            return withheld, count
        total = clamped_sum(values, clamp=clamp)
        key = release_key(subject=subject, value=total, measure=f"sum:{name}:{int(clamp)}", precision=precision)
        assert merchant_id is not None  # only a merchant's charged release can find its budget spent
        known = _ledger_values(merchant_id=merchant_id, start=period_start(), keys={key})
        if key not in known:
            return withheld, count
        return sum_from_noisy(noisy=known[key], clamp=clamp, precision=precision, count=count, key=key), count


def release_sum(
    *,
    merchant_id: int | None,
    subject: str,
    members: AbstractBitMap,
    values: Iterable[int],
    clamp: int,
    name: str,
    data_version: str = "",
    precision: str = STANDARD,
    charge: bool = True,
) -> tuple[ReleasedSum, ReleasedCount]:
    """A per-consumer clamped sum (e.g. revenue in minor units) over `members`, released with its count.

    values: one per member (the caller's per-consumer totals). Each is clamped to [0, clamp], so one consumer moves
    the sum by at most clamp and the noise is scaled by it. The noise is keyed by the subject and the exact clamped
    total, so it is drawn afresh whenever the total changes.
    """
    spec = precision_spec(precision)
    total = clamped_sum(values, clamp=clamp)
    count = release_count(
        merchant_id=merchant_id,
        subject=subject,
        members=members,
        precision=precision,
        data_version=data_version,
        charge=charge,
    )
    measure = f"sum:{name}:{int(clamp)}"
    key = release_key(subject=subject, value=total, measure=measure, precision=precision, data_version=data_version)
    if not charge or merchant_id is None:
        noisy = total + clamp * keyed_noise(key=key, sigma=spec.sigma)
    else:
        noisy = _ledger_release(
            merchant_id=merchant_id,
            keys=[key],
            draw=lambda k: total + clamp * keyed_noise(key=k, sigma=spec.sigma),
            rho_each=spec.rho,
            measure=measure,
            precision=precision,
        )[key]
    return sum_from_noisy(noisy=noisy, clamp=clamp, precision=precision, count=count, key=key), count


# Repeats are the common case (a portal re-asks as the user types back and forth): released values already in the
# ledger are remembered per process, so a repeat costs no query. Only committed rows enter it; a ledger row is never
# changed or deleted (short of deleting the merchant), so an entry cannot go stale.
_RELEASED: OrderedDict[tuple[int, date, str], int] = OrderedDict()
_RELEASED_MAX = 200_000


def released_cache_clear() -> None:
    """Forget the per-process memory of released values (tests; the ledger itself is untouched)."""
    _RELEASED.clear()


def _remember(merchant_id: int, start: date, values: dict[str, int]) -> None:
    for key, value in values.items():
        _RELEASED[(merchant_id, start, key)] = value
    while len(_RELEASED) > _RELEASED_MAX:
        _RELEASED.popitem(last=False)


def _ledger_release(
    *, merchant_id: int, keys: list[str], draw, rho_each: float, measure: str, precision: str
) -> dict[str, int]:
    """The released value of each key for this merchant this period: read back, or drawn and paid for."""
    start = period_start()
    wanted = set(keys)
    found = {k: _RELEASED[(merchant_id, start, k)] for k in wanted if (merchant_id, start, k) in _RELEASED}
    if len(found) == len(wanted):
        return found
    read = _ledger_values(merchant_id=merchant_id, start=start, keys=wanted - found.keys())
    _remember(merchant_id, start, read)
    found.update(read)
    if wanted <= found.keys():
        return found
    with transaction.atomic():
        period, _ = BudgetPeriod.objects.select_for_update().get_or_create(merchant_id=merchant_id, period_start=start)
        found.update(_ledger_values(merchant_id=merchant_id, start=start, keys=wanted - found.keys()))  # a racing twin
        missing = sorted(wanted - found.keys())
        if not missing:
            return found
        needed = rho_each * len(missing)
        allowance = budget_allowance(merchant_id=merchant_id)
        if period.spent_rho + needed > allowance + 1e-12:
            raise PrivacyBudgetExhausted(
                renews_at=period_renews_at(start), allowance=allowance, spent=period.spent_rho, needed=needed
            )
        now = timezone.now()
        rows = [
            ReleaseLedger(
                merchant_id=merchant_id,
                period_start=start,
                release_key=k,
                measure=measure,
                precision=precision,
                rho=rho_each,
                value=draw(k),
                released_at=now,
            )
            for k in missing
        ]
        ReleaseLedger.objects.bulk_create(rows)
        BudgetPeriod.objects.filter(pk=period.pk).update(
            spent_rho=F("spent_rho") + needed, releases=F("releases") + len(rows), updated_at=now
        )
        new = {row.release_key: row.value for row in rows}
        transaction.on_commit(lambda: _remember(merchant_id, start, new))
        found.update(new)
    return found


def _ledger_values(*, merchant_id: int, start, keys: set[str]) -> dict[str, int]:
    if not keys:
        return {}
    return dict(
        ReleaseLedger.objects.filter(merchant_id=merchant_id, period_start=start, release_key__in=keys).values_list(
            "release_key", "value"
        )
    )


def release_spending_audit(*, day: date) -> int:
    """One audit entry per merchant that spent budget on `day` (UTC): releases and ρ by precision.

    Spending is audited in aggregate, once a day, never per keystroke. Returns the number of entries written.
    """
    begin = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = begin + timedelta(days=1)
    per_merchant: dict[int, dict] = {}
    rows = (
        ReleaseLedger.objects.filter(released_at__gte=begin, released_at__lt=end)
        .values("merchant_id", "precision")
        .annotate(releases=Count("id"), rho=Sum("rho"))
        .order_by("merchant_id", "precision")
    )
    for row in rows:
        entry = per_merchant.setdefault(row["merchant_id"], {"releases": 0, "rho": 0.0})
        entry["releases"] += row["releases"]
        entry["rho"] += float(row["rho"] or 0.0)
        entry[f"releases_{row['precision']}"] = row["releases"]
    with transaction.atomic():
        for merchant_id, counts in per_merchant.items():
            status = budget_remaining(merchant_id=merchant_id, at=begin)
            audit_record(
                actor="task:privacy.release_spending_audit",
                action="privacy_budget.spent",
                merchant_id=merchant_id,
                purpose=Purpose.TAGGING,
                object_type="BudgetPeriod",
                object_id=status.period_start.isoformat(),
                counts={**counts, "rho": round(counts["rho"], 6)},
                details={
                    "day": day.isoformat(),
                    "period_spent_rho": round(status.spent, 6),
                    "allowance_rho": status.allowance,
                },
            )
    return len(per_merchant)


__all__ = [
    "ConsentChange",
    "ConsentKind",
    "ConsentStatus",
    "PrivacyBudgetExhausted",
    "ProcessingBasis",
    "ProcessingNotPermitted",
    "activity_approve",
    "activity_suspend",
    "consents_record",
    "processing_basis_require",
    "release_count",
    "release_counts",
    "release_figure_sum",
    "release_figures",
    "release_spending_audit",
    "release_sum",
    "released_cache_clear",
]
