import pytest
from django_celery_beat.models import PeriodicTask

from privacy.models import Purpose
from recommend.models import RecommenderModel, RunStatus, TrainingRun
from recommend.tasks import recommender_train_scheduled, recommender_train_task


def test_nightly_schedule_is_installed_by_migration(db):
    entry = PeriodicTask.objects.get(name="recommend: nightly training")
    assert entry.task == "recommend.train_scheduled"
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


@pytest.mark.worker
def test_training_runs_on_a_real_worker(celery_worker_process, marketplace, approve_activity):
    import time

    approve_activity(Purpose.RECOMMENDATION)
    recommender_train_task.delay("ease", {"l2": 20.0}, "test")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = TrainingRun.objects.filter(algorithm="ease").first()
        if run is not None and run.status != RunStatus.RUNNING:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("no finished training run within 120 s:\n" + celery_worker_process.log[-3000:])
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert RecommenderModel.objects.get(run=run).is_active
