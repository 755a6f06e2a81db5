"""What a person reads on the terminal: commands print prose progress, not interleaved log lines.

Runs `manage.py` in a separate process, as a person would, on a fresh embedded database.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) ", re.MULTILINE)
# Variables of the test run itself that would point the command elsewhere than a fresh embedded database.
DROPPED = {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE", "DMP_ENV", "LOG_LEVEL"}

# The commands always run on a fresh embedded database, whatever the suite runs on: the PostgreSQL run would only
# repeat the SQLite run's minute of work.
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="runs on a fresh embedded database; the SQLite run covers it"
)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A fresh embedded installation (SQLite, eager tasks) and a way to run manage.py in it."""
    home = tmp_path_factory.mktemp("embedded")
    env = {k: v for k, v in os.environ.items() if k not in DROPPED}
    env.update(SQLITE_PATH=str(home / "dmp.sqlite3"), DMP_VAR_DIR=str(home / "var"))

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )

    migrated = manage("migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    return manage


@pytest.fixture(scope="module")
def demo(embedded):
    result = embedded("demo_setup", "--consumers", "800", "--products", "120", "--events", "12000", "--replay", "1")
    assert result.returncode == 0, result.stderr
    return result


def test_demo_setup_prints_its_steps_and_no_log_lines(demo):
    lines = demo.stdout.splitlines()
    steps = [line for line in lines if line.startswith("• ")]
    assert steps[0] == "• Processing register" and steps[-1] == "• A finished campaign with results"
    assert "Demo ready." in lines
    assert LOG_LINE.findall(demo.stdout) == []
    # Nothing else on the terminal: no INFO lines between the steps, no broker warning in the embedded mode.
    assert LOG_LINE.findall(demo.stderr) == []
    assert "No hostname was supplied" not in demo.stderr
    assert "broker" not in demo.stderr.lower()


def test_a_command_shows_its_log_lines_when_asked_and_a_batch_refresh_logs_one_summary(demo, embedded):
    quiet = embedded("refresh_segments", "--all")
    assert quiet.returncode == 0, quiet.stderr
    assert re.fullmatch(r"Refreshed \d+ segments; 0 failed\.\n", quiet.stdout)
    assert quiet.stderr == ""

    verbose = embedded("refresh_segments", "--all", "-v", "2")
    assert verbose.returncode == 0, verbose.stderr
    refreshed = int(re.match(r"Refreshed (\d+) segments", verbose.stdout).group(1))
    assert refreshed >= 5  # the demo's segments and its lookalike
    events = [line.split()[3] for line in verbose.stderr.splitlines() if LOG_LINE.match(line)]
    assert events.count("segments.batch_refreshed") == 1  # one batch, one line
    assert "segment.refreshed" not in events  # not one line per segment
    assert f"refreshed={refreshed}" in verbose.stderr
