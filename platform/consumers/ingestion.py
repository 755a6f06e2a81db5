"""What the three ingestion doors (events, profiles, consents) share: the report, row errors and field parsers.

Every row is validated; a bad row is reported by row number (1-based), field
and reason and never written. Good rows are written in transactional batches
(each batch all or nothing); `atomic=True` writes nothing at all when any row
is bad. Raw consumer identifiers are pseudonymised the moment a row is read and
are never stored, logged, or echoed back in an error: reasons describe what is
wrong, they never quote the value.

Ingestion is collection, not one of the processing purposes of the register,
so it does not call `processing_basis_require`; every job that later uses the
data does. Each written batch records an audit entry with counts only.

The doors: `consumers.events` (behaviour events, written by `consumers.writer`),
`consumers.profiles` and `consumers.consents`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from itertools import islice

from django.conf import settings
from django.db import connection

from privacy.pseudonyms import InvalidIdentifier

from .models import AgeRange

logger = logging.getLogger("dmp.ingest")

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
MAX_MONEY = Decimal("9999999999.99")  # DecimalField(max_digits=12, decimal_places=2)
MAX_QUANTITY = 1_000_000
MAX_ID_LENGTH = 320  # longest e-mail address a mail system accepts
MAX_EVENT_ID_LENGTH = 200
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=1)  # clocks drift; a day ahead is a bug, not drift
SQL_CHUNK = 900  # ids per IN (...) list; well under every backend's parameter limit


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class RowError:
    """One problem with one row: where (row number, field) and why. Never the value itself."""

    row: int
    field: str
    reason: str

    def as_dict(self) -> dict:
        return {"row": self.row, "field": self.field, "reason": self.reason}


@dataclass
class IngestReport:
    """What happened to a request's rows.

    accepted: rows written now; duplicates: valid rows already stored (a re-send)
    or repeated within the request; valid: rows that passed validation (in
    atomic mode with a bad row, valid rows are not written, so accepted is 0).
    """

    received: int = 0
    valid: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[RowError] = field(default_factory=list)
    consumers_created: int = 0
    products_created: int = 0
    atomic: bool = False
    rolled_back: bool = False

    @property
    def rejected_rows(self) -> int:
        return len({e.row for e in self.rejected})

    @property
    def ok(self) -> bool:
        return not self.rejected

    def as_dict(self) -> dict:
        return {
            "received": self.received,
            "valid": self.valid,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected_rows": self.rejected_rows,
            "consumers_created": self.consumers_created,
            "products_created": self.products_created,
            "atomic": self.atomic,
            "rolled_back": self.rolled_back,
            "errors": [e.as_dict() for e in self.rejected],
        }

    def reasons(self) -> dict[str, int]:
        """Rejected rows counted by "field: reason" (a row's first problem), for summaries."""
        first: dict[int, RowError] = {}
        for e in self.rejected:
            first.setdefault(e.row, e)
        counts: dict[str, int] = {}
        for e in first.values():
            key = f"{e.field}: {e.reason}" if e.field else e.reason
            counts[key] = counts.get(key, 0) + 1
        return counts


class BadValue(Exception):
    """A field's value is unusable; the message is the reason (never containing the value)."""


class RollBack(Exception):
    """Internal: leave the atomic block so a request with bad rows writes nothing."""


# --------------------------------------------------------------------------- digests and field parsers


@lru_cache(maxsize=4)
def _digest_key(secret: str) -> bytes:
    # A key of its own, derived from the pseudonym key, so source-id digests never equal consumer pseudonyms.
    return hmac.new(secret.encode(), b"dmp:source-digest:v1", hashlib.sha256).digest()


def make_source_digester() -> Callable[[str], str]:
    """Keyed BLAKE2b digest (32 hex characters) of source ids: event, order and device ids.

    Keyed, so a leaked table cannot be joined back to the source system's ids by hashing guesses.
    """
    key = _digest_key(settings.PSEUDONYM_KEY)
    blake2b = hashlib.blake2b

    def digest(value: str) -> str:
        return blake2b(value.encode("utf-8", "surrogatepass"), key=key, digest_size=16).hexdigest()

    return digest


def identifier_text(value) -> str:
    """A raw identifier (consumer, event, order or device id) as text; errors never repeat it."""
    if value is None:
        raise BadValue("is required")
    if isinstance(value, str):
        text = value.strip()
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        raise BadValue("must be a string or an integer")
    if not text:
        raise BadValue("is required")
    return text


def consumer_pseudonym(value, pseudonymise: Callable[[str], str]) -> str:
    """The pseudonym of a raw consumer identifier; BadValue (never quoting the value) when it is not a usable one."""
    consumer = identifier_text(value)
    if len(consumer) > MAX_ID_LENGTH:
        raise BadValue(f"is too long (at most {MAX_ID_LENGTH} characters)")
    try:
        return pseudonymise(consumer)
    except UnicodeEncodeError:  # a lone surrogate cannot be encoded for the keyed hash
        raise BadValue("is not valid Unicode text") from None
    except InvalidIdentifier as exc:  # a phone-shaped id that is no phone number; the message never quotes it
        raise BadValue(str(exc)) from None


def text_value(value, max_length: int, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise BadValue("is required")
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise BadValue("must be a string")
    text = value.strip()
    if required and not text:
        raise BadValue("is required")
    if len(text) > max_length:
        raise BadValue(f"is too long (at most {max_length} characters)")
    if "\x00" in text:
        raise BadValue("must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadValue("is not valid Unicode text") from None
    return text


def money_value(value) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadValue("must be a number")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise BadValue("must be a finite number")
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise BadValue("must be a decimal number") from None
    else:
        raise BadValue("must be a number")
    if not amount.is_finite():
        raise BadValue("must be a finite number")
    if amount < 0:
        raise BadValue("must not be negative")
    if amount > MAX_MONEY:
        raise BadValue(f"is too large (at most {MAX_MONEY})")
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def quantity_value(value) -> int:
    if value is None or value == "":
        return 1
    if isinstance(value, bool):
        raise BadValue("must be a whole number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise BadValue("must be a whole number")
    if number < 1:
        raise BadValue("must be at least 1 (send a cancel event for returns)")
    if number > MAX_QUANTITY:
        raise BadValue(f"is too large (at most {MAX_QUANTITY:,})")
    return number


# PostgreSQL stores offsets of at most 15:59 (and drops seconds); Python parses up to 23:59:59.999999. Offsets
# are held to what both databases store, in whole minutes, so SQLite and PostgreSQL accept the same rows.
MAX_UTC_OFFSET = timedelta(hours=15, minutes=59)


def offset_storable(moment: datetime) -> bool:
    offset = moment.utcoffset()
    return offset is None or (abs(offset) <= MAX_UTC_OFFSET and offset % timedelta(minutes=1) == timedelta(0))


def moment_value(value, latest: datetime) -> datetime:
    """ISO 8601 text (or a datetime); no offset means UTC. Not before 1970, not more than a day ahead."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise BadValue("must be an ISO 8601 date-time, e.g. 2024-05-01T12:30:00Z") from None
    elif value is None or value == "":
        raise BadValue("is required")
    else:
        raise BadValue("must be an ISO 8601 date-time string")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    else:
        try:
            moment.utcoffset()
        except (OverflowError, ValueError):
            raise BadValue("has an invalid time zone offset") from None
        if not offset_storable(moment):
            raise BadValue("has a time zone offset out of range (at most ±15:59, in whole minutes)")
    try:
        if moment < EARLIEST:
            raise BadValue("is before 1970")
        if moment > latest:
            raise BadValue("is in the future")
    except OverflowError:
        raise BadValue("is out of range") from None
    return moment


def age_range_for(age: int) -> str:
    """The age bucket tags and segments use; the age itself is never stored."""
    if age < 18:
        return AgeRange.UNDER_18
    if age < 25:
        return AgeRange.A18_24
    if age < 35:
        return AgeRange.A25_34
    if age < 45:
        return AgeRange.A35_44
    if age < 55:
        return AgeRange.A45_54
    if age < 65:
        return AgeRange.A55_64
    return AgeRange.A65_PLUS


def age_value(value) -> int:
    if isinstance(value, bool):
        raise BadValue("must be a whole number of years")
    if isinstance(value, int):
        age = value
    elif isinstance(value, str) and value.strip().isdigit():
        age = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        age = int(value)
    else:
        raise BadValue("must be a whole number of years")
    if not 0 <= age <= 130:
        raise BadValue("must be between 0 and 130")
    return age


def age_from_birth_date(value, today: date) -> int:
    if isinstance(value, datetime):
        born = value.date()
    elif isinstance(value, date):
        born = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            born = date.fromisoformat(text[:10]) if len(text) >= 10 else date.fromisoformat(text)
        except ValueError:
            raise BadValue("must be an ISO 8601 date, e.g. 1990-04-21") from None
    else:
        raise BadValue("must be an ISO 8601 date string")
    if born > today:
        raise BadValue("is in the future")
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if age > 130:
        raise BadValue("is more than 130 years ago")
    return age


def row_batches(rows: Iterable, size: int) -> Iterator[list]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def sql_chunks(items: list, size: int = SQL_CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batch_size_of(requested: int | None) -> int:
    size = settings.INGEST_BATCH_SIZE if requested is None else requested
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    return size


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


def ingest_log(event: str, report: IngestReport, started: float, **extra) -> None:
    elapsed = time.perf_counter() - started
    logger.info(
        event,
        extra={
            "fields": {
                "received": report.received,
                "accepted": report.accepted,
                "duplicates": report.duplicates,
                "rejected_rows": report.rejected_rows,
                "consumers_created": report.consumers_created,
                "products_created": report.products_created,
                "rolled_back": report.rolled_back,
                "seconds": round(elapsed, 3),
                **extra,
            }
        },
    )
