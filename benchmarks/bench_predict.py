"""Predicted traits: validation quality against the recency/frequency baseline, and the cost of a full run.

1. The online-retail sample (../shared/data/online-retail, 13 days of one store; skipped when absent): purchase
   propensity with a temporal split inside the 13 days (train: features to day 5, labels days 6-9; validate:
   features to day 9, labels days 10-13), ROC-AUC / PR-AUC / Brier next to the baseline's in the same run.
2. The synthetic marketplace (consumers.seeding, BENCH_SCALE x 50,000 consumers, 20 events each): a full
   `predictions_compute` (every family trained, validated, scored, banded and written), with propensity's
   figures against the baseline, and the scoring time (features at as_of, prediction, bands, tag writes)
   extrapolated linearly to 1M consumers. Training is bounded (at most 200,000 rows a fit) and not extrapolated.

Runs in a throw-away test database (PostgreSQL when DATABASE_URL points there).
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from io import StringIO
from pathlib import Path

from benchmarks import BenchContext, Row

NAME = "predict"
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "online-retail"
SAMPLE = "online_retail_sample_2010-12-01_to_2010-12-13.csv"


def run(ctx: BenchContext) -> list[Row]:
    from django.db import connection
    from django.test.utils import override_settings

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        with override_settings(ALLOWED_HOSTS=["testserver"], DEBUG=False):
            rows = online_retail_rows(ctx)
            rows += synthetic_rows(ctx)
            return rows
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def _approve_tagging() -> None:
    from django.contrib.auth import get_user_model

    from privacy.models import LegalBasis, ProcessingActivity, Purpose
    from privacy.services import activity_approve

    officer, _ = get_user_model().objects.get_or_create(username="bench-officer", defaults={"is_staff": True})
    if ProcessingActivity.objects.filter(purpose=Purpose.TAGGING, status="approved").exists():
        return
    activity_approve(
        activity=ProcessingActivity.objects.create(
            name="bench tagging",
            purpose=Purpose.TAGGING,
            legal_basis=LegalBasis.BUSINESS_IMPROVEMENT,
            description="Benchmark.",
            assessment="Benchmark data only: tagging cannot reasonably be done without it.",
        ),
        officer=officer,
    )


def _classification_rows(label: str, evaluation, note: str = "") -> list[Row]:
    m, b = evaluation.metrics, evaluation.baseline
    if "roc_auc" not in m:
        return [Row(NAME, f"{label} propensity", None, "", note=evaluation.reason[:120])]
    gain = m["roc_auc"] - b["roc_auc"]
    return [
        Row(NAME, f"{label} propensity ROC-AUC", m["roc_auc"], "", note=f"{evaluation.algorithm}; {note}".strip("; ")),
        Row(NAME, f"{label} baseline ROC-AUC", b["roc_auc"], "", note="recency/frequency, same rows"),
        Row(
            NAME,
            f"{label} AUC gain over baseline",
            gain,
            "",
            target=">= 0.05",
            ratio="met" if gain >= 0.05 else "not met",
        ),
        Row(NAME, f"{label} propensity PR-AUC", m["pr_auc"], "", note=f"baseline {b['pr_auc']:.4f}"),
        Row(NAME, f"{label} propensity Brier", m["brier"], "", note=f"baseline {b['brier']:.4f}; lower is better"),
    ]


def online_retail_rows(ctx: BenchContext) -> list[Row]:
    path = DATA / SAMPLE
    if not path.is_file():
        return [Row(NAME, "online-retail propensity", None, "", skipped="../shared/data/online-retail not present")]
    from django.core.management import call_command
    from threadpoolctl import threadpool_limits

    from consumers.models import Event
    from predict.families import PREDICTIONS
    from predict.features import History
    from predict.services import evaluate
    from tags.inputs import TaggingInput

    call_command("import_events", "--format", "online_retail", str(path), "--no-progress", stdout=StringIO())
    last = Event.objects.order_by("-occurred_at").values_list("occurred_at", flat=True).first()
    assert last is not None
    as_of = last + timedelta(minutes=1)
    prediction = replace(PREDICTIONS["purchase_propensity"], horizon_days=4)
    history = History.from_input(TaggingInput(as_of=as_of))
    with threadpool_limits(limits=1):
        evaluation, _ = evaluate(prediction, history, [], -8.0, -4.0, 0)
    note = f"{evaluation.train_rows} train / {evaluation.validation_rows} validation customers"
    return _classification_rows("online-retail", evaluation, note)


def synthetic_rows(ctx: BenchContext) -> list[Row]:
    from django.utils import timezone

    from consumers.seeding import seed_marketplace
    from predict.models import ModelCard
    from predict.services import predictions_compute

    consumers = max(2_000, int(50_000 * ctx.scale))
    started = time.perf_counter()
    now = timezone.now()
    seed_marketplace(consumers=consumers, products=max(500, consumers // 20), events=consumers * 20, seed=11, now=now)
    seeded = time.perf_counter() - started
    _approve_tagging()
    started = time.perf_counter()
    report = predictions_compute(actor="benchmark", as_of=now)
    total = time.perf_counter() - started
    cards = {card.family: card for card in ModelCard.objects.all()}
    rows = [Row(NAME, f"synthetic: seed {consumers:,} consumers", seeded, "s", note=f"{consumers * 20:,} events")]
    card = cards["purchase_propensity"]

    class _Evaluation:  # the card's figures in the shape _classification_rows reads
        metrics, baseline, algorithm, reason = card.metrics, card.baseline_metrics, card.algorithm, card.reason

    rows += _classification_rows("synthetic", _Evaluation, f"{card.validation_rows:,} validation consumers")
    for family, c in cards.items():
        if family == "purchase_propensity":
            continue
        state = "published" if c.published else "not published"
        if c.kind == "classification" and "roc_auc" in c.metrics:
            rows.append(
                Row(
                    NAME,
                    f"synthetic {family} ROC-AUC",
                    c.metrics["roc_auc"],
                    "",
                    note=f"baseline {c.baseline_metrics['roc_auc']:.4f}; {state}",
                )
            )
        elif "mae" in c.metrics:
            rows.append(
                Row(
                    NAME,
                    f"synthetic {family} MAE",
                    c.metrics["mae"],
                    "",
                    note=f"baseline {c.baseline_metrics['mae']:.4f}; {state}",
                )
            )
        else:
            rows.append(Row(NAME, f"synthetic {family}", None, "", note=c.reason[:120]))
    seconds = report.seconds
    training = sum(v for k, v in seconds.items() if k.endswith(":train"))
    # Everything but training: loading the inputs, features at as_of, prediction, bands, tag and bitmap writes,
    # fairness spreads and the audit entry.
    scoring = total - training
    breakdown = ", ".join(f"{k} {v:.1f}" for k, v in seconds.items() if not k.endswith(":train"))
    rows.append(Row(NAME, "synthetic: seconds outside training", None, "", note=breakdown[:400]))
    rows += [
        Row(
            NAME,
            "synthetic: full run (train + score + write)",
            total,
            "s",
            note=f"{consumers:,} consumers, all families",
        ),
        Row(NAME, "synthetic: training, all families", training, "s", note="bounded by 200,000 rows a fit"),
        Row(NAME, "synthetic: everything but training", scoring, "s", note=f"{consumers:,} consumers"),
        Row(
            NAME,
            "scoring 1M consumers (extrapolated)",
            scoring * 1_000_000 / consumers,
            "s",
            target="<= 120 s",
            note="linear extrapolation from the row above" + ("" if ctx.on_postgres else "; SQLite, not PostgreSQL"),
        ),
    ]
    return rows
