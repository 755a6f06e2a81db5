"""Write operations of tagging: run the rules, replace each family's tags atomically, rebuild the bitmaps."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
from django.db import connection, connections, transaction
from django.utils import timezone
from pyroaring import BitMap

from dbtools.backend import on_postgresql
from dbtools.locks import TAGGING
from dbtools.pgcopy import Column, copy_in, packed_expression, pg_timestamp, staging_table
from privacy.audit import audit_record
from privacy.models import Purpose
from privacy.services import ProcessingBasis, processing_basis_require

from .arrays import sorted_unique
from .bitmaps import bitmap_from_ids, bitmap_store, tag_key
from .consent_bitmap import consent_bitmap_rebuild
from .inputs import TaggingInput, packed_query
from .live_bitmap import live_bitmap_rebuild
from .models import ConsumerTag, RunStatus, Tag, TaggingRun
from .rules import Assignments, TagRule, rules_for

logger = logging.getLogger("dmp.tags")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class FamilyReport:
    family: str
    tags: int  # values in the family's catalogue
    assigned: int  # ConsumerTag rows written
    consumers: int  # distinct consumers holding a tag of the family
    compute_seconds: float
    write_seconds: float


@dataclass
class TaggingReport:
    run_id: int
    as_of: datetime
    families: list[FamilyReport] = field(default_factory=list)
    load_seconds: dict[str, float] = field(default_factory=dict)
    live_consumers: int = 0
    consent_opt_ins: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        data = asdict(self)
        data["as_of"] = self.as_of.isoformat()
        return data

    def counts(self) -> dict[str, int]:
        return {report.family: report.assigned for report in self.families}


def tags_compute(
    *,
    families: list[str] | None = None,
    actor: str,
    as_of: datetime | None = None,
    progress: Progress | None = None,
    rules: list[TagRule] | None = None,
) -> TaggingReport:
    """Run the tagging rules and replace each family's tags, rows and bitmaps, one family per transaction.

    Refuses (raising ProcessingNotPermitted, writing nothing) without an
    approved tagging activity; raises UnknownFamily, writing nothing, for a
    family that does not exist. Idempotent: the same data and as_of give the
    same tags. Returns what was written; every run is recorded as a
    TaggingRun and audited once with counts per family.

    rules, when given, are run instead of the catalogue's rules for `families`
    (a one-off backfill, or test data made the way a real run makes it).
    """
    basis = processing_basis_require(purpose=Purpose.TAGGING)
    rules = rules_for(families) if rules is None else list(rules)
    say = progress or (lambda message: None)
    started = time.perf_counter()
    as_of = as_of or timezone.now()
    assigned_at = timezone.now()
    with TAGGING.held():
        # Only the holder of the lock runs, so any other run still marked running died mid-way.
        TaggingRun.objects.filter(status=RunStatus.RUNNING).update(
            status=RunStatus.FAILED,
            finished_at=timezone.now(),
            error="Abandoned: the process running it stopped before it finished.",
        )
        run = TaggingRun.objects.create(
            actor=actor,
            families=[rule.family for rule in rules],
            as_of=as_of,
            started_at=assigned_at,
            activity_id=basis.activity_id,
        )
        report = TaggingReport(run_id=run.pk, as_of=as_of)
        writer = _FamilyWriter(background=_can_write_in_background(), progress=say)
        try:
            data = TaggingInput(as_of=as_of)
            for rule in rules:
                say(f"{rule.family}: computing")
                _family_run(rule, data, assigned_at, writer)
            writer.drain()
            report.families = writer.reports
            report.load_seconds = dict(data.timings)
            with transaction.atomic():
                report.live_consumers = _live_consumers_rebuild(writer.bitmaps)
                report.consent_opt_ins = len(consent_bitmap_rebuild())
                report.seconds = round(time.perf_counter() - started, 3)
                _audit(actor, basis, report, failed=None)
                _run_finish(run, RunStatus.SUCCEEDED, report)
        except Exception as exc:
            writer.abandon()
            report.families = writer.reports
            report.seconds = round(time.perf_counter() - started, 3)
            with transaction.atomic():
                if report.families:  # what was replaced before the failure is audited too
                    _audit(actor, basis, report, failed=exc)
                _run_finish(run, RunStatus.FAILED, report, error=f"{type(exc).__name__}: {exc}")
            logger.exception("tags.compute_failed", extra={"fields": {"run": run.pk, "error": type(exc).__name__}})
            raise
    say(f"live consumers: {report.live_consumers:,}; direct-marketing opt-ins: {report.consent_opt_ins:,}")
    logger.info(
        "tags.computed",
        extra={"fields": {"run": run.pk, "counts": report.counts(), "seconds": report.seconds}},
    )
    return report


def tags_compute_enqueue(*, families: list[str] | None = None) -> None:
    """Ask a worker to compute tags once the current transaction commits (e.g. after an import).

    Raises UnknownFamily at once for a family that does not exist, rather than in the worker.
    """
    rules_for(families)
    from .tasks import tags_compute_task  # tasks import this module

    transaction.on_commit(lambda: tags_compute_task.delay(families=families))


def tagging_refusal_record(*, actor: str, families: list[str] | None, reason: str) -> TaggingRun:
    """Record a run that was refused for want of a basis, so operators see it next to the others."""
    now = timezone.now()
    return TaggingRun.objects.create(
        actor=actor,
        families=families or [],
        status=RunStatus.REFUSED,
        started_at=now,
        finished_at=now,
        error=reason,
    )


def _describe(family: FamilyReport) -> str:
    return (
        f"{family.family}: {family.assigned:,} tags on {family.consumers:,} consumers across {family.tags} values "
        f"(compute {family.compute_seconds:.1f} s, write {family.write_seconds:.1f} s)"
    )


def _can_write_in_background() -> bool:
    """Write on a second connection only on PostgreSQL and outside a caller's transaction.

    Inside a caller's transaction (tests, or a caller that wants the whole run
    in one) a second connection could not see the caller's uncommitted rows,
    so families are written inline on the caller's connection instead.
    """
    return on_postgresql() and not connection.in_atomic_block


class _FamilyWriter:
    """Writes computed families, in order, one transaction each.

    In the background (a thread with its own database connection) PostgreSQL
    writes one family while this process computes the next: on a machine with
    two cores the database's COPY and index work and numpy's grouping run side
    by side. At most one family waits to be written, so memory stays bounded.
    """

    def __init__(self, *, background: bool, progress: Progress):
        self.background = background
        self.progress = progress
        self.reports: list[FamilyReport] = []
        self.bitmaps: dict[int, BitMap] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tags-writer") if background else None
        self._pending: Future | None = None

    def submit(self, write: Callable[[], tuple[FamilyReport, dict[int, BitMap]]]) -> None:
        if self._executor is None:
            self._record(write())
            return
        self._wait()
        self._pending = self._executor.submit(self._write_and_release, write)

    def _write_and_release(self, write: Callable[[], tuple[FamilyReport, dict[int, BitMap]]]) -> None:
        try:
            self._record(write())
        finally:
            connections.close_all()  # the writer thread's own connection; a fresh one next time

    def _record(self, result: tuple[FamilyReport, dict[int, BitMap]]) -> None:
        report, bitmaps = result
        self.reports.append(report)
        self.bitmaps.update(bitmaps)
        self.progress(_describe(report))

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # re-raises a failed write here

    def drain(self) -> None:
        try:
            self._wait()
        finally:
            self._shutdown()

    def abandon(self) -> None:
        """After a failure: let a write in progress finish or fail on its own, then stop."""
        if self._pending is not None:
            with contextlib.suppress(Exception):
                self._pending.result()
            self._pending = None
        self._shutdown()

    def _shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def _family_run(rule: TagRule, data: TaggingInput, assigned_at: datetime, writer: _FamilyWriter) -> None:
    loading_before = sum(data.timings.values())
    start = time.perf_counter()
    assignments = rule.compute(data)
    consumer_ids = data.consumers.ids[assignments.consumers]
    # Loading shared inputs is reported separately from the rule that happened to need them first.
    compute_seconds = time.perf_counter() - start - (sum(data.timings.values()) - loading_before)

    def write() -> tuple[FamilyReport, dict[int, BitMap]]:
        start = time.perf_counter()
        bitmaps = family_replace(rule=rule, assignments=assignments, consumer_ids=consumer_ids, assigned_at=assigned_at)
        report = FamilyReport(
            family=rule.family,
            tags=len(assignments.values),
            assigned=len(assignments),
            consumers=int(sorted_unique(assignments.consumers).size),
            compute_seconds=round(compute_seconds, 3),
            write_seconds=round(time.perf_counter() - start, 3),
        )
        return report, bitmaps

    writer.submit(write)


# Above this share of a family's rows changing, deleting the whole family and writing it afresh is
# cheaper than finding and deleting the changed rows one by one.
FULL_REWRITE_SHARE = 0.5


def family_replace(
    *, rule: TagRule, assignments: Assignments, consumer_ids: np.ndarray, assigned_at: datetime
) -> dict[int, BitMap]:
    """Replace all of a family's tags in one transaction: catalogue, rows, counts and bitmaps.

    Readers see the old family or the new one, never a mix. Only rows that
    change are written: the family's current rows are read, rows no longer
    assigned (or whose score changed) are deleted, new ones are inserted with
    COPY, and unchanged rows keep their assigned_at (when the consumer got the
    tag). When most rows change, the family is deleted and written afresh.
    Returns the new bitmap per tag id of the family.
    """
    values = assignments.values
    value_index = assignments.value_index
    counts = np.bincount(value_index, minlength=len(values))
    by_value = np.lexsort((consumer_ids, value_index))
    bounds = np.searchsorted(value_index[by_value], np.arange(len(values) + 1))
    with transaction.atomic():
        tag_ids, family_tag_ids = _catalogue_upsert(rule, values, counts)
        row_tags = np.asarray(tag_ids, dtype=np.int64)[value_index] if len(values) else np.empty(0, np.int64)
        scores = assignments.scores
        old_consumers, old_tags, old_scores = _rows_read(family_tag_ids)
        insert = _rows_change(
            old_consumers, old_tags, old_scores, consumer_ids.astype(np.int64), row_tags, scores, family_tag_ids
        )
        # Rows go in sorted by tag then consumer, the unique (tag, consumer) index's own order: each of its leaf
        # pages is filled once in a row, instead of rows visiting every tag's pages in turn (about 1.7x faster
        # for 2M rows; docs/tags.md, "Writing a family").
        chosen = np.flatnonzero(insert)
        order = chosen[np.lexsort((consumer_ids[chosen], row_tags[chosen]))]
        _rows_insert(consumer_ids[order], row_tags[order], None if scores is None else scores[order], assigned_at)
        bitmaps: dict[int, BitMap] = {}
        for position, tag_id in enumerate(tag_ids):
            bitmaps[tag_id] = bitmap_from_ids(consumer_ids[by_value[bounds[position] : bounds[position + 1]]])
        stale = sorted(set(family_tag_ids) - set(tag_ids))
        for tag_id in stale:
            bitmaps[tag_id] = BitMap()  # a value nobody holds any more
        if stale:
            Tag.objects.filter(pk__in=stale).update(consumer_count=0)
        for tag_id, bitmap in bitmaps.items():
            bitmap_store(key=tag_key(tag_id), bitmap=bitmap)
    return bitmaps


def _pair_keys(consumer_ids: np.ndarray, tag_ids: np.ndarray) -> np.ndarray:
    return (tag_ids.astype(np.int64) << 32) | consumer_ids.astype(np.int64)


def _rows_change(
    old_consumers, old_tags, old_scores, new_consumers, new_tags, new_scores, family_tag_ids
) -> np.ndarray:
    """Delete the old rows that do not survive and return which new rows must be inserted (a mask)."""
    if old_consumers.size == 0:
        return np.ones(new_consumers.size, dtype=bool)
    old_keys = _pair_keys(old_consumers, old_tags)
    new_keys = _pair_keys(new_consumers, new_tags)
    old_order = np.argsort(old_keys, kind="stable")
    sorted_old = old_keys[old_order]
    found = np.minimum(np.searchsorted(sorted_old, new_keys), sorted_old.size - 1)
    matched = sorted_old[found] == new_keys
    old_match = old_order[found]
    same = matched.copy()
    if new_scores is not None:
        previous = old_scores[old_match]
        same &= (previous == new_scores) | (np.isnan(previous) & np.isnan(new_scores))
    else:
        same &= np.isnan(old_scores[old_match])
    keep_old = np.zeros(old_keys.size, dtype=bool)
    keep_old[old_match[same]] = True
    doomed = np.flatnonzero(~keep_old)
    if doomed.size > FULL_REWRITE_SHARE * old_keys.size:
        _rows_delete(family_tag_ids)
        return np.ones(new_consumers.size, dtype=bool)
    _rows_delete_pairs(old_consumers[doomed], old_tags[doomed])
    return ~same


def _rows_read(tag_ids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The family's current rows: consumer ids, tag ids, scores (NaN for none)."""
    if not tag_ids:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    if on_postgresql():
        columns = [Column("consumer", "int8"), Column("tag", "int8"), Column("score", "float8")]
        packed = packed_expression(
            [("consumer_id", columns[0]), ("tag_id", columns[1]), ("COALESCE(score, 'NaN'::float8)", columns[2])]
        )
        table = ConsumerTag._meta.db_table
        statement = f'SELECT {packed} FROM "{table}" WHERE tag_id = ANY(%s)'  # noqa: S608
        rows = packed_query(statement, [tag_ids], columns)
        return rows["consumer"], rows["tag"], rows["score"]
    found = list(ConsumerTag.objects.filter(tag_id__in=tag_ids).values_list("consumer_id", "tag_id", "score"))
    return (
        np.array([r[0] for r in found], dtype=np.int64),
        np.array([r[1] for r in found], dtype=np.int64),
        np.array([np.nan if r[2] is None else r[2] for r in found], dtype=np.float64),
    )


def _rows_delete_pairs(consumer_ids: np.ndarray, tag_ids: np.ndarray) -> None:
    if consumer_ids.size == 0:
        return
    table = ConsumerTag._meta.db_table
    if on_postgresql():
        columns = [Column("tag_id", "int8"), Column("consumer_id", "int8")]
        with (
            connection.cursor() as cursor,
            staging_table(cursor, "tags_doomed", "tag_id int8, consumer_id int8") as stage,
        ):
            copy_in(cursor.cursor, stage, columns, {"tag_id": tag_ids, "consumer_id": consumer_ids})
            cursor.execute(f"ANALYZE {stage}")
            cursor.execute(
                f'DELETE FROM "{table}" t USING {stage} d '  # noqa: S608
                "WHERE t.tag_id = d.tag_id AND t.consumer_id = d.consumer_id"
            )
        return
    for tag_id in sorted_unique(tag_ids).tolist():
        members = consumer_ids[tag_ids == tag_id].tolist()
        for start in range(0, len(members), 500):
            ConsumerTag.objects.filter(tag_id=tag_id, consumer_id__in=members[start : start + 500]).delete()


def _catalogue_upsert(rule: TagRule, values, counts: np.ndarray) -> tuple[list[int], list[int]]:
    """Make sure every value has its Tag row with the current label, definition and count.

    Returns the values' tag ids (in value order) and every tag id of the family (values no longer computed
    included), from one read of the family's catalogue.
    """
    existing = {tag.value: tag for tag in Tag.objects.filter(family=rule.family)}
    new, changed = [], []
    for value, count in zip(values, counts.tolist(), strict=True):
        tag = existing.get(value.value)
        if tag is None:
            new.append(
                Tag(
                    family=rule.family,
                    value=value.value,
                    label=value.label,
                    definition=value.definition,
                    rule_version=rule.rule_version,
                    purpose=rule.purpose,
                    consumer_count=count,
                )
            )
            continue
        tag.label, tag.definition, tag.rule_version = value.label, value.definition, rule.rule_version
        tag.purpose, tag.consumer_count = rule.purpose, count
        changed.append(tag)
    Tag.objects.bulk_create(new)
    Tag.objects.bulk_update(
        changed, ["label", "definition", "rule_version", "purpose", "consumer_count", "updated_at"], batch_size=500
    )
    if any(tag.pk is None for tag in new):  # a backend that does not return ids from a bulk insert
        ids = dict(Tag.objects.filter(family=rule.family).values_list("value", "id"))
    else:
        ids = {value: tag.pk for value, tag in existing.items()} | {tag.value: tag.pk for tag in new}
    return [ids[value.value] for value in values], list(ids.values())


def _rows_delete(tag_ids: list[int]) -> None:
    if not tag_ids:
        return
    # Raw SQL: the ORM's delete() would fall back to loading every row if any delete signal were connected.
    table = ConsumerTag._meta.db_table
    with connection.cursor() as cursor:
        for start in range(0, len(tag_ids), 500):
            chunk = tag_ids[start : start + 500]
            placeholders = ", ".join(["%s"] * len(chunk))
            cursor.execute(f'DELETE FROM "{table}" WHERE tag_id IN ({placeholders})', chunk)  # noqa: S608


def _rows_insert(consumer_ids: np.ndarray, tag_ids: np.ndarray, scores: np.ndarray | None, assigned_at) -> None:
    if consumer_ids.size == 0:
        return
    if on_postgresql():
        columns = [
            Column("consumer_id", "int8"),
            Column("tag_id", "int8"),
            Column("score", "float8", nullable_all=scores is None),
            Column("assigned_at", "timestamptz"),
        ]
        arrays: dict[str, np.ndarray | int | float] = {
            "consumer_id": consumer_ids,
            "tag_id": tag_ids,
            "assigned_at": pg_timestamp(assigned_at.timestamp()),
        }
        if scores is not None:
            arrays["score"] = scores
        with connection.cursor() as cursor:
            copy_in(cursor.cursor, ConsumerTag._meta.db_table, columns, arrays)
        return
    score_list = [None] * consumer_ids.size if scores is None else scores.tolist()
    ConsumerTag.objects.bulk_create(
        (
            ConsumerTag(consumer_id=c, tag_id=t, score=s, assigned_at=assigned_at)
            for c, t, s in zip(consumer_ids.tolist(), tag_ids.tolist(), score_list, strict=True)
        ),
        batch_size=2_000,
    )


def _live_consumers_rebuild(written: dict[int, BitMap]) -> int:
    """Store the live-consumers bitmap; drop tags of consumers deleted while the run was computing."""
    live = live_bitmap_rebuild()
    if written:
        vanished = BitMap.union(*written.values()) - live
        if vanished:
            orphans = list(vanished)
            tag_ids = list(written)
            for start in range(0, len(orphans), 1_000):
                # tag_id first: the (tag, consumer) index answers it; there is no consumer index.
                ConsumerTag.objects.filter(tag_id__in=tag_ids, consumer_id__in=orphans[start : start + 1_000]).delete()
            # What the run wrote is what is stored: the run holds the tagging lock, so no erasure changed it since.
            for tag_id, bitmap in written.items():
                if not bitmap.isdisjoint(vanished):
                    cleaned = bitmap - vanished
                    bitmap_store(key=tag_key(tag_id), bitmap=cleaned)
                    Tag.objects.filter(pk=tag_id).update(consumer_count=len(cleaned))
    return len(live)


def _audit(actor: str, basis: ProcessingBasis, report: TaggingReport, failed: Exception | None) -> None:
    details = {
        "run_id": report.run_id,
        "as_of": report.as_of.isoformat(),
        "families": {f.family: {"tags": f.tags, "consumers": f.consumers} for f in report.families},
        "seconds": report.seconds,
    }
    if failed is not None:
        details["failed"] = type(failed).__name__
    audit_record(
        actor=actor,
        action="tags.computed" if failed is None else "tags.compute_failed",
        purpose=basis.purpose,
        legal_basis=basis.legal_basis,
        activity_id=basis.activity_id,
        object_type="TaggingRun",
        object_id=report.run_id,
        counts={**report.counts(), "live_consumers": report.live_consumers, "consent_opt_ins": report.consent_opt_ins},
        details=details,
    )


def _run_finish(run: TaggingRun, status: str, report: TaggingReport, error: str = "") -> None:
    run.status = status
    run.finished_at = timezone.now()
    run.counts = {
        f.family: {
            "tags": f.tags,
            "assigned": f.assigned,
            "consumers": f.consumers,
            "compute_seconds": f.compute_seconds,
            "write_seconds": f.write_seconds,
        }
        for f in report.families
    }
    run.error = error[:2000]
    run.save(update_fields=["status", "finished_at", "counts", "error"])
