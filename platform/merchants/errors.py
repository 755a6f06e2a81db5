"""Plain domain errors: what services raise when they refuse a request.

Services (and selectors) raise these, never an HTTP or DRF class; they know nothing of status codes. Only the two
doors translate them: the API's exception handler (`merchants.api_errors`) and the portal (`portal.errors`).

Each error carries a human message, a stable machine-readable `code` and optional `details` (a JSON-able dict, such
as per-field problems, or where a bad expression went wrong). `field`, `row` and `position` read the usual keys of
`details` for callers that attach the error to a form field or an input row.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal a caller can act on. Subclasses say what kind; the doors map kinds to HTTP statuses."""

    default_code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details

    def _detail(self, key: str) -> Any:
        return self.details.get(key) if isinstance(self.details, dict) else None

    @property
    def field(self) -> str | None:
        """The input field the error is about, when it is about one."""
        return self._detail("field")

    @property
    def row(self) -> int | None:
        """The input row (1-based) the error is about, when it is about one."""
        return self._detail("row")

    @property
    def position(self) -> int | None:
        """The character position (1-based) in a text input the error is about, when it is about one."""
        return self._detail("position")


class Invalid(DomainError):
    """The input is malformed or breaks a rule of its own (HTTP 400 at the doors)."""

    default_code = "invalid"


class NotFound(DomainError):
    """The object does not exist, or is not the caller's: the same answer for both (HTTP 404)."""

    default_code = "not_found"


class Conflict(DomainError):
    """The request clashes with the current state: a duplicate, a wrong status, a dependent object (HTTP 409)."""

    default_code = "conflict"


class Unprocessable(DomainError):
    """Well-formed input the platform cannot act on as it stands (HTTP 422)."""

    default_code = "unprocessable"


class LimitExceeded(DomainError):
    """A quota is spent for now (HTTP 429); `retry_after_seconds` says when asking again can succeed."""

    default_code = "limit_exceeded"

    @property
    def retry_after_seconds(self) -> int | None:
        value = self._detail("retry_after_seconds")
        return int(value) if value is not None else None
