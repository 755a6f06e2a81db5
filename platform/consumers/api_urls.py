"""Operator ingestion endpoints under /api/v1/."""

from django.urls import path

from .api import ConsentsIngestAPI, EventsIngestAPI, ProfilesIngestAPI

urlpatterns = [
    path("ingest/events", EventsIngestAPI.as_view(), name="ingest-events"),
    path("ingest/profiles", ProfilesIngestAPI.as_view(), name="ingest-profiles"),
    path("consents", ConsentsIngestAPI.as_view(), name="consents"),
]
