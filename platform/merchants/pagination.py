"""The API's one pagination: limit and offset, checked strictly.

DRF's LimitOffsetPagination quietly ignores a bad limit and passes any offset
to the database, where 2^63 and more overflow (a 500). Here a limit or offset
that is not a whole number in range is a 400 that names the parameter.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter
from rest_framework import pagination

from .api_errors import ApiError

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_OFFSET = 1_000_000_000


def _bounded_int(request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    problem = None
    if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 20:
        problem = "Not a whole number."
    elif not low <= int(text) <= high:
        problem = f"Out of range: between {low:,} and {high:,}."
    if problem:
        raise ApiError(
            f"{name} must be a whole number between {low:,} and {high:,}.",
            code="invalid_parameter",
            details={name: [problem]},
        )
    return int(text)


class BoundedLimitOffsetPagination(pagination.LimitOffsetPagination):
    default_limit = DEFAULT_PAGE_SIZE
    max_limit = MAX_PAGE_SIZE

    def get_limit(self, request):
        return _bounded_int(request, self.limit_query_param, default=self.default_limit, low=1, high=self.max_limit)

    def get_offset(self, request):
        return _bounded_int(request, self.offset_query_param, default=0, low=0, high=MAX_OFFSET)


def page_parameters() -> list[OpenApiParameter]:
    """The limit and offset query parameters as the schema documents them."""
    return [
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
            OpenApiParameter.QUERY,
            description=f"Page size, 1 to {MAX_PAGE_SIZE:,} (default {DEFAULT_PAGE_SIZE}).",
        ),
        OpenApiParameter(
            "offset",
            {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
            OpenApiParameter.QUERY,
            description="Where the page starts (default 0).",
        ),
    ]
