"""Sign-in lockouts (django-axes) on the portal and the admin: audited, and lifted by officers.

django-axes counts failed sign-ins per username and client address and refuses the pair once
AXES_FAILURE_LIMIT is reached (settings: LOGIN_FAILURE_LIMIT, LOGIN_LOCKOUT_MINUTES). This module writes
the lockout into the audit log and gives officers an audited unlock. Audit entries name the account by user
id when it exists, else by a keyed digest of the username typed, and the address by a keyed digest: never
the raw username or address.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction

from .audit import audit_record

logger = logging.getLogger("dmp.privacy")


class LoginUnlockError(Exception):
    """Nothing to unlock; the message says why."""

    code = "nothing_locked"


def _digest(kind: str, value: str) -> str:
    return hmac.new(settings.AUDIT_KEY.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:16]


def _account(username: str) -> dict:
    user_id = get_user_model().objects.filter(username=username).values_list("pk", flat=True).first()
    if user_id is not None:
        return {"user_id": user_id}
    return {"username_digest": _digest("username", username)}


def _audited_key(username: str, address_digest: str) -> str:
    """Cache key marking a lockout as audited; an unlock bumps the username's generation, so the next one is."""
    user = _digest("username", username)
    generation = cache.get(f"privacy:login-unlocks:{user}", 0)
    return f"privacy:login-lockout-audited:{user}:{generation}:{address_digest}"


def _audited_forget(username: str) -> None:
    key = f"privacy:login-unlocks:{_digest('username', username)}"
    cache.add(key, 0, timeout=None)
    cache.incr(key)


def login_lockout_record(sender=None, *, request=None, username: str | None = None, ip_address=None, **_kw):
    """axes' user_locked_out signal: one `auth.login_locked_out` audit entry (no raw username or address).

    axes sends the signal again for every attempt refused during the lockout; only the first one per username
    and lockout period is written, so a guesser hammering a locked account cannot flood the log.
    """
    username = username or ""
    address_digest = _digest("address", str(ip_address or ""))
    try:
        first = cache.add(_audited_key(username, address_digest), 1, timeout=_lockout_seconds())
    except Exception:  # a cache outage must not turn a refused sign-in into a 500: audit it again rather than not
        first = True
    if not first:
        return
    details = {
        **_account(username),
        "address_digest": address_digest,
        "site": "admin" if request is not None and request.path.startswith("/admin/") else "portal",
        "failure_limit": settings.AXES_FAILURE_LIMIT,
    }
    with transaction.atomic():
        audit_record(actor="system:login_guard", action="auth.login_locked_out", object_type="User", details=details)
    logger.warning("auth.login_locked_out", extra={"fields": {k: v for k, v in details.items() if k != "site"}})


def _lockout_seconds() -> int:
    return max(60, int(float(settings.AXES_COOLOFF_TIME or 1) * 3600))


def login_unlock(*, username: str, actor: str, ip_address: str | None = None) -> int:
    """Lift the lockout of one username (from every address, or one): returns the attempt records removed.

    Audited as `auth.login_unlocked`. LoginUnlockError when nothing was recorded for it.
    """
    from axes.utils import reset

    with transaction.atomic():
        removed = reset(username=username) if ip_address is None else reset(ip=ip_address, username=username)
        if not removed:
            raise LoginUnlockError("No failed sign-ins are recorded for that username; nothing to unlock.")
        audit_record(
            actor=actor,
            action="auth.login_unlocked",
            object_type="User",
            counts={"attempt_records_removed": removed},
            details=_account(username) | ({"address_digest": _digest("address", ip_address)} if ip_address else {}),
        )
    _audited_forget(username)
    return removed
