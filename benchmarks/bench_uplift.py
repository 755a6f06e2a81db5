"""Uplift: incremental conversions from targeting persuadables against targeting by propensity.

On a campaign with a planted heterogeneous effect (campaigns.uplift.planted_campaign: loyal buyers who buy
anyway, persuadables, lost causes and sleeping dogs; 80 % treatment, 20 % control), a meta-learner is fitted on
70 % of the rows and evaluated on the held-out 30 % (treatment and control): the incremental conversions of the
top 20 % by predicted uplift against the top 20 % by predicted propensity (the conversion probability when
messaged), with the Qini coefficient and uplift@20 %. The planted truth (ranking by the true effect) is printed
beside them as the ceiling. Goal: uplift / propensity >= 1.5x. BENCH_SCALE shrinks the campaign.
"""

from __future__ import annotations

import time

from benchmarks import BenchContext, Row

NAME = "uplift"


def run(ctx: BenchContext) -> list[Row]:
    from campaigns.uplift import UpliftModel, incremental_at, planted_campaign, split_holdout, uplift_evaluate

    n = max(5_000, int(60_000 * ctx.scale))
    data = planted_campaign(n=n, seed=7)
    held = split_holdout(n, fraction=0.3, seed=0)
    rows: list[Row] = []
    truth = incremental_at(data.true_uplift[held], data.treatment[held], data.converted[held], 0.2)
    for learner in ("t", "x"):
        started = time.perf_counter()
        model = UpliftModel(learner=learner).fit(data.features[~held], data.treatment[~held], data.converted[~held])
        result = uplift_evaluate(model, data.features[held], data.treatment[held], data.converted[held])
        seconds = time.perf_counter() - started
        by_propensity = result.incremental_top_20_by_propensity
        rows += [
            Row(
                NAME,
                f"{learner}-learner: incremental conversions, top 20 % by uplift",
                result.incremental_top_20,
                "conversions",
                target=">= 1.5x propensity",
                ratio=f"{result.incremental_top_20 / by_propensity:.2f}x propensity"
                if by_propensity > 0
                else "propensity earns <= 0",
                note=f"{int(held.sum()):,} held-out rows; planted truth {truth:.0f}; fit+score {seconds:.1f} s",
            ),
            Row(NAME, f"{learner}-learner: incremental, top 20 % by propensity", by_propensity, "conversions"),
            Row(NAME, f"{learner}-learner: Qini coefficient", result.qini, ""),
            Row(NAME, f"{learner}-learner: uplift@20 %", result.uplift_at_20, ""),
        ]
    return rows
