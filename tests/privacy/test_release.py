"""The release layer's mechanism: consistent keyed noise, calibration, suppression after noise, sums and rates."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from privacy import release
from privacy.release import (
    ERROR_PROBABILITY,
    PREVIEW,
    STANDARD,
    ReleaseError,
    count_from_noisy,
    keyed_noise,
    member_digest,
    noise_bound,
    noisy_count,
    released_rate,
    suppression_threshold,
)


def _no_runs(values) -> BitMap:
    bitmap = BitMap()
    for value in values:  # one at a time: CRoaring makes array and bitset containers, never runs
        bitmap.add(int(value))
    return bitmap


def test_calibration_comes_from_opendp():
    assert release.rho_for_sigma(20) == pytest.approx(1 / 800)
    assert release.rho_for_sigma(100) == pytest.approx(1 / 20000)
    assert release.PRECISIONS[STANDARD].rho == pytest.approx(0.00125)
    assert 0 < release.epsilon_for_rho(0.25) < 10
    assert release.attacker_success_bound(0.0) == pytest.approx(0.5)


def test_equal_sets_have_one_digest_however_they_were_computed():
    rng = np.random.default_rng(3)
    n = 300_000
    a = BitMap(np.flatnonzero(rng.random(n) < 0.3).astype(np.uint32))
    b = BitMap(np.flatnonzero(rng.random(n) < 0.2).astype(np.uint32))
    live = BitMap()
    live.add_range(0, n)  # run containers
    assert member_digest(a & b) == member_digest(b & a) == member_digest((a | b) - (a ^ b))
    assert member_digest((a | b) - a) == member_digest(b - a)
    with_runs = a | live
    assert with_runs.get_statistics()["n_run_containers"] > 0
    assert member_digest(with_runs) == member_digest(BitMap(np.arange(n, dtype=np.uint32)))
    snapshot = BitMap(a)
    snapshot.run_optimize()
    assert member_digest(snapshot) == member_digest(a)
    assert member_digest(a) != member_digest(a | BitMap([n + 5]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    runs=st.lists(st.tuples(st.integers(0, 200_000), st.integers(0, 9_000)), max_size=12),
    extra=st.lists(st.integers(0, 200_000), max_size=50),
)
def test_digest_ignores_the_containers_property(runs, extra):
    values = set(extra)
    optimised = BitMap(extra)
    for start, length in runs:
        optimised.add_range(start, start + length)
        values.update(range(start, start + length))
    optimised.run_optimize()
    assert member_digest(optimised) == member_digest(_no_runs(sorted(values)))


def test_same_question_same_value_same_number_and_a_changed_value_fresh_noise():
    members = BitMap(range(1000, 2500))
    key, first = noisy_count(subject="q", count=len(members), precision=STANDARD)
    assert noisy_count(subject="q", count=len(BitMap(members)), precision=STANDARD) == (key, first)
    # What is released is part of the key; the merchant is not (there is no merchant argument at all).
    assert noisy_count(subject="q", count=len(members), precision=STANDARD, data_version="v2")[0] != key
    assert noisy_count(subject="q", count=len(members), precision=PREVIEW)[0] != key
    assert noisy_count(subject="other", count=len(members), precision=STANDARD)[0] != key
    # The data moved the value by one: fresh noise, so two releases never differ by exactly the change.
    changed_key, changed = noisy_count(subject="q", count=len(members) + 1, precision=STANDARD)
    assert changed_key != key
    differences = {
        noisy_count(subject=f"q{i}", count=1001, precision=STANDARD)[1]
        - noisy_count(subject=f"q{i}", count=1000, precision=STANDARD)[1]
        for i in range(50)
    }
    assert len(differences) > 10  # not always exactly 1


def test_the_noise_key_matters(settings):
    members = BitMap(range(500))
    before = noisy_count(subject="q", count=len(members), precision=STANDARD)
    settings.RELEASE_NOISE_KEY = "another-key-entirely-for-this-test"
    assert noisy_count(subject="q", count=len(members), precision=STANDARD)[0] != before[0]


@pytest.mark.parametrize("precision", [STANDARD, PREVIEW])
def test_noise_is_unbiased_with_the_documented_spread(precision):
    """Statistical, on a fixed set of 4,000 keys: mean within 5 standard errors of 0, σ within 5 %."""
    sigma = release.PRECISIONS[precision].sigma
    draws = np.array([keyed_noise(key=f"{i:064x}", sigma=sigma) for i in range(4000)])
    assert abs(draws.mean()) < 5 * sigma / math.sqrt(len(draws))
    assert draws.std() == pytest.approx(sigma, rel=0.05)
    bound = noise_bound(sigma, ERROR_PROBABILITY)
    assert (np.abs(draws) <= bound).mean() >= ERROR_PROBABILITY - 0.015


@pytest.mark.parametrize("precision", [STANDARD, PREVIEW])
@pytest.mark.parametrize("true_size", [1_000, 10_000, 100_000])
def test_released_counts_unbiased_and_within_the_error_bound(precision, true_size):
    """Released (rounded) counts of 1,500 distinct sets of one size: unbiased, and inside error_bound ≥ 95 %."""
    released = []
    inside = 0
    for i in range(1500):
        key = f"{true_size:032x}{i:032x}"
        count = count_from_noisy(
            noisy=true_size + keyed_noise(key=key, sigma=release.PRECISIONS[precision].sigma), precision=precision
        )
        assert not count.suppressed
        released.append(count.value)
        inside += abs(count.value - true_size) <= count.error_bound
    sigma = release.PRECISIONS[precision].sigma
    assert abs(statistics.fmean(released) - true_size) < 5 * (sigma + 30) / math.sqrt(len(released))
    assert inside / len(released) >= ERROR_PROBABILITY - 0.015


def test_suppression_applies_after_noise_and_is_calibrated():
    assert suppression_threshold(STANDARD) == 100 + noise_bound(20, 0.999)
    shown_small = 0
    for i in range(3000):
        count = count_from_noisy(noisy=99 + keyed_noise(key=f"{i:064x}", sigma=100), precision=PREVIEW)
        shown_small += not count.suppressed
        if count.suppressed:
            assert count.value is None and count.display.startswith("fewer than")
    assert shown_small / 3000 < 0.002  # a true 99 almost never shows as a number, even in a preview


def test_rounding_and_display():
    shown = count_from_noisy(noisy=123_456, precision=STANDARD)
    assert (shown.value, shown.display) == (123_460, "123,460")
    assert shown.public() == {
        "size": 123_460,
        "display": "123,460",
        "hidden": False,
        "error_bound": noise_bound(20, 0.95) + 5,
        "precision": STANDARD,
        "withheld": False,
    }
    assert count_from_noisy(noisy=1_234, precision=STANDARD).value == 1_230
    assert count_from_noisy(noisy=12_345, precision=PREVIEW).value == 12_300
    assert count_from_noisy(noisy=5, precision=PREVIEW).display == "fewer than 500"
    hidden = count_from_noisy(noisy=5, precision=STANDARD)
    assert hidden.public()["size"] is None and hidden.public()["hidden"] is True


def test_rates_come_from_released_numbers_only():
    denominator = count_from_noisy(noisy=800, precision=STANDARD)
    numerator = count_from_noisy(noisy=101, precision=STANDARD)  # under the threshold: hidden
    assert numerator.suppressed and released_rate(numerator, denominator) is None
    numerator = count_from_noisy(noisy=400, precision=STANDARD)
    assert released_rate(numerator, denominator) == pytest.approx(0.5)
    assert released_rate(count_from_noisy(noisy=900, precision=STANDARD), denominator) == 1.0


def test_clamped_sum_bounds_each_consumer():
    assert release.clamped_sum([5, 50_000, -3, 100], clamp=1000) == 5 + 1000 + 0 + 100
    with pytest.raises(ReleaseError):
        release.clamped_sum([1], clamp=0)
    with pytest.raises(ReleaseError):
        release.precision_spec("exact")


def test_one_question_has_one_canonical_subject():
    sg = {"tag": {"family": "country", "value": "SG"}}
    high = {"tag": {"family": "discount_sensitivity", "value": "high"}}
    sports = {"tag": {"family": "interest", "value": "sports"}}
    subject = release.canonical_subject
    assert subject({"or": [sg, high]}) == subject({"or": [high, {"or": [sg, sg]}]})
    assert subject({"not": {"not": {"or": [high, sg]}}}) == subject({"or": [sg, high]})
    assert subject({"and": [sg]}) == subject(sg)
    assert subject({"and": [sg, {"and": [high, sports]}]}) == subject({"and": [{"and": [sports, sg]}, high]})
    # Different questions stay different, even where they happen to select the same consumers.
    assert subject({"or": [sg, high]}) != subject({"and": [sg, high]})
    assert subject({"or": [sg, {"and": [high, {"not": sg}]}]}) != subject({"or": [sg, high]})
    assert subject({"not": sg}) != subject(sg)


def test_lift_and_overlap_come_from_released_numbers_only():
    def shown(n):
        return count_from_noisy(noisy=n, precision=STANDARD)

    lift = release.released_lift(
        segment_count=shown(300), segment_size=shown(1000), population_count=shown(3000), population_size=shown(30000)
    )
    assert lift == pytest.approx(3.0)
    assert (
        release.released_lift(
            segment_count=shown(50),
            segment_size=shown(1000),
            population_count=shown(3000),
            population_size=shown(30000),
        )
        is None
    )
    assert release.released_jaccard(size=shown(1000), other_size=shown(800), both=shown(600)) == pytest.approx(0.5)
    assert release.released_jaccard(size=shown(1000), other_size=shown(800), both=shown(20)) is None


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    true_count=st.integers(min_value=600, max_value=50_000_000),
    precision=st.sampled_from([STANDARD, PREVIEW]),
    question=st.text(min_size=1, max_size=30),
)
def test_released_counts_are_unbiased_and_within_the_bound_property(true_count, precision, question):
    """For any count and any question: over 600 variants of the question, released counts are centred on the true
    count and inside the documented bound at ≥ 95 % (tolerance 4 standard errors; derandomized: never flakes)."""
    sigma = release.PRECISIONS[precision].sigma
    shown = [
        count_from_noisy(
            noisy=noisy_count(subject=f"{question}#{i}", count=true_count, precision=precision)[1], precision=precision
        )
        for i in range(600)
    ]
    assert all(not c.suppressed for c in shown)
    errors = np.array([c.value - true_count for c in shown])
    assert abs(errors.mean()) < 4 * (sigma + release.PRECISIONS[precision].quantum) / math.sqrt(len(errors))
    inside = np.mean([abs(c.value - true_count) <= c.error_bound for c in shown])
    assert inside >= ERROR_PROBABILITY - 0.035
