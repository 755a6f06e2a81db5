"""Model artefacts in file storage, and the per-process cache of loaded models.

An artefact is one .npz file (no pickles): the algorithm's arrays, the
sorted consumer and product ids its rows and columns stand for, and, for the
item models that rank from a consumer's history (EASE, item-kNN), the training
interaction matrix. Loaded models are cached per process by (model id,
artefact version); the version changes when an erasure rewrites the file, so
every process drops the consumer at its next request.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from .algorithms import Recommender, algorithm_load
from .interactions import InteractionMatrix, _positions
from .models import RecommenderModel

ARTEFACT_DIR = "recommend/models"
# Models whose scores come from the consumer's history rather than a learned consumer vector.
HISTORY_MODELS = frozenset({"ease", "item_knn", "category_popular"})
_ID_KEYS = ("consumer_ids", "product_ids")
_HISTORY_KEYS = ("history_data", "history_indices", "history_indptr")


@dataclass
class LoadedModel:
    model_id: int
    version: int
    algorithm: str
    params: dict
    recommender: Recommender
    consumer_ids: np.ndarray  # sorted; row i of the model is consumer_ids[i]
    product_ids: np.ndarray  # sorted; column j is product_ids[j]
    history: sp.csr_matrix | None  # consumers x products, for the history models
    # Per-model memo of derived arrays (product audiences' scores, recommend.selectors.product_affinity): it
    # lives and dies with this loaded model, so a reloaded or rewritten artefact never serves stale scores.
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    def rows_for(self, consumer_ids) -> np.ndarray:
        return _positions(self.consumer_ids, consumer_ids)

    def columns_for(self, product_ids) -> np.ndarray:
        return _positions(self.product_ids, product_ids)

    def history_rows(self, rows: np.ndarray) -> sp.csr_matrix:
        """The stored history of each row (an empty row for -1 or for models without history)."""
        rows = np.asarray(rows, dtype=np.int64)
        n_items = self.product_ids.size
        if self.history is None:
            return sp.csr_matrix((rows.size, n_items), dtype=np.float32)
        known = rows >= 0
        if known.all():
            return self.history[rows]
        picked = self.history[np.where(known, rows, 0)]
        picked = sp.diags(known.astype(np.float32)) @ picked
        picked.eliminate_zeros()
        return sp.csr_matrix(picked)


def artefact_arrays(recommender: Recommender, matrix: InteractionMatrix) -> dict[str, np.ndarray]:
    arrays = recommender.artefact()
    arrays["consumer_ids"] = matrix.consumer_ids
    arrays["product_ids"] = matrix.product_ids
    if recommender.name in HISTORY_MODELS:
        history = matrix.matrix
        arrays.update(history_data=history.data, history_indices=history.indices, history_indptr=history.indptr)
    return arrays


def artefact_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    # numpy's stub types the keyword arrays as if one of them could be its allow_pickle flag; they are all arrays.
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def artefact_save(*, name: str, arrays: dict[str, np.ndarray]) -> tuple[str, int]:
    """Write the arrays under ARTEFACT_DIR; returns the storage name actually used and its size."""
    data = artefact_bytes(arrays)
    stored = default_storage.save(f"{ARTEFACT_DIR}/{name}", ContentFile(data))
    return stored, len(data)


def artefact_name(record: RecommenderModel) -> str:
    """The storage name of a model's artefact; a row without one has nothing to read."""
    if not record.artefact.name:
        raise FileNotFoundError(f"recommender model {record.pk} has no artefact file")
    return record.artefact.name


def artefact_read(name: str) -> dict[str, np.ndarray]:
    with default_storage.open(name, "rb") as handle, np.load(io.BytesIO(handle.read()), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def model_from_arrays(record: RecommenderModel, arrays: dict[str, np.ndarray]) -> LoadedModel:
    params = record.params.get("model", {}) if isinstance(record.params, dict) else {}
    recommender = algorithm_load(record.algorithm, params, arrays)
    history = None
    if all(key in arrays for key in _HISTORY_KEYS):
        history = sp.csr_matrix(
            (arrays["history_data"], arrays["history_indices"], arrays["history_indptr"]),
            shape=(arrays["consumer_ids"].size, arrays["product_ids"].size),
        )
    return LoadedModel(
        model_id=record.pk,
        version=record.artefact_version,
        algorithm=record.algorithm,
        params=record.params,
        recommender=recommender,
        consumer_ids=arrays["consumer_ids"],
        product_ids=arrays["product_ids"],
        history=history,
    )


_cache: dict[int, LoadedModel] = {}
_cache_lock = threading.Lock()


def model_load(record: RecommenderModel) -> LoadedModel:
    """The loaded model for a registry row, from this process's cache when its version is current."""
    cached = _cache.get(record.pk)
    if cached is not None and cached.version == record.artefact_version:
        return cached
    with _cache_lock:
        cached = _cache.get(record.pk)
        if cached is not None and cached.version == record.artefact_version:
            return cached
        loaded = model_from_arrays(record, artefact_read(artefact_name(record)))
        # Keep a handful: the serving model, the factor model lookalikes use, and a previous one during a switch.
        while len(_cache) >= 4:
            _cache.pop(next(iter(_cache)))
        _cache[record.pk] = loaded
        return loaded


def cache_clear() -> None:
    with _cache_lock:
        _cache.clear()


def arrays_without_consumer(arrays: dict[str, np.ndarray], consumer_id: int) -> dict[str, np.ndarray] | None:
    """The artefact with one consumer's row removed (factor row and stored history), or None if absent."""
    consumer_ids = arrays["consumer_ids"]
    row = int(_positions(consumer_ids, [consumer_id])[0])
    if row < 0:
        return None
    keep = np.ones(consumer_ids.size, dtype=bool)
    keep[row] = False
    out = dict(arrays)
    out["consumer_ids"] = consumer_ids[keep]
    if "user_factors" in arrays and arrays["user_factors"].shape[0] == consumer_ids.size:
        out["user_factors"] = arrays["user_factors"][keep]
    if all(key in arrays for key in _HISTORY_KEYS):
        history = sp.csr_matrix(
            (arrays["history_data"], arrays["history_indices"], arrays["history_indptr"]),
            shape=(consumer_ids.size, arrays["product_ids"].size),
        )[keep]
        out.update(history_data=history.data, history_indices=history.indices, history_indptr=history.indptr)
    shape = arrays["shape"].copy()
    shape[0] = out["consumer_ids"].size
    out["shape"] = shape
    return out
