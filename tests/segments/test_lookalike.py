"""Lookalike audiences: by consumer factors when a model provides them, else by a classifier on tags."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from pyroaring import BitMap

from segments.lookalike import LookalikeError, lookalike_members
from segments.selectors import segment_latest_snapshot, snapshot_members
from segments.services import lookalike_create, segment_create, segment_refresh
from segments.sources import live_consumers_bitmap


@dataclass(frozen=True)
class Factors:
    """The shape recommend.selectors.consumer_factors() returns."""

    consumer_ids: np.ndarray
    factors: np.ndarray


@pytest.fixture
def profiles(world):
    """0-199 the seed (SG, sports, high); 200-299 the same profile; 300-399 SG only; 400-599 MY, outdoor."""
    world.add_consumers(600)
    world.tag(range(400), "country", "SG")
    world.tag(range(300), "interest", "sports")
    world.tag(range(300), "discount_sensitivity", "high")
    world.tag(range(400, 600), "country", "MY")
    world.tag(range(400, 600), "interest", "outdoor")
    world.rebuild()
    return world


def test_classifier_ranks_consumers_like_the_seed_first(profiles):
    seed = profiles.ids(range(200))
    result = lookalike_members(seed_members=seed, live=live_consumers_bitmap(), size=100, use_factors=False)
    assert result.method == "classifier"
    assert result.members == profiles.ids(range(200, 300))
    wider = lookalike_members(seed_members=seed, live=live_consumers_bitmap(), size=150, use_factors=False)
    assert wider.members == profiles.ids(range(200, 350))  # then the closest others, lowest ids first on ties
    assert not (wider.members & seed)


def test_classifier_similarity_cut(profiles):
    seed = profiles.ids(range(200))
    result = lookalike_members(seed_members=seed, live=live_consumers_bitmap(), min_similarity=0.5, use_factors=False)
    assert profiles.ids(range(200, 300)) <= result.members
    assert not (result.members & profiles.ids(range(400, 600)))


def test_factors_rank_by_cosine_to_the_seed_centroid(profiles):
    ids = np.array([c.pk for c in profiles.consumers[:500]])  # 500-599 have no factors
    rng = np.random.default_rng(1)
    vectors = np.zeros((500, 3))
    vectors[:200] = [1, 0, 0]
    vectors[200:260] = [0.9, 0.1, 0]  # near the seed
    vectors[260:500] = [0, 0, 1]  # far
    vectors += rng.normal(0, 0.01, vectors.shape)
    factors = Factors(consumer_ids=ids, factors=vectors)
    seed = profiles.ids(range(200))
    live = live_consumers_bitmap()
    top = lookalike_members(seed_members=seed, live=live, size=60, factors=factors)
    assert top.method == "factors" and top.members == profiles.ids(range(200, 260))
    cut = lookalike_members(seed_members=seed, live=live, min_similarity=0.9, factors=factors)
    assert cut.members == profiles.ids(range(200, 260))
    everyone = lookalike_members(seed_members=seed, live=live, size=10_000, factors=factors)
    assert everyone.members == profiles.ids(range(200, 500))  # consumers without factors are not ranked


def test_factors_that_barely_know_the_seed_fall_back_to_the_classifier(profiles):
    ids = np.array([c.pk for c in profiles.consumers[150:600]])  # knows only 50 of the seed
    factors = Factors(consumer_ids=ids, factors=np.ones((ids.size, 4)))
    result = lookalike_members(
        seed_members=profiles.ids(range(200)), live=live_consumers_bitmap(), size=100, factors=factors
    )
    assert result.method == "classifier"


def test_a_seed_below_the_minimum_audience_is_refused(profiles):
    with pytest.raises(LookalikeError, match="at least 100"):
        lookalike_members(seed_members=profiles.ids(range(99)), live=live_consumers_bitmap(), size=100)


def test_lookalike_segments_are_stored_and_refreshed_from_their_seed(
    profiles, merchant, tagging_approved, django_capture_on_commit_callbacks
):
    seed = segment_create(merchant=merchant, name="seed", actor="test", expression="interest:sports AND country:SG")
    segment_refresh(segment_id=seed.pk, actor="test")  # 0-299
    with django_capture_on_commit_callbacks(execute=True):
        lookalike = lookalike_create(seed=seed, name="like seed", actor="test", size=100)
    snapshot = segment_latest_snapshot(segment_id=lookalike.pk)
    assert snapshot.method == "classifier" and snapshot.size == 100
    assert snapshot_members(snapshot) == profiles.ids(range(300, 400))  # SG but not in the seed
    lookalike.refresh_from_db()
    assert lookalike.lookalike_spec == {"size": 100, "method": "classifier"}
    assert lookalike.definition == f"lookalike of segment:{seed.pk}"
    assert BitMap(snapshot_members(snapshot)).isdisjoint(snapshot_members(segment_latest_snapshot(segment_id=seed.pk)))


def test_lookalikes_use_the_active_recommendation_models_consumer_factors(
    merchant, other_merchant, all_purposes_approved, settings, tmp_path
):
    """A real ALS model trained on planted taste groups: the lookalike of part of a group is the rest of it."""
    from recommend import artefacts
    from recommend.models import RecommenderModel
    from recommend.services import recommender_train, training_config
    from tests.factories import bitmaps_refresh
    from tests.recommend.conftest import build_marketplace

    from .conftest import caches_clear

    settings.MEDIA_ROOT = str(tmp_path / "media")
    artefacts.cache_clear()
    caches_clear()
    market = build_marketplace(merchant, other_merchant, consumers=640)
    bitmaps_refresh()  # the live-consumer bitmap, as a tagging run stores it
    run = recommender_train(
        config=training_config(algorithm="als", params=dict(factors=16, iterations=15)), actor="test", force=True
    )
    RecommenderModel.objects.filter(pk=run.model.pk).update(is_active=True)

    group = sorted(pk for pk, g in market.group_of.items() if g == 0)
    seed, rest = BitMap(group[:110]), BitMap(group[110:])
    assert len(rest) >= 20
    result = lookalike_members(seed_members=seed, live=live_consumers_bitmap(), size=len(rest))
    assert result.method == "factors"
    assert len(result.members & rest) >= 0.8 * len(rest)
    artefacts.cache_clear()
