"""Every Celery task has an explicit, stable name, and every schedule names a task that exists."""

import ast
from pathlib import Path

import pytest
from django_celery_beat.models import PeriodicTask

from config.celery import app

ROOT = Path(__file__).resolve().parents[2]
OUR_PACKAGES = ("merchants", "privacy", "consumers", "tags", "recommend", "segments", "campaigns", "portal", "config")


def registered() -> dict:
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def current_names() -> set[str]:
    return {name for name, task in registered().items() if not getattr(task, "legacy_alias_of", None)}


def test_every_task_has_an_explicit_name():
    ours = {name: task for name, task in registered().items() if task.__module__.split(".")[0] in OUR_PACKAGES}
    assert len(ours) >= 10
    for name, task in ours.items():
        if getattr(task, "legacy_alias_of", None):
            assert task.legacy_alias_of in current_names(), name
            continue
        implicit = f"{task.__module__}.{task.__name__}"
        assert name != implicit, f"{implicit} has no explicit name="
        assert name.split(".")[0] in OUR_PACKAGES and name.count(".") == 1, name


def test_old_names_still_run_their_task(settings):
    # A message queued before the rename forwards to the task under its new name.
    old = registered()["recommend.tasks.recommender_train_scheduled"]
    assert old.legacy_alias_of == "recommend.train_scheduled"
    settings.RECOMMEND_SCHEDULED_ALGORITHMS = []
    assert old.apply().get() is not None


def test_the_settings_schedule_names_registered_tasks():
    names = current_names()
    for entry, spec in (app.conf.beat_schedule or {}).items():
        assert spec["task"] in names, f"beat_schedule {entry!r} names unknown task {spec['task']!r}"


@pytest.mark.django_db
def test_beat_rows_created_by_migrations_name_registered_tasks():
    rows = list(PeriodicTask.objects.values_list("name", "task"))
    assert len(rows) >= 6  # the migrations' defaults are there
    names = current_names()
    unknown = [(name, task) for name, task in rows if task not in names]
    assert unknown == []


def literal_task_names() -> set[tuple[str, str]]:
    """Task names written as string literals where rows or messages are made: task="...", {"task": "..."},
    send_task("...") and enqueue_by_name("...")."""
    found = set()
    for base in ("platform", "segments", "recommend"):
        for path in (ROOT / base).rglob("*.py"):
            if "migrations" in path.parts:
                continue  # historical rows: the latest state is checked in the database above
            tree = ast.parse(path.read_text())
            constants = {
                target.id: node.value.value
                for node in ast.walk(tree)
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                for target in node.targets
                if isinstance(target, ast.Name) and isinstance(node.value.value, str)
            }

            def value(node):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    return node.value
                if isinstance(node, ast.Name):
                    return constants.get(node.id)
                return None

            for node in ast.walk(tree):
                where = str(path.relative_to(ROOT))
                if isinstance(node, ast.Call):
                    for keyword in node.keywords:
                        if keyword.arg == "task" and value(keyword.value):
                            found.add((where, value(keyword.value)))
                    called = getattr(node.func, "attr", getattr(node.func, "id", ""))
                    if called in {"send_task", "enqueue_by_name"} and node.args and value(node.args[0]):
                        found.add((where, value(node.args[0])))
                if isinstance(node, ast.Dict):
                    for key, item in zip(node.keys, node.values, strict=True):
                        if isinstance(key, ast.Constant) and key.value == "task" and value(item):
                            found.add((where, value(item)))
    return found


def test_task_names_written_in_code_are_registered():
    literals = literal_task_names()
    assert any(name == "segments.refresh_scheduled" for _, name in literals)  # the scan finds them
    names = current_names()
    assert sorted(entry for entry in literals if entry[1] not in names) == []
