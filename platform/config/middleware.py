"""Wiring-level middleware."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, get_resolver


class ApiTrailingSlashMiddleware:
    """The API answers an address with or without its trailing slash, on every method.

    The documented form (the OpenAPI schema's) is the canonical one; the other spelling is served by the same view
    rather than redirected, because a redirect would drop a POST's body and every client would have to follow it.
    Runs before CommonMiddleware so APPEND_SLASH never redirects an API call.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith("/api/") and len(path) > len("/api/"):
            resolver = get_resolver()
            try:
                resolver.resolve(path)
            except Resolver404:
                other = path[:-1] if path.endswith("/") else path + "/"
                try:
                    resolver.resolve(other)
                except Resolver404:
                    pass
                else:
                    request.path_info = other
                    request.path = request.path[: len(request.path) - len(path)] + other
        return self.get_response(request)
