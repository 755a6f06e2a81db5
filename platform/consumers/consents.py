"""Consent decisions from the marketplace operator into the consent ledger.

See `consumers.ingestion` for the rules every ingestion door follows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from privacy.models import ConsentKind, ConsentRecord, ConsentStatus, Purpose
from privacy.pseudonyms import make_pseudonymiser
from privacy.services import ConsentChange, consents_record

from .changes import CONSENTS, consumers_changed
from .ingestion import (
    FUTURE_TOLERANCE,
    BadValue,
    IngestReport,
    RollBack,
    RowError,
    batch_size_of,
    consumer_pseudonym,
    ingest_log,
    moment_value,
    row_batches,
    sql_chunks,
    text_value,
)
from .writer import Resolver


@dataclass(slots=True)
class _ConsentRow:
    pseudonym: str
    purpose: str
    status: str
    kind: str
    source: str
    occurred_at: datetime


def _choice(value, choices: Iterable[str], default: str | None = None) -> str:
    allowed = list(choices)
    if value is None or value == "":
        if default is not None:
            return default
        raise BadValue("is required (one of " + ", ".join(allowed) + ")")
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise BadValue("must be one of " + ", ".join(allowed))
    return value.strip().lower()


def _consents_validate(
    rows: list, first_row: int, errors: list[RowError], pseudonymise: Callable[[str], str], latest: datetime
) -> list[_ConsentRow]:
    good = []
    for offset, raw in enumerate(rows):
        row_no = first_row + offset
        if not isinstance(raw, dict):
            errors.append(RowError(row_no, "", "row must be an object with the consent's fields"))
            continue
        bad = []
        values: dict = {}
        try:
            values["pseudonym"] = consumer_pseudonym(raw.get("consumer_id"), pseudonymise)
        except BadValue as exc:
            bad.append(RowError(row_no, "consumer_id", str(exc)))
        checks = (
            ("purpose", lambda v: _choice(v, Purpose.values)),
            ("status", lambda v: _choice(v, ConsentStatus.values)),
            ("kind", lambda v: _choice(v, ConsentKind.values, default=ConsentKind.EXPRESS)),
            ("source", lambda v: text_value(v, 100, required=True)),
            ("occurred_at", lambda v: moment_value(v, latest)),
        )
        for name, check in checks:
            try:
                values[name] = check(raw.get(name))
            except BadValue as exc:
                bad.append(RowError(row_no, name, str(exc)))
        if bad:
            errors.extend(bad)
            continue
        good.append(_ConsentRow(**values))
    return good


def _consents_not_yet_recorded(changes: list[ConsentChange]) -> list[ConsentChange]:
    """Drop decisions the ledger already holds (same consumer, purpose, status, kind, source and time).

    The ledger is append-only and has no natural key, so a re-sent batch is
    recognised here: it records nothing twice.
    """
    if not changes:
        return []
    recorded: set[ConsentChange] = set()
    consumer_ids = sorted({c.consumer_id for c in changes})
    for chunk in sql_chunks(consumer_ids):
        for values in ConsentRecord.objects.filter(consumer_id__in=chunk).values_list(
            "consumer_id", "purpose", "status", "kind", "source", "occurred_at"
        ):
            recorded.add(ConsentChange(*values))
    return [c for c in changes if c not in recorded]


def consents_ingest(
    *, rows: Iterable[dict], actor: str, batch_size: int | None = None, atomic: bool = False
) -> IngestReport:
    """Consent events (granted or withdrawn, express or deemed) into the consent ledger.

    Unknown consumers are created (known by pseudonym only). The ledger keeps
    every event; the current state follows the latest by occurred_at, so a
    withdrawal takes effect before the next campaign send.
    """
    started = time.perf_counter()
    report = IngestReport(atomic=atomic)
    pseudonymise = make_pseudonymiser()
    latest = timezone.now() + FUTURE_TOLERANCE
    resolver = Resolver()
    size = batch_size_of(batch_size)
    next_row = 1

    def write(good: list[_ConsentRow]) -> None:
        if not good:
            return
        with transaction.atomic():
            created = resolver.consumers_ensure(c.pseudonym for c in good)
            ids = resolver.consumer_ids
            changes = list(
                dict.fromkeys(
                    ConsentChange(
                        consumer_id=ids[c.pseudonym],
                        purpose=c.purpose,
                        status=c.status,
                        kind=c.kind,
                        source=c.source,
                        occurred_at=c.occurred_at,
                    )
                    for c in good
                )
            )
            new = _consents_not_yet_recorded(changes)
            # One call for the whole batch: it locks every state of the batch, in key order, before it takes
            # the audit log's lock. Recording it in parts would take the audit lock after the first part and
            # then wait for more states, which a concurrent batch or objection may hold while it waits for the
            # audit lock: a deadlock, and PostgreSQL fails one of the two.
            consents_record(changes=new, actor=actor)
            consumers_changed(consumer_ids=[c.consumer_id for c in new], input=CONSENTS)
        report.accepted += len(new)
        report.duplicates += len(good) - len(new)
        report.consumers_created += created

    # An atomic request is one transaction, so it is written once, after every row is checked: written batch by
    # batch, its second batch would lock consent states after the first had taken the audit lock (see write).
    # The request's row limit bounds what is held meanwhile.
    pending: list[_ConsentRow] = []
    try:
        with transaction.atomic() if atomic else nullcontext():
            for chunk in row_batches(rows, size):
                good = _consents_validate(chunk, next_row, report.rejected, pseudonymise, latest)
                next_row += len(chunk)
                report.valid += len(good)
                if not atomic:
                    write(good)
                elif not report.rejected:
                    pending.extend(good)
            if atomic and report.rejected:
                raise RollBack
            write(pending)
    except RollBack:
        report.rolled_back = True
        report.accepted = report.duplicates = report.consumers_created = 0
    report.received = next_row - 1
    ingest_log("ingest.consents", report, started)
    return report
