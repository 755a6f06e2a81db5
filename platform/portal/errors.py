"""The portal's one place for the services' domain errors: a message next to the form field it is about, or the
status of the JSON error the builder's script reads (the same status the API would answer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.http import JsonResponse

from merchants.api_errors import domain_error_headers, domain_error_status
from merchants.errors import DomainError

# What of a refusal's details the portal's scripts read beside its code and message: the field and per-field
# problems (the journey builder), where an expression went wrong (the segment editor), when a spent budget renews.
JSON_ERROR_DETAILS = (
    "field",
    "problems",
    "position",
    "offset",
    "line",
    "column",
    "path",
    "expected",
    "found",
    "renews_at",
)


def form_error_from_service(form: forms.Form, exc: DomainError, *, field_by_code: dict[str, str]) -> None:
    """Attach a service's refusal to the field it concerns (by its error code), or to the form as a whole."""
    field = field_by_code.get(exc.code)
    form.add_error(field if field in form.fields else None, exc.message)


def http_status_of(exc: DomainError) -> int:
    """The status the portal's JSON endpoints answer a service's refusal with: the API's, from its one table."""
    return domain_error_status(exc)


def json_error(status: int, code: str, message: str, details: Any = None) -> JsonResponse:
    """The portal's JSON error, one shape for every script: `{"error": {"code", "message", ...}}` with the keys of
    JSON_ERROR_DETAILS that `details` has."""
    error: dict[str, Any] = {"code": code, "message": message}
    if isinstance(details, dict):
        error.update({key: details[key] for key in JSON_ERROR_DETAILS if key in details})
    return JsonResponse({"error": error}, status=status)


def json_error_of(exc: DomainError) -> JsonResponse:
    """A service's refusal as the portal's JSON error: the API's status and headers (Retry-After), its details."""
    response = json_error(http_status_of(exc), exc.code, exc.message, exc.details)
    for header, value in (domain_error_headers(exc) or {}).items():
        response[header] = value
    return response


@dataclass(frozen=True)
class ExpressionProblem:
    """A bad segment expression, drawn the way the editor draws it: the line, a caret under the column, why."""

    line_text: str
    column: int  # 1-based
    where: str
    message: str

    @property
    def caret(self) -> str:
        return " " * (self.column - 1) + "^"

    @classmethod
    def from_details(cls, expression: str, message: str, details: dict | None) -> ExpressionProblem:
        details = details or {}
        line = int(details.get("line") or 1)
        column = int(details.get("column") or (int(details.get("offset") or 0) + 1))
        lines = expression.split("\n") or [""]
        line_text = lines[line - 1] if 0 < line <= len(lines) else lines[-1]
        where = f"line {line}, column {column}" if line > 1 else f"column {column}"
        line_text, shown_column = _window(line_text, max(1, column))
        return cls(line_text=line_text, column=shown_column, where=where, message=message)


ERROR_WINDOW = 60  # characters of a long line shown around the mistake, so the caret is on screen without scrolling


def _window(line: str, column: int) -> tuple[str, int]:
    """A long line cut to ERROR_WINDOW characters around `column` (… marks what is left out), and the column of the
    mistake in what is shown; a short line as it is. `where` keeps naming the column in the whole line."""
    if len(line) <= ERROR_WINDOW:
        return line, column
    start = min(max(0, column - 1 - ERROR_WINDOW // 2), max(0, len(line) - ERROR_WINDOW))
    end = start + ERROR_WINDOW
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(line) else ""
    return prefix + line[start:end] + suffix, column - start + len(prefix)
