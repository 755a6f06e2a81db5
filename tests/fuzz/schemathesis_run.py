"""Fuzz the API's OpenAPI document against a live gunicorn server, with a merchant key and an operator key.

    python -m tests.fuzz.schemathesis_run [--max-time SECONDS] [--seed N] [--report-dir DIR]

Uses the database the environment names (DATABASE_URL, else a fresh SQLite file in a temporary directory). On
PostgreSQL the named database is dropped and created again, so point it at a throw-away one. Builds a small world
(tests/fuzz/seed_world.py), starts gunicorn, and runs schemathesis once per key kind over that kind's endpoints,
failing on any 5xx (not_a_server_error) and on any response the schema does not describe
(response_schema_conformance, content_type_conformance). Prints one line per key kind with the requests sent and
the 5xx received, and exits non-zero when schemathesis found anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
# Which operations each key kind fuzzes (by path); the other kind's endpoints only answer 403.
OPERATOR_PATHS = r"^/api/v1/(ingest/|consents|privacy/(?!budget)|recommendations/|inbox/|tracking/)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], env: dict, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, check=True, text=True, **kwargs)


def _reset_postgres(url: str) -> None:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    base = ["psql", "-q", "-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 5432)]
    base += ["-U", parsed.username or "postgres", "-d", "postgres"]
    subprocess.run([*base, "-c", f'DROP DATABASE IF EXISTS "{name}"'], check=True)
    subprocess.run([*base, "-c", f'CREATE DATABASE "{name}"'], check=True)


def _wait_for(url: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited before it answered")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own local server
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the server did not answer {url} within {seconds:.0f} s")


def _har_figures(path: Path) -> tuple[int, int]:
    if not path.exists():
        return 0, 0
    entries = json.loads(path.read_text())["log"]["entries"]
    return len(entries), sum(1 for e in entries if e["response"]["status"] >= 500)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-time", type=int, default=55, help="seconds of fuzzing per key kind")
    parser.add_argument("--seed", type=int, default=11)
    # One worker: with two, hypothesis parses lambda sources from two threads at once, and CPython 3.11's AST
    # constructor is not thread-safe ("AST constructor recursion depth mismatch", a runtime error that failed a CI
    # run with every request passing). The run is bounded by --max-time either way.
    parser.add_argument("--workers", default="1")
    parser.add_argument("--report-dir", type=Path, default=None)
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dmp-fuzz-"))
    # Absolute: schemathesis runs in the work directory, and a relative path would land its reports there.
    report_dir = (options.report_dir or work / "reports").resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DMP_VAR_DIR": str(work),
        "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}",
        "API_THROTTLE_RATE": "1000000/min",
        "API_ANON_THROTTLE_RATE": "1000000/min",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("CELERY_BROKER_URL", None)  # tasks run eagerly in the server: no worker to start
    database = "postgresql" if env.get("DATABASE_URL") else "sqlite"
    if database == "postgresql":
        _reset_postgres(env["DATABASE_URL"])
    else:
        env["SQLITE_PATH"] = str(work / "fuzz.sqlite3")
    python = sys.executable
    _run([python, "manage.py", "migrate", "--no-input", "-v", "0"], env)
    seeded = _run(
        [python, "manage.py", "shell", "-c", "from tests.fuzz.seed_world import seed; seed()"],
        env,
        stdout=subprocess.PIPE,
    )
    keys = json.loads(seeded.stdout.strip().splitlines()[-1])

    port = _free_port()
    server = subprocess.Popen(
        [
            python, "-m", "gunicorn", "config.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--workers", "2", "--timeout", "120",
            "--log-level", "warning", "--error-logfile", str(work / "gunicorn.log"),
        ],
        cwd=ROOT,
        env=env,
    )  # fmt: skip
    schema_url = f"http://127.0.0.1:{port}/api/v1/schema/?format=json"
    failed = False
    figures = {}
    try:
        _wait_for(schema_url, server)
        schemathesis = shutil.which("schemathesis", path=str(Path(python).parent)) or "schemathesis"
        for kind in ("merchant", "operator"):
            har = report_dir / f"{database}-{kind}.har"
            select = "--include-path-regex" if kind == "operator" else "--exclude-path-regex"
            command = [
                schemathesis, "run", schema_url,
                "--url", f"http://127.0.0.1:{port}",
                "-H", f"Authorization: Bearer {keys[kind]}",
                select, OPERATOR_PATHS,
                "--checks", CHECKS,
                "--max-time", str(options.max_time),
                "--seed", str(options.seed),
                "--workers", options.workers,
                "--request-timeout", "60",
                "--suppress-health-check", "all",
                "--report", "har,junit",
                "--report-har-path", str(har),
                "--report-junit-path", str(report_dir / f"{database}-{kind}.xml"),
                "--output-sanitize", "true",
            ]  # fmt: skip
            result = subprocess.run(command, cwd=work, env=env, check=False)
            requests, server_errors = _har_figures(har)
            figures[kind] = {"requests": requests, "5xx": server_errors, "exit": result.returncode}
            failed = failed or result.returncode != 0 or server_errors > 0
    finally:
        server.terminate()
        server.wait(timeout=30)
    for kind, f in figures.items():
        print(f"schemathesis {database} {kind} key: {f['requests']} requests, {f['5xx']} 5xx, exit {f['exit']}")
    (report_dir / f"{database}-figures.json").write_text(json.dumps(figures, indent=2))
    print(f"reports in {report_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
