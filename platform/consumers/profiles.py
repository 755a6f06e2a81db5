"""Consumer profiles from the marketplace operator: only derived values (age range, country, gender) are kept.

See `consumers.ingestion` for the rules every ingestion door follows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date

from django.db import connection, transaction
from django.utils import timezone

from privacy.audit import audit_record
from privacy.pseudonyms import make_pseudonymiser

from .changes import PROFILES, consumer_changes_listened, consumers_changed
from .countries import country_code, country_from_address
from .ingestion import (
    BadValue,
    IngestReport,
    RollBack,
    RowError,
    age_from_birth_date,
    age_range_for,
    age_value,
    batch_size_of,
    consumer_pseudonym,
    ingest_log,
    row_batches,
    sql_chunks,
)
from .models import Consumer

GENDERS = {
    "f": "f",
    "female": "f",
    "woman": "f",
    "m": "m",
    "male": "m",
    "man": "m",
    "x": "x",
    "other": "x",
    "non-binary": "x",
    "nonbinary": "x",
    "diverse": "x",
}


def _gender(value) -> str:
    if not isinstance(value, str):
        raise BadValue("must be text: f, m or x")
    found = GENDERS.get(value.strip().lower())
    if found is None:
        raise BadValue("must be one of f (female), m (male), x (other)")
    return found


def _country(row: dict) -> str:
    """Country from `country` (code or name) or else `address`; '' when neither is given."""
    country = row.get("country")
    if country not in (None, ""):
        if not isinstance(country, str):
            raise BadValue("must be a country code or name (text)")
        code = country_code(country)
        if code is None:
            raise BadValue("is not a recognised country code or name")
        return code
    address = row.get("address")
    if address not in (None, ""):
        if not isinstance(address, str):
            raise BadValue("must be text")
        code = country_from_address(address)
        if code is None:
            raise BadValue("names no recognisable country (put the country on the last line)")
        return code
    return ""


@dataclass(slots=True)
class _ProfileRow:
    pseudonym: str
    age_range: str
    country: str
    gender: str


def _profiles_validate(
    rows: list, first_row: int, errors: list[RowError], pseudonymise: Callable[[str], str], today: date
) -> list[_ProfileRow]:
    good = []
    for offset, raw in enumerate(rows):
        row_no = first_row + offset
        if not isinstance(raw, dict):
            errors.append(RowError(row_no, "", "row must be an object with the profile's fields"))
            continue
        bad = []
        pseudonym = age_range = country = gender = ""
        try:
            pseudonym = consumer_pseudonym(raw.get("consumer_id"), pseudonymise)
        except BadValue as exc:
            bad.append(RowError(row_no, "consumer_id", str(exc)))
        birth_date, age = raw.get("birth_date"), raw.get("age")
        if birth_date not in (None, ""):
            try:
                age_range = age_range_for(age_from_birth_date(birth_date, today))
            except BadValue as exc:
                bad.append(RowError(row_no, "birth_date", str(exc)))
        elif age not in (None, ""):
            try:
                age_range = age_range_for(age_value(age))
            except BadValue as exc:
                bad.append(RowError(row_no, "age", str(exc)))
        try:
            country = _country(raw)
        except BadValue as exc:
            bad.append(RowError(row_no, "country" if raw.get("country") not in (None, "") else "address", str(exc)))
        if raw.get("gender") not in (None, ""):
            try:
                gender = _gender(raw.get("gender"))
            except BadValue as exc:
                bad.append(RowError(row_no, "gender", str(exc)))
        if bad:
            errors.extend(bad)
            continue
        good.append(_ProfileRow(pseudonym, age_range, country, gender))
    return good


def _profiles_write(profiles: list[_ProfileRow]) -> tuple[int, int]:
    """Upsert consumers with their attributes; an attribute a row leaves out keeps its stored value."""
    merged: dict[str, _ProfileRow] = {}
    for p in profiles:
        seen = merged.get(p.pseudonym)
        if seen is None:
            merged[p.pseudonym] = _ProfileRow(p.pseudonym, p.age_range, p.country, p.gender)
        else:
            seen.age_range = p.age_range or seen.age_range
            seen.country = p.country or seen.country
            seen.gender = p.gender or seen.gender
    pseudonyms = sorted(merged)
    existing: set[str] = set()
    for chunk in sql_chunks(pseudonyms):
        existing.update(Consumer.objects.filter(pseudonym__in=chunk).values_list("pseudonym", flat=True))
    table = Consumer._meta.db_table
    now = timezone.now()
    keep = "CASE WHEN excluded.{0} <> '' THEN excluded.{0} ELSE " + table + ".{0} END"
    with connection.cursor() as cursor:
        for chunk in sql_chunks(pseudonyms, 1000):
            values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(chunk))
            params: list = []
            for pseudonym in chunk:
                p = merged[pseudonym]
                params.extend((pseudonym, p.age_range, p.country, p.gender, now, now))
            cursor.execute(
                f"INSERT INTO {table} (pseudonym, age_range, country, gender, created_at, updated_at) "  # noqa: S608
                f"VALUES {values} ON CONFLICT (pseudonym) DO UPDATE SET "
                f"age_range = {keep.format('age_range')}, country = {keep.format('country')}, "
                f"gender = {keep.format('gender')}, updated_at = excluded.updated_at",
                params,
            )
    return len(pseudonyms) - len(existing), len(existing)


def _profile_consumer_ids(profiles: list[_ProfileRow]) -> list[int]:
    """The internal ids of the consumers a batch wrote (one indexed read, for the change feed)."""
    pseudonyms = sorted({p.pseudonym for p in profiles})
    ids: list[int] = []
    for chunk in sql_chunks(pseudonyms):
        ids.extend(Consumer.objects.filter(pseudonym__in=chunk).values_list("id", flat=True))
    return ids


def profiles_ingest(
    *, rows: Iterable[dict], actor: str, batch_size: int | None = None, atomic: bool = False
) -> IngestReport:
    """Consumer attributes: age (or birth date) as an age range, country (or address) as ISO alpha-2, gender.

    Only the derived values are stored; the age, birth date and address are dropped at once.
    """
    started = time.perf_counter()
    report = IngestReport(atomic=atomic)
    pseudonymise = make_pseudonymiser()
    today = timezone.now().date()
    size = batch_size_of(batch_size)
    next_row = 1

    def write(good: list[_ProfileRow]) -> None:
        if not good:
            return
        with transaction.atomic():
            created, updated = _profiles_write(good)
            if consumer_changes_listened():
                consumers_changed(consumer_ids=_profile_consumer_ids(good), input=PROFILES)
            audit_record(
                actor=actor,
                action="ingest.profiles",
                object_type="Consumer",
                counts={"rows": len(good), "consumers_created": created, "consumers_updated": updated},
            )
        report.accepted += len(good)
        report.consumers_created += created

    try:
        with transaction.atomic() if atomic else nullcontext():
            for chunk in row_batches(rows, size):
                good = _profiles_validate(chunk, next_row, report.rejected, pseudonymise, today)
                next_row += len(chunk)
                report.valid += len(good)
                if not (atomic and report.rejected):
                    write(good)
            if atomic and report.rejected:
                raise RollBack
    except RollBack:
        report.rolled_back = True
        report.accepted = report.consumers_created = 0
    report.received = next_row - 1
    ingest_log("ingest.profiles", report, started)
    return report
