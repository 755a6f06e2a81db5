"""Predicted traits: validation quality against the recency/frequency baseline, and the cost of a full run.

1. The online-retail sample (../shared/data/online-retail, 13 days of one store; skipped when absent): purchase
   propensity with a temporal split inside the 13 days (train: features to day 5, labels days 6-9; validate:
   features to day 9, labels days 10-13), ROC-AUC / PR-AUC / Brier next to the baseline's in the same run.
2. The synthetic marketplace (consumers.seeding, BENCH_SCALE x 50,000 consumers, 20 events each): a full
   `predictions_compute` (every family trained, validated, scored, banded and written), with propensity's
   figures against the baseline, and the scoring time (features at as_of, prediction, bands, tag writes)
   the cost of that run per stage.
3. Full size (PostgreSQL only): BENCH_SCALE x 1,000,000 consumers / 20,000,000 events, written with binary COPY by
   the tagging benchmark's generator (`bench_tagging.generate_marketplace`) into a database of its own
   (`<database>_bench_predict`, kept between runs; BENCH_PREDICT_FRESH=1 regenerates it), and one timed
   `predictions_compute` of every family with its breakdown: inputs, features, training, scoring, tag writes,
   fairness. The issue's goal (scoring 1M consumers for every family in 120 s) is read against this row.

Parts 1 and 2 run in a throw-away test database (PostgreSQL when DATABASE_URL points there).
"""

from __future__ import annotations

import os
import sys
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
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    return rows + full_size_rows(ctx)


def _say(message: str) -> None:
    print(f"  [predict] {message}", file=sys.stderr, flush=True)


def _loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f}"


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


def factor_comparison_rows(plain: dict, with_factors: dict, *, factors: int) -> list[Row]:
    """Each family's validation figures without the recommender factors and with them, from one world and seed."""
    rows = []
    for family, card in with_factors.items():
        before = plain.get(family)
        if before is None:
            continue
        for metric in ("roc_auc", "pr_auc", "brier", "mae"):
            if metric in card.metrics and metric in before.metrics:
                rows.append(
                    Row(
                        NAME,
                        f"synthetic {family} {metric}: without / with {factors} factors",
                        card.metrics[metric],
                        "",
                        note=f"without {before.metrics[metric]:.4f}; baseline {card.baseline_metrics.get(metric)}; "
                        f"{'lower' if metric in ('brier', 'mae') else 'higher'} is better",
                    )
                )
    return rows


def synthetic_rows(ctx: BenchContext) -> list[Row]:
    from django.conf import settings
    from django.test.utils import override_settings
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
    # The run with the recommender factors (PREDICT_FACTORS, or BENCH_PREDICT_FACTORS of them when they are off,
    # default 16) and without them, on the same world and seed; the timed run is the configured one.
    factors = settings.PREDICT_FACTORS or int(os.environ.get("BENCH_PREDICT_FACTORS", "16"))
    factored_cards = {}
    if not settings.PREDICT_FACTORS:
        with override_settings(PREDICT_FACTORS=factors):
            factored = predictions_compute(actor="benchmark", as_of=now)
        factored_cards = {card.family: card for card in ModelCard.objects.filter(pk__in=factored.cards.values())}
    started = time.perf_counter()
    report = predictions_compute(actor="benchmark", as_of=now)
    total = time.perf_counter() - started
    cards = {card.family: card for card in ModelCard.objects.filter(pk__in=report.cards.values())}
    plain_cards = cards
    if settings.PREDICT_FACTORS:
        factored_cards = cards
        with override_settings(PREDICT_FACTORS=0):
            plain = predictions_compute(actor="benchmark", as_of=now)
        plain_cards = {card.family: card for card in ModelCard.objects.filter(pk__in=plain.cards.values())}
    rows = [Row(NAME, f"synthetic: seed {consumers:,} consumers", seeded, "s", note=f"{consumers * 20:,} events")]
    rows += factor_comparison_rows(plain_cards, factored_cards, factors=factors)
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


FULL_CONSUMERS = 1_000_000
FULL_EVENTS = 20_000_000
FULL_PRODUCTS = 50_000


def stage_seconds(seconds: dict[str, float]) -> dict[str, float]:
    """A run's per-step seconds (PredictionReport.seconds) summed into the stages the issue names."""
    return {
        "inputs": sum(v for k, v in seconds.items() if k.startswith("inputs:")) + seconds.get("history", 0.0),
        "features": seconds.get("features", 0.0),
        "training": sum(v for k, v in seconds.items() if k.endswith(":train")),
        "scoring": sum(v for k, v in seconds.items() if k.endswith(":score")),
        "writing": sum(v for k, v in seconds.items() if k.endswith(":write")),
        "fairness": seconds.get("fairness", 0.0),
    }


def full_size_rows(ctx: BenchContext) -> list[Row]:
    """Every family trained, scored and written over BENCH_SCALE x 1M consumers, in a database kept between runs."""
    consumers = max(10_000, int(FULL_CONSUMERS * ctx.scale))
    events = max(200_000, int(FULL_EVENTS * ctx.scale))
    products = max(1_000, int(FULL_PRODUCTS * min(1.0, ctx.scale * 4)))
    size = f"{consumers:,} consumers / {events:,} events"
    if not ctx.on_postgres:
        return [Row(NAME, f"full run, {size}", None, "s", target="<= 120 s", skipped="needs PostgreSQL")]
    from django.db import connection

    from benchmarks.bench_tagging import generate_marketplace

    settings_dict = connection.settings_dict
    settings_dict.setdefault("TEST", {})
    previous_test_name = settings_dict["TEST"].get("NAME")
    settings_dict["TEST"]["NAME"] = f"{settings_dict['NAME']}_bench_{NAME}"
    original_name = settings_dict["NAME"]
    fresh = os.environ.get("BENCH_PREDICT_FRESH") == "1"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=not fresh, serialize=False)
    rows: list[Row] = []
    try:
        from consumers.models import Consumer, Event

        if Consumer.objects.count() == consumers and Event.objects.count() == events:
            rows.append(Row(NAME, f"full size: generate {size}", None, "s", note="reused from an earlier run"))
        else:
            _say(f"full size: generating {size} ({_loadavg()})")
            started = time.perf_counter()
            generate_marketplace(consumers, events, products, say=_say)
            rows.append(
                Row(NAME, f"full size: generate {size}", time.perf_counter() - started, "s", note="binary COPY")
            )
        rows += _full_run(size)
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0, keepdb=True)
        settings_dict["TEST"]["NAME"] = previous_test_name
    return rows


def _families_empty() -> None:
    """Remove the predicted families' rows left by an earlier run, and vacuum, so the timed run writes every row as a
    first run does. A rerun over the same world would otherwise find every row unchanged and write almost nothing
    (tags.services.family_replace writes only what changed), flattering the figure."""
    from django.db import connection

    from predict.families import FAMILIES
    from tags.models import ConsumerTag, Tag

    table = ConsumerTag._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'DELETE FROM "{table}" WHERE tag_id IN (SELECT id FROM "{Tag._meta.db_table}" WHERE family = ANY(%s))',
            [list(FAMILIES)],
        )
        cursor.execute(f'VACUUM ANALYZE "{table}"')


def _full_run(size: str) -> list[Row]:
    from django.db.models import Max

    from consumers.models import Event
    from predict.models import ModelCard
    from predict.services import predictions_compute

    _approve_tagging()
    # The data's own end, not the clock: a world kept between runs does not age.
    last = Event.objects.aggregate(last=Max("occurred_at"))["last"]
    assert last is not None
    as_of = last + timedelta(minutes=1)
    _families_empty()
    load_before = _loadavg()
    _say(f"full size: predictions_compute over {size} ({load_before})")
    started = time.perf_counter()
    report = predictions_compute(actor="benchmark", as_of=as_of, progress=_say)
    total = time.perf_counter() - started
    load_after = _loadavg()
    stages = stage_seconds(report.seconds)
    published = [family for family, flag in report.published.items() if flag]
    cards = ModelCard.objects.filter(pk__in=report.cards.values())
    scored = sum(report.scored.values())
    rows = [
        Row(
            NAME,
            f"full size: every family trained, validated, scored, written ({size})",
            total,
            "s",
            target="<= 120 s",
            ratio="met" if total <= 120 else "not met",
            note=f"{len(published)}/{len(report.published)} published, {scored:,} units scored; "
            f"{load_before} before, {load_after} after",
        )
    ]
    for stage, seconds in stages.items():
        note = {
            "inputs": "events, purchases, products, profiles read into arrays",
            "features": "every cut-off, consumer and pair features, shared by the families",
            "training": "fits on the bounded sample, choice, importance, refit",
            "scoring": "prediction of every unit at as_of",
            "writing": "tag rows and bitmaps (a background writer, overlapping compute)",
            "fairness": "spread of every band",
        }[stage]
        rows.append(Row(NAME, f"  full size: {stage}", seconds, "s", note=note))
    for card in cards:
        figure = card.metrics.get("roc_auc", card.metrics.get("mae"))
        base = card.baseline_metrics.get("roc_auc", card.baseline_metrics.get("mae"))
        note = f"{'ROC-AUC' if 'roc_auc' in card.metrics else 'MAE'}; baseline {base}; " if base is not None else ""
        rows.append(
            Row(
                NAME,
                f"  full size {card.family}",
                figure,
                "",
                note=f"{note}{card.train_rows:,} train / {card.validation_rows:,} validation rows, "
                f"{card.scored:,} scored; {'published' if card.published else 'not published'}",
            )
        )
    return rows
