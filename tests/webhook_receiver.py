"""A local HTTP server that receives the platform's webhook POSTs and verifies their signatures as an operator
would (the `receiver` fixture points OPERATOR_WEBHOOK_URL at it); shared by the campaign and journey tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from campaigns.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, webhook_signature_valid

SECRET = "test-webhook-secret"


class Receiver:
    """What the operator's notification service does: verify, then accept (or fail on purpose)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.bad_signatures = 0
        self.fail_next = 0  # answer this many requests with 503 first
        self.always_status: int | None = None
        self.lock = threading.Lock()

    def handle(self, handler: BaseHTTPRequestHandler) -> int:
        body = handler.rfile.read(int(handler.headers["Content-Length"]))
        valid = webhook_signature_valid(
            secret=SECRET,
            timestamp=handler.headers.get(TIMESTAMP_HEADER),
            body=body,
            signature=handler.headers.get(SIGNATURE_HEADER),
        )
        with self.lock:
            if not valid:
                self.bad_signatures += 1
                return 401
            if self.always_status:
                return self.always_status
            if self.fail_next:
                self.fail_next -= 1
                return 503
            self.requests.append(json.loads(body))
            return 204

    @property
    def delivery_ids(self) -> list[int]:
        return [m["delivery_id"] for r in self.requests for m in r["messages"]]


@pytest.fixture
def receiver(settings):
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            status = state.handle(self)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.OPERATOR_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/notify"
    settings.OPERATOR_WEBHOOK_SECRET = SECRET
    settings.CAMPAIGN_WEBHOOK_BACKOFF_S = 0.01
    yield state
    server.shutdown()
    server.server_close()
