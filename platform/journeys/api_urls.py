"""Journey endpoints under /api/v1/ (merchants)."""

from django.urls import path

from . import api

urlpatterns = [
    path("journeys/", api.JourneyListCreateApi.as_view(), name="journey-list"),
    path("journeys/<int:pk>", api.JourneyDetailApi.as_view(), name="journey-detail"),
    path("journeys/<int:pk>/activate", api.JourneyActivateApi.as_view(), name="journey-activate"),
    path("journeys/<int:pk>/pause", api.JourneyPauseApi.as_view(), name="journey-pause"),
    path("journeys/<int:pk>/report", api.JourneyReportApi.as_view(), name="journey-report"),
]
