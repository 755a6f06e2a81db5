"""Write operations on segments: create, edit, delete, refresh (with the version guard), lookalikes, erasure."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Max, ProtectedError, Q
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_celery_beat.validators import crontab_validator
from pyroaring import BitMap, FrozenBitMap

from merchants.errors import Conflict, Invalid, Unprocessable
from merchants.models import Merchant
from privacy.audit import audit_record
from privacy.models import Purpose
from privacy.services import ProcessingBasis, ProcessingNotPermitted, processing_basis_require
from tags.models import Tag

from .evaluation import (
    ResolvedDefinition,
    SnapshotUnreadable,
    behaviour_cache_invalidate,
    definition_resolve,
    evaluate_bitmap,
    latest_snapshot,
    segment_definition_node,
    snapshot_bitmap,
    snapshot_cache_clear,
)
from .language import SegmentSyntaxError, TagTerm, definition_parse, to_json
from .lookalike import LookalikeError, lookalike_members
from .membership import (
    SOURCE_REFRESH,
    RefreshFollowUp,
    refresh_follow_up,
    refresh_follow_up_needed,
    refresh_transitions,
    transitions_write,
)
from .models import (
    MembershipTransition,
    RefreshPolicy,
    Segment,
    SegmentKind,
    SegmentScope,
    SegmentSnapshot,
    SegmentStatus,
    SnapshotStatus,
)
from .sources import live_consumers_bitmap, tag_bitmaps

logger = logging.getLogger("dmp.segments")

SNAPSHOTS_WITH_MEMBERS = 3  # the newest snapshots of a segment keep their member bitmaps; older keep figures
DEFAULT_CUSTOM_CRONTAB = "0 3 * * *"
PERSONA_FAMILY = "persona"
REFRESH_PURPOSE = Purpose.TAGGING
# Real-time segments stream between refreshes; a daily full refresh brings in what tagging (batch) changed.
POLICY_PERIODS = {
    RefreshPolicy.HOURLY: timedelta(hours=1),
    RefreshPolicy.DAILY: timedelta(days=1),
    RefreshPolicy.REALTIME: timedelta(days=1),
}
# A segment refreshed a little less than a period ago is due: beat's ticks drift by seconds.
DUE_SLACK = timedelta(minutes=5)
REALTIME_LOOKALIKE = (
    "A lookalike cannot be real-time: its members are ranked against everyone at once. Choose hourly or daily."
)


class RefreshFailed(Exception):
    """A refresh that cannot succeed by retrying (bad definition, no legal basis, seed too small)."""


class InvalidDefinition(Invalid):
    """A bad expression or definition, with where and why in `details` (position, found, expected)."""

    def __init__(self, error: SegmentSyntaxError, *, field: str | None = None):
        details = error.as_details()
        if field and isinstance(details, dict):
            details = {"field": field, **details}
        super().__init__(str(error), code="invalid_expression", details=details)
        self.syntax_error = error


def _invalid(error: SegmentSyntaxError, *, field: str | None = None) -> InvalidDefinition:
    return InvalidDefinition(error, field=field)


# ------------------------------------------------------------------------------------------------ definitions


def definition_compile(
    *,
    merchant: Merchant,
    expression: Any = None,
    definition: Any = None,
    segment_id: int | None = None,
) -> ResolvedDefinition:
    """Parse and resolve either form; a bad one raises InvalidDefinition (HTTP 400 with its position)."""
    try:
        node = definition_parse(expression=expression, definition=definition)
        return definition_resolve(
            node, merchant=merchant, text=expression if isinstance(expression, str) else None, segment_id=segment_id
        )
    except SegmentSyntaxError as exc:
        raise _invalid(exc, field="expression" if expression is not None else "definition") from None


def _check_persona(resolved: ResolvedDefinition) -> None:
    node = resolved.node
    if not (isinstance(node, TagTerm) and node.family == PERSONA_FAMILY):
        raise Unprocessable(
            "A persona segment is exactly one persona tag, e.g. persona:bargain-hunters.",
            code="invalid_persona",
            details={"field": "expression"},
        )


CRONTAB_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


def _crontab_fields(crontab: str) -> dict[str, str]:
    parts = crontab.split()
    if len(parts) != len(CRONTAB_FIELDS):
        raise Unprocessable(
            f"The schedule is not a valid crontab: it needs five fields ({' '.join(CRONTAB_FIELDS)}), "
            f"it has {len(parts)}.",
            code="invalid_schedule",
            details={"field": "crontab"},
        )
    crontab = " ".join(parts)
    try:
        crontab_validator(crontab)
    except ValidationError as exc:
        raise Unprocessable(
            f"The schedule {crontab!r} is not a valid crontab (minute hour day-of-month month day-of-week): "
            f"{'; '.join(exc.messages)}",
            code="invalid_schedule",
            details={"field": "crontab"},
        ) from None
    minute, hour, day_of_month, month_of_year, day_of_week = parts
    return dict(
        minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year, day_of_week=day_of_week
    )


def _schedule_apply(segment: Segment, crontab: str | None) -> None:
    """Custom policy: a periodic task (editable in the admin) refreshes the segment; other policies: none."""
    if segment.refresh_policy != RefreshPolicy.CUSTOM:
        if segment.schedule_id is not None:
            PeriodicTask.objects.filter(pk=segment.schedule_id).delete()
            segment.schedule = None
        return
    if crontab is None and segment.schedule_id is not None:
        return  # keep the schedule someone may have edited in the admin
    fields = _crontab_fields(crontab or DEFAULT_CUSTOM_CRONTAB)
    schedule, _ = CrontabSchedule.objects.get_or_create(**fields, timezone="UTC")
    if segment.schedule_id is not None:
        PeriodicTask.objects.filter(pk=segment.schedule_id).update(crontab=schedule, interval=None)
        PeriodicTask.objects.get(pk=segment.schedule_id).save()  # tells beat the schedule changed
        return
    segment.schedule = PeriodicTask.objects.create(
        name=f"segment {segment.pk}: refresh ({segment.merchant.slug})",
        task="segments.refresh_scheduled",  # segments.tasks.REFRESH_SCHEDULED_TASK
        crontab=schedule,
        args=json.dumps([segment.pk]),
        description=f"Custom refresh schedule of segment {segment.pk}.",
    )


def segment_crontab(segment: Segment) -> str | None:
    schedule = segment.schedule if segment.schedule_id is not None else None
    if schedule is None or schedule.crontab_id is None:
        return None
    c = schedule.crontab
    return f"{c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}"


# ------------------------------------------------------------------------------------------------ create / edit


def segment_name_taken(name: str) -> Conflict:
    """The refusal of a name the merchant already gives another segment (names are unique per merchant)."""
    return Conflict(f"You already have a segment called {name!r}.", code="duplicate_name")


def segment_name_require_free(*, merchant: Merchant | int, name: str, other_than: int | None = None) -> None:
    """Refuse `name` when another of the merchant's segments (any but `other_than`) has it. Call it inside the
    transaction that creates or renames; the unique constraint still catches a race (`segment_name_taken`)."""
    taken = Segment.objects.for_merchant(merchant).filter(name=name)
    if other_than is not None:
        taken = taken.exclude(pk=other_than)
    if taken.exists():
        raise segment_name_taken(name)


def segment_named_create(*, merchant_id: int, name: str, **fields: Any) -> Segment:
    """Create a segment row under a name the merchant does not use yet: the check, and the unique constraint for
    two requests racing past it (a double-submitted form), both answer 409 `duplicate_name`, never a 500. For the
    segments other apps make (persuadables, responses); call it inside their transaction."""
    segment_name_require_free(merchant=merchant_id, name=name)
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction survives the refused insert
            return Segment.objects.create(merchant_id=merchant_id, name=name, **fields)
    except IntegrityError:
        raise segment_name_taken(name) from None


def segment_create(
    *,
    merchant: Merchant,
    name: str,
    actor: str,
    expression: Any = None,
    definition: Any = None,
    kind: str = SegmentKind.RULE,
    refresh_policy: str = RefreshPolicy.MANUAL,
    crontab: str | None = None,
    description: str = "",
    scope: str = SegmentScope.MARKETPLACE,
) -> Segment:
    """A rule or persona segment from an expression (text) or definition (JSON); its first refresh is queued.

    `scope`: whom it counts, the whole marketplace or only the merchant's customers (consumers with any event
    at its store)."""
    if kind not in (SegmentKind.RULE, SegmentKind.PERSONA):
        raise Unprocessable("Lookalike segments are made from a seed segment (POST segments/{id}/lookalike).")
    if crontab is not None and refresh_policy != RefreshPolicy.CUSTOM:
        raise Unprocessable(
            "A crontab applies only to the custom refresh policy.",
            code="invalid_schedule",
            details={"field": "crontab"},
        )
    resolved = definition_compile(merchant=merchant, expression=expression, definition=definition)
    if kind == SegmentKind.PERSONA:
        _check_persona(resolved)
    with transaction.atomic():
        segment_name_require_free(merchant=merchant, name=name)
        try:
            with transaction.atomic():
                segment = Segment.objects.create(
                    merchant=merchant,
                    name=name,
                    description=description,
                    kind=kind,
                    definition=resolved.text,
                    definition_json=to_json(resolved.node),
                    refresh_policy=refresh_policy,
                    scope=_scope_valid(scope),
                    created_by=actor,
                )
        except IntegrityError:
            raise segment_name_taken(name) from None
        segment.depends_on.set(resolved.segment_ids)
        _schedule_apply(segment, crontab)
        segment.save(update_fields=["schedule"])
        segment_refresh_request(segment_id=segment.pk, actor=actor)
    logger.info("segment.created", extra={"fields": {"segment_id": segment.pk, "merchant_id": merchant.pk}})
    return segment


_UNSET: Any = object()


def segment_update(
    *,
    segment: Segment,
    actor: str,
    name: str = _UNSET,
    description: str = _UNSET,
    expression: Any = None,
    definition: Any = None,
    refresh_policy: str | None = None,
    crontab: str | None = None,
    scope: str | None = None,
) -> Segment:
    """Edit a segment. A changed definition or scope is checked (cycles included) and triggers a refresh after
    commit."""
    resolved = None
    if expression is not None or definition is not None:
        if segment.kind == SegmentKind.LOOKALIKE:
            raise Unprocessable(
                "A lookalike segment is defined by its seed; make a new lookalike instead.", code="not_editable"
            )
        resolved = definition_compile(
            merchant=segment.merchant, expression=expression, definition=definition, segment_id=segment.pk
        )
        if segment.kind == SegmentKind.PERSONA:
            _check_persona(resolved)
    with transaction.atomic():
        segment = Segment.objects.select_for_update().select_related("merchant").get(pk=segment.pk)
        changed_definition = resolved is not None and resolved.text != segment.definition
        if scope is not None and _scope_valid(scope) != segment.scope:
            if segment.kind == SegmentKind.LOOKALIKE:
                raise Unprocessable(
                    "A lookalike segment takes its audience from its seed; change the seed's scope instead.",
                    code="not_editable",
                )
            segment.scope = scope
            changed_definition = True  # a new membership: refresh
        if name is not _UNSET and name != segment.name:
            segment_name_require_free(merchant=segment.merchant, name=name, other_than=segment.pk)
            segment.name = name
        if description is not _UNSET:
            segment.description = description
        if resolved is not None and resolved.text != segment.definition:
            segment.definition = resolved.text
            segment.definition_json = to_json(resolved.node)
            segment.depends_on.set(resolved.segment_ids)
        if refresh_policy is not None:
            if refresh_policy == RefreshPolicy.REALTIME and segment.kind == SegmentKind.LOOKALIKE:
                raise Unprocessable(
                    REALTIME_LOOKALIKE, code="invalid_refresh_policy", details={"field": "refresh_policy"}
                )
            segment.refresh_policy = refresh_policy
        if refresh_policy is not None or crontab is not None:
            if crontab is not None and segment.refresh_policy != RefreshPolicy.CUSTOM:
                raise Unprocessable(
                    "A crontab applies only to the custom refresh policy.",
                    code="invalid_schedule",
                    details={"field": "crontab"},
                )
            _schedule_apply(segment, crontab)
        segment.save()
        if changed_definition:
            segment_refresh_request(segment_id=segment.pk, actor=actor)
    return segment


def _scope_valid(scope: str) -> str:
    if scope not in SegmentScope.values:
        raise Invalid(
            f"scope must be one of {', '.join(SegmentScope.values)}",
            code="invalid_scope",
            details={"field": "scope", "found": str(scope)[:40], "expected": list(SegmentScope.values)},
        )
    return scope


# Campaigns (a layer above) name the segments they include and exclude through these relations on Segment; a
# segment is read through them, never by importing campaigns.
CAMPAIGN_RELATIONS = ("campaigns_including", "campaigns_excluding")
NAMES_SHOWN = 5


def _names(names: list[str]) -> str:
    shown = ", ".join(map(repr, names[:NAMES_SHOWN]))
    return shown if len(names) <= NAMES_SHOWN else f"{shown} and {len(names) - NAMES_SHOWN} more"


def segment_delete(*, segment: Segment, actor: str) -> None:
    """Delete a segment nothing uses. Refused (Conflict, nothing changed) while another segment names it, it seeds a
    lookalike, or any campaign uses it: a finished campaign keeps the segments it was sent to as its record. The
    refusal names everything that uses it (details: the names per kind), so the merchant knows what to change."""
    from .selectors import segment_used_by  # reads live in selectors, which import this module

    segment_id = segment.pk
    with transaction.atomic():
        segment = Segment.objects.select_for_update().get(pk=segment_id)
        used_by = segment_used_by(segment=segment)
        if used_by:
            parts: list[str] = []
            details: dict[str, list[str]] = {}
            for kind, users in (
                ("segment", used_by.segments),
                ("lookalike", used_by.lookalikes),
                ("campaign", used_by.campaigns),
            ):
                names = [user.name for user in users]
                if names:
                    parts.append(f"the {kind}{'s' if len(names) > 1 else ''} {_names(names)}")
                    details[f"{kind}s"] = names[:NAMES_SHOWN]
            what = "; ".join(parts)
            advice = (
                "a campaign keeps the segments it was sent to as its record, so the segment cannot be deleted "
                "while a campaign uses it"
                if used_by.campaigns
                else "change or delete those first"
            )
            raise Conflict(
                f"Segment {segment.name!r} is used by {what}; {advice}.", code="segment_in_use", details=details
            )
        try:
            with transaction.atomic():
                schedule_id = segment.schedule_id
                segment.delete()
                if schedule_id is not None:
                    PeriodicTask.objects.filter(pk=schedule_id).delete()
        except ProtectedError:
            raise Conflict(f"Segment {segment.name!r} is used by a campaign.", code="segment_in_use") from None
    logger.info("segment.deleted", extra={"fields": {"segment_id": segment_id, "actor": actor}})


CLONE_PREFIX = "Copy of "
NAME_MAX = 200  # Segment.name's max_length


def _clone_name(merchant_id: int, name: str) -> str:
    """ "Copy of <name>", or "Copy of <name> (2)", (3), ...: the first that is free, cut to fit the name column."""
    base = f"{CLONE_PREFIX}{name}"
    taken = set(
        Segment.objects.for_merchant(merchant_id)
        .filter(name__startswith=base[: NAME_MAX - 8])
        .values_list("name", flat=True)
    )
    for number in range(1, len(taken) + 2):
        suffix = "" if number == 1 else f" ({number})"
        candidate = base[: NAME_MAX - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable: one of len(taken) + 1 candidates is free")  # pragma: no cover


def segment_clone(*, segment: Segment, actor: str, name: str | None = None) -> Segment:
    """A copy of `segment` under a new name (by default "Copy of <name>", numbered until unique): its definition
    (or lookalike recipe and seed), kind, scope, description, refresh policy and custom schedule. It is a new
    segment with no history, so its first refresh is queued at once, as for a segment made from scratch."""
    crontab = segment_crontab(segment) if segment.refresh_policy == RefreshPolicy.CUSTOM else None
    for _attempt in range(3):
        new_name = name if name is not None else _clone_name(segment.merchant_id, segment.name)
        try:
            with transaction.atomic():
                segment_name_require_free(merchant=segment.merchant_id, name=new_name)
                clone = Segment.objects.create(
                    merchant_id=segment.merchant_id,
                    name=new_name,
                    description=segment.description,
                    kind=segment.kind,
                    definition=segment.definition,
                    definition_json=segment.definition_json,
                    seed_id=segment.seed_id,
                    lookalike_spec=segment.lookalike_spec,
                    refresh_policy=segment.refresh_policy,
                    scope=segment.scope,
                    created_by=actor,
                )
                clone.depends_on.set(segment.depends_on.all())
                _schedule_apply(clone, crontab)
                clone.save(update_fields=["schedule"])
                segment_refresh_request(segment_id=clone.pk, actor=actor)
        except IntegrityError:
            if name is not None:
                raise segment_name_taken(name) from None
            continue  # another request took the same "Copy of" name first: number again
        logger.info(
            "segment.cloned",
            extra={"fields": {"segment_id": clone.pk, "source_id": segment.pk, "merchant_id": segment.merchant_id}},
        )
        return clone
    raise Conflict("Could not find a free name for the copy; give it a name.", code="duplicate_name")


# ------------------------------------------------------------------------------------------------ refresh


def _version_bump(segment_id: int) -> int:
    with transaction.atomic():
        updated = Segment.objects.filter(pk=segment_id).update(
            pending_version=F("pending_version") + 1, status=SegmentStatus.PENDING
        )
        if not updated:
            raise Segment.DoesNotExist(f"segment {segment_id} does not exist")
        return Segment.objects.filter(pk=segment_id).values_list("pending_version", flat=True).get()


def segment_refresh_request(*, segment_id: int, actor: str) -> int:
    """Ask for a refresh: bump the pending version now, enqueue the task after commit. Returns the version."""
    version = _version_bump(segment_id)
    transaction.on_commit(lambda: _enqueue_refresh(segment_id, version))
    return version


def _enqueue_refresh(segment_id: int, version: int) -> None:
    from .tasks import segment_refresh_task

    if segment_refresh_task.app.conf.task_always_eager:
        # Embedded mode (no broker): run it here, retries included, and keep its failure out of the caller's
        # request (an edit, say); the task has recorded it on the segment where the merchant looks.
        segment_refresh_task.apply(args=(segment_id, version), throw=False)
        return
    try:
        segment_refresh_task.delay(segment_id, version)
    except Exception as exc:
        # The broker is unreachable: the request stands, and the merchant sees why on the segment.
        logger.warning(
            "segment.refresh_enqueue_failed",
            extra={"fields": {"segment_id": segment_id, "version": version, "error": type(exc).__name__}},
        )
        segment_refresh_failure_record(
            segment_id=segment_id,
            version=version,
            error="The refresh could not be queued (the task queue is unavailable); it will be retried on the "
            "next schedule, or refresh again.",
            final=True,
        )


@dataclass(frozen=True)
class ComputedMembers:
    members: BitMap
    method: str
    definition: str
    detail: dict


@dataclass
class RefreshInputs:
    """What computing many segments shares: the tag catalogue and every tag's bitmap, loaded once."""

    catalogue: list[tuple[int, str, str]]
    bitmaps: tuple[dict[int, FrozenBitMap], FrozenBitMap]

    @classmethod
    def load(cls) -> RefreshInputs:
        catalogue = list(Tag.objects.values_list("id", "family", "value"))
        return cls(catalogue=catalogue, bitmaps=tag_bitmaps([row[0] for row in catalogue]))


def _compute_members(segment: Segment, inputs: RefreshInputs | None = None) -> ComputedMembers:
    if segment.kind == SegmentKind.PERSUADABLE:
        # Its members come from an uplift model the campaigns layer trains (campaigns/uplift.py), which writes
        # the snapshot through segment_members_write; a refresh here cannot recompute them.
        raise RefreshFailed(
            "A persuadable audience is computed from completed campaigns; create it again to recompute it."
        )
    if segment.kind == SegmentKind.RESPONSE:
        # A fixed group written by the campaigns layer (campaigns/responses.py) from one campaign's results.
        raise RefreshFailed(
            "A campaign-response segment is a fixed group from one campaign's results; it does not change."
        )
    if segment.kind == SegmentKind.LOOKALIKE:
        spec = segment.lookalike_spec or {}
        if segment.seed_id is None:
            raise RefreshFailed("The seed segment of this lookalike was deleted.")
        seed_snapshot = latest_snapshot(segment.seed_id)
        if seed_snapshot is None or not seed_snapshot.members_kept:
            raise RefreshFailed("The seed segment has not been computed yet; refresh it first.")
        try:
            result = lookalike_members(
                seed_members=snapshot_bitmap(seed_snapshot.pk, seed_snapshot.size, seed_snapshot.computed_at),
                live=inputs.bitmaps[1] if inputs else live_consumers_bitmap(),
                size=spec.get("size"),
                min_similarity=spec.get("min_similarity"),
            )
        except LookalikeError as exc:
            raise RefreshFailed(str(exc)) from None
        return ComputedMembers(
            result.members, result.method, f"lookalike of segment:{segment.seed_id}", {"method": result.method}
        )
    try:
        resolved = definition_resolve(
            segment_definition_node(segment),
            merchant=segment.merchant,
            text=segment.definition,
            catalogue=inputs.catalogue if inputs else None,
        )
    except SegmentSyntaxError as exc:
        raise RefreshFailed(f"The definition no longer works: {exc}") from None
    members = evaluate_bitmap(resolved, bitmaps=inputs.bitmaps if inputs else None, scope=segment.scope)
    return ComputedMembers(BitMap(members), "bitmap", resolved.text, {})


@dataclass(frozen=True)
class RefreshResult:
    segment_id: int
    version: int
    computed: ComputedMembers
    duration_ms: float
    started_at: datetime | None = None  # when computing began (real-time segments catch up on what streamed since)


def segment_refresh_run(*, segment_id: int, version: int, actor: str) -> SegmentSnapshot | None:
    """Materialise one requested version. None when superseded (a newer request exists) or the segment is gone."""
    segment = Segment.objects.select_related("merchant").filter(pk=segment_id).first()
    if segment is None:
        return None
    if segment.pending_version != version or segment.version >= version:
        logger.info("segment.refresh_superseded", extra={"fields": {"segment_id": segment_id, "version": version}})
        return None
    basis = _refresh_basis()
    started = time.perf_counter()
    started_at = timezone.now()
    computed = _compute_members(segment)
    result = RefreshResult(segment_id, version, computed, (time.perf_counter() - started) * 1000, started_at)
    snapshot = _snapshots_write([result], basis, actor).get(segment_id)
    if snapshot is not None:
        logger.info(
            "segment.refreshed",
            extra={
                "fields": {"segment_id": segment_id, "version": version, "duration_ms": round(result.duration_ms, 1)}
            },
        )
    return snapshot


def segment_members_write(
    *, segment_id: int, members: BitMap, method: str, definition: str, actor: str, detail: dict | None = None
) -> SegmentSnapshot:
    """Store members computed by a higher layer (persuadable audiences: campaigns/uplift.py) as the segment's
    next snapshot, under the same version guard, processing basis and audit entry as a refresh."""
    basis = _refresh_basis()
    version = _version_bump(segment_id)
    computed = ComputedMembers(BitMap(members), method, definition, dict(detail or {}))
    snapshot = _snapshots_write([RefreshResult(segment_id, version, computed, 0.0)], basis, actor).get(segment_id)
    if snapshot is None:  # a concurrent write took the version: the newer one stands
        raise Conflict("The segment was changed while its members were being written; try again.", code="busy")
    return snapshot


def _refresh_basis() -> ProcessingBasis:
    try:
        return processing_basis_require(purpose=REFRESH_PURPOSE)
    except ProcessingNotPermitted as exc:
        raise RefreshFailed(_merchant_message(exc)) from None


def _snapshots_write(results: list[RefreshResult], basis: ProcessingBasis, actor: str) -> dict[int, SegmentSnapshot]:
    """Write the snapshots of several refreshes in one transaction, each under the version guard.

    A result is written only while its version is still the segment's pending one and newer than the last
    written; otherwise a newer request exists and its run writes. Returns the snapshots written, by segment.
    """
    if not results:
        return {}
    now = timezone.now()
    ids = [r.segment_id for r in results]
    written: dict[int, SegmentSnapshot] = {}
    with transaction.atomic():
        locked = {s.pk: s for s in Segment.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
        current = [
            r
            for r in results
            if r.segment_id in locked
            and locked[r.segment_id].pending_version == r.version
            and locked[r.segment_id].version < r.version
        ]
        if not current:
            return {}
        previous = _previous_members([r.segment_id for r in current])
        snapshots = []
        for r in current:
            members = r.computed.members
            before = previous.get(r.segment_id)
            if before is not None:
                entered, exited = members.difference_cardinality(before), before.difference_cardinality(members)
            else:
                entered, exited = len(members), 0
            snapshots.append(
                SegmentSnapshot(
                    segment_id=r.segment_id,
                    version=r.version,
                    status=SnapshotStatus.READY,
                    members=SegmentSnapshot.serialise(members),
                    size=len(members),
                    entered=entered,
                    exited=exited,
                    definition=r.computed.definition,
                    method=r.computed.method,
                    duration_ms=round(r.duration_ms, 3),
                    computed_at=now,
                )
            )
        SegmentSnapshot.objects.bulk_create(snapshots)
        # Who entered and who left, as rows (journeys start from entries), bounded per segment by a setting.
        transitions = []
        follow_ups = []
        for r in current:
            before = previous.get(r.segment_id)
            transitions.extend(refresh_transitions(segment_id=r.segment_id, members=r.computed.members, before=before))
            changed = BitMap(r.computed.members) ^ before if before is not None else BitMap(r.computed.members)
            follow_ups.append(RefreshFollowUp(r.segment_id, r.started_at or now, changed))
        transitions_write(transitions, at=now, source=SOURCE_REFRESH)
        if refresh_follow_up_needed(
            realtime=[r.segment_id for r in current if locked[r.segment_id].refresh_policy == RefreshPolicy.REALTIME],
            refreshed=[r.segment_id for r in current],
        ):
            transaction.on_commit(lambda: refresh_follow_up(follow_ups))
        segments = []
        for r, snapshot in zip(current, snapshots, strict=True):
            segment = locked[r.segment_id]
            segment.version = r.version
            segment.status = SegmentStatus.READY
            segment.last_error = ""
            segment.last_error_at = None
            segment.stream_error = ""  # a refresh recomputes every member: a streaming failure is made good
            segment.stream_error_at = None
            segment.last_refreshed_at = now
            segment.updated_at = now
            if r.computed.detail:
                segment.lookalike_spec = {**(segment.lookalike_spec or {}), **r.computed.detail}
            segments.append(segment)
            written[r.segment_id] = snapshot
        Segment.objects.bulk_update(
            segments,
            [
                "version",
                "status",
                "last_error",
                "last_error_at",
                "stream_error",
                "stream_error_at",
                "last_refreshed_at",
                "updated_at",
                "lookalike_spec",
            ],
        )
        _prune_member_bitmaps([r.segment_id for r in current])
        for r, snapshot in zip(current, snapshots, strict=True):
            audit_record(
                actor=actor,
                action="segment.refreshed",
                merchant_id=locked[r.segment_id].merchant_id,
                purpose=basis.purpose,
                legal_basis=basis.legal_basis,
                activity_id=basis.activity_id,
                object_type="Segment",
                object_id=r.segment_id,
                counts={"size": snapshot.size, "entered": snapshot.entered, "exited": snapshot.exited},
                details={"version": r.version, "method": r.computed.method},
            )
    return written


def _previous_members(segment_ids: list[int]) -> dict[int, FrozenBitMap]:
    """The latest ready snapshot's members of each segment (one query for the ids, the bitmaps cached)."""
    latest = (
        SegmentSnapshot.objects.filter(segment_id__in=segment_ids, status=SnapshotStatus.READY, members_kept=True)
        .values("segment_id")
        .annotate(latest=Max("id"))
        .values_list("latest", flat=True)
    )
    rows = SegmentSnapshot.objects.filter(pk__in=list(latest)).values_list("pk", "segment_id", "size", "computed_at")
    previous = {}
    for pk, segment_id, size, stamp in rows:
        try:
            previous[segment_id] = snapshot_bitmap(pk, size, stamp)
        except SnapshotUnreadable:
            # Damaged members (logged by snapshot_bitmap): the refresh that rebuilds them counts everyone as
            # having joined, as a first refresh does, rather than failing for good.
            continue
    return previous


def _prune_member_bitmaps(segment_ids: list[int]) -> None:
    """Only the newest SNAPSHOTS_WITH_MEMBERS snapshots of a segment keep their member bitmaps."""
    kept: dict[int, int] = {}
    drop = []
    for pk, segment_id in (
        SegmentSnapshot.objects.filter(segment_id__in=segment_ids, members_kept=True)
        .order_by("segment_id", "-id")
        .values_list("pk", "segment_id")
    ):
        kept[segment_id] = kept.get(segment_id, 0) + 1
        if kept[segment_id] > SNAPSHOTS_WITH_MEMBERS:
            drop.append(pk)
    if drop:
        SegmentSnapshot.objects.filter(pk__in=drop).update(members=b"", members_kept=False)


def segments_refresh_batch(*, segment_ids: list[int], actor: str) -> dict[str, int]:
    """Refresh several segments in one go (the bulk path of `refresh_segments` and the due-refresh task).

    Takes a new version for each (so queued older runs skip), loads the catalogue and every tag bitmap once,
    computes each segment, and writes all snapshots in one transaction. A segment that cannot be computed
    gets its failure recorded and does not hold the others back.
    """
    if not segment_ids:
        return {"refreshed": 0, "failed": 0, "superseded": 0}
    with transaction.atomic():
        Segment.objects.filter(pk__in=segment_ids).update(
            pending_version=F("pending_version") + 1, status=SegmentStatus.PENDING
        )
        segments = list(Segment.objects.select_related("merchant").filter(pk__in=segment_ids).order_by("pk"))
    try:
        basis = _refresh_basis()
    except RefreshFailed as exc:
        for segment in segments:
            segment_refresh_failure_record(
                segment_id=segment.pk, version=segment.pending_version, error=str(exc), final=True
            )
        return {"refreshed": 0, "failed": len(segments), "superseded": 0}
    started_batch = time.perf_counter()
    inputs = RefreshInputs.load()
    results, failed = [], 0
    for segment in segments:
        started = time.perf_counter()
        started_at = timezone.now()
        try:
            computed = _compute_members(segment, inputs)
        except Exception as exc:
            # One broken segment must not hold the batch back; the next scheduled refresh tries it again.
            failed += 1
            logger.warning(
                "segment.refresh_failed_in_batch",
                extra={"fields": {"segment_id": segment.pk, "error": type(exc).__name__}},
            )
            segment_refresh_failure_record(
                segment_id=segment.pk, version=segment.pending_version, error=_merchant_message(exc), final=True
            )
            continue
        results.append(
            RefreshResult(
                segment.pk, segment.pending_version, computed, (time.perf_counter() - started) * 1000, started_at
            )
        )
    written = _snapshots_write(results, basis, actor)
    outcome = {"refreshed": len(written), "failed": failed, "superseded": len(results) - len(written)}
    # One line for the batch (the audit log has an entry per segment); the slowest segment is the one to look at.
    slowest = max(results, key=lambda r: r.duration_ms, default=None)
    logger.info(
        "segments.batch_refreshed",
        extra={
            "fields": {
                "segments": len(segments),
                **outcome,
                "duration_ms": round((time.perf_counter() - started_batch) * 1000, 1),
                "slowest_segment_id": slowest.segment_id if slowest else None,
                "slowest_ms": round(slowest.duration_ms, 1) if slowest else None,
            }
        },
    )
    return outcome


def segment_refresh(*, segment_id: int, actor: str) -> SegmentSnapshot:
    """Refresh now, in this process, and return the fresh snapshot (for callers that need it at once).

    Takes a new version like any request, so a queued older run skips itself. Failures are recorded on the
    segment and raised (RefreshFailed for ones retrying cannot fix).
    """
    for _attempt in range(3):
        version = _version_bump(segment_id)
        try:
            snapshot = segment_refresh_run(segment_id=segment_id, version=version, actor=actor)
        except Exception as exc:
            segment_refresh_failure_record(
                segment_id=segment_id, version=version, error=_merchant_message(exc), final=True
            )
            raise
        if snapshot is not None:
            return snapshot
    raise RefreshFailed("The segment kept being changed while refreshing; try again.")


def _merchant_message(exc: BaseException) -> str:
    """What the merchant reads about a failure: ours in full, anything unexpected by its kind only."""
    if isinstance(exc, RefreshFailed):
        return str(exc)
    if isinstance(exc, ProcessingNotPermitted):
        return (
            "Refreshing needs an approved processing activity for tagging and audience insights; "
            "the platform's privacy officer has not approved one."
        )
    return f"Unexpected error ({type(exc).__name__}); it has been logged and the refresh is retried."


def segment_refresh_failure_record(
    *, segment_id: int, version: int, error: str, final: bool, attempt: int | None = None
) -> bool:
    """Put the failure where the merchant looks: the segment (and, when final, a failed snapshot row).

    Only for the current version: a superseded run's failure no longer describes the segment.
    """
    now = timezone.now()
    message = error if final or attempt is None else f"Attempt {attempt} failed, retrying: {error}"
    with transaction.atomic():
        segment = Segment.objects.select_for_update().filter(pk=segment_id).first()
        if segment is None or segment.pending_version != version:
            return False
        segment.last_error = message[:2000]
        segment.last_error_at = now
        segment.status = SegmentStatus.FAILED if final else SegmentStatus.PENDING
        segment.save(update_fields=["last_error", "last_error_at", "status", "updated_at"])
        if final:
            SegmentSnapshot.objects.create(
                segment=segment,
                version=version,
                status=SnapshotStatus.FAILED,
                error=message[:2000],
                members=b"",
                members_kept=False,
                definition=segment.definition,
                computed_at=now,
            )
    logger.warning(
        "segment.refresh_failed", extra={"fields": {"segment_id": segment_id, "version": version, "final": final}}
    )
    return True


def segments_due(*, now: datetime | None = None, policy: str | None = None) -> Q:
    """Segments whose policy says a refresh is due now (manual and custom ones never are: custom has its own task)."""
    now = now or timezone.now()
    due = Q(pk__in=[])
    for name, period in POLICY_PERIODS.items():
        if policy is not None and policy != name:
            continue
        due |= Q(refresh_policy=name) & (
            Q(last_refreshed_at__isnull=True) | Q(last_refreshed_at__lte=now - period + DUE_SLACK)
        )
    return due


# ------------------------------------------------------------------------------------------------ lookalikes


def lookalike_create(
    *,
    seed: Segment,
    name: str,
    actor: str,
    size: int | None = None,
    min_similarity: float | None = None,
    refresh_policy: str = RefreshPolicy.MANUAL,
    description: str = "",
) -> Segment:
    """A lookalike of `seed`: the `size` most similar other consumers, or all at or above `min_similarity`."""
    from django.conf import settings

    if refresh_policy == RefreshPolicy.REALTIME:
        raise Unprocessable(REALTIME_LOOKALIKE, code="invalid_refresh_policy", details={"field": "refresh_policy"})
    if (size is None) == (min_similarity is None):
        raise Unprocessable("Give either size or min_similarity.", code="invalid_lookalike")
    if size is not None and size < settings.MIN_AUDIENCE:
        raise Unprocessable(f"size must be at least {settings.MIN_AUDIENCE}.", code="invalid_lookalike")
    if min_similarity is not None and not 0 < min_similarity <= 1:
        raise Unprocessable("min_similarity must be above 0 and at most 1.", code="invalid_lookalike")
    seed_snapshot = latest_snapshot(seed.pk)
    if seed_snapshot is None:
        raise Conflict("The seed segment has not been computed yet; refresh it first.", code="seed_not_ready")
    if seed_snapshot.size < settings.MIN_AUDIENCE:
        raise Unprocessable(
            f"A lookalike needs a seed of at least {settings.MIN_AUDIENCE} consumers; this seed has fewer.",
            code="seed_too_small",
        )
    spec = {"size": size} if size is not None else {"min_similarity": min_similarity}
    with transaction.atomic():
        segment_name_require_free(merchant=seed.merchant_id, name=name)
        segment = Segment.objects.create(
            merchant_id=seed.merchant_id,
            name=name,
            description=description,
            kind=SegmentKind.LOOKALIKE,
            seed=seed,
            lookalike_spec=spec,
            definition=f"lookalike of segment:{seed.pk}",
            refresh_policy=refresh_policy,
            created_by=actor,
        )
        segment_refresh_request(segment_id=segment.pk, actor=actor)
    return segment


# ------------------------------------------------------------------------------------------------ erasure


def snapshots_erase_consumer(*, consumer_id: int) -> dict[str, int]:
    """Remove one consumer from every stored snapshot (sizes adjusted), delete their membership transitions, and
    forget cached behaviour."""
    changed = 0
    kept = SegmentSnapshot.objects.filter(members_kept=True).order_by("pk")
    last_id = 0
    while True:
        batch = list(kept.filter(pk__gt=last_id).values_list("pk", "members")[:200])
        if not batch:
            break
        for snapshot_id, data in batch:
            last_id = snapshot_id
            try:
                members = BitMap(SegmentSnapshot.deserialise(data))
            except ValueError:  # what pyroaring raises for bytes that are not a serialised bitmap
                # Damaged bytes cannot say whether the consumer is in them: drop them rather than keep a
                # membership nobody can check or erase. The segment's next refresh computes it anew.
                logger.error(
                    "segments.snapshot_unreadable: the members of snapshot %s could not be read during an erasure; "
                    "they were dropped, and a refresh of its segment rebuilds them",
                    snapshot_id,
                )
                SegmentSnapshot.objects.filter(pk=snapshot_id).update(members=b"", members_kept=False)
                changed += 1
                continue
            if consumer_id in members:
                members.discard(consumer_id)
                SegmentSnapshot.objects.filter(pk=snapshot_id).update(
                    members=SegmentSnapshot.serialise(members), size=F("size") - 1
                )
                changed += 1
    transitions, _ = MembershipTransition.objects.filter(consumer_id=consumer_id).delete()
    snapshot_cache_clear()
    behaviour_cache_invalidate()
    return {"segment_snapshots": changed, "membership_transitions": transitions}


__all__ = [
    "InvalidDefinition",
    "RefreshFailed",
    "definition_compile",
    "lookalike_create",
    "segment_create",
    "segment_delete",
    "segment_refresh",
    "segment_refresh_failure_record",
    "segment_refresh_request",
    "segment_refresh_run",
    "segment_update",
    "segments_due",
    "segments_refresh_batch",
    "snapshots_erase_consumer",
]
