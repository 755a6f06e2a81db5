"""Pseudonymisation at the door.

Raw consumer identifiers (user ids, e-mail addresses, phone numbers) are
normalised (e-mails lower-cased, phone numbers in E.164 under PHONE_DEFAULT_REGION)
and turned into HMAC-SHA256(PSEUDONYM_KEY, normalised id) the moment they arrive.
Only the pseudonym is stored; the raw value is never stored, logged or echoed
back in an error.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import lru_cache

import phonenumbers
from django.conf import settings

# What a phone number may be written with besides digits: spaces, hyphens, dots, parentheses, slashes.
_PHONE_CHARS = re.compile(r"[\s().\-/]")
# A phone-shaped identifier once those are gone: "+" or "00" (international prefix) or nothing, then 6 to 15 digits.
_PHONE_SHAPE = re.compile(r"^(?:\+|00)?[0-9]{6,15}$", re.ASCII)


class InvalidIdentifier(ValueError):
    """A raw identifier that cannot be turned into a pseudonym. The message never repeats the value."""

    code = "invalid_identifier"


def looks_like_phone_number(raw: str) -> bool:
    """True when the identifier is read as a phone number: digits and phone punctuation only, 6 to 15 digits,
    optionally after "+" or "00". Anything with a letter or an "@" is not (a user id or an e-mail address)."""
    return "@" not in raw and bool(_PHONE_SHAPE.match(_PHONE_CHARS.sub("", raw.strip())))


def normalise_phone_number(raw: str, *, region: str) -> str:
    """A phone number in E.164 ("+6590001234"), read under `region` when it has no international prefix.

    "00" is taken as the international prefix wherever the number was written; a number that is not a possible
    number (wrong length for its country, or only dialable locally) raises InvalidIdentifier.
    """
    compact = _PHONE_CHARS.sub("", raw.strip())
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    try:
        number = phonenumbers.parse(compact, region)
    except phonenumbers.NumberParseException:
        raise InvalidIdentifier(_phone_error(region)) from None
    if phonenumbers.is_possible_number_with_reason(number) != phonenumbers.ValidationResult.IS_POSSIBLE:
        raise InvalidIdentifier(_phone_error(region))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _phone_error(region: str) -> str:
    return (
        f"looks like a phone number but is not a possible one (with its country code, or as a number of region "
        f"{region}); send all-digit user ids with a prefix such as 'user:'"
    )


def normalise_identifier(raw: str) -> str:
    """One spelling per person.

    - contains "@": an e-mail address, trimmed and lower-cased;
    - phone-shaped (see looks_like_phone_number): a phone number, in E.164 under PHONE_DEFAULT_REGION;
      InvalidIdentifier when it is not a possible number;
    - anything else: a user id, trimmed.
    """
    value = str(raw).strip()
    if "@" in value:
        return value.lower()
    if looks_like_phone_number(value):
        return normalise_phone_number(value, region=settings.PHONE_DEFAULT_REGION)
    return value


@lru_cache(maxsize=4)
def _key(secret: str) -> bytes:
    return secret.encode()


def pseudonymise(raw: str) -> str:
    """The consumer pseudonym: 64 hex characters. InvalidIdentifier for a phone-shaped id that is no number."""
    key = _key(settings.PSEUDONYM_KEY)
    return hmac.new(key, normalise_identifier(raw).encode(), hashlib.sha256).hexdigest()


# What a phone-shaped identifier can start with (after trimming): a digit, "+", or phone punctuation. An id starting
# with anything else (a letter, say) is read as a user id without running the phone-shape expressions.
_PHONE_FIRST = frozenset("0123456789+().-/")


def make_pseudonymiser():
    """A fast pseudonymiser for bulk ingestion: the key is bound once, repeated ids are cached, and the common ids
    (user ids starting with a letter, e-mail addresses) skip the phone-shape test. Same values as `pseudonymise`."""
    key = _key(settings.PSEUDONYM_KEY)
    digest = hmac.digest  # one-shot HMAC in C: no HMAC object per id
    cache: dict[str, str] = {}

    def pseudonymise_fast(raw: str) -> str:
        found = cache.get(raw)
        if found is None:
            value = raw.strip()
            if "@" in value:
                value = value.lower()
            elif value[:1] in _PHONE_FIRST:
                value = normalise_identifier(value)
            found = digest(key, value.encode(), "sha256").hex()
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


# The rule before E.164 (phone numbers reduced to digits, leading zeros dropped unless written with "+"). Only for
# retiring the pseudonyms it made (privacy.pseudonym_upgrade); never used for anything that arrives.
_LEGACY_PHONE_CHARS = re.compile(r"[\s().\-]")
_LEGACY_PHONE_SHAPE = re.compile(r"^\+?\d{6,15}$")


def legacy_pseudonymise(raw: str) -> str:
    """The pseudonym the pre-E.164 rule gave this identifier."""
    value = str(raw).strip()
    if "@" in value:
        normalised = value.lower()
    else:
        compact = _LEGACY_PHONE_CHARS.sub("", value)
        if _LEGACY_PHONE_SHAPE.match(compact):
            normalised = compact if compact.startswith("+") else compact.lstrip("0") or "0"
        else:
            normalised = value
    return hmac.new(_key(settings.PSEUDONYM_KEY), normalised.encode(), hashlib.sha256).hexdigest()


def is_pseudonym(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)
