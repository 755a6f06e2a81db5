"""Segments API routes under /api/v1/. A trailing slash is optional on every route."""

from django.urls import re_path

from . import api

_ID = r"(?P<segment_id>[0-9]{1,18})"

urlpatterns = [
    re_path(r"^audiences/estimate/?$", api.AudienceEstimateApi.as_view(), name="audiences-estimate"),
    re_path(r"^segments/?$", api.SegmentsApi.as_view(), name="segments"),
    re_path(rf"^segments/{_ID}/?$", api.SegmentDetailApi.as_view(), name="segment-detail"),
    re_path(rf"^segments/{_ID}/refresh/?$", api.SegmentRefreshApi.as_view(), name="segment-refresh"),
    re_path(rf"^segments/{_ID}/insights/?$", api.SegmentInsightsApi.as_view(), name="segment-insights"),
    re_path(
        rf"^segments/{_ID}/overlap/(?P<other_id>[0-9]{{1,18}})/?$",
        api.SegmentOverlapApi.as_view(),
        name="segment-overlap",
    ),
    re_path(rf"^segments/{_ID}/lookalike/?$", api.SegmentLookalikeApi.as_view(), name="segment-lookalike"),
]
