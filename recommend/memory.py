"""The memory budget model training must stay within, and the error raised when it cannot.

Every algorithm estimates its peak working memory from the matrix shape and its parameters
(`Recommender.memory_estimate`) before it allocates anything. EASE, whose memory grows with the square of its
item count, picks the largest item cap that fits (the most popular items); the other algorithms cannot shrink
and are refused when their estimate is over the budget. So an oversized catalogue fails with a message that
says what it needs and what it has, instead of the kernel killing the worker.

The budget is `settings.RECOMMEND_MEMORY_BUDGET_MB`; 0 (the default) means half of the machine's memory: the
physical memory, or the container's cgroup limit where that is lower.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

MIB = 1024 * 1024
DEFAULT_BUDGET_FRACTION = 0.5
# Used only where neither sysconf nor the cgroup files say how much memory there is.
FALLBACK_BUDGET_MB = 2048

_CGROUP_LIMIT_FILES = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


class MemoryBudgetExceeded(Exception):
    """Training would need more memory than the budget allows, even at the algorithm's smallest setting."""

    def __init__(self, *, algorithm: str, needed_bytes: int, budget_bytes: int, what: str, advice: str):
        self.algorithm = algorithm
        self.needed_bytes = int(needed_bytes)
        self.budget_bytes = int(budget_bytes)
        self.run_id: int | None = None  # set by the training service once the failed run is recorded
        super().__init__(
            f"{algorithm} needs about {megabytes(needed_bytes)} to train {what}, more than the memory budget of "
            f"{megabytes(budget_bytes)} (RECOMMEND_MEMORY_BUDGET_MB); {advice}"
        )


def megabytes(size: int) -> str:
    return f"{max(size, 0) / MIB:,.0f} MB"


@functools.cache
def machine_memory_bytes() -> int | None:
    """What this process may use: physical memory, or the cgroup (container) limit when that is lower."""
    candidates = []
    with contextlib.suppress(AttributeError, OSError, ValueError):
        candidates.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    for path in _CGROUP_LIMIT_FILES:
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and 0 < int(raw) < 1 << 60:  # "max" or a huge number means no limit
            candidates.append(int(raw))
    candidates = [c for c in candidates if c > 0]
    return min(candidates) if candidates else None


def memory_budget_bytes() -> int:
    """The budget in bytes: the setting when positive, else half of the machine's memory."""
    from django.conf import settings

    configured = int(settings.RECOMMEND_MEMORY_BUDGET_MB or 0)
    if configured > 0:
        return configured * MIB
    machine = machine_memory_bytes()
    if machine is None:
        return FALLBACK_BUDGET_MB * MIB
    return int(machine * DEFAULT_BUDGET_FRACTION)


def csr_bytes(rows: int, nnz: int) -> int:
    """A float32 CSR matrix: values and column indices per stored entry, and the row pointers (at most int64)."""
    return nnz * (4 + 4) + (rows + 1) * 8


__all__ = ["MemoryBudgetExceeded", "csr_bytes", "machine_memory_bytes", "megabytes", "memory_budget_bytes"]
