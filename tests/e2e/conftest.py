"""Real-browser tests: Playwright (sync API) driving Debian's Chromium headless against pytest-django's live_server.

Every page a test opens is screenshotted into artifacts/screenshots/ (git-ignored; CI keeps it as an artefact),
and every request the browser makes is checked to stay on the live server's host: the portal and the admin
must work with no internet, so nothing may come from a CDN.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls from a thread with a running
# loop unless told it is safe (it is: the test thread and the live server thread each use their own connection).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
LAPTOP = {"width": 1366, "height": 900}
TABLET = {"width": 820, "height": 1180}


_ONE_REQUEST = threading.Lock()


@pytest.fixture(autouse=True)
def _sqlite_live_server_one_request_at_a_time(monkeypatch):
    """On SQLite the test database lives in memory, so the live server's threads share one connection: two requests
    the browser makes at once (an estimate and a parse, say) interleave their savepoints on it and fail with "no
    such savepoint". A real deployment (and this suite on PostgreSQL) gives each request its own connection, so
    there the server stays threaded; on SQLite it answers one request at a time."""
    from django.core.handlers.wsgi import WSGIHandler

    from dbtools.backend import on_sqlite

    if not on_sqlite():
        return
    threaded = WSGIHandler.__call__

    def one_at_a_time(self, environ, start_response):
        with _ONE_REQUEST:
            return threaded(self, environ, start_response)

    monkeypatch.setattr(WSGIHandler, "__call__", one_at_a_time)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium); browser tests skipped")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is a dev dependency
        pytest.skip("playwright is not installed; browser tests skipped")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# Checked on every page a test screenshots: what a screen-reader or keyboard user needs from the markup.
ACCESSIBILITY_PROBLEMS_JS = """
() => {
  const problems = [];
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const named = (el) => (el.labels && el.labels.length) || el.getAttribute('aria-label')
    || el.getAttribute('aria-labelledby') || el.getAttribute('title');
  if (!document.documentElement.lang) problems.push('the page has no lang');
  if (!document.title.trim()) problems.push('the page has no title');
  const h1 = document.querySelectorAll('h1');
  if (h1.length !== 1 && !document.querySelector('#site-name')) problems.push(h1.length + ' h1 headings');
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (['hidden', 'submit', 'button'].includes(el.type) || !visible(el)) continue;
    if (!named(el)) problems.push('unlabelled ' + el.tagName.toLowerCase() + ' ' + (el.name || el.id));
  }
  for (const el of document.querySelectorAll('button, a[href]')) {
    if (!visible(el)) continue;
    if (!(el.textContent.trim() || el.getAttribute('aria-label') || el.getAttribute('title')
          || el.querySelector('img[alt], svg title'))) problems.push('nameless ' + el.tagName.toLowerCase());
  }
  for (const svg of document.querySelectorAll('svg.chart')) {
    if (svg.getAttribute('role') !== 'img' || !svg.querySelector('title')) problems.push('chart without a title');
  }
  for (const img of document.querySelectorAll('img')) if (!img.hasAttribute('alt')) problems.push('img without alt');
  return problems;
}
"""


class Browsing:
    """One browser context: the page, the hosts it contacted, and screenshots named after the test."""

    def __init__(self, context, base_url: str, test_name: str):
        self.context = context
        self.base_url = base_url.rstrip("/")
        self.page = context.new_page()
        self.page.set_default_timeout(15_000)
        self.hosts: set[str] = set()
        self.failed_responses: list[str] = []
        self.test_name = re.sub(r"[^a-z0-9_]+", "_", test_name.lower())
        self.page.on("request", self._on_request)
        self.page.on("response", self._on_response)

    def _on_request(self, request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss"):
            self.hosts.add(parts.netloc)

    def _on_response(self, response) -> None:
        if response.status >= 500:
            self.failed_responses.append(f"{response.status} {response.request.method} {response.url}")

    def url(self, path: str) -> str:
        return self.base_url + path

    def goto(self, path: str):
        return self.page.goto(self.url(path))

    def shot(self, name: str, full_page: bool = True) -> Path:
        problems = self.page.evaluate(ACCESSIBILITY_PROBLEMS_JS)
        assert not problems, f"accessibility problems on {self.page.url}: {problems}"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.test_name}__{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def sign_in(self, username: str, password: str, path: str = "/login/") -> None:
        self.goto(path)
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name=re.compile("^(Sign in|Log in)$")).click()
        self.page.wait_for_load_state()


@pytest.fixture
def browsing(browser, live_server, request):
    """A fresh browser context on the live server."""
    context = browser.new_context(viewport=LAPTOP, base_url=live_server.url)
    session = Browsing(context, live_server.url, request.node.name)
    yield session
    context.close()
    own_host = urlsplit(live_server.url).netloc
    foreign = sorted(session.hosts - {own_host})
    assert not foreign, f"the browser contacted other hosts: {foreign}"
    assert not session.failed_responses, f"server errors: {session.failed_responses}"
