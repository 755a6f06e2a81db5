"""Signed POSTs to the operator's notification service.

Each request carries
    X-DMP-Timestamp: <unix seconds>
    X-DMP-Signature: sha256=<hex HMAC-SHA256(OPERATOR_WEBHOOK_SECRET, "<timestamp>." + raw body)>
The receiver recomputes the HMAC over the timestamp, a dot and the exact bytes of the body,
compares it in constant time, and rejects timestamps more than five minutes old (replays).
Every message in the body carries its delivery id, the idempotency key a receiver uses to
drop a message it has already shown (a batch may be re-sent after a crash).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from django.conf import settings

SIGNATURE_HEADER = "X-DMP-Signature"
TIMESTAMP_HEADER = "X-DMP-Timestamp"
MAX_CLOCK_SKEW_S = 300
# Statuses worth another try: the receiver may be briefly overloaded or restarting.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


WEBHOOK_NOT_CONFIGURED = "The webhook channel is not configured on this platform (no OPERATOR_WEBHOOK_URL)."


def channel_problem(channel: str) -> str | None:
    """Why a sender (a campaign, a journey) may not use this channel here, or None."""
    if channel == "webhook" and not settings.OPERATOR_WEBHOOK_URL:
        return WEBHOOK_NOT_CONFIGURED
    return None


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_signature_valid(
    *, secret: str, timestamp: str, body: bytes, signature: str, now: float | None = None
) -> bool:
    """What a receiver does; used by the tests' local server and documented for operators."""
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - sent_at) > MAX_CLOCK_SKEW_S:
        return False
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected, signature or "")


@dataclass(frozen=True)
class WebhookResult:
    ok: bool
    attempts: int
    error: str = ""


class _Retryable(Exception):
    pass


def _post_once(url: str, body: bytes, secret: str, timeout: float) -> None:
    timestamp = str(int(time.time()))
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's configured endpoint
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "merchant-dmp-campaigns/1",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: webhook_signature(secret=secret, timestamp=timestamp, body=body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        message = f"HTTP {exc.code} from the notification service"
        if exc.code in RETRYABLE_STATUSES:
            raise _Retryable(message) from exc
        raise RuntimeError(message) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Retryable(f"could not reach the notification service: {type(reason).__name__}") from exc


def webhook_post_longest_s(*, max_attempts: int | None = None, backoff_s: float | None = None) -> float:
    """How long `webhook_post` may wait for a refusing or silent service before it gives up: every attempt's timeout
    and the backoff between them (what a lease held across one POST must outlast)."""
    max_attempts = max_attempts or settings.CAMPAIGN_WEBHOOK_ATTEMPTS
    backoff_s = backoff_s if backoff_s is not None else settings.CAMPAIGN_WEBHOOK_BACKOFF_S
    return max_attempts * settings.CAMPAIGN_WEBHOOK_TIMEOUT_S + backoff_s * (2 ** (max_attempts - 1) - 1)


def webhook_post(payload: dict, *, max_attempts: int | None = None, backoff_s: float | None = None) -> WebhookResult:
    """POST one signed JSON payload, retrying transient failures with exponential backoff.

    Never raises for a delivery problem: the result says what happened, for the deliveries to record.
    """
    url = settings.OPERATOR_WEBHOOK_URL
    if not url:
        return WebhookResult(ok=False, attempts=0, error="no OPERATOR_WEBHOOK_URL is configured")
    max_attempts = max_attempts or settings.CAMPAIGN_WEBHOOK_ATTEMPTS
    backoff_s = backoff_s if backoff_s is not None else settings.CAMPAIGN_WEBHOOK_BACKOFF_S
    timeout = settings.CAMPAIGN_WEBHOOK_TIMEOUT_S
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    error = ""
    for attempt in range(1, max_attempts + 1):
        try:
            _post_once(url, body, settings.OPERATOR_WEBHOOK_SECRET, timeout)
            return WebhookResult(ok=True, attempts=attempt)
        except _Retryable as exc:
            error = str(exc)
            if attempt < max_attempts:
                time.sleep(backoff_s * (2 ** (attempt - 1)))
        except RuntimeError as exc:
            return WebhookResult(ok=False, attempts=attempt, error=str(exc))
    return WebhookResult(ok=False, attempts=max_attempts, error=f"{error} (gave up after {max_attempts} attempts)")
