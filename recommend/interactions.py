"""The consumer x product interaction matrix, built from behaviour events.

One SQL query streams (event id, consumer, product, type, time) tuples
through `values_list(...).iterator()`; no ORM objects are made. Each event adds
its type's weight (view 1, click 1, favourite 2, cart 3, purchase 5 by
default; cancellations and unknown types add nothing), optionally decayed by
age with a half-life, and the matrix sums them per (consumer, product).

Rows and columns map to consumer and product ids through sorted id arrays,
so the mapping is stable: the same data always gives the same matrix, and
`rows_for` / `columns_for` are binary searches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import scipy.sparse as sp
from django.utils import timezone

from consumers.models import Event, EventType, Product

DEFAULT_EVENT_WEIGHTS: dict[int, float] = {
    EventType.VIEW: 1.0,
    EventType.CLICK: 1.0,
    EventType.FAVOURITE: 2.0,
    EventType.CART: 3.0,
    EventType.PURCHASE: 5.0,
}

_CHUNK = 50_000
_SECONDS_PER_DAY = 86_400.0


def weights_from_names(names: Mapping[str, float]) -> dict[int, float]:
    """{"view": 1, "purchase": 5} -> {EventType.VIEW: 1.0, ...}; raises ValueError naming an unknown type."""
    by_label = {label: value for value, label in EventType.choices}
    weights = {}
    for name, weight in names.items():
        if name not in by_label:
            raise ValueError(f"unknown event type {name!r}; known: {', '.join(sorted(by_label))}")
        if weight < 0:
            raise ValueError(f"weight for {name!r} must not be negative")
        weights[by_label[name]] = float(weight)
    return weights


@dataclass
class InteractionEvents:
    """Event-level arrays (one entry per event with a product and a positive weight)."""

    consumer_ids: np.ndarray
    product_ids: np.ndarray
    weights: np.ndarray  # already decayed, if a half-life was given
    timestamps: np.ndarray  # unix seconds
    high_water_mark: int = 0  # the largest event id read
    events_read: int = 0

    def __len__(self) -> int:
        return int(self.consumer_ids.size)


@dataclass
class InteractionMatrix:
    matrix: sp.csr_matrix  # consumers x products, summed weights (float32)
    consumer_ids: np.ndarray  # row -> consumer id, sorted
    product_ids: np.ndarray  # column -> product id, sorted
    high_water_mark: int = 0
    events: int = 0
    snapshot_hash: str = field(default="")

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def rows_for(self, consumer_ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Row of each consumer id, -1 where the consumer is not in the matrix."""
        return _positions(self.consumer_ids, consumer_ids)

    def columns_for(self, product_ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Column of each product id, -1 where the product is not in the matrix."""
        return _positions(self.product_ids, product_ids)

    def snapshot(self) -> dict[str, int | str]:
        return {
            "consumers": int(self.shape[0]),
            "products": int(self.shape[1]),
            "interactions": int(self.matrix.nnz),
            "events": int(self.events),
            "events_high_water_mark": int(self.high_water_mark),
            "hash": self.snapshot_hash,
        }


def _positions(sorted_ids: np.ndarray, ids: Iterable[int] | np.ndarray) -> np.ndarray:
    ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
    if sorted_ids.size == 0:
        return np.full(ids.size, -1, dtype=np.int64)
    position = np.minimum(np.searchsorted(sorted_ids, ids), sorted_ids.size - 1)
    return np.where(sorted_ids[position] == ids, position, -1).astype(np.int64)


def interaction_events_load(
    *,
    weights: Mapping[int, float] | None = None,
    half_life_days: float | None = None,
    now: datetime | None = None,
    merchant_id: int | None = None,
    since: datetime | None = None,
    max_event_id: int | None = None,
) -> InteractionEvents:
    """Stream events from the database into arrays (one query, chunked iterator)."""
    weights = dict(DEFAULT_EVENT_WEIGHTS if weights is None else weights)
    if half_life_days is not None and half_life_days <= 0:
        raise ValueError("half_life_days must be positive")
    wanted_types = [t for t, w in weights.items() if w > 0]
    queryset = Event.objects.filter(product__isnull=False, event_type__in=wanted_types)
    if merchant_id is not None:
        queryset = queryset.filter(merchant_id=merchant_id)
    if since is not None:
        queryset = queryset.filter(occurred_at__gte=since)
    if max_event_id is not None:
        queryset = queryset.filter(id__lte=max_event_id)
    rows = queryset.order_by().values_list("id", "consumer_id", "product_id", "event_type", "occurred_at")

    weight_lookup = np.zeros(max(EventType.values) + 1, dtype=np.float32)
    for event_type, weight in weights.items():
        weight_lookup[int(event_type)] = weight

    ids, consumers, products, types, times = [], [], [], [], []
    buffer: list[tuple] = []

    def flush() -> None:
        if not buffer:
            return
        columns = list(zip(*buffer, strict=True))
        ids.append(np.fromiter(columns[0], dtype=np.int64, count=len(buffer)))
        consumers.append(np.fromiter(columns[1], dtype=np.int64, count=len(buffer)))
        products.append(np.fromiter(columns[2], dtype=np.int64, count=len(buffer)))
        types.append(np.fromiter(columns[3], dtype=np.int64, count=len(buffer)))
        times.append(np.fromiter((t.timestamp() for t in columns[4]), dtype=np.float64, count=len(buffer)))
        buffer.clear()

    for row in rows.iterator(chunk_size=_CHUNK):
        buffer.append(row)
        if len(buffer) >= _CHUNK:
            flush()
    flush()

    def joined(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

    event_ids = joined(ids, np.int64)
    timestamps = joined(times, np.float64)
    event_weights = weight_lookup[joined(types, np.int64)]
    if half_life_days is not None and event_weights.size:
        reference = (now or timezone.now()).timestamp()
        age_days = np.maximum(reference - timestamps, 0.0) / _SECONDS_PER_DAY
        event_weights = (event_weights * np.power(0.5, age_days / half_life_days)).astype(np.float32)
    return InteractionEvents(
        consumer_ids=joined(consumers, np.int64),
        product_ids=joined(products, np.int64),
        weights=event_weights.astype(np.float32),
        timestamps=timestamps,
        high_water_mark=int(event_ids.max()) if event_ids.size else 0,
        events_read=int(event_ids.size),
    )


def interactions_from_events(events: InteractionEvents) -> InteractionMatrix:
    """Sum event weights per (consumer, product) into a CSR matrix with sorted id maps."""
    consumer_ids, rows = np.unique(events.consumer_ids, return_inverse=True)
    product_ids, cols = np.unique(events.product_ids, return_inverse=True)
    matrix = sp.csr_matrix(
        (events.weights.astype(np.float32), (rows, cols)),
        shape=(consumer_ids.size, product_ids.size),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return InteractionMatrix(
        matrix=matrix,
        consumer_ids=consumer_ids,
        product_ids=product_ids,
        high_water_mark=events.high_water_mark,
        events=events.events_read,
        snapshot_hash=_matrix_hash(matrix, consumer_ids, product_ids),
    )


def interactions_build(
    *,
    weights: Mapping[int, float] | None = None,
    half_life_days: float | None = None,
    now: datetime | None = None,
    merchant_id: int | None = None,
    since: datetime | None = None,
) -> InteractionMatrix:
    """The consumer x product matrix of all (or one merchant's) events."""
    return interactions_from_events(
        interaction_events_load(
            weights=weights, half_life_days=half_life_days, now=now, merchant_id=merchant_id, since=since
        )
    )


def _matrix_hash(matrix: sp.csr_matrix, consumer_ids: np.ndarray, product_ids: np.ndarray) -> str:
    """A content hash of the snapshot: same events, same weights -> same hash."""
    digest = hashlib.sha256()
    for array in (consumer_ids, product_ids, matrix.indptr, matrix.indices):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    digest.update(np.round(matrix.data.astype(np.float64), 4).tobytes())
    return digest.hexdigest()


def category_label(category_path: str, category: str, *, depth: int) -> str:
    """A product's category at `depth` levels of its path ("beauty/skincare/serums" at 2: "beauty/skincare");
    the top-level `category` when the path is empty; "" for none."""
    path = (category_path or "").strip("/")
    if not path:
        return category or ""
    return "/".join(path.split("/")[:depth])


def product_category_codes(product_ids: np.ndarray, *, depth: int = 1) -> tuple[np.ndarray, list[str]]:
    """Integer category code of each product id (-1: no category or unknown product), and the code -> label
    list. Reads the products in chunks, one query each."""
    product_ids = np.asarray(product_ids, dtype=np.int64)
    label_of: dict[int, str] = {}
    ids = product_ids.tolist()
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        for pid, path, category in Product.objects.filter(id__in=chunk).values_list("id", "category_path", "category"):
            label_of[pid] = category_label(path, category, depth=depth)
    labels = sorted({label for label in label_of.values() if label})
    code_of = {label: i for i, label in enumerate(labels)}
    codes = np.fromiter((code_of.get(label_of.get(pid, ""), -1) for pid in ids), dtype=np.int64, count=len(ids))
    return codes, labels
