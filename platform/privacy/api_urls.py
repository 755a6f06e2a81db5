"""Privacy endpoints under /api/v1/: data-subject requests, counter statements, blacklist (operator keys); the
privacy budget (merchant keys)."""

from django.urls import path

from . import api

urlpatterns = [
    path("privacy/requests", api.SubjectRequestCreate.as_view(), name="privacy-request-create"),
    path("privacy/requests/<int:pk>", api.SubjectRequestDetail.as_view(), name="privacy-request-detail"),
    path("privacy/counter-statements", api.CounterStatementCreate.as_view(), name="privacy-counter-statement-create"),
    path(
        "privacy/counter-statements/<int:pk>",
        api.CounterStatementDetail.as_view(),
        name="privacy-counter-statement-detail",
    ),
    path("privacy/blacklist", api.Blacklist.as_view(), name="privacy-blacklist"),
    path("privacy/budget", api.PrivacyBudgetApi.as_view(), name="privacy-budget"),  # merchant keys
]
