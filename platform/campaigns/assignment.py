"""Deterministic control groups: a consumer's group depends only on (campaign id, consumer id).

The pair is mixed into one 64-bit number and scrambled with the SplitMix64 finaliser, a fast
hash whose outputs are uniform over [0, 2^64); a consumer is in the control group when the hash
falls below control_share × 2^64. Re-running an activation, or resuming it after a crash,
therefore puts everyone in the same group, and the control share converges on the setting with
the binomial standard error sqrt(share × (1 − share) / n).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

import numpy as np

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def control_threshold(control_share: Decimal | float) -> int:
    """The hash value below which a consumer is held out; exact for Decimal shares."""
    share = Decimal(str(control_share))
    if not Decimal(0) <= share <= Decimal(1):
        raise ValueError("control share must be between 0 and 1")
    return min(int(share * (1 << 64)), 1 << 64)


def assignment_hash(campaign_id: int, consumer_id: int) -> int:
    """The reference implementation, one pair at a time."""
    z = (campaign_id * _GOLDEN + consumer_id + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK
    return z ^ (z >> 31)


def assignment_hashes(campaign_id: int, consumer_ids: np.ndarray) -> np.ndarray:
    """The same hash, vectorised over an array of consumer ids (uint64 arithmetic wraps mod 2^64)."""
    ids = np.asarray(consumer_ids, dtype=np.uint64)
    with np.errstate(over="ignore"):
        base = np.uint64((campaign_id * _GOLDEN + _GOLDEN) & _MASK)
        z = ids + base
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
        return z ^ (z >> np.uint64(31))


def control_mask(campaign_id: int, consumer_ids: Iterable[int] | np.ndarray, control_share: Decimal) -> np.ndarray:
    """Boolean array: True where the consumer is held out in the control group."""
    ids = np.fromiter(consumer_ids, dtype=np.uint64) if not isinstance(consumer_ids, np.ndarray) else consumer_ids
    threshold = control_threshold(control_share)
    if threshold == 0:
        return np.zeros(len(ids), dtype=bool)
    if threshold >= 1 << 64:
        return np.ones(len(ids), dtype=bool)
    return assignment_hashes(campaign_id, ids) < np.uint64(threshold)


def is_control(campaign_id: int, consumer_id: int, control_share: Decimal) -> bool:
    return assignment_hash(campaign_id, consumer_id) < control_threshold(control_share)


# --- A/B/n variants -----------------------------------------------------------------------------------
# A treatment consumer's variant comes from a second, independent hash of the same pair: the control hash
# re-scrambled with a fixed key, so being in treatment says nothing about which variant one gets. The hash
# space is cut into consecutive slices of the variants' shares (percent, summing to 100).
VARIANT_KEY = 0xA5B3_5C6D_7E8F_9A1B


def _remix(z: int) -> int:
    z = (z ^ VARIANT_KEY) & _MASK
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK
    return z ^ (z >> 31)


def variant_bounds(shares: Sequence[int]) -> list[int]:
    """Upper hash bounds of each variant's slice; shares are percentages that sum to 100."""
    if not shares or any(s <= 0 for s in shares) or sum(shares) != 100:
        raise ValueError("variant shares must be positive and sum to 100")
    bounds, total = [], 0
    for share in shares:
        total += share
        bounds.append((total << 64) // 100)
    return bounds


def variant_pick(campaign_id: int, consumer_id: int, shares: Sequence[int]) -> int:
    """The variant (1-based position) a consumer gets: the same for the same campaign and consumer, always."""
    h = _remix(assignment_hash(campaign_id, consumer_id))
    for position, bound in enumerate(variant_bounds(shares), start=1):
        if h < bound:
            return position
    return len(shares)


def variant_positions(campaign_id: int, consumer_ids: np.ndarray, shares: Sequence[int]) -> np.ndarray:
    """variant_pick vectorised over consumer ids (uint8 positions, 1-based)."""
    bounds = variant_bounds(shares)
    with np.errstate(over="ignore"):
        z = assignment_hashes(campaign_id, consumer_ids) ^ np.uint64(VARIANT_KEY)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
        z = z ^ (z >> np.uint64(31))
    positions = np.full(len(z), len(shares), dtype=np.uint8)
    for position in range(len(bounds) - 1, 0, -1):  # the last slice ends at 2^64, which uint64 cannot hold
        positions[z < np.uint64(bounds[position - 1])] = position
    return positions
