"""Helpers shared by the smoke checks (scripts/smoke_production.py and scripts/demo_check.py).

Standard library only: the checks run on a machine that has nothing but Python and the project's virtualenv, and
`make demo-check` runs one before the virtualenv exists.
"""

from __future__ import annotations

import html.parser
import http.cookiejar
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field


class CheckFailed(Exception):
    """A smoke check saw something wrong; the message says what."""


def say(message: str) -> None:
    print(f"[smoke] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, *, within: float = 120.0) -> None:
    """Return once something accepts connections on the loopback port; fail if the server process died first."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CheckFailed(f"the server exited with status {proc.returncode} before it listened on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise CheckFailed(f"nothing listened on port {port} within {within:.0f} s")


def start(argv: list[str], *, env: dict[str, str], cwd: str, log_path: str | None = None) -> subprocess.Popen:
    """Start a server in its own process group, so stop() ends it and every child it forked."""
    out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - closed when the process is stopped
    return subprocess.Popen(  # noqa: S603 - argv is built by the calling script, never from input
        argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Response:
    url: str
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@dataclass
class Client:
    """A tiny browser: keeps cookies, sends fixed headers, and reports redirects instead of following them."""

    base: str
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect)

    def request(self, path: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None):
        url = urllib.parse.urljoin(self.base, path)
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(url, data=body, headers={**self.headers, **(headers or {})})  # noqa: S310
        try:
            with self.opener.open(req, timeout=60) as resp:
                return Response(url, resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as exc:  # 3xx (not followed), 4xx and 5xx
            return Response(url, exc.code, dict(exc.headers), exc.read())

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return self.request(path, headers=headers)

    def post(self, path: str, data: dict[str, str], headers: dict[str, str] | None = None) -> Response:
        return self.request(path, data=data, headers=headers)

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.cookies if c.name == name), None)


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.inputs: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("href", "src"):
            if values.get(name):
                self.links.append(values[name] or "")
        if tag == "input" and values.get("name"):
            self.inputs[values["name"] or ""] = values.get("value") or ""


def parse(page: str) -> _Links:
    parser = _Links()
    parser.feed(page)
    return parser


def expect(response: Response, status: int, *, contains: str | None = None) -> Response:
    if response.status != status:
        snippet = response.text[:600].strip()
        raise CheckFailed(f"{response.url}: expected {status}, got {response.status}\n{snippet}")
    if contains is not None and contains not in response.text:
        raise CheckFailed(f"{response.url}: answered {status} but does not contain {contains!r}")
    say(f"{response.status} {response.url}" + (f" ({contains!r} found)" if contains else ""))
    return response


def main_guard(run) -> None:
    """Run a check and turn CheckFailed into a one-line failure and exit status 1."""
    try:
        run()
    except CheckFailed as exc:
        print(f"[smoke] FAILED: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
