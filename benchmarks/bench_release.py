"""The release layer (privacy/release.py): its overhead on an estimate, its accuracy, the budget, the attacker.

- (a) overhead of releasing the 5-term estimate's two counts (size, reachable) at 10M consumers: the canonical
  subject, two keys, the per-process memory of released figures (a repeat), p50 on top of the estimate itself
  (which counts the reachable part either way); and a new release (draws, ledger insert, budget update);
- (b) accuracy: median and p95 relative error of released counts at true sizes 200, 1,000, 10,000, 100,000, for
  standard (a saved segment, an API estimate) and preview (typing) precision, over 2,000 keyed draws each;
- (c) distinct estimates per period under the default allowance;
- (d) the issue's differencing attacker at that budget (success rate against 50 %, and the zCDP bound).

`BENCH_ONLY=release make bench`; BENCH_SCALE shrinks the consumer count.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from pyroaring import BitMap

from benchmarks import BenchContext, Row, percentile

NAME = "release"
FULL_CONSUMERS = 10_000_000
SIZES = (200, 1_000, 10_000, 100_000)
DRAWS = 2_000


def _estimate_sets(n: int) -> tuple[BitMap, BitMap, dict]:
    """The 5-term estimate's members and the consent bitmap, over the segments benchmark's synthetic tags."""
    from benchmarks.bench_segments import _bitmap, synthesise

    arrays = synthesise(n)
    bitmaps = {
        key: _bitmap(arrays[key])
        for key in (
            ("country", "SG"),
            ("interest", "sports"),
            ("interest", "outdoor"),
            ("discount_sensitivity", "high"),
            ("age_range", "25-34"),
        )
    }
    members = (
        bitmaps[("country", "SG")]
        & (bitmaps[("interest", "sports")] | bitmaps[("interest", "outdoor")])
        & bitmaps[("age_range", "25-34")]
    ) - bitmaps[("discount_sensitivity", "high")]
    rng = np.random.default_rng(11)
    consent = _bitmap(np.flatnonzero(rng.random(n) < 0.4).astype(np.uint32) + 1)
    definition = {
        "and": [
            {"tag": {"family": "country", "value": "SG"}},
            {
                "or": [
                    {"tag": {"family": "interest", "value": "sports"}},
                    {"tag": {"family": "interest", "value": "outdoor"}},
                ]
            },
            {"not": {"tag": {"family": "discount_sensitivity", "value": "high"}}},
            {"tag": {"family": "age_range", "value": "25-34"}},
        ]
    }
    return members, consent, definition


def _overhead_rows(ctx: BenchContext, n: int) -> list[Row]:
    from benchmarks.bench_segments import _setup_platform, scratch_database
    from privacy.release import STANDARD, canonical_subject, release_key
    from privacy.services import release_counts

    members, consent, definition = _estimate_sets(n)
    rows: list[Row] = []

    # The estimate counts both before any release (it always did); the release starts from the counts.
    counts = [len(members), members.intersection_cardinality(consent)]

    def compute():
        subject = canonical_subject(definition)
        for prefix, count in zip(("size", "reachable"), counts, strict=True):
            release_key(subject=f"{prefix}:{subject}", value=count, measure="count", precision=STANDARD)

    for _ in range(5):
        compute()
    samples = []
    for _ in range(200):
        start = time.perf_counter()
        compute()
        samples.append(time.perf_counter() - start)
    rows.append(
        Row(
            NAME,
            f"release keys: canonical subject and 2 keys ({n:,} consumers, {len(members):,} members)",
            statistics.median(samples) * 1000,
            "ms",
            note=f"p95 {percentile(samples, 95) * 1000:.3f} ms",
        )
    )

    with scratch_database():
        merchant, _ = _setup_platform()
        subject = canonical_subject(definition)
        reachable_before = members & consent

        def repeat():
            release_counts(
                merchant_id=merchant.pk,
                subjects=[f"size:{canonical_subject(definition)}", f"reachable:{canonical_subject(definition)}"],
                counts=counts,
                precision=STANDARD,
            )

        repeat()  # the first ask pays; what follows are repeats (free: a ledger read)
        samples = []
        for _ in range(200):
            start = time.perf_counter()
            repeat()
            samples.append(time.perf_counter() - start)
        p50 = statistics.median(samples) * 1000
        rows.append(
            Row(
                NAME,
                f"release overhead on the 5-term estimate, repeat ({n:,} consumers)",
                p50,
                "ms",
                target="≤ 0.5 ms",
                note=f"p95 {percentile(samples, 95) * 1000:.3f} ms; size {len(members):,}, "
                f"reachable {len(reachable_before):,}",
            )
        )
        samples = []
        for i in range(60):
            start = time.perf_counter()
            release_counts(
                merchant_id=merchant.pk,
                subjects=[f"size:{subject}#{i}", f"reachable:{subject}#{i}"],
                counts=counts,
                precision=STANDARD,
            )
            samples.append(time.perf_counter() - start)
        rows.append(
            Row(
                NAME,
                "release of a new estimate (2 draws, ledger insert, budget row locked and updated)",
                statistics.median(samples) * 1000,
                "ms",
                note=f"p95 {percentile(samples, 95) * 1000:.3f} ms; once per new question per period",
            )
        )
    return rows


def _accuracy_rows() -> list[Row]:
    from privacy.release import PRECISIONS, PREVIEW, STANDARD, count_from_noisy, keyed_noise

    rows = []
    for precision in (STANDARD, PREVIEW):
        sigma = PRECISIONS[precision].sigma
        for size in SIZES:
            errors, hidden = [], 0
            for i in range(DRAWS):
                count = count_from_noisy(
                    noisy=size + keyed_noise(key=f"{size:032x}{i:032x}", sigma=sigma), precision=precision
                )
                if count.suppressed:
                    hidden += 1
                    continue
                errors.append(abs(count.value - size) / size)
            target = {(STANDARD, 1_000): "p95 ≤ 5 %", (STANDARD, 100_000): "p95 ≤ 0.5 %"}.get((precision, size), "")
            if not errors:
                rows.append(
                    Row(
                        NAME,
                        f"relative error, {precision}, true size {size:,}",
                        None,
                        "%",
                        target,
                        "",
                        note=f"always suppressed ({hidden}/{DRAWS})",
                    )
                )
                continue
            rows.append(
                Row(
                    NAME,
                    f"relative error, {precision}, true size {size:,} (median; p95 in note)",
                    100 * statistics.median(errors),
                    "%",
                    target=target,
                    note=f"p95 {100 * percentile(errors, 95):.2f} %; suppressed {100 * hidden / DRAWS:.1f} %",
                )
            )
    return rows


def _budget_rows() -> list[Row]:
    from django.conf import settings

    from privacy.release import PRECISIONS, PREVIEW, STANDARD, attacker_success_bound, epsilon_for_rho

    allowance = float(settings.PRIVACY_BUDGET_DEFAULT_RHO)
    standard = 2 * PRECISIONS[STANDARD].rho
    preview = 2 * PRECISIONS[PREVIEW].rho
    mixed_saves = 50
    mixed_previews = int((allowance - mixed_saves * standard) / preview)
    return [
        Row(
            NAME,
            f"distinct standard estimates per period (allowance ρ {allowance})",
            allowance / standard,
            "",
            note=f"ρ {standard:g} each (size + reachable); ε {epsilon_for_rho(allowance):.2f} at δ 1e-9 per period",
        ),
        Row(
            NAME,
            "distinct preview estimates per period (typing)",
            allowance / preview,
            "",
            note=f"ρ {preview:g} each; repeats and equivalent reorderings free",
        ),
        Row(NAME, f"previews left beside {mixed_saves} standard estimates", mixed_previews, ""),
        Row(
            NAME,
            "attacker bound: one target, whole budget (best test, prior 50 %)",
            100 * attacker_success_bound(allowance),
            "%",
            note="Φ(√(2ρ)/2)",
        ),
        Row(
            NAME,
            "attacker bound: per target when 100 targets share the budget",
            100 * attacker_success_bound(allowance / 100),
            "%",
        ),
    ]


def _attack_rows() -> list[Row]:
    """The issue's attacker at the default budget, standard precision: a fresh pair per target until spent."""
    from django.conf import settings

    from privacy.release import PRECISIONS, STANDARD, count_from_noisy, keyed_noise, member_digest

    allowance = float(settings.PRIVACY_BUDGET_DEFAULT_RHO)
    pairs = int(allowance / (2 * PRECISIONS[STANDARD].rho) + 1e-9)
    rows = []
    for label, keyed_by_set in (("keyed by the question (platform)", False), ("keyed by the member set only", True)):
        right = total = 0
        for repetition in range(20):  # 20 attackers (merchants), each spending a whole budget on `pairs` targets
            rng = np.random.default_rng(1000 + repetition)
            for t in range(pairs):
                has_x = bool(rng.random() < 0.5)
                la = BitMap(rng.choice(2_000_000, size=1000, replace=False))
                second = la | BitMap([2_000_000 + t]) if has_x else BitMap(la)
                shown = []
                for j, members in enumerate((la, second)):
                    key = member_digest(members) if keyed_by_set else f"{repetition:016x}{t:016x}{j:032x}"
                    shown.append(
                        count_from_noisy(noisy=len(members) + keyed_noise(key=key, sigma=20), precision=STANDARD).value
                    )
                guess = shown[1] != shown[0] if keyed_by_set else shown[1] > shown[0]
                right += guess == has_x
                total += 1
        rows.append(
            Row(
                NAME,
                f"differencing attacker success, {label}",
                100 * right / total,
                "%",
                target="≈ 50 %" if not keyed_by_set else "",
                note=f"{total:,} targets, {pairs} per whole budget",
            )
        )
    return rows


def run(ctx: BenchContext) -> list[Row]:
    n = max(100_000, int(FULL_CONSUMERS * ctx.scale))
    rows = _overhead_rows(ctx, n)
    rows.extend(_accuracy_rows())
    rows.extend(_budget_rows())
    rows.extend(_attack_rows())
    return rows
