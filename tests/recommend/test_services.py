import numpy as np
import pytest
from django.core.files.storage import default_storage

from consumers.models import Consumer, Event, EventType, Product
from privacy.models import AuditEntry, Purpose
from privacy.services import ProcessingNotPermitted
from recommend.artefacts import artefact_read
from recommend.models import RecommenderModel, RunStatus, TrainingRun
from recommend.selectors import consumer_factors, serving_model
from recommend.services import (
    model_forget_consumer,
    recommend_for_consumers,
    recommender_train,
    training_config,
)

from .conftest import build_marketplace

ALS_FAST = dict(factors=16, iterations=10)
EASE_FAST = dict(l2=20.0)


@pytest.fixture
def basis(approve_activity):
    return approve_activity(Purpose.RECOMMENDATION)


def train(algorithm, params=None, **kwargs):
    return recommender_train(config=training_config(algorithm=algorithm, params=params or {}), actor="test", **kwargs)


def test_training_refuses_without_a_recommendation_basis_and_writes_nothing(marketplace, approve_activity):
    approve_activity(Purpose.TAGGING)  # a basis for another purpose does not count
    audit_before = AuditEntry.objects.count()
    with pytest.raises(ProcessingNotPermitted):
        train("ease", EASE_FAST)
    assert not TrainingRun.objects.exists()
    assert not RecommenderModel.objects.exists()
    assert AuditEntry.objects.count() == audit_before
    assert not default_storage.exists("recommend/models") or not default_storage.listdir("recommend/models")[1]


def test_a_model_that_beats_popularity_becomes_active_with_both_figures_recorded(marketplace, basis):
    run = train("ease", EASE_FAST)
    assert run.status == RunStatus.SUCCEEDED
    metrics = run.metrics
    assert metrics["model"]["ndcg_at_k"] > metrics["baseline"]["ndcg_at_k"]
    assert run.beats_baseline is True
    model = run.model
    assert model.is_active and model.activated_at is not None
    assert serving_model() == model
    assert run.data_snapshot["consumers"] == len(marketplace.consumers)
    assert run.data_snapshot["events_high_water_mark"] == Event.objects.latest("id").pk
    arrays = artefact_read(model.artefact.name)
    assert arrays["consumer_ids"].size == len(marketplace.consumers)
    entry = AuditEntry.objects.filter(action="recommender.trained").latest("id")
    assert entry.purpose == "recommendation" and entry.activity_id == basis.pk
    assert entry.counts["consumers"] == len(marketplace.consumers)
    assert entry.details["activated"] is True
    assert entry.details["baseline_ndcg"] == pytest.approx(metrics["baseline"]["ndcg_at_k"], abs=1e-6)


def test_the_popularity_baseline_itself_never_becomes_active(marketplace, basis):
    run = train("popular")
    assert run.status == RunStatus.SUCCEEDED
    assert run.beats_baseline is False
    assert not run.model.is_active
    assert serving_model() is None


def test_category_popularity_is_the_bar_and_serves_when_it_beats_global_popularity(marketplace, basis):
    run = train("category_popular")
    metrics = run.metrics
    assert metrics["baseline_algorithm"] == "category_popular"
    assert metrics["model"]["ndcg_at_k"] == pytest.approx(metrics["baseline"]["ndcg_at_k"])
    assert metrics["model"]["ndcg_at_k"] > metrics["popular"]["ndcg_at_k"]
    assert "temporal" in metrics
    assert run.beats_baseline is True and run.model.is_active
    assert serving_model() == run.model
    lists = recommend_for_consumers(
        merchant_id=marketplace.merchant.pk, consumer_ids=[c.pk for c in marketplace.consumers[:20]], n=5
    )
    category = dict(Product.objects.values_list("id", "category"))
    in_taste = [category[p] == marketplace.categories[marketplace.group_of[c]] for c, ps in lists.items() for p in ps]
    assert np.mean(in_taste) > 0.8


def test_a_model_beating_global_but_not_category_popularity_is_refused(db, basis, merchant, other_merchant):
    # Without slices inside a category, "popular in the consumer's category" is all there is to learn: item-kNN
    # with one neighbour beats global popularity there but not category popularity, so it must not serve.
    build_marketplace(merchant, other_merchant, consumers=200, sub_tastes=1)
    run = train("item_knn", dict(neighbours=1, similarity="cosine"))
    metrics = run.metrics
    assert metrics["model"]["ndcg_at_k"] > metrics["popular"]["ndcg_at_k"]
    assert metrics["model"]["ndcg_at_k"] <= metrics["baseline"]["ndcg_at_k"]
    assert run.beats_baseline is False and not run.model.is_active
    assert serving_model() is None
    entry = AuditEntry.objects.filter(action="recommender.trained").latest("id")
    assert entry.details["activated"] is False and entry.details["baseline_algorithm"] == "category_popular"


def test_a_model_that_does_not_beat_the_baseline_leaves_the_active_one_in_place(marketplace, basis):
    good = train("ease", EASE_FAST).model
    assert good.is_active
    # Many newcomers who all like the same few products make popularity hard to beat; an untrained BPR
    # (random factors) ranks worse than it.
    build_marketplace(marketplace.merchant, marketplace.other_merchant, consumers=600, seed=12, taste_groups=1)
    bad_run = train("bpr", dict(iterations=1, learning_rate=1e-9))
    assert bad_run.beats_baseline is False
    assert not bad_run.model.is_active
    good.refresh_from_db()
    assert good.is_active and serving_model() == good


def test_retraining_one_algorithm_replaces_its_active_model(marketplace, basis):
    first = train("ease", EASE_FAST).model
    second = train("ease", EASE_FAST, force=True).model
    first.refresh_from_db()
    assert second.is_active and not first.is_active
    assert RecommenderModel.objects.filter(is_active=True, algorithm="ease").count() == 1


def test_unchanged_data_skips_training(marketplace, basis):
    first = train("ease", EASE_FAST)
    again = train("ease", EASE_FAST)
    assert again.status == RunStatus.SKIPPED
    assert RecommenderModel.objects.count() == 1
    assert again.metrics == first.metrics
    assert AuditEntry.objects.filter(action="recommender.training_skipped").count() == 1


def test_bad_parameters_fail_before_anything_is_read(db):
    with pytest.raises(ValueError, match="unknown parameter"):
        training_config(algorithm="als", params={"factor": 3})
    with pytest.raises(ValueError, match="unknown algorithm"):
        training_config(algorithm="svd")


def test_consumer_factors_come_from_the_active_factor_model(marketplace, basis):
    assert consumer_factors() is None
    train("ease", EASE_FAST)
    assert consumer_factors() is None  # EASE has no consumer vectors
    run = train("als", ALS_FAST)
    assert run.model.is_active
    factors = consumer_factors()
    assert factors.algorithm == "als"
    assert factors.factors.shape == (len(marketplace.consumers), 16)
    assert np.array_equal(factors.consumer_ids, np.sort([c.pk for c in marketplace.consumers]))
    assert not factors.factors.flags.writeable


def _check_lists(lists, marketplace, merchant):
    own = {p.pk for p in marketplace.products[merchant.pk]}
    for consumer_id, products in lists.items():
        assert len(products) == len(set(products))
        assert set(products) <= own, "another merchant's product"
        assert not set(products) & marketplace.purchases.get((consumer_id, merchant.pk), set()), "already bought"


@pytest.mark.parametrize("algorithm", ["ease", "als", "item_knn", "bpr"])
def test_batch_recommendations_stay_in_the_merchants_catalogue_and_skip_purchases(marketplace, basis, algorithm):
    params = {"ease": EASE_FAST, "als": ALS_FAST, "item_knn": {}, "bpr": dict(factors=16, iterations=50)}[algorithm]
    run = train(algorithm, params)
    run.model.is_active or RecommenderModel.objects.filter(pk=run.model.pk).update(is_active=True)
    merchant = marketplace.merchant
    ids = [c.pk for c in marketplace.consumers]
    lists = recommend_for_consumers(merchant_id=merchant.pk, consumer_ids=ids, n=10)
    assert set(lists) == set(ids)
    assert all(len(v) == 10 for v in lists.values())
    _check_lists(lists, marketplace, merchant)


def test_batch_recommendations_follow_the_consumers_taste(marketplace, basis):
    train("ease", EASE_FAST)
    merchant = marketplace.merchant
    category = {p.pk: p.category for p in marketplace.products[merchant.pk]}
    lists = recommend_for_consumers(merchant_id=merchant.pk, consumer_ids=[c.pk for c in marketplace.consumers], n=3)
    share = np.mean(
        [category[p] == marketplace.categories[marketplace.group_of[c]] for c, ps in lists.items() for p in ps]
    )
    assert share > 0.6


def test_cold_consumers_get_popular_products_in_their_strongest_interest(marketplace, basis):
    train("ease", EASE_FAST)
    merchant = marketplace.merchant
    # A newcomer whose only events are beauty views at the other merchant: unknown to the model.
    newcomer = Consumer.objects.create(pseudonym="newcomer")
    beauty_elsewhere = [p for p in marketplace.products[marketplace.other_merchant.pk] if p.category == "beauty"]
    Event.objects.bulk_create(
        [
            Event(
                source_key=f"new-{i}",
                consumer=newcomer,
                merchant=marketplace.other_merchant,
                product=product,
                event_type=EventType.VIEW,
                occurred_at="2024-05-01T00:00:00Z",
            )
            for i, product in enumerate(beauty_elsewhere[:3])
        ]
    )
    stranger = Consumer.objects.create(pseudonym="stranger")  # no events at all
    lists = recommend_for_consumers(merchant_id=merchant.pk, consumer_ids=[newcomer.pk, stranger.pk], n=5)
    categories = dict(Product.objects.filter(merchant=merchant).values_list("id", "category"))
    assert [categories[p] for p in lists[newcomer.pk]] == ["beauty"] * 5
    assert len(lists[stranger.pk]) == 5
    assert {categories[p] for p in lists[stranger.pk]} != {"beauty"}  # overall popular, not one category
    _check_lists(lists, marketplace, merchant)


def test_batch_recommendations_refuse_without_a_recommendation_basis(marketplace):
    with pytest.raises(ProcessingNotPermitted):
        recommend_for_consumers(merchant_id=marketplace.merchant.pk, consumer_ids=[marketplace.consumers[0].pk], n=3)


def test_without_any_model_everyone_gets_the_fallback(marketplace, basis):
    merchant = marketplace.merchant
    ids = [c.pk for c in marketplace.consumers[:30]]
    lists = recommend_for_consumers(merchant_id=merchant.pk, consumer_ids=ids, n=4)
    assert all(len(v) == 4 for v in lists.values())
    _check_lists(lists, marketplace, merchant)


def test_exclude_purchased_can_be_turned_off(marketplace, basis):
    train("ease", EASE_FAST)
    merchant = marketplace.merchant
    buyer = next(c for (c, m), bought in marketplace.purchases.items() if m == merchant.pk and bought)
    with_bought = recommend_for_consumers(merchant_id=merchant.pk, consumer_ids=[buyer], n=40, exclude_purchased=False)
    assert marketplace.purchases[(buyer, merchant.pk)] <= set(with_bought[buyer])


def test_forgetting_a_consumer_rewrites_every_artefact_holding_them(marketplace, basis):
    train("ease", EASE_FAST)
    als = train("als", ALS_FAST).model
    victim = marketplace.consumers[0].pk
    before = consumer_factors()
    assert victim in before.consumer_ids
    old_names = set(RecommenderModel.objects.values_list("artefact", flat=True))
    assert model_forget_consumer(consumer_id=victim) == 2
    als.refresh_from_db()
    assert als.artefact_version == 2
    for record in RecommenderModel.objects.all():
        arrays = artefact_read(record.artefact.name)
        assert victim not in arrays["consumer_ids"]
        assert record.artefact.name not in old_names
    after = consumer_factors()
    assert victim not in after.consumer_ids
    assert after.factors.shape[0] == before.factors.shape[0] - 1
    assert model_forget_consumer(consumer_id=victim) == 0
    # The forgotten consumer still gets recommendations (from the fallback path), just not from their old row.
    lists = recommend_for_consumers(merchant_id=marketplace.merchant.pk, consumer_ids=[victim], n=5)
    assert len(lists[victim]) == 5


def test_old_inactive_artefacts_are_pruned_but_their_records_kept(marketplace, basis, settings):
    settings.RECOMMEND_KEEP_INACTIVE_MODELS = 1
    for _ in range(4):
        train("ease", EASE_FAST, force=True)
    records = list(RecommenderModel.objects.order_by("id"))
    assert [bool(r.artefact) for r in records] == [False, False, True, True]  # oldest pruned; one kept + active
    assert records[-1].is_active
    assert all(r.run.metrics for r in records)
    assert model_forget_consumer(consumer_id=marketplace.consumers[0].pk) == 2


def test_a_missing_artefact_falls_back_instead_of_failing(marketplace, basis):
    from recommend.selectors import recommendations_for

    record = train("ease", EASE_FAST).model
    default_storage.delete(record.artefact.name)
    items = recommendations_for(consumer_id=marketplace.consumers[0].pk, merchant_id=marketplace.merchant.pk, n=5)
    assert len(items) == 5
    assert {i["source"] for i in items} <= {"interest", "popular"}


def test_a_missing_artefact_degrades_the_batch_to_popularity_instead_of_failing(marketplace, basis):
    record = train("ease", EASE_FAST).model
    assert RecommenderModel.objects.get(pk=record.pk).is_active
    default_storage.delete(record.artefact.name)
    merchant = marketplace.merchant
    ids = [c.pk for c in marketplace.consumers[:20]]
    lists = recommend_for_consumers(merchant_id=merchant.pk, consumer_ids=ids, n=5)
    assert set(lists) == set(ids)
    assert all(len(v) == 5 for v in lists.values())
    _check_lists(lists, marketplace, merchant)


def test_training_without_any_interactions_fails_visibly(basis):
    with pytest.raises(ValueError, match="no interactions"):
        train("ease", EASE_FAST)
    run = TrainingRun.objects.get()
    assert run.status == RunStatus.FAILED
    assert "no interactions" in run.error
    assert not RecommenderModel.objects.exists()
