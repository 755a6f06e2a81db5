"""Production refuses to start without its secrets, and its deploy checks are clean."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DMP_ENV": "production",
    "SECRET_KEY": "x" * 60 + "-production-secret-key-for-tests",
    "PSEUDONYM_KEY": "p" * 40,
    "AUDIT_KEY": "a" * 40,
    "RELEASE_NOISE_KEY": "r" * 40,
    "ALLOWED_HOSTS": "dmp.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/does_not_need_to_exist",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
}


def run_manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    # A production process starts without the test run's own variables (the browser tests allow async-unsafe ORM use).
    dropped = {*PRODUCTION_ENV, "CELERY_BROKER_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    clean = {k: v for k, v in os.environ.items() if k not in dropped}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True
    )


def test_production_check_deploy_is_clean():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr + result.stdout


def test_production_refuses_to_start_without_each_secret():
    for missing in (
        "SECRET_KEY",
        "PSEUDONYM_KEY",
        "AUDIT_KEY",
        "RELEASE_NOISE_KEY",
        "ALLOWED_HOSTS",
        "DATABASE_URL",
        "REDIS_URL",
    ):
        env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
        result = run_manage("check", env=env)
        assert result.returncode != 0
        assert missing in result.stderr


def test_production_refuses_a_per_process_cache():
    # Without a shared cache every gunicorn and Celery process counts API rate limits on its own.
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "REDIS_URL"}
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert "REDIS_URL must be set when DMP_ENV=production" in result.stderr
    assert "rate limits" in result.stderr


def test_production_refuses_debug():
    result = run_manage("check", env={**PRODUCTION_ENV, "DEBUG": "true"})
    assert result.returncode != 0
    assert "DEBUG" in result.stderr


def test_embedded_defaults_need_no_environment(settings):
    # The suite itself may run on PostgreSQL; the defaults are checked in a clean process.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path[:0]=['platform','.'];"
            "import os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings';"
            "from django.conf import settings as s;"
            "print(s.DATABASES['default']['ENGINE'], s.CELERY_TASK_ALWAYS_EAGER)",
        ],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == ["django.db.backends.sqlite3", "True"]


def _embedded_connect(env: dict) -> subprocess.CompletedProcess:
    """Open the embedded database in a clean process, as the first `manage.py migrate` of a fresh clone does."""
    dropped = {"DATABASE_URL", "CELERY_BROKER_URL", "SQLITE_PATH", "DMP_VAR_DIR", "DMP_ENV"}
    clean = {k: v for k, v in os.environ.items() if k not in dropped}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path[:0]=['platform','.'];"
            "import os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings';"
            "import django; django.setup();"
            "from django.db import connection; connection.ensure_connection();"
            "print(connection.settings_dict['NAME'])",
        ],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
    )


def test_embedded_database_directory_is_created_when_missing(tmp_path):
    # A fresh clone has no var/ (it is not in git); `make demo` failed at migrate with "unable to open database file".
    path = tmp_path / "fresh-clone" / "var" / "dmp.sqlite3"
    result = _embedded_connect({"SQLITE_PATH": str(path)})
    assert result.returncode == 0, result.stderr
    assert path.exists()


def test_embedded_database_lives_in_the_var_dir(tmp_path):
    var = tmp_path / "elsewhere"
    result = _embedded_connect({"DMP_VAR_DIR": str(var)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(var / "dmp.sqlite3")
    assert (var / "dmp.sqlite3").exists()
