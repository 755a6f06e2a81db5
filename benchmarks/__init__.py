"""`make bench`: every benchmark module, one table.

Each module `benchmarks/bench_<name>.py` defines `run(ctx: BenchContext) -> list[Row]`. A row
is one measured figure: a median over repeats, with its target and, where two implementations are
compared side by side in the same run, the ratio. Modules that need PostgreSQL or ../shared/data
return a row with `skipped` set instead of failing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Row:
    benchmark: str
    figure: str
    median: float | None
    unit: str
    target: str = ""
    ratio: str = ""
    note: str = ""
    skipped: str = ""


@dataclass
class BenchContext:
    scale: float = 1.0  # BENCH_SCALE: 1.0 is the full size, smaller for a quick look
    only: list[str] = field(default_factory=list)
    on_postgres: bool = False


def median_time(fn: Callable[[], object], *, repeat: int = 5, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall seconds of fn over repeat runs after warmup runs."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), samples


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def audit_checkpoint_for_database(path: str | None = None) -> str:
    """Point the audit log's checkpoint at one file per database (the current one), and forget the cached copy;
    returns the path it replaced, so a scratch database can put it back.

    The checkpoint is the verifier's evidence of how long the chain was (privacy.audit). Benchmarks create and drop
    databases in one var dir: a checkpoint left by another database's chain is, correctly, reported as a diverged
    chain on every append. A real worker the benchmark starts inherits the path through the environment.
    """
    import os

    from django.conf import settings
    from django.core.cache import cache
    from django.db import connection

    from privacy.audit import CHECKPOINT_CACHE_KEY

    previous = str(settings.AUDIT_CHECKPOINT_PATH)
    if path is None:
        name = str(connection.settings_dict["NAME"]).replace(os.sep, "_").strip("_") or "default"
        path = str(settings.VAR_DIR / f"audit-checkpoint-{name}.json")
    settings.AUDIT_CHECKPOINT_PATH = path
    os.environ["AUDIT_CHECKPOINT_PATH"] = path
    cache.delete(CHECKPOINT_CACHE_KEY)
    return previous
