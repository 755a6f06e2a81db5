import pytest
from django_celery_beat.models import PeriodicTask

from privacy.models import Purpose
from recommend.models import RecommenderModel, RunStatus, TrainingRun
from recommend.tasks import recommender_train_scheduled, recommender_train_task


def test_nightly_schedule_is_installed_by_migration(db):
    entry = PeriodicTask.objects.get(name="recommend: nightly training")
    assert entry.task == "recommend.tasks.recommender_train_scheduled"
    assert entry.enabled
    assert (entry.crontab.hour, entry.crontab.minute) == ("3", "30")


def test_task_refuses_quietly_without_a_basis(marketplace):
    assert recommender_train_task.delay("ease").get() is None
    assert not TrainingRun.objects.exists()


def test_scheduled_training_trains_each_configured_algorithm(marketplace, approve_activity, settings):
    approve_activity(Purpose.RECOMMENDATION)
    settings.RECOMMEND_SCHEDULED_ALGORITHMS = ("ease", "item_knn")
    recommender_train_scheduled.delay().get()
    assert set(TrainingRun.objects.values_list("algorithm", "status")) == {
        ("ease", RunStatus.SUCCEEDED),
        ("item_knn", RunStatus.SUCCEEDED),
    }
    assert RecommenderModel.objects.filter(is_active=True).count() == 2
    # Run again on the same data: nothing is retrained.
    recommender_train_scheduled.delay().get()
    assert TrainingRun.objects.filter(status=RunStatus.SKIPPED).count() == 2
    assert RecommenderModel.objects.count() == 2


def test_task_rejects_an_unknown_algorithm(db):
    with pytest.raises(ValueError, match="unknown algorithm"):
        recommender_train_task.delay("svd").get()
