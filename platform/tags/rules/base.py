"""What every tagging rule is: a family of tag values, each with a plain-language definition, and a set-wise
computation from the run's arrays (tags.inputs) to (consumer, value, score) assignments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..arrays import sorted_unique, sorted_unique_inverse
from ..inputs import TaggingInput


@dataclass(frozen=True)
class TagValue:
    value: str  # stable identifier: the part after "family:" in the segment language
    label: str
    definition: str


@dataclass(frozen=True)
class Assignments:
    """Which consumers get which values of one family.

    consumers holds positions in TaggingInput.consumers (not database ids);
    value_index indexes into values; scores is None for rules without a strength.
    """

    values: list[TagValue]
    consumers: np.ndarray  # int32
    value_index: np.ndarray  # int32
    scores: np.ndarray | None  # float64

    def __post_init__(self) -> None:
        if self.consumers.shape != self.value_index.shape:
            raise ValueError("consumers and value_index must have the same length")
        if self.scores is not None and self.scores.shape != self.consumers.shape:
            raise ValueError("scores must have one entry per assignment")
        if self.value_index.size and (self.value_index.min() < 0 or self.value_index.max() >= len(self.values)):
            raise ValueError("value_index out of range")

    def __len__(self) -> int:
        return int(self.consumers.size)

    @classmethod
    def empty(cls, values: list[TagValue], with_scores: bool = True) -> Assignments:
        return cls(values, np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0) if with_scores else None)


class TagRule:
    """A tagging rule. Subclasses set the class attributes and implement `values` and `compute`."""

    family: ClassVar[str]
    label: ClassVar[str]  # the family as merchants read it, e.g. "Country of residence"
    description: ClassVar[str]  # one paragraph: what the family means and how it is derived
    rule_version: ClassVar[str]
    purpose: ClassVar[str] = "tagging"

    def values(self, data: TaggingInput) -> list[TagValue]:
        """Every value of the family, including those nobody holds in this run."""
        raise NotImplementedError

    def compute(self, data: TaggingInput) -> Assignments:
        raise NotImplementedError


# Helpers shared by the rules: grouping without Python loops over consumers.


# Below this many (first, second) combinations pairs are found with a dense table (linear time, a few
# hundred megabytes at most) instead of a sort.
DENSE_PAIR_LIMIT = 1 << 25


def group_pairs(first: np.ndarray, second: np.ndarray, second_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (first, second) pairs, sorted by first then second, and each input row's pair index.

    first and second are non-negative codes (second < second_size). Returns
    (pair_first, pair_second, inverse).
    """
    width = np.int64(max(second_size, 1))
    keys = first.astype(np.int64) * width + second.astype(np.int64)
    if keys.size == 0:
        return np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int64)
    combinations = int(first.max()) * int(width) + int(width)
    if combinations <= DENSE_PAIR_LIMIT:
        present = np.zeros(combinations, dtype=bool)
        present[keys] = True
        unique = np.flatnonzero(present)
        position = np.cumsum(present, dtype=np.int32) - 1
        inverse = position[keys].astype(np.int64)
    else:
        unique, inverse = sorted_unique_inverse(keys)
    return (unique // width).astype(np.int32), (unique % width), inverse


def distinct_codes(group: np.ndarray, code: np.ndarray, codes: int, groups: int) -> np.ndarray:
    """For each group, how many distinct codes (0..codes-1, e.g. categories) it has."""
    if group.size == 0:
        return np.zeros(groups, dtype=np.int64)
    width = max(codes, 1)
    if groups * width <= DENSE_PAIR_LIMIT:
        present = np.zeros(groups * width, dtype=bool)
        present[group.astype(np.int64) * width + code] = True
        return present.reshape(groups, width).sum(axis=1)
    return distinct_count(group, code, groups)


def distinct_count(group: np.ndarray, item: np.ndarray, groups: int) -> np.ndarray:
    """For each group 0..groups-1, how many distinct items it has.

    Items are compared on their low 32 bits (order hashes and day numbers fit;
    a collision would merge two items of the same group, which is harmless here).
    """
    if group.size == 0:
        return np.zeros(groups, dtype=np.int64)
    keys = (group.astype(np.int64) << 32) | (item.astype(np.int64) & 0xFFFFFFFF)
    return np.bincount(sorted_unique(keys) >> 32, minlength=groups)


def top_within(group: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest-scoring rows of each group (rows sorted by group). Ties: the earlier row.

    k passes of a segmented maximum instead of a sort: linear in the rows.
    """
    if group.size == 0:
        return np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    run = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, group.size]))
    remaining = score.astype(np.float64, copy=True)
    chosen = []
    for _ in range(k):
        best = np.maximum.reduceat(remaining, starts)
        candidate = (remaining == best[run]) & np.isfinite(remaining)
        positions = np.flatnonzero(candidate)
        # The first candidate of each group.
        first = positions[np.r_[True, run[positions[1:]] != run[positions[:-1]]]] if positions.size else positions
        chosen.append(first)
        remaining[first] = -np.inf
    return np.sort(np.concatenate(chosen))


def quintile_scores(values: np.ndarray, *, higher_is_better: bool = True) -> np.ndarray:
    """Scores 1..5 by quintile of the population. Ties share a score, so a value never splits across two."""
    if values.size == 0:
        return np.empty(0, dtype=np.int8)
    ranks = _average_ranks(values if higher_is_better else -values)
    # Percentile of each value's average rank; equal values get equal percentiles.
    percentile = (ranks - 0.5) / values.size
    return (1 + np.minimum(np.floor(percentile * 5), 4)).astype(np.int8)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    boundaries = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1], True])
    ranks_sorted = np.empty(values.size, dtype=np.float64)
    for_runs = (boundaries[:-1] + boundaries[1:] + 1) / 2.0  # average 1-based rank of each run of ties
    ranks_sorted[:] = np.repeat(for_runs, np.diff(boundaries))
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = ranks_sorted
    return ranks
