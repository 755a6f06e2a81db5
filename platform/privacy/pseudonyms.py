"""Pseudonymisation at the door.

Raw consumer identifiers (user ids, e-mail addresses, phone numbers) are
normalised and turned into HMAC-SHA256(PSEUDONYM_KEY, normalised id) the moment
they arrive. Only the pseudonym is stored; the raw value is never stored,
logged or echoed back in an error.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import lru_cache

from django.conf import settings

_PHONE_CHARS = re.compile(r"[\s().\-]")
_PHONE_SHAPE = re.compile(r"^\+?\d{6,15}$")


def normalise_identifier(raw: str) -> str:
    """One spelling per person: trimmed, e-mails lower-cased, phone numbers reduced to digits."""
    value = str(raw).strip()
    if "@" in value:
        return value.lower()
    compact = _PHONE_CHARS.sub("", value)
    if _PHONE_SHAPE.match(compact):
        return compact if compact.startswith("+") else compact.lstrip("0") or "0"
    return value


@lru_cache(maxsize=4)
def _key(secret: str) -> bytes:
    return secret.encode()


def pseudonymise(raw: str) -> str:
    """The consumer pseudonym: 64 hex characters."""
    key = _key(settings.PSEUDONYM_KEY)
    return hmac.new(key, normalise_identifier(raw).encode(), hashlib.sha256).hexdigest()


def make_pseudonymiser():
    """A fast pseudonymiser for bulk ingestion: the key is bound once and repeated ids are cached."""
    key = _key(settings.PSEUDONYM_KEY)
    new = hmac.new
    sha256 = hashlib.sha256
    cache: dict[str, str] = {}

    def pseudonymise_fast(raw: str) -> str:
        found = cache.get(raw)
        if found is None:
            found = new(key, normalise_identifier(raw).encode(), sha256).hexdigest()
            if len(cache) < 2_000_000:
                cache[raw] = found
        return found

    return pseudonymise_fast


def merchant_pseudonym(*, merchant_id: int, pseudonym: str) -> str:
    """What a merchant may see or export: HMAC(key, merchant id + pseudonym).

    Two merchants get different values for the same consumer, so their lists cannot be joined.
    """
    key = _key(settings.PSEUDONYM_KEY)
    return hmac.new(key, f"merchant:{merchant_id}:{pseudonym}".encode(), hashlib.sha256).hexdigest()[:32]


def is_pseudonym(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)
