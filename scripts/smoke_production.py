"""Serve the platform as the image does and check that its pages and their static files answer 200.

Run by CI after scripts/build-static (the same script the Dockerfile runs):

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python scripts/smoke_production.py

It migrates the database with production settings (as the compose `migrate` service does), starts gunicorn with the
Dockerfile's own CMD on a free loopback port, DMP_ENV=production and freshly generated secrets, and then:

- a plain-HTTP request is redirected to HTTPS (production security is on);
- behind a TLS proxy (X-Forwarded-Proto: https) `/login/`, `/admin/login/`, `/api/v1/docs/` and the schema that
  page loads, `/api/v1/schema/`, answer 200;
- every static file those pages link answers 200 under its hashed (manifest) name, with a long cache lifetime.

The database must exist and may be empty; REDIS_URL is the shared cache production runs with.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from smoke import CheckFailed, Client, expect, free_port, main_guard, parse, say, start, stop, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("/login/", "/admin/login/", "/api/v1/docs/", "/api/v1/schema/")  # the last is what the docs page loads
HASHED = re.compile(r"\.[0-9a-f]{12}\.[A-Za-z0-9]+$")  # ManifestStaticFilesStorage's name.<12 hex>.ext


def image_command() -> list[str]:
    """The Dockerfile's CMD (JSON form), so CI starts exactly what the image starts."""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("CMD "):
            return json.loads(line[4:])
    raise CheckFailed("the Dockerfile has no CMD line")


def production_env() -> dict[str, str]:
    missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(name)]
    if missing:
        raise CheckFailed(f"set {' and '.join(missing)} (production runs on PostgreSQL with a shared Redis cache)")
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DMP_", "CELERY_", "SQLITE_"))}
    return {
        **keep,
        "DMP_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "PSEUDONYM_KEY": secrets.token_urlsafe(32),
        "AUDIT_KEY": secrets.token_urlsafe(32),
        "RELEASE_NOISE_KEY": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "127.0.0.1",
        "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}",
        "DMP_VAR_DIR": tempfile.mkdtemp(prefix="dmp-smoke-var-"),
        "MEDIA_ROOT": tempfile.mkdtemp(prefix="dmp-smoke-media-"),
    }


def check_pages(client: Client) -> None:
    plain = client.get("/login/", headers={"X-Forwarded-Proto": "http"})
    location = plain.headers.get("Location", "")
    if plain.status != 301 or not location.startswith("https://"):
        raise CheckFailed(f"plain HTTP should be redirected to HTTPS in production, got {plain.status} {location!r}")
    say(f"{plain.status} plain HTTP redirected to {location}")
    assets: set[str] = set()
    for path in PAGES:
        page = expect(client.get(path), 200)
        assets.update(link for link in parse(page.text).links if link.startswith("/static/"))
    if not assets:
        raise CheckFailed("the pages link no static files; is STATIC_URL still /static/?")
    for asset in sorted(assets):
        response = expect(client.get(asset), 200)
        if not HASHED.search(asset.split("?")[0]):
            raise CheckFailed(f"{asset} is not a hashed manifest name: the static files were not built for production")
        if "immutable" not in response.headers.get("Cache-Control", ""):
            raise CheckFailed(f"{asset} is not served as immutable: {response.headers.get('Cache-Control')!r}")
    say(f"{len(PAGES)} pages and {len(assets)} static files answered 200")


def run() -> None:
    if not (ROOT / os.environ.get("STATIC_ROOT", "staticfiles") / "staticfiles.json").exists():
        raise CheckFailed("no static manifest: run scripts/build-static first, as the Dockerfile does")
    env = production_env()
    say("migrate with production settings")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True)
    port = free_port()
    command = image_command()
    if command[0] != "gunicorn" or "--bind" not in command:
        raise CheckFailed(f"unexpected image command {command}")
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    argv = [sys.executable, "-m", *command]
    log = Path(env["DMP_VAR_DIR"]) / "gunicorn.log"
    say(f"start {' '.join(command)}")
    server = start(argv, env=env, cwd=str(ROOT), log_path=str(log))
    try:
        wait_for_port(port, server)
        check_pages(Client(f"http://127.0.0.1:{port}", headers={"X-Forwarded-Proto": "https"}))
    except CheckFailed:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise
    finally:
        stop(server)


if __name__ == "__main__":
    main_guard(run)
