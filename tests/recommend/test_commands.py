import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from privacy.models import Purpose
from recommend.models import RecommenderModel, TrainingRun


def run(*args) -> str:
    out = StringIO()
    call_command("train_recommender", *args, stdout=out)
    return out.getvalue()


@pytest.mark.shared_data
def test_movielens_protocol_needs_no_database_and_prints_json(shared_data):
    # No db fixture: pytest-django raises on any database access, so this also proves none happens.
    report = json.loads(
        run("--algorithm", "ease", "--dataset", "movielens", str(shared_data / "movielens-100k"), "--json")
    )
    assert report["split"] == {
        "method": "python_stratified_split",
        "ratio": 0.75,
        "seed": 42,
        "train_rows": 74_646,
        "test_rows": 25_354,
        "users": 943,
        "train_items": 1653,
    }
    ease, popular = report["results"]["ease"]["metrics"], report["results"]["popular"]["metrics"]
    assert ease["precision_at_k"] > 0.42 and ease["ndcg_at_k"] > 0.47
    assert ease["precision_at_k"] > popular["precision_at_k"] * 1.5


@pytest.mark.shared_data
def test_movielens_table(shared_data):
    out = run("--algorithm", "popular", "--dataset", "movielens", str(shared_data / "movielens-100k"))
    assert "74,646 training rows" in out
    assert "P@10" in out and "nDCG@10" in out and "MAP" in out


def test_bad_arguments_are_explained(tmp_path):
    with pytest.raises(CommandError, match="not valid JSON"):
        run("--algorithm", "ease", "--params", "{l2: 3}")
    with pytest.raises(CommandError, match="unknown parameter"):
        run("--algorithm", "ease", "--params", '{"lambda": 3}')
    with pytest.raises(CommandError, match="u.data not found"):
        run("--algorithm", "ease", "--dataset", "movielens", str(tmp_path))
    with pytest.raises(CommandError, match="unknown dataset"):
        run("--algorithm", "ease", "--dataset", "netflix", str(tmp_path))


def test_training_on_the_marketplace_refuses_without_a_basis(marketplace):
    with pytest.raises(CommandError, match="not permitted"):
        run("--algorithm", "ease")
    with pytest.raises(CommandError, match="not permitted"):
        run("--algorithm", "ease", "--evaluate")
    assert not TrainingRun.objects.exists()


def test_training_and_evaluating_on_the_marketplace(marketplace, approve_activity):
    approve_activity(Purpose.RECOMMENDATION)
    report = json.loads(run("--algorithm", "ease", "--params", '{"l2": 20}', "--evaluate", "--json"))
    assert report["beats_baseline"] is True
    assert not TrainingRun.objects.exists()  # --evaluate stores nothing

    out = run("--algorithm", "ease", "--params", '{"l2": 20}')
    assert "activated: True" in out
    assert "beats the baseline (category popularity): True" in out
    assert RecommenderModel.objects.get().is_active
