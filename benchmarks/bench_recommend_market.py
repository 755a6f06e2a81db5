"""Recommendations on marketplace data: every algorithm next to global popularity and category popularity.

Category popularity ("popular in the consumer's own categories") is the baseline a model must beat to serve
(docs/recommendations.md). Both protocols: per-consumer hold-out (the latest 20 % of each consumer's events)
and temporal (one cut in time, the latest 20 % of all events); nDCG@10 and P@10, each model's tied picks filled
from category popularity as serving fills them ("filled" is the share of lists that needed it).

- ../shared/data/online-retail (skipped where absent). It has no category, so a product's category is the last
  word of its description (HOLDER, LANTERN, BAG...); all rows are purchases.
- the synthetic marketplace (`seed_marketplace`, seed 3, in a throwaway database; categories are the top level
  of the category path), read back through the recommender's own loaders;
- a Taobao slice when ../shared/data/taobao/UserBehavior.csv exists (category ids as given).

Every algorithm runs with its defaults. BENCH_SCALE shrinks the synthetic marketplace and the Taobao slice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import BenchContext, Row

NAME = "recommend_market"


def run(ctx: BenchContext) -> list[Row]:
    return marketplace_rows(ctx)


# --- 5. marketplace data: every algorithm against global and category popularity, both protocols ------------

MARKET_ALGORITHMS = ("popular", "category_popular", "item_knn", "bpr", "als", "ials", "ease")


@dataclass
class MarketData:
    """Event-level arrays already mapped to matrix rows and columns, with a category code per column."""

    label: str
    rows: np.ndarray
    cols: np.ndarray
    weights: np.ndarray
    times: np.ndarray
    shape: tuple[int, int]
    codes: np.ndarray


def market_data(label, consumers, products, weights, times, categories) -> MarketData:
    """Arrays of raw ids (any hashable) and a product -> category mapping into a MarketData."""
    consumer_keys, rows = np.unique(np.asarray(consumers), return_inverse=True)
    product_keys, cols = np.unique(np.asarray(products), return_inverse=True)
    labels = sorted({categories.get(p, "") for p in product_keys.tolist()} - {""})
    code_of = {c: i for i, c in enumerate(labels)}
    codes = np.array([code_of.get(categories.get(p, ""), -1) for p in product_keys.tolist()], dtype=np.int64)
    return MarketData(
        label,
        rows.astype(np.int64),
        cols.astype(np.int64),
        np.asarray(weights, np.float32),
        np.asarray(times, np.float64),
        (consumer_keys.size, product_keys.size),
        codes,
    )


def market_compare(data: MarketData, *, algorithms=MARKET_ALGORITHMS, params=None, k: int = 10) -> dict:
    """{protocol: {algorithm: (RankingMetrics, seconds)}} for the per-consumer and the temporal protocol."""
    from recommend.algorithms import algorithm_create
    from recommend.evaluation import evaluate, temporal_holdout, time_split_holdout

    params = params or {}
    out: dict[str, dict] = {}
    for protocol, split in (("per-consumer", temporal_holdout), ("temporal", time_split_holdout)):
        holdout = split(data.rows, data.cols, data.weights, data.times, shape=data.shape, test_fraction=0.2)
        baseline = algorithm_create("category_popular", threads=2).with_categories(data.codes).fit(holdout.train)
        results = {}
        for name in algorithms:
            started = time.perf_counter()
            model = algorithm_create(name, threads=2, **params.get(name, {}))
            if name == "category_popular":
                model.with_categories(data.codes)
            model.fit(holdout.train)
            fill = None if name in ("popular", "category_popular") else baseline
            results[name] = (evaluate(model, holdout, k=k, baseline=fill), time.perf_counter() - started)
        out[protocol] = results
    return out


def online_retail_data(path: Path) -> MarketData:
    import csv
    from datetime import datetime

    consumers, products, times, categories = [], [], [], {}
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        for row in csv.DictReader(handle):
            customer, code = (row.get("CustomerID") or "").strip(), (row.get("StockCode") or "").strip()
            if not customer or not code or row["InvoiceNo"].startswith("C"):
                continue
            try:
                if float(row["Quantity"]) <= 0:
                    continue
                moment = datetime.strptime(row["InvoiceDate"].strip(), "%m/%d/%y %H:%M")
            except ValueError:
                continue
            words = (row.get("Description") or "").split()
            if words:
                categories.setdefault(code, words[-1].upper())
            consumers.append(customer)
            products.append(code)
            times.append(moment.timestamp())
    return market_data("online retail", consumers, products, np.full(len(consumers), 5.0), times, categories)


def taobao_data(path: Path, limit: int) -> MarketData:
    """The first `limit` rows of Taobao's UserBehavior.csv (user, item, category, behaviour, unix time)."""
    weights = {"pv": 1.0, "fav": 2.0, "cart": 3.0, "buy": 5.0}
    consumers, products, values, times, categories = [], [], [], [], {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            fields = line.strip().split(",")
            if len(fields) != 5 or fields[3] not in weights:
                continue
            consumers.append(fields[0])
            products.append(fields[1])
            categories.setdefault(fields[1], fields[2])
            values.append(weights[fields[3]])
            times.append(float(fields[4]))
            if len(consumers) >= limit:
                break
    return market_data("taobao", consumers, products, values, times, categories)


def synthetic_market_data(ctx: BenchContext) -> MarketData:
    """seed_marketplace into a throwaway database, read back through the recommender's own loaders."""
    from django.db import connection

    from consumers.seeding import seed_marketplace
    from recommend.interactions import interaction_events_load, interactions_from_events, product_category_codes

    consumers = max(1_000, int(6_000 * ctx.scale))
    products = max(1_000, int(8_000 * ctx.scale))
    events = max(20_000, int(120_000 * ctx.scale))
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        seed_marketplace(consumers=consumers, products=products, events=events, seed=3)
        loaded = interaction_events_load()
        matrix = interactions_from_events(loaded)
        codes, _ = product_category_codes(matrix.product_ids, depth=1)
        return MarketData(
            f"synthetic marketplace ({consumers:,} consumers, {products:,} products, {events:,} events)",
            matrix.rows_for(loaded.consumer_ids),
            matrix.columns_for(loaded.product_ids),
            loaded.weights,
            loaded.timestamps,
            matrix.shape,
            codes,
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def marketplace_rows(ctx: BenchContext) -> list[Row]:
    from django.conf import settings

    shared = Path(settings.SHARED_DATA_DIR)
    sets: list[tuple[str, object]] = []
    retail = shared / "online-retail" / "online_retail_sample_2010-12-01_to_2010-12-13.csv"
    sets.append(("online retail", (lambda: online_retail_data(retail)) if retail.is_file() else None))
    sets.append(("synthetic", lambda: synthetic_market_data(ctx)))
    taobao = shared / "taobao" / "UserBehavior.csv"
    sets.append(
        (
            "taobao",
            (lambda: taobao_data(taobao, max(100_000, int(1_000_000 * ctx.scale)))) if taobao.is_file() else None,
        )
    )
    rows: list[Row] = []
    for key, load in sets:
        if load is None:
            rows.append(Row(NAME, f"market {key}", None, "", skipped=f"../shared/data/{key} not present"))
            continue
        data = load()
        compared = market_compare(data)
        interactions = len(np.unique(data.rows * data.shape[1] + data.cols))
        rows.append(
            Row(
                NAME,
                f"market {key}: data",
                float(interactions),
                "interactions",
                note=f"{data.label}: {data.shape[0]:,} consumers x {data.shape[1]:,} products, "
                f"{int(data.codes.max()) + 1:,} categories, {data.rows.size:,} events",
            )
        )
        for protocol, results in compared.items():
            category = results["category_popular"][0]
            popular = results["popular"][0]
            for name, (metrics, seconds) in results.items():
                rows.append(
                    Row(
                        NAME,
                        f"market {key} {protocol} {name} nDCG@10",
                        metrics.ndcg,
                        "",
                        ratio=f"{metrics.ndcg / category.ndcg:.2f}x category, {metrics.ndcg / popular.ndcg:.2f}x global"
                        if category.ndcg and popular.ndcg
                        else "",
                        note=f"P@10 {metrics.precision:.4f}; {metrics.users:,} consumers; "
                        f"filled {metrics.filled:.0%} (empty {metrics.empty:.0%}); {seconds:.1f} s",
                    )
                )
            best = max(
                (n for n in results if n not in ("popular", "category_popular")), key=lambda n: results[n][0].ndcg
            )
            rows.append(
                Row(
                    NAME,
                    f"market {key} {protocol} best model / category popularity",
                    results[best][0].ndcg / category.ndcg if category.ndcg else None,
                    "x",
                    target="> 1 to serve",
                    note=best,
                )
            )
    return rows
