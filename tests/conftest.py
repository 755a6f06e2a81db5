"""Fixtures shared by the whole suite.

The same tests run on the embedded defaults (SQLite, eager Celery) and on
PostgreSQL + Redis (DATABASE_URL, CELERY_BROKER_URL). `postgres` tests skip on
SQLite; `worker` tests skip without a broker; `shared_data` tests skip without
../shared/data.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from dbtools.backend import on_postgresql
from merchants.models import ApiKeyKind, Merchant, Role
from privacy.models import ProcessingActivity
from tests.factories import (
    LAWFUL_ACTIVITIES,
    ApiKeyFactory,
    MerchantFactory,
    OfficerFactory,
    ProcessingActivityFactory,
    member_create,
)


def pytest_collection_modifyitems(config, items):
    on_postgres = on_postgresql()
    has_broker = bool(settings.CELERY_BROKER_URL)
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    skip_worker = pytest.mark.skip(reason="needs a real Celery broker (set CELERY_BROKER_URL) and PostgreSQL")
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(skip_pg)
        if "worker" in item.keywords and not (has_broker and on_postgres):
            item.add_marker(skip_worker)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the checkout, or a clean skip where it is absent."""
    path = Path(settings.SHARED_DATA_DIR)
    if not path.is_dir():
        pytest.skip(f"shared data folder not present ({path.name}/ beside the checkout)")
    return path


@pytest.fixture
def merchant(db) -> Merchant:
    return MerchantFactory(slug="acme", name="Acme Outdoor")


@pytest.fixture
def other_merchant(db) -> Merchant:
    return MerchantFactory(slug="globex", name="Globex Beauty")


def _client_for(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def merchant_client(merchant) -> APIClient:
    return _client_for(ApiKeyFactory(merchant=merchant).raw_key)


@pytest.fixture
def other_merchant_client(other_merchant) -> APIClient:
    return _client_for(ApiKeyFactory(merchant=other_merchant).raw_key)


@pytest.fixture
def operator_client(db) -> APIClient:
    return _client_for(ApiKeyFactory(kind=ApiKeyKind.OPERATOR, name="operator").raw_key)


@pytest.fixture
def officer(db):
    return OfficerFactory(username="officer", password="officer-pass-123")


@pytest.fixture
def merchant_user(merchant):
    return member_create(merchant=merchant, role=Role.MARKETER, username="marketer", password="marketer-pass-123")


@pytest.fixture
def approve_activity(db, officer):
    """approve_activity(purpose) -> an approved, lawful ProcessingActivity for that purpose."""

    def approve(purpose: str, **overrides) -> ProcessingActivity:
        return ProcessingActivityFactory(purpose=purpose, officer=officer, **overrides)

    return approve


@pytest.fixture
def all_purposes_approved(approve_activity) -> dict[str, ProcessingActivity]:
    return {purpose: approve_activity(purpose) for purpose in LAWFUL_ACTIVITIES}


@pytest.fixture(autouse=True)
def _process_caches_clear():
    """Every test starts with empty per-process caches, and an empty Django cache (rate-limit counts).

    Test databases reuse ids and bitmap versions from one test to the next, so a cache keyed by them (tag and
    live bitmaps, behavioural and snapshot bitmaps, loaded models, released figures) would hand one test another's
    data; and the API's per-address limit would let one test's keyless requests throttle the next test's.
    """
    from django.core.cache import cache

    from privacy.services import released_cache_clear
    from recommend.artefacts import cache_clear as models_cache_clear
    from segments.evaluation import behaviour_cache_invalidate, snapshot_cache_clear
    from segments.targeting import targeting_cache_invalidate
    from tags.bitmaps import bitmap_cache_clear

    bitmap_cache_clear()
    behaviour_cache_invalidate()
    snapshot_cache_clear()
    targeting_cache_invalidate()
    models_cache_clear()
    cache.clear()
    released_cache_clear()
    yield


@pytest.fixture(autouse=True)
def _audit_checkpoint_per_test(settings, tmp_path):
    """Each test gets its own signed audit checkpoint (a file in its tmp dir, and no cached copy).

    The checkpoint lives outside the database on purpose, so it does not roll back with a test's transaction.
    """
    from django.core.cache import cache

    from privacy.audit import CHECKPOINT_CACHE_KEY

    settings.AUDIT_CHECKPOINT_PATH = tmp_path / "audit-checkpoint.json"
    cache.delete(CHECKPOINT_CACHE_KEY)
    yield
    cache.delete(CHECKPOINT_CACHE_KEY)


@pytest.fixture(scope="session", autouse=True)
def _audit_truncate_allowed_in_the_test_database(django_db_setup, django_db_blocker):
    """Transactional tests empty the tables with TRUNCATE after each test; the throwaway test database lets
    them (production keeps privacy_auditentry_no_truncate; tests/privacy/test_audit_tail.py re-enables it)."""
    from django.db import connection

    with django_db_blocker.unblock():
        if on_postgresql():
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_trigger WHERE tgname = 'privacy_auditentry_no_truncate'")
                if cursor.fetchone():  # absent in a database kept (--reuse-db) from before migration 0008
                    cursor.execute("ALTER TABLE privacy_auditentry DISABLE TRIGGER privacy_auditentry_no_truncate")
    yield


@pytest.fixture(autouse=True)
def _celery_eager_unless_worker(request):
    """Tasks run eagerly in-process, even in the PostgreSQL + Redis run, except in `worker` tests."""
    from config.celery import app as celery_app

    eager = "worker" not in request.keywords
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = eager
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """A real Celery worker process on the configured broker, reading the test database.

    Yields a small handle with `.stop(kill=False)` and `.start()` so tests can
    kill a worker mid-job and start a fresh one.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    from django.db import connection

    from config.celery import app as celery_app

    db = settings.DATABASES["default"]
    user, host, port = db["USER"] or "postgres", db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    database_url = f"postgres://{user}@{host}:{port}/{connection.settings_dict['NAME']}"
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PYTHONPATH": f"{root / 'platform'}:{root}",
        "DMP_VAR_DIR": str(tmp_path),
    }
    celery_app.control.purge()

    class Worker:
        proc: subprocess.Popen | None = None

        def start(self) -> None:
            log = open(tmp_path / "worker.log", "ab")  # noqa: SIM115
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--loglevel=INFO",
                    "--concurrency=1",
                    "--pool=prefork",
                    "--without-gossip",
                    "--without-mingle",
                    "-n",
                    f"test-{os.getpid()}@%h",
                ],
                cwd=root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if celery_app.control.ping(timeout=0.5):
                    return
                if self.proc.poll() is not None:
                    raise RuntimeError("worker exited: " + (tmp_path / "worker.log").read_text()[-2000:])
            raise RuntimeError("worker did not answer a ping within 60 s")

        def stop(self, kill: bool = False) -> None:
            if self.proc and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
                self.proc.wait(timeout=30)
            self.proc = None

        @property
        def log(self) -> str:
            return (tmp_path / "worker.log").read_text(errors="replace")

    worker = Worker()
    worker.start()
    yield worker
    worker.stop(kill=True)
    celery_app.control.purge()


@pytest.fixture
def fine_preview(monkeypatch, settings):
    """A preview precision fine enough for a world of a few hundred consumers to show insight cells and tag reach
    (σ 2, hidden under 107), and a budget large enough to pay for it: for tests of what pages compute from
    released figures, not of the mechanism's scale."""
    from privacy.release import PRECISIONS, PrecisionSpec

    monkeypatch.setitem(PRECISIONS, "preview", PrecisionSpec("preview", sigma=2, quantum=1))
    settings.PRIVACY_BUDGET_DEFAULT_RHO = 1000.0
