import pytest

from privacy.models import Purpose
from privacy.subject_data import handlers
from recommend.models import RecommenderModel
from recommend.selectors import consumer_factors
from recommend.services import recommender_train, training_config


@pytest.fixture
def handler():
    return next(h for h in handlers() if h.name == "recommendations")


@pytest.fixture
def trained(marketplace, approve_activity):
    approve_activity(Purpose.RECOMMENDATION)
    for algorithm, params in (("ease", {"l2": 20.0}), ("als", {"factors": 8, "iterations": 5})):
        recommender_train(config=training_config(algorithm=algorithm, params=params), actor="test")
    return marketplace


def test_handler_is_registered_at_layer_four(handler):
    assert handler.layer == 4


def test_access_lists_every_model_holding_a_row_and_erase_removes_them(trained, handler):
    consumer_id = trained.consumers[3].pk
    document = handler.access(consumer_id)
    held = document["recommender_models"]
    assert {m["algorithm"] for m in held} == {"ease", "als"}
    assert {m["holds"] for m in held} == {"latent factor vector", "interaction history row"}

    counts = handler.erase(consumer_id)
    assert counts == {"recommender_models": 2}
    assert handler.access(consumer_id) == {"recommender_models": []}
    assert consumer_id not in consumer_factors().consumer_ids
    assert set(RecommenderModel.objects.values_list("artefact_version", flat=True)) == {2}
    assert set(document) == set(counts)  # the access document covers what erasure removes


def test_erasing_someone_no_model_holds_changes_nothing(trained, handler):
    assert handler.erase(10**9) == {"recommender_models": 0}
    assert set(RecommenderModel.objects.values_list("artefact_version", flat=True)) == {1}


def test_a_rolled_back_erasure_keeps_the_old_artefacts(trained, handler, django_capture_on_commit_callbacks):
    from django.db import transaction

    names = set(RecommenderModel.objects.values_list("artefact", flat=True))
    with pytest.raises(RuntimeError), transaction.atomic():
        handler.erase(trained.consumers[0].pk)
        raise RuntimeError("a later handler failed")
    assert set(RecommenderModel.objects.values_list("artefact", flat=True)) == names
    assert trained.consumers[0].pk in consumer_factors().consumer_ids
