"""The release layer: how an aggregate leaves the platform for a merchant (docs/privacy.md, "Released numbers").

Every number a merchant sees is *released*, not read: a count gets discrete Gaussian noise, a sum is clamped per
consumer and gets noise scaled to the clamp, rates are computed from released numbers only, and small released
counts are suppressed after the noise, with a threshold calibrated to it.

Mechanism. The discrete Gaussian (Canonne, Kamath, Steinke 2020) under zero-concentrated DP: a count (sensitivity
1) released with noise of scale σ costs ρ = 1 / (2σ²). The calibration (σ → ρ) and the conversion of a period's
total ρ to (ε, δ) come from OpenDP (`make_gaussian` over integers, `make_zCDP_to_approxDP`). OpenDP draws from
the operating system's randomness and cannot be seeded, so the draw itself is made here, with the same exact
sampler OpenDP uses (rational arithmetic, no floating point), fed by a keyed stream (SHAKE-256 of an HMAC).

Consistency. The stream's seed is HMAC(RELEASE_NOISE_KEY, what is released): the *subject* (the question in a
canonical form: `canonical_subject` flattens, sorts and de-duplicates AND/OR, drops double negations, so the text
form, the JSON form and reorderings of one question are one subject), the measure, the precision, the data version
and the exact value released. Not the merchant: the same question on the same data gets the same number for
everyone, on every page, however often it is asked, so repetition cannot average the noise away.

Why the subject and not the member set: noise keyed by the member set is not differentially private. An attacker
comparing `LA` with `LA OR (P AND interest:X)` for a unique P gets *identical* numbers when the target lacks X
(the two are the same set, so the same noise) and different ones when it has X: equality gives the tag away
(tests/privacy/test_differencing_attack.py measures it). Keyed by the subject, two different questions always
get independent noise whatever the data, and each is paid for.

Why the exact value is in the key: it stands in for the data version. When the data changes the value a question
has, the noise is drawn afresh (and paid for again); were it not, the same noise on two different values would
make their difference exact. When the value is unchanged, the same number comes back, which reveals only that the
value did not change (the residual leak documented in docs/privacy.md; keying by the versions of every input the
evaluation read removes it). It also costs nothing: no digest of a 10M-member set on the estimate's path.

Budget. Each *new* distinct release spends its ρ from the merchant's allowance for the period (privacy.services);
this module only computes. See release_counts in services.py for the metered entry point.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Any, Literal

import numpy as np
from django.conf import settings
from pyroaring import AbstractBitMap, BitMap

Precision = Literal["preview", "standard"]
PREVIEW: Precision = "preview"
STANDARD: Precision = "standard"

# The probability the documented error bound holds at, and the (stricter, two-sided) one the suppression
# threshold is calibrated to: a true count below MIN_AUDIENCE is shown as a number with probability < 0.05 %.
ERROR_PROBABILITY = 0.95
SUPPRESSION_PROBABILITY = 0.999
MECHANISM_VERSION = "dgauss-v1"


@dataclass(frozen=True)
class PrecisionSpec:
    """One precision: the noise scale σ of a count, and how a released count is rounded for display."""

    name: str
    sigma: int
    quantum: int  # released counts are rounded to a multiple of this (fixed, so rounding adds no bias)

    @property
    def rho(self) -> float:
        """zCDP cost of one count (sensitivity 1) at this precision: 1 / (2σ²)."""
        return rho_for_sigma(self.sigma)


PRECISIONS: dict[str, PrecisionSpec] = {
    # Live estimates while typing in the builder: large noise, coarse rounding, 1/25 of the cost of a standard one.
    PREVIEW: PrecisionSpec(PREVIEW, sigma=100, quantum=100),
    # Saved segments, API estimates: ±44 at 95 % with the rounding (p95 relative error 4.4 % at 1,000).
    STANDARD: PrecisionSpec(STANDARD, sigma=20, quantum=10),
}


class ReleaseError(ValueError):
    """A release was asked for with arguments that break the mechanism's rules (unknown precision, bad clamp)."""


def precision_spec(precision: str) -> PrecisionSpec:
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ReleaseError(f"Unknown precision {precision!r}; expected one of {sorted(PRECISIONS)}.") from None


# ------------------------------------------------------------------------------------------------ calibration


@cache
def rho_for_sigma(sigma: float) -> float:
    """ρ of the discrete Gaussian with scale σ on a sensitivity-1 integer query, as OpenDP accounts it."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    meas = dp.m.make_gaussian(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale=float(sigma))
    return float(meas.map(1))


@cache
def epsilon_for_rho(rho: float, delta: float = 1e-9) -> float:
    """The (ε, δ)-DP guarantee implied by a total ρ (OpenDP's zCDP → approximate-DP conversion)."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    sigma = 1.0 / math.sqrt(2.0 * rho)
    meas = dp.c.make_zCDP_to_approxDP(
        dp.m.make_gaussian(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale=sigma)
    )
    return float(meas.map(1).epsilon(delta))


def attacker_success_bound(rho: float) -> float:
    """Best accuracy of any test of one consumer's hidden bit (prior 50 %) after releases costing ρ in total.

    zCDP with ρ on a sensitivity-1 query family is dominated by a Gaussian shift of μ = √(2ρ) standard
    deviations (Gaussian DP); the best balanced test of "shifted or not" is right with probability Φ(μ/2).
    """
    mu = math.sqrt(2.0 * rho)
    return 0.5 * (1.0 + math.erf(mu / 2.0 / math.sqrt(2.0)))


@cache
def noise_bound(sigma: int, probability: float) -> int:
    """The smallest t with P(|Z| ≤ t) ≥ probability for Z discrete Gaussian with scale σ (exact pmf sum)."""
    ks = np.arange(-40 * sigma, 40 * sigma + 1, dtype=np.float64)
    weights = np.exp(-(ks**2) / (2.0 * sigma * sigma))
    weights /= weights.sum()
    centre = 40 * sigma
    mass = weights[centre]
    t = 0
    while mass < probability:
        t += 1
        mass += weights[centre - t] + weights[centre + t]
    return t


def suppression_threshold(precision: str) -> int:
    """A released count below this is shown as "fewer than …": MIN_AUDIENCE plus the noise's 99.9 % bound."""
    spec = precision_spec(precision)
    return int(settings.MIN_AUDIENCE) + noise_bound(spec.sigma, SUPPRESSION_PROBABILITY)


def _round_to(value: int, quantum: int) -> int:
    return math.floor(value / quantum + 0.5) * quantum


# ------------------------------------------------------------------------------------------------ digests


def _noise_key() -> bytes:
    return str(settings.RELEASE_NOISE_KEY).encode()


def _canonical_bytes(members: AbstractBitMap) -> bytes:
    """The member set's portable serialisation in its one canonical form: no run containers.

    CRoaring keeps array containers at ≤ 4,096 values and bitset containers above, so without runs the
    serialisation is a function of the set alone. A set holding run containers (an OR with the live consumers, a
    run-optimised snapshot) is re-encoded here, container by container, into the bytes the same set would
    serialise to without them, so equal sets always hash equal however they were computed.
    """
    data = members.serialize()
    if members.get_statistics()["n_run_containers"] == 0:
        return data
    return _derun(data)


def _derun(data: bytes) -> bytes:
    cookie = int.from_bytes(data[0:4], "little")
    if cookie & 0xFFFF != 12347:  # no runs after all
        return data
    size = (cookie >> 16) + 1
    pos = 4
    run_flags = np.unpackbits(np.frombuffer(data, dtype=np.uint8, count=(size + 7) // 8, offset=pos), bitorder="little")
    pos += (size + 7) // 8
    header = np.frombuffer(data, dtype="<u2", count=2 * size, offset=pos).reshape(size, 2)
    pos += 4 * size
    if size >= 4:  # the offset header is present for 4 containers or more
        pos += 4 * size
    payloads: list[bytes] = []
    for i in range(size):
        cardinality = int(header[i, 1]) + 1
        if run_flags[i]:
            n_runs = int.from_bytes(data[pos : pos + 2], "little")
            runs = np.frombuffer(data, dtype="<u2", count=2 * n_runs, offset=pos + 2).reshape(n_runs, 2)
            pos += 2 + 4 * n_runs
            values = (
                np.concatenate([np.arange(int(s), int(s) + int(ln) + 1, dtype=np.uint32) for s, ln in runs])
                if n_runs
                else np.zeros(0, dtype=np.uint32)
            )
            if cardinality <= 4096:
                payloads.append(values.astype("<u2").tobytes())
            else:
                bits = np.zeros(65536, dtype=np.uint8)
                bits[values] = 1
                payloads.append(np.packbits(bits, bitorder="little").tobytes())
        elif cardinality <= 4096:
            payloads.append(data[pos : pos + 2 * cardinality])
            pos += 2 * cardinality
        else:
            payloads.append(data[pos : pos + 8192])
            pos += 8192
    out = [(12346).to_bytes(4, "little"), size.to_bytes(4, "little"), header.astype("<u2").tobytes()]
    offset = 8 + 4 * size + 4 * size
    offsets = []
    for payload in payloads:
        offsets.append(offset)
        offset += len(payload)
    out.append(np.asarray(offsets, dtype="<u4").tobytes())
    out.extend(payloads)
    return b"".join(out)


def member_digest(members: AbstractBitMap) -> str:
    """A keyed digest of a set of consumer ids: HMAC-SHA256(RELEASE_NOISE_KEY, canonical serialisation).

    Not part of a release key (see the module docstring: keying noise by the member set is not private); kept for
    callers that need a set's identity as a data version (a snapshot), and for the attack test that shows why.
    """
    return hmac.digest(_noise_key(), b"members\x00" + _canonical_bytes(members), "sha256").hex()


def canonical_subject(definition: Any) -> str:
    """A question in one canonical form, from the segment language's JSON form (docs/segments.md).

    AND and OR are flattened, their operands de-duplicated and sorted; NOT NOT x is x; a one-operand AND/OR is its
    operand. So `a OR b`, `b OR (a OR a)` and `NOT NOT (b OR a)`, in text or JSON, are one subject. Deeper
    equivalences (distributivity, De Morgan) are separate subjects: they get independent noise and are paid for.
    """

    def norm(node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            op, value = next(iter(node.items()))
            if op in ("and", "or") and isinstance(value, list):
                operands: dict[str, Any] = {}
                for child in (norm(c) for c in value):
                    nested = child.get(op) if isinstance(child, dict) and len(child) == 1 else None
                    for item in nested if isinstance(nested, list) else [child]:
                        operands[_dumps(item)] = item
                ordered = [operands[k] for k in sorted(operands)]
                return ordered[0] if len(ordered) == 1 else {op: ordered}
            if op == "not":
                inner = norm(value)
                if isinstance(inner, dict) and len(inner) == 1 and "not" in inner:
                    return inner["not"]
                return {"not": inner}
        return node

    return _dumps(norm(definition))


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def release_key(*, subject: str, value: int, measure: str, precision: str, data_version: str = "") -> str:
    """What identifies a release: the ledger's key and the noise's seed (never the merchant).

    value is the exact value being released (a count, a clamped sum): see the module docstring for why.
    """
    subject_digest = hashlib.sha256(subject.encode()).hexdigest()
    label = f"{MECHANISM_VERSION}\x00{subject_digest}\x00{measure}\x00{precision}\x00{data_version}\x00{int(value)}"
    return hmac.digest(_noise_key(), b"release\x00" + label.encode(), "sha256").hex()


# ------------------------------------------------------------------------------------------------ exact sampler


class KeyedStream:
    """Deterministic uniform integers from a seed: SHAKE-256 of the seed, read 64 bits at a time."""

    def __init__(self, seed: bytes):
        self._xof = hashlib.shake_256(seed)
        self._buffer = b""
        self._length = 0
        self._pos = 0

    def _next64(self) -> int:
        if self._pos + 8 > len(self._buffer):
            self._length = max(256, 2 * self._length)
            self._buffer = self._xof.digest(self._length)  # an XOF: a longer read extends the shorter one
        value = int.from_bytes(self._buffer[self._pos : self._pos + 8], "little")
        self._pos += 8
        return value

    def below(self, n: int) -> int:
        """Uniform on 0 .. n-1 (rejection sampling, no modulo bias)."""
        if n <= 0 or n > 1 << 64:
            raise ValueError("n out of range")
        limit = ((1 << 64) // n) * n
        while True:
            value = self._next64()
            if value < limit:
                return value % n

    def bernoulli(self, p: Fraction) -> bool:
        return self.below(p.denominator) < p.numerator


def _bernoulli_exp_le1(stream: KeyedStream, gamma: Fraction) -> bool:
    k = 1
    while stream.bernoulli(gamma / k):
        k += 1
    return k % 2 == 1


def bernoulli_exp(stream: KeyedStream, gamma: Fraction) -> bool:
    """True with probability exp(-γ), exactly (γ ≥ 0 rational)."""
    while gamma > 1:
        if not _bernoulli_exp_le1(stream, Fraction(1)):
            return False
        gamma -= 1
    return _bernoulli_exp_le1(stream, gamma)


def sample_discrete_laplace(stream: KeyedStream, t: int) -> int:
    """P(x) ∝ exp(-|x|/t), exactly (Canonne, Kamath, Steinke 2020, Algorithm 2, integer scale t)."""
    while True:
        u = stream.below(t)
        if not bernoulli_exp(stream, Fraction(u, t)):
            continue
        v = 0
        while bernoulli_exp(stream, Fraction(1)):
            v += 1
        x = u + t * v
        negative = stream.bernoulli(Fraction(1, 2))
        if negative and x == 0:
            continue
        return -x if negative else x


def sample_discrete_gaussian(stream: KeyedStream, sigma: int) -> int:
    """P(x) ∝ exp(-x²/(2σ²)), exactly (Canonne, Kamath, Steinke 2020, Algorithm 3): OpenDP's sampler, keyed."""
    sigma2 = Fraction(sigma * sigma)
    t = math.isqrt(sigma * sigma) + 1
    while True:
        y = sample_discrete_laplace(stream, t)
        gamma = (abs(y) - sigma2 / t) ** 2 / (2 * sigma2)
        if bernoulli_exp(stream, gamma):
            return y


def keyed_noise(*, key: str, sigma: int) -> int:
    """The noise of one release: a discrete Gaussian draw seeded by its release key (so the same on every ask)."""
    seed = hmac.digest(_noise_key(), b"noise\x00" + bytes.fromhex(key), "sha256")
    return sample_discrete_gaussian(KeyedStream(seed), sigma)


# ------------------------------------------------------------------------------------------------ released figures


@dataclass(frozen=True)
class ReleasedCount:
    """A count as a merchant may see it.

    value: the noisy count, rounded; None when suppressed. error_bound: |value - true| ≤ error_bound with
    probability ≥ ERROR_PROBABILITY (noise bound plus half the rounding step). threshold: the suppression threshold
    of this precision; display reads "fewer than <threshold>" when suppressed.
    """

    value: int | None
    suppressed: bool
    display: str
    error_bound: int
    threshold: int
    precision: str
    key: str = ""
    _noisy: int = 0  # unrounded noisy count, for released_rate (never shown)
    withheld: bool = False  # not released: the merchant's budget could not pay for it (see withheld_count)

    def public(self) -> dict:
        """The shape counts have across the API: {"size", "display", "hidden"}, plus the error bound."""
        return {
            "size": self.value,
            "display": self.display,
            "hidden": self.suppressed,
            "error_bound": None if self.suppressed else self.error_bound,
            "precision": self.precision,
            "withheld": self.withheld,
        }


def withheld_count(*, precision: str, renews_at: Any) -> ReleasedCount:
    """A figure that was not released because the privacy budget is spent: shown as such, never as a number.

    Carries no information about the true count (no noise was drawn for it); rates over it are hidden too.
    """
    spec = precision_spec(precision)
    return ReleasedCount(
        value=None,
        suppressed=True,
        display=f"not released until {renews_at:%Y-%m-%d} (privacy budget spent)",
        error_bound=noise_bound(spec.sigma, ERROR_PROBABILITY),
        threshold=suppression_threshold(precision),
        precision=precision,
        withheld=True,
    )


def count_from_noisy(*, noisy: int, precision: str, key: str = "") -> ReleasedCount:
    """Post-processing of a noisy count: suppression (after the noise) and rounding."""
    spec = precision_spec(precision)
    threshold = suppression_threshold(precision)
    bound = noise_bound(spec.sigma, ERROR_PROBABILITY)
    if noisy < threshold:
        return ReleasedCount(
            value=None,
            suppressed=True,
            display=f"fewer than {-(-threshold // spec.quantum) * spec.quantum:,}",
            error_bound=bound,
            threshold=threshold,
            precision=precision,
            key=key,
            _noisy=noisy,
        )
    quantum = spec.quantum
    value = _round_to(noisy, quantum)
    return ReleasedCount(
        value=value,
        suppressed=False,
        display=f"{value:,}",
        error_bound=bound + quantum // 2,
        threshold=threshold,
        precision=precision,
        key=key,
        _noisy=noisy,
    )


def noisy_count(*, subject: str, count: int, precision: str, data_version: str = "") -> tuple[str, int]:
    """(release key, noisy count) of a question, unmetered: the pure mechanism (the services meter it)."""
    spec = precision_spec(precision)
    key = release_key(subject=subject, value=count, measure="count", precision=precision, data_version=data_version)
    return key, int(count) + keyed_noise(key=key, sigma=spec.sigma)


def clamped_sum(values: Iterable[int], *, clamp: int) -> int:
    """Σ min(max(v, 0), clamp): each consumer contributes at most `clamp` (the sum's sensitivity)."""
    if clamp <= 0:
        raise ReleaseError("clamp must be positive")
    array = np.fromiter((int(v) for v in values), dtype=np.int64)
    return int(np.clip(array, 0, clamp).sum())


@dataclass(frozen=True)
class ReleasedSum:
    """A clamped sum (minor units) as a merchant may see it; hidden when its count is suppressed."""

    value: int | None
    suppressed: bool
    display: str
    error_bound: int
    precision: str
    key: str = ""
    _noisy: int = 0  # unrounded noisy sum, for released_rate (never shown)


def sum_from_noisy(*, noisy: int, clamp: int, precision: str, count: ReleasedCount, key: str = "") -> ReleasedSum:
    spec = precision_spec(precision)
    bound = noise_bound(spec.sigma, ERROR_PROBABILITY) * clamp
    if count.suppressed:
        return ReleasedSum(None, True, f"hidden (fewer than {count.threshold:,})", bound, precision, key, noisy)
    quantum = 10 ** max(0, len(str(bound)) - 2)  # two significant figures of the noise bound
    value = max(0, _round_to(noisy, quantum))
    return ReleasedSum(value, False, f"{value:,}", bound + quantum // 2, precision, key, noisy)


def released_rate(numerator: ReleasedCount | ReleasedSum, denominator: ReleasedCount) -> float | None:
    """A rate from released numbers only (never from exact ones): None when either side is hidden.

    Computed from the unrounded released values, which are themselves released (post-processing of noise), so a
    rate reveals nothing the two counts do not. Clipped to [0, 1] for counts (a subset cannot exceed its set).
    """
    if numerator.suppressed or denominator.suppressed:
        return None
    den = denominator._noisy
    if den <= 0:
        return None
    num = numerator._noisy
    rate = num / den
    if isinstance(numerator, ReleasedCount):
        rate = min(1.0, max(0.0, rate))
    return rate


def released_lift(
    *,
    segment_count: ReleasedCount,
    segment_size: ReleasedCount,
    population_count: ReleasedCount,
    population_size: ReleasedCount,
) -> float | None:
    """Lift = (segment share) / (population share), from four released counts only; None when any is hidden."""
    segment_share = released_rate(segment_count, segment_size)
    population_share = released_rate(population_count, population_size)
    if segment_share is None or not population_share:
        return None
    return segment_share / population_share


def released_jaccard(*, size: ReleasedCount, other_size: ReleasedCount, both: ReleasedCount) -> float | None:
    """Jaccard index |A ∩ B| / |A ∪ B| from three released counts only (|A ∪ B| = |A| + |B| - |A ∩ B|)."""
    if size.suppressed or other_size.suppressed or both.suppressed:
        return None
    union = size._noisy + other_size._noisy - both._noisy
    if union <= 0:
        return None
    return min(1.0, max(0.0, both._noisy / union))


__all__ = [
    "ERROR_PROBABILITY",
    "PRECISIONS",
    "PREVIEW",
    "STANDARD",
    "BitMap",
    "KeyedStream",
    "ReleaseError",
    "ReleasedCount",
    "ReleasedSum",
    "attacker_success_bound",
    "canonical_subject",
    "clamped_sum",
    "count_from_noisy",
    "epsilon_for_rho",
    "keyed_noise",
    "member_digest",
    "noise_bound",
    "noisy_count",
    "precision_spec",
    "release_key",
    "released_jaccard",
    "released_lift",
    "released_rate",
    "sample_discrete_gaussian",
    "suppression_threshold",
    "withheld_count",
]
