from django.urls import path, register_converter

from .views import account, campaigns, dashboard, data_use, journeys, keys, segments, store_settings, tags


class ObjectIdConverter:
    """A database id: at most 18 digits, so an absurd number is a 404 rather than an integer overflow."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(ObjectIdConverter, "id")

app_name = "portal"

urlpatterns = [
    path("login/", account.SignInView.as_view(), name="login"),
    path("logout/", account.SignOutView.as_view(), name="logout"),
    path("switch-merchant/", account.switch_merchant, name="switch_merchant"),
    path("", dashboard.dashboard, name="dashboard"),
    path("api-keys/", keys.api_keys, name="api_keys"),
    path("settings/", store_settings.merchant_settings, name="settings"),
    path("api-keys/<id:key_id>/revoke/", keys.api_key_revoke_view, name="api_key_revoke"),
    path("how-your-data-is-used/", data_use.data_use, name="data_use"),
    path("segments/", segments.segment_list, name="segments"),
    path("segments/new/", segments.segment_new, name="segment_new"),
    path("segments/estimate/", segments.estimate_json, name="estimate_json"),
    path("segments/parse/", segments.parse_json, name="segment_parse_json"),
    path("segments/<id:segment_id>/", segments.segment_detail, name="segment_detail"),
    path("segments/<id:segment_id>/edit/", segments.segment_edit, name="segment_edit"),
    path("segments/<id:segment_id>/refresh/", segments.segment_refresh, name="segment_refresh"),
    path("segments/<id:segment_id>/delete/", segments.segment_delete_view, name="segment_delete"),
    path("segments/<id:segment_id>/clone/", segments.segment_clone_view, name="segment_clone"),
    path("segments/<id:segment_id>/lookalike/", segments.segment_lookalike, name="segment_lookalike"),
    path("tags/", tags.tag_explorer, name="tags"),
    path("tags/catalogue.json", segments.tag_catalogue_json, name="tag_catalogue_json"),
    path("segments/values.json", segments.action_values_json, name="action_values_json"),
    path("journeys/", journeys.journey_list, name="journeys"),
    path("journeys/new/", journeys.journey_new, name="journey_new"),
    path("journeys/build/", journeys.journey_build, name="journey_build"),
    path("journeys/build/save/", journeys.journey_create_json, name="journey_create_json"),
    path("journeys/<id:journey_id>/", journeys.journey_detail, name="journey_detail"),
    path("journeys/<id:journey_id>/edit/", journeys.journey_edit, name="journey_edit"),
    path("journeys/<id:journey_id>/save/", journeys.journey_save_json, name="journey_save_json"),
    path("journeys/<id:journey_id>/activate/", journeys.journey_activate_view, name="journey_activate"),
    path("journeys/<id:journey_id>/pause/", journeys.journey_pause_view, name="journey_pause"),
    path(
        "journeys/<id:journey_id>/steps/<int:step>/variants/",
        journeys.journey_step_variants,
        name="journey_step_variants",
    ),
    path("campaigns/", campaigns.campaign_list, name="campaigns"),
    path("campaigns/new/", campaigns.campaign_new, name="campaign_new"),
    path("campaigns/preview/", campaigns.campaign_preview_json, name="campaign_preview_json"),
    path("campaigns/<id:campaign_id>/", campaigns.campaign_detail, name="campaign_detail"),
    path("campaigns/<id:campaign_id>/edit/", campaigns.campaign_edit, name="campaign_edit"),
    path("campaigns/<id:campaign_id>/launch/", campaigns.campaign_launch_view, name="campaign_launch"),
    path("campaigns/<id:campaign_id>/cancel/", campaigns.campaign_cancel_view, name="campaign_cancel"),
    path("campaigns/<id:campaign_id>/test-send/", campaigns.campaign_test_send_view, name="campaign_test_send"),
    path("campaigns/<id:campaign_id>/delete/", campaigns.campaign_delete_view, name="campaign_delete"),
    path("campaigns/<id:campaign_id>/progress.json", campaigns.campaign_progress_json, name="campaign_progress_json"),
    path("campaigns/<id:campaign_id>/forecast/", campaigns.campaign_forecast_fragment, name="campaign_forecast"),
    path("campaigns/<id:campaign_id>/report/", campaigns.campaign_report_view, name="campaign_report"),
    path("campaigns/<id:campaign_id>/report.csv", campaigns.campaign_report_csv, name="campaign_report_csv"),
    path(
        "campaigns/<id:campaign_id>/persuadables/",
        campaigns.campaign_persuadables_view,
        name="campaign_persuadables",
    ),
    path(
        "campaigns/<id:campaign_id>/segments/",
        campaigns.campaign_response_segment_view,
        name="campaign_response_segment",
    ),
]
