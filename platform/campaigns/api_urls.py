"""Campaign endpoints under /api/v1/ (merchants), and the operator's inbox and tracking."""

from django.urls import path

from . import api

urlpatterns = [
    path("campaigns/", api.CampaignListCreateApi.as_view(), name="campaign-list"),
    path("campaigns/<int:pk>", api.CampaignDetailApi.as_view(), name="campaign-detail"),
    path("campaigns/<int:pk>/launch", api.CampaignLaunchApi.as_view(), name="campaign-launch"),
    path("campaigns/<int:pk>/cancel", api.CampaignCancelApi.as_view(), name="campaign-cancel"),
    path("campaigns/<int:pk>/report", api.CampaignReportApi.as_view(), name="campaign-report"),
    path("campaigns/<int:pk>/audience", api.CampaignAudienceApi.as_view(), name="campaign-audience"),
    path("campaigns/<int:pk>/forecast", api.CampaignForecastApi.as_view(), name="campaign-forecast"),
    path("campaigns/<int:pk>/segments", api.CampaignResponseSegmentApi.as_view(), name="campaign-response-segment"),
    path("campaigns/<int:pk>/persuadables", api.CampaignPersuadablesApi.as_view(), name="campaign-persuadables"),
    path("inbox/<str:pseudonym>", api.InboxApi.as_view(), name="inbox"),
    path("tracking/", api.TrackingApi.as_view(), name="tracking"),
]
