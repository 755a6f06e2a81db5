"""Readers for public behaviour datasets, feeding the ingestion services.

Each format turns its files into event rows (and, where the data has them,
profile rows) in the shape `events_ingest` and `profiles_ingest` take. Rows a
format cannot use are skipped and counted by reason before ingestion; rows
ingestion rejects are counted by its reason. Event ids are derived from the
data deterministically, so importing the same file twice writes nothing the
second time. Consumer ids are prefixed with the format name so that customer
"12345" of one dataset and user "12345" of another are different people.
docs/import-formats.md describes every format.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from merchants.models import Merchant
from merchants.services import merchant_create

from .countries import country_code

FORMATS = ("online_retail", "taobao", "movielens", "csv")
DEFAULT_MERCHANTS = {
    "online_retail": ("online-retail", "UCI Online Retail (UK)"),
    "taobao": ("taobao", "Taobao user behaviour"),
    "movielens": ("movielens", "MovieLens 100K"),
}


class ImportFormatError(Exception):
    """The files are not in the expected format (missing columns, missing companion files)."""


@dataclass
class ImportSummary:
    format: str
    files: list[str] = field(default_factory=list)
    read: int = 0  # data rows read from the event files
    sent: int = 0  # event rows handed to ingestion
    skipped: Counter = field(default_factory=Counter)  # reason -> rows not handed to ingestion
    profiles_sent: int = 0
    profiles_skipped: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1


class ProgressReader(io.RawIOBase):
    """A binary file that reports how many bytes have been read (for a progress bar over the file size)."""

    def __init__(self, raw, on_read: Callable[[int], object]):
        self._raw = raw
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._raw.readinto(buffer)
        if count:
            self._on_read(count)
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_text(path: Path, on_read: Callable[[int], object], encoding: str = "utf-8") -> io.TextIOWrapper:
    raw = ProgressReader(open(path, "rb"), on_read)  # noqa: SIM115 - closed by the wrapper's owner
    return io.TextIOWrapper(io.BufferedReader(raw, 1 << 20), encoding=encoding, errors="replace", newline="")


def merchant_for_import(*, slug: str, name: str) -> tuple[Merchant, bool]:
    """The merchant with this slug, created through merchant_create (validated) when missing.

    Raises ValidationError, saving nothing, for a slug or name the merchant model refuses.
    """
    merchant = Merchant.objects.filter(slug=slug).first()
    if merchant is not None:
        return merchant, False
    return merchant_create(slug=slug, name=name), True


class Importer:
    """One dataset format: `files()` to read, `events()` to ingest, then `profiles()`."""

    format = ""

    def __init__(self, path: Path, *, merchant: str, summary: ImportSummary, on_read: Callable[[int], object]):
        self.path = Path(path)
        self.merchant = merchant
        self.summary = summary
        self.on_read = on_read

    def files(self) -> list[Path]:
        if self.path.is_dir():
            found = sorted(p for p in self.path.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
            if not found:
                raise ImportFormatError(f"no .csv files in {self.path.name}/")
            return found
        if not self.path.is_file():
            raise ImportFormatError(f"{self.path} does not exist")
        return [self.path]

    def events(self) -> Iterator[dict]:
        raise NotImplementedError

    def profiles(self) -> Iterator[dict]:
        return iter(())


def _csv_rows(handle, required: tuple[str, ...], name: str) -> Iterator[dict]:
    reader = csv.DictReader(handle)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in required if c not in header]
    if missing:
        raise ImportFormatError(f"{name} lacks the column(s) {', '.join(missing)}")
    reader.fieldnames = header
    yield from reader


# ---------------------------------------------------------------- UCI Online Retail


def _retail_moment(text: str) -> datetime:
    """`12/1/10 8:26` (this copy) or `12/1/2010 8:26` (the original file); the shop's clock, taken as UTC."""
    date_part, _, time_part = text.strip().partition(" ")
    month, day, year = (int(x) for x in date_part.split("/"))
    hour, minute = (int(x) for x in time_part.split(":")[:2])
    if year < 100:
        year += 2000
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


class OnlineRetailImporter(Importer):
    """UCI Online Retail: every row is one invoice line, i.e. a purchase (or a cancellation)."""

    format = "online_retail"
    COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._countries: dict[str, str] = {}  # consumer id -> country as written (last row wins)

    def events(self) -> Iterator[dict]:
        summary = self.summary
        for path in self.files():
            summary.files.append(path.name)
            with open_text(path, self.on_read, encoding="utf-8") as handle:
                for position, row in enumerate(_csv_rows(handle, self.COLUMNS, path.name), start=1):
                    summary.read += 1
                    customer = (row.get("CustomerID") or "").strip()
                    if not customer:
                        summary.skip("missing CustomerID")
                        continue
                    customer = customer.removesuffix(".0")  # some copies write ids as floats
                    invoice = (row.get("InvoiceNo") or "").strip()
                    stock_code = (row.get("StockCode") or "").strip()
                    try:
                        quantity = int((row.get("Quantity") or "").strip())
                        occurred_at = _retail_moment(row.get("InvoiceDate") or "")
                    except ValueError:
                        summary.skip("unreadable Quantity or InvoiceDate")
                        continue
                    if quantity == 0:
                        summary.skip("zero Quantity")
                        continue
                    # Invoices starting with C are cancellations, with negative quantities; a negative
                    # quantity on any other invoice is a return. Both become cancel events.
                    cancelled = invoice.upper().startswith("C") or quantity < 0
                    consumer_id = f"online_retail:{customer}"
                    event = {
                        "event_id": f"online_retail:{invoice}:{stock_code}:{position}",
                        "consumer_id": consumer_id,
                        "merchant": self.merchant,
                        "sku": stock_code,
                        "event_type": "cancel" if cancelled else "purchase",
                        "occurred_at": occurred_at,
                        "quantity": abs(quantity),
                        "price": (row.get("UnitPrice") or "").strip() or None,
                        "order_id": invoice,
                    }
                    title = (row.get("Description") or "").strip()
                    if title:
                        event["title"] = title
                    country = (row.get("Country") or "").strip()
                    if country:
                        self._countries[consumer_id] = country
                    summary.sent += 1
                    yield event

    def profiles(self) -> Iterator[dict]:
        for consumer_id, country in self._countries.items():
            if country_code(country) is None:
                self.summary.profiles_skipped[f"country not recognised: {country}"] += 1
                continue
            self.summary.profiles_sent += 1
            yield {"consumer_id": consumer_id, "country": country}


# ---------------------------------------------------------------- Taobao user behaviour


TAOBAO_BEHAVIOURS = {"pv": "view", "buy": "purchase", "cart": "cart", "fav": "favourite"}


class TaobaoImporter(Importer):
    """Taobao UserBehavior: user_id,item_id,category_id,behavior_type,timestamp (header optional)."""

    format = "taobao"

    def events(self) -> Iterator[dict]:
        summary = self.summary
        for path in self.files():
            summary.files.append(path.name)
            with open_text(path, self.on_read) as handle:
                for line_number, fields in enumerate(csv.reader(handle), start=1):
                    if not fields or (line_number == 1 and not fields[0].strip().isdigit()):
                        continue  # blank line, or the header
                    summary.read += 1
                    if len(fields) != 5:
                        summary.skip("not 5 columns")
                        continue
                    user, item, category, behaviour, stamp = (f.strip() for f in fields)
                    event_type = TAOBAO_BEHAVIOURS.get(behaviour.lower())
                    if event_type is None:
                        summary.skip("unknown behavior_type")
                        continue
                    if not user:
                        summary.skip("missing user_id")
                        continue
                    try:
                        occurred_at = datetime.fromtimestamp(int(stamp), tz=UTC)
                    except (ValueError, OverflowError, OSError):
                        summary.skip("unreadable timestamp")
                        continue
                    summary.sent += 1
                    yield {
                        "event_id": f"taobao:{user}:{item}:{behaviour.lower()}:{stamp}",
                        "consumer_id": f"taobao:{user}",
                        "merchant": self.merchant,
                        "sku": item,
                        "event_type": event_type,
                        "occurred_at": occurred_at,
                        "category_path": f"category-{category}" if category else None,
                    }


# ---------------------------------------------------------------- MovieLens 100K


class MovieLensImporter(Importer):
    """MovieLens 100K: ratings (u.data) as events, films (u.item) as products, users (u.user) as profiles."""

    format = "movielens"
    PURCHASE_FROM_RATING = 4  # a rating of 4 or 5 counts as a purchase, anything lower as a view

    def files(self) -> list[Path]:
        data = self.path / "u.data" if self.path.is_dir() else self.path
        if not data.is_file():
            raise ImportFormatError(f"{data.name} not found (give the folder holding u.data, or u.data itself)")
        return [data]

    def _companion(self, name: str) -> Path | None:
        path = self.files()[0].parent / name
        return path if path.is_file() else None

    def _films(self) -> dict[str, tuple[str, str]]:
        """item id -> (title, category path: the first genre flag set)."""
        item_file = self._companion("u.item")
        if item_file is None:
            self.summary.notes.append("u.item not found: films have no titles or genres")
            return {}
        genre_file = self._companion("u.genre")
        genres: dict[int, str] = {}
        if genre_file is not None:
            for line in genre_file.read_text(encoding="latin-1").splitlines():
                name, _, index = line.partition("|")
                if index.strip().isdigit():
                    genres[int(index)] = name.strip().lower().replace("'", "")
        films = {}
        for line in item_file.read_text(encoding="latin-1").splitlines():
            parts = line.split("|")
            if len(parts) < 6:
                continue
            flags = parts[5:]
            genre = next((genres.get(i, f"genre-{i}") for i, flag in enumerate(flags) if flag.strip() == "1"), "")
            # The genre is the top level (the whole catalogue is films), so interest tags tell genres apart.
            films[parts[0].strip()] = (parts[1].strip(), genre or "unknown")
        return films

    def events(self) -> Iterator[dict]:
        summary = self.summary
        films = self._films()
        described: set[str] = set()
        for path in self.files():
            summary.files.append(path.name)
            with open_text(path, self.on_read, encoding="latin-1") as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    summary.read += 1
                    parts = line.split("\t")
                    if len(parts) != 4:
                        summary.skip("not 4 tab-separated columns")
                        continue
                    user, item, rating, stamp = (p.strip() for p in parts)
                    try:
                        stars = int(rating)
                        occurred_at = datetime.fromtimestamp(int(stamp), tz=UTC)
                    except (ValueError, OverflowError, OSError):
                        summary.skip("unreadable rating or timestamp")
                        continue
                    event = {
                        "event_id": f"movielens:{user}:{item}",
                        "consumer_id": f"movielens:{user}",
                        "merchant": self.merchant,
                        "sku": item,
                        "event_type": "purchase" if stars >= self.PURCHASE_FROM_RATING else "view",
                        "occurred_at": occurred_at,
                    }
                    film = films.get(item)
                    if film is not None and item not in described:
                        described.add(item)  # the catalogue attributes travel once per film
                        event["title"], event["category_path"] = film
                    summary.sent += 1
                    yield event

    def profiles(self) -> Iterator[dict]:
        user_file = self._companion("u.user")
        if user_file is None:
            return
        for line in user_file.read_text(encoding="latin-1").splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) < 5:
                self.summary.profiles_skipped["not 5 |-separated columns"] += 1
                continue
            user, age, gender, _occupation, zip_code = parts[:5]
            profile = {"consumer_id": f"movielens:{user}", "age": age, "gender": gender}
            # MovieLens users are US residents identified by ZIP code; a few gave foreign postcodes.
            if len(zip_code) == 5 and zip_code.isdigit():
                profile["country"] = "US"
            self.summary.profiles_sent += 1
            yield profile


# ---------------------------------------------------------------- our own CSV


EVENT_FIELDS = (
    "event_id",
    "consumer_id",
    "merchant",
    "sku",
    "event_type",
    "occurred_at",
    "quantity",
    "price",
    "discount",
    "title",
    "category_path",
    "brand",
    "order_id",
    "device_id",
)


class GenericCsvImporter(Importer):
    """Our own CSV: a header row naming the events_ingest fields; empty cells count as absent."""

    format = "csv"
    REQUIRED = ("event_id", "consumer_id", "sku", "event_type", "occurred_at")

    def events(self) -> Iterator[dict]:
        summary = self.summary
        for path in self.files():
            summary.files.append(path.name)
            with open_text(path, self.on_read) as handle:
                required = self.REQUIRED if self.merchant else (*self.REQUIRED, "merchant")
                for row in _csv_rows(handle, required, path.name):
                    summary.read += 1
                    event = {name: value for name in EVENT_FIELDS if (value := (row.get(name) or "").strip())}
                    if self.merchant and "merchant" not in event:
                        event["merchant"] = self.merchant
                    summary.sent += 1
                    yield event


IMPORTERS: dict[str, type[Importer]] = {
    "online_retail": OnlineRetailImporter,
    "taobao": TaobaoImporter,
    "movielens": MovieLensImporter,
    "csv": GenericCsvImporter,
}
