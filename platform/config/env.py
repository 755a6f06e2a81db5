"""The one place that reads the process environment.

Every setting comes from here; settings.py only wires the values in. A value
that production needs and lacks raises ImproperlyConfigured at start-up rather
than falling back quietly.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value


def env_text(name: str, default: str) -> str:
    """Like env_str, except that a variable set to the empty string is that value (where empty means "none", as
    JOURNEY_QUIET_HOURS= does), not unset."""
    value = os.environ.get(name)
    return default if value is None else value


def env_bool(name: str, default: bool = False) -> bool:
    value = env_str(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_float(name: str, default: float) -> float:
    value = env_str(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from exc


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = env_str(name)
    if value is None:
        return list(default or [])
    return [part.strip() for part in value.split(",") if part.strip()]


def env_required(name: str, *, production: bool, dev_default: str) -> str:
    """A secret: mandatory in production, a fixed development value otherwise."""
    value = env_str(name)
    if value is not None:
        return value
    if production:
        raise ImproperlyConfigured(f"{name} must be set when DMP_ENV=production")
    return dev_default
