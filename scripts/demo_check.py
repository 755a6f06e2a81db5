"""`make demo-check`: the README's quick start, checked end to end.

Runs `make demo` exactly as a newcomer would (virtualenv, install, migrate, the demo data, then the development
server), on a free loopback port; reads the demo login that `make demo` printed; signs in with it through the
portal's login form; loads the dashboard and expects a 200 that shows the demo merchant; then stops the server and
exits 0. Any failure (a step of `make demo`, the sign-in, the dashboard) exits 1 and says where.

Standard library only: it runs before the virtualenv exists. Arguments after the script name are passed to
`demo_setup` (through DEMO_ARGS), so CI can build a smaller marketplace than the README's demo.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

from smoke import CheckFailed, Client, expect, free_port, main_guard, parse, say, stop, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
LOGIN = re.compile(r"sign in as “([^”]+)” / “([^”]+)”")
MERCHANT = re.compile(r"owner of ([^,(]+?)\s*[,)]")
DASHBOARD_TEXT = "Your audiences and campaigns at a glance"
BUILD_LIMIT = 30 * 60  # seconds; a bound so a hung step fails the check instead of hanging CI


class DemoOutput:
    """Echo `make demo` as it runs, and remember the login it prints."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.text: list[str] = []
        self.serving = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            self.text.append(line)
            if line.startswith("Serving on http://"):
                self.serving.set()
        self.serving.set()  # the process ended; the caller sees that it did

    def login(self) -> tuple[str, str, str | None]:
        printed = "".join(self.text)
        found = LOGIN.search(printed)
        if not found:
            raise CheckFailed("`make demo` printed no demo login (“sign in as “user” / “password””)")
        merchant = MERCHANT.search(printed[found.end() :])
        return found.group(1), found.group(2), merchant.group(1) if merchant else None


def sign_in_and_load_dashboard(port: int, username: str, password: str, merchant: str | None) -> None:
    client = Client(f"http://127.0.0.1:{port}")
    form = parse(expect(client.get("/login/"), 200, contains="Sign in").text).inputs
    token = form.get("csrfmiddlewaretoken")
    if not token:
        raise CheckFailed("the login page has no CSRF token field")
    signed_in = client.post("/login/", {"csrfmiddlewaretoken": token, "username": username, "password": password})
    if signed_in.status != 302:
        raise CheckFailed(f"signing in as {username!r} with the printed password was refused ({signed_in.status})")
    say(f"signed in as {username!r}, redirected to {signed_in.headers.get('Location')}")
    dashboard = expect(client.get(signed_in.headers.get("Location") or "/"), 200, contains=DASHBOARD_TEXT)
    if merchant:
        expect(dashboard, 200, contains=merchant)
    stylesheets = [link for link in parse(dashboard.text).links if link.endswith(".css")]
    for link in stylesheets:
        expect(client.get(link), 200)


def run() -> None:
    port = free_port()
    make = os.environ.get("MAKE", "make")
    demo_args = " ".join(shlex.quote(arg) for arg in sys.argv[1:])
    argv = [make, "--no-print-directory", "demo", "HOST=127.0.0.1", f"PORT={port}", f"DEMO_ARGS={demo_args}"]
    say(f"{' '.join(argv)}  (in {ROOT})")
    proc = subprocess.Popen(  # noqa: S603 - a fixed command line
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,  # its own process group: stop() ends make, runserver and its reloader child
    )
    output = DemoOutput(proc)
    try:
        if not output.serving.wait(timeout=BUILD_LIMIT):
            raise CheckFailed(f"`make demo` was not serving after {BUILD_LIMIT // 60} minutes")
        if proc.poll() is not None and proc.returncode != 0:
            raise CheckFailed(f"`make demo` failed with status {proc.returncode} before it served")
        username, password, merchant = output.login()
        wait_for_port(port, proc)
        sign_in_and_load_dashboard(port, username, password, merchant)
    finally:
        stop(proc)
    say("the quick start works: demo built, served, signed in, dashboard loaded")


if __name__ == "__main__":
    main_guard(run)
