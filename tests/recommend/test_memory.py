"""The memory budget of training (recommend/memory.py): honest estimates, EASE's item cap chosen from the budget,
and a clear refusal when even the smallest model does not fit, from the algorithms up to the command line and
the scheduled task."""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from io import StringIO

import numpy as np
import pytest
import scipy.sparse as sp
from django.core.management import CommandError, call_command

from consumers.models import Consumer, Event, EventType, Product
from privacy.models import Purpose
from recommend import memory
from recommend.algorithms import ALGORITHMS, algorithm_create
from recommend.memory import MIB, MemoryBudgetExceeded, machine_memory_bytes, memory_budget_bytes
from recommend.models import RunStatus, TrainingRun
from recommend.tasks import recommender_train_task

SMALL_PARAMS = {"bpr": {"iterations": 3}, "ials": {"iterations": 2}, "als": {"iterations": 3}}


def catalogue_matrix(*, users: int, items: int, per_user: int, seed: int = 5) -> sp.csr_matrix:
    """Consumers with skewed (Zipf-like) item popularity: the long tail is what an item cap leaves out."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.7
    popularity /= popularity.sum()
    rows = np.repeat(np.arange(users), per_user)
    cols = rng.choice(items, size=rows.size, p=popularity)
    matrix = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(users, items))
    matrix.sum_duplicates()
    return matrix


def fit_peak(model, matrix) -> int:
    """Bytes allocated at the peak of a fit, as tracemalloc sees them (numpy reports its buffers to it)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        model.fit(matrix)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_estimate_covers_what_the_fit_allocates(name):
    matrix = catalogue_matrix(users=1500, items=900, per_user=25)
    model = algorithm_create(name, threads=1, memory_budget=1 << 40, **SMALL_PARAMS.get(name, {}))
    users, items = matrix.shape
    estimate = model.memory_estimate(users=users, items=items, nnz=matrix.nnz)
    peak = fit_peak(model, matrix)
    assert peak <= estimate
    # and not so far above it that the budget would refuse models that fit (iALS's batch buffers are fixed)
    assert estimate <= 4 * peak + 120 * MIB


def test_ease_keeps_the_most_popular_items_the_budget_allows():
    # A catalogue larger than what a 24 MB budget fits: before the budget, EASE took every item (up to 50,000)
    # whatever the machine had, and a real catalogue got the worker killed.
    matrix = catalogue_matrix(users=1200, items=2400, per_user=30)
    budget = 24 * MIB
    model = algorithm_create("ease", threads=1, memory_budget=budget, min_items=200)
    peak = fit_peak(model, matrix)

    kept = model.fit_info["items_kept"]
    assert 200 <= kept < 2400
    assert model.kept.size == kept
    assert model.fit_info["items_limited_by"] == "memory"
    assert model.fit_info["memory_estimate_bytes"] <= budget
    assert peak <= budget
    # the kept items are the most popular ones
    popularity = np.asarray((matrix > 0).sum(axis=0)).ravel()
    assert popularity[model.kept].min() >= np.sort(popularity)[::-1][kept - 1]
    # one more item would not have fitted
    users, items = matrix.shape
    assert model._ease_total(users, items, matrix.nnz, kept + 1) > budget
    # and it still ranks
    ids, _ = model.recommend(matrix[:5], n=10, user_rows=np.arange(5), exclude=matrix[:5])
    assert (ids >= 0).all() and np.isin(ids, model.kept).all()


def test_ease_refuses_when_its_minimum_does_not_fit():
    matrix = catalogue_matrix(users=300, items=1500, per_user=20)
    model = algorithm_create("ease", threads=1, memory_budget=4 * MIB)
    with pytest.raises(MemoryBudgetExceeded) as caught:
        model.fit(matrix)
    message = str(caught.value)
    assert message.startswith("ease needs about ")
    assert "300 consumers x 1,500 products" in message
    assert "minimum of 1,000 products (min_items)" in message
    assert "more than the memory budget of 4 MB (RECOMMEND_MEMORY_BUDGET_MB)" in message
    assert caught.value.needed_bytes > caught.value.budget_bytes == 4 * MIB


@pytest.mark.parametrize("name", ["als", "ials", "bpr", "item_knn", "popular"])
def test_models_that_cannot_shrink_are_refused_over_budget(name):
    matrix = catalogue_matrix(users=400, items=300, per_user=10)
    model = algorithm_create(name, threads=1, memory_budget=1024)
    with pytest.raises(MemoryBudgetExceeded, match=rf"^{name} needs about .* more than the memory budget"):
        model.fit(matrix)


def test_the_budget_comes_from_the_setting_or_half_the_machine(settings, monkeypatch):
    settings.RECOMMEND_MEMORY_BUDGET_MB = 300
    assert memory_budget_bytes() == 300 * MIB
    settings.RECOMMEND_MEMORY_BUDGET_MB = 0
    monkeypatch.setattr(memory, "machine_memory_bytes", lambda: 8192 * MIB)
    assert memory_budget_bytes() == 4096 * MIB
    monkeypatch.setattr(memory, "machine_memory_bytes", lambda: None)
    assert memory_budget_bytes() == memory.FALLBACK_BUDGET_MB * MIB


def test_a_container_limit_below_the_physical_memory_wins(tmp_path, monkeypatch):
    limit = tmp_path / "memory.max"
    limit.write_text("1073741824\n")
    unlimited = tmp_path / "other"
    unlimited.write_text("max\n")
    monkeypatch.setattr(memory, "_CGROUP_LIMIT_FILES", (unlimited, limit))
    machine_memory_bytes.cache_clear()
    try:
        assert machine_memory_bytes() == 1024 * MIB
    finally:
        machine_memory_bytes.cache_clear()


def test_scoring_chunks_stay_within_the_budget():
    matrix = catalogue_matrix(users=3000, items=600, per_user=10)
    model = algorithm_create("popular", threads=1, memory_budget=1 * MIB).fit(sp.csr_matrix(matrix[:50]))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        model.recommend(matrix, n=10)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    # the results themselves (3,000 x 10 ids and scores) plus chunks of a quarter of the budget, not one
    # 3,000 x 600 block
    assert peak <= 3000 * 10 * 12 + 2 * MIB


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture
def big_catalogue(merchant):
    """One merchant with 1,500 products and 400 consumers with skewed tastes: more products than a small
    budget lets EASE keep."""
    rng = np.random.default_rng(7)
    Product.objects.bulk_create(
        [Product(merchant=merchant, sku=f"sku-{i}", category="c", brand="b") for i in range(1500)], batch_size=2000
    )
    products = list(Product.objects.filter(merchant=merchant).order_by("id").values_list("id", flat=True))
    people = Consumer.objects.bulk_create([Consumer(pseudonym=f"{i:064x}") for i in range(400)])
    people = list(Consumer.objects.order_by("id").values_list("id", flat=True))
    popularity = 1.0 / np.arange(1, len(products) + 1) ** 0.7
    popularity /= popularity.sum()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    events, serial = [], 0
    for person in people:
        for product in rng.choice(len(products), size=25, p=popularity):
            serial += 1
            events.append(
                Event(
                    source_key=f"big-{serial}",
                    consumer_id=person,
                    merchant=merchant,
                    product_id=products[int(product)],
                    event_type=int(EventType.VIEW),
                    occurred_at=start + timedelta(minutes=serial),
                )
            )
    Event.objects.bulk_create(events, batch_size=5000)
    return len(products)


def run_command(*args) -> str:
    out = StringIO()
    call_command("train_recommender", *args, stdout=out)
    return out.getvalue()


def test_command_trains_ease_with_the_cap_the_budget_allows(big_catalogue, approve_activity, settings):
    approve_activity(Purpose.RECOMMENDATION)
    settings.RECOMMEND_MEMORY_BUDGET_MB = 12
    report = json.loads(run_command("--algorithm", "ease", "--params", '{"min_items": 200}', "--json"))
    assert report["status"] == "succeeded"
    plan = report["memory"]
    seen = report["data_snapshot"]["products"]  # the products anyone interacted with
    assert plan["items"] == seen > 1000
    assert 200 <= plan["items_kept"] < seen
    assert plan["items_limited_by"] == "memory"
    assert plan["memory_estimate_bytes"] <= 12 * MIB == plan["memory_budget_bytes"]
    run = TrainingRun.objects.get(pk=report["run"])
    assert run.metrics["memory"]["items_kept"] == plan["items_kept"]

    table = run_command("--algorithm", "ease", "--params", '{"min_items": 200}', "--force")
    assert f"of {seen:,} products kept (limited by memory)" in table

    # Same data, same budget: skipped. A larger budget keeps more products, so it trains again.
    again = json.loads(run_command("--algorithm", "ease", "--params", '{"min_items": 200}', "--json"))
    assert again["status"] == "skipped"
    settings.RECOMMEND_MEMORY_BUDGET_MB = 24
    larger = json.loads(run_command("--algorithm", "ease", "--params", '{"min_items": 200}', "--json"))
    assert larger["status"] == "succeeded"
    assert larger["memory"]["items_kept"] > plan["items_kept"]


def test_command_refuses_cleanly_when_the_budget_is_too_small(big_catalogue, approve_activity, settings):
    approve_activity(Purpose.RECOMMENDATION)
    settings.RECOMMEND_MEMORY_BUDGET_MB = 3
    with pytest.raises(CommandError) as caught:
        run_command("--algorithm", "ease")
    message = str(caught.value)
    assert "ease needs about" in message
    assert "more than the memory budget of 3 MB (RECOMMEND_MEMORY_BUDGET_MB)" in message
    assert "recorded as failed" in message
    run = TrainingRun.objects.get()
    assert run.status == RunStatus.FAILED
    assert "MemoryBudgetExceeded: ease needs about" in run.error
    # --evaluate refuses the same way, and stores nothing
    with pytest.raises(CommandError, match="more than the memory budget of 3 MB"):
        run_command("--algorithm", "als", "--evaluate", "--params", '{"factors": 4096}')
    assert TrainingRun.objects.count() == 1


def test_scheduled_training_records_the_refusal_and_does_not_retry(big_catalogue, approve_activity, settings):
    approve_activity(Purpose.RECOMMENDATION)
    settings.RECOMMEND_MEMORY_BUDGET_MB = 3
    run_id = recommender_train_task.apply(args=("ease",)).get()
    run = TrainingRun.objects.get(pk=run_id)
    assert run.status == RunStatus.FAILED
    assert "more than the memory budget of 3 MB" in run.error
    assert TrainingRun.objects.count() == 1
