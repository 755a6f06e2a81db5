"""What the portal answers when a request is refused before any view runs."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.csrf import csrf_failure as django_csrf_failure

from portal.access import CSRF_FAILED, is_json_view
from portal.errors import json_error


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A CSRF failure: the portal's JSON error for a view its scripts fetch (which would otherwise read Django's
    HTML page as a broken answer), Django's page for everything else."""
    if is_json_view(request):
        return json_error(403, "csrf_failed", CSRF_FAILED)
    return django_csrf_failure(request, reason=reason)
