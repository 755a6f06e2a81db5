"""Segments API routes under /api/v1/ (DESIGN.md §4)."""

from django.urls import path

from . import api

urlpatterns = [
    path("audiences/estimate", api.AudienceEstimateApi.as_view(), name="audiences-estimate"),
    path("audiences/values", api.ActionValuesApi.as_view(), name="audiences-values"),
    path("segments/", api.SegmentsApi.as_view(), name="segments"),
    path("segments/<int:segment_id>", api.SegmentDetailApi.as_view(), name="segment-detail"),
    path("segments/<int:segment_id>/clone", api.SegmentCloneApi.as_view(), name="segment-clone"),
    path("segments/<int:segment_id>/refresh", api.SegmentRefreshApi.as_view(), name="segment-refresh"),
    path("segments/<int:segment_id>/insights", api.SegmentInsightsApi.as_view(), name="segment-insights"),
    path("segments/<int:segment_id>/overlap/<int:other_id>", api.SegmentOverlapApi.as_view(), name="segment-overlap"),
    path("segments/<int:segment_id>/lookalike", api.SegmentLookalikeApi.as_view(), name="segment-lookalike"),
]
