"""One error shape for the whole API, and no request ever answered with a 500 page.

Errors are `{"error": {"code": ..., "message": ..., "details": ...}}`. The services' plain domain errors
(`merchants.errors`) are turned into HTTP here and nowhere else in the API; DRF's own exceptions keep their status;
anything unexpected is logged with its traceback (never with request data, which may carry identifiers) and answered
with a generic 500 JSON body.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import Conflict, DomainError, Invalid, LimitExceeded, NotFound, Unprocessable

logger = logging.getLogger("dmp.api")


# The one table from a domain error's kind to its HTTP status; the portal's JSON answers use it too.
DOMAIN_ERROR_STATUS: dict[type[DomainError], int] = {
    Invalid: status.HTTP_400_BAD_REQUEST,
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    Unprocessable: status.HTTP_422_UNPROCESSABLE_ENTITY,
    LimitExceeded: status.HTTP_429_TOO_MANY_REQUESTS,
}


def domain_error_headers(exc: DomainError) -> dict[str, str] | None:
    """Headers a refusal carries: `Retry-After` (seconds) when a spent quota says when it renews."""
    if isinstance(exc, LimitExceeded) and exc.retry_after_seconds is not None:
        return {"Retry-After": str(max(1, exc.retry_after_seconds))}
    return None


def domain_error_status(exc: DomainError) -> int:
    for kind in type(exc).__mro__:
        if kind in DOMAIN_ERROR_STATUS:
            return DOMAIN_ERROR_STATUS[kind]
    return status.HTTP_400_BAD_REQUEST


class ApiError(exceptions.APIException):
    """An error of the API layer itself (a bad parameter, a body too large), with a status and a code.

    Views raise it; services never do (they raise `merchants.errors`)."""

    def __init__(self, message: str, *, code: str, status_code: int = 400, details=None):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.details = details
        self.error_code = code
        self.message = message


def error_response(status_code: int, code: str, message: str, details=None, headers=None) -> Response:
    body = {"error": {"code": code, "message": message}}
    if details is not None:
        body["error"]["details"] = details
    return Response(body, status=status_code, headers=headers)


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return error_response(
            domain_error_status(exc), exc.code, exc.message, exc.details, headers=domain_error_headers(exc)
        )
    if isinstance(exc, ApiError):
        return error_response(exc.status_code, exc.error_code, exc.message, exc.details)
    if isinstance(exc, Http404):
        return error_response(404, "not_found", "Not found.")
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return error_response(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            "too_large",
            f"The request body is larger than {limit:,} bytes, the limit for this endpoint.",
        )
    if isinstance(exc, RecursionError):
        # Nesting too deep to decode or to validate (a JSON body, or a JSON field inside one).
        return error_response(status.HTTP_400_BAD_REQUEST, "parse_error", "The JSON body is nested too deeply.")
    response = drf_exception_handler(exc, context)
    if response is not None:
        code = getattr(exc, "default_code", "error")
        if isinstance(exc, exceptions.ValidationError):
            return error_response(response.status_code, "invalid", "The request is not valid.", response.data)
        detail = response.data.get("detail", str(exc)) if isinstance(response.data, dict) else response.data
        headers = {k: v for k, v in response.items() if k in ("WWW-Authenticate", "Retry-After")}
        return error_response(response.status_code, code, str(detail), headers=headers)
    view = context.get("view")
    logger.exception(
        "api.unhandled_error",
        extra={"fields": {"view": type(view).__name__ if view else None, "error": type(exc).__name__}},
    )
    return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")
