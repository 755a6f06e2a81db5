"""URL wiring (layer 7): the admin, the REST API under /api/v1/, its schema and docs, the portal."""

from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

api_v1 = [
    path("", include("merchants.api_urls")),
    path("", include("consumers.api_urls")),
    path("", include("privacy.api_urls")),
    path("", include("tags.api_urls")),
    path("", include("recommend.api_urls")),
    path("", include("segments.api_urls")),
    path("", include("campaigns.api_urls")),
    path("", include("journeys.api_urls")),
    path("schema/", SpectacularAPIView.as_view(permission_classes=[], authentication_classes=[]), name="schema"),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[], authentication_classes=[]),
        name="api-docs",
    ),
    # One reference page. Redoc's bundle always fetches its vendor's logo from a CDN, and the platform's pages load
    # nothing from outside it; the old address leads to the Swagger UI page, which the sidecar serves whole.
    path("redoc/", RedirectView.as_view(pattern_name="api-docs", permanent=True), name="api-redoc"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("", include("portal.urls")),
]


def not_found(request, exception=None):
    """The API answers an unknown address in its own error shape (never repeating the address); the rest, a page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": {"code": "not_found", "message": "Not found."}}, status=404)
    return page_not_found(request, exception)


handler404 = not_found
