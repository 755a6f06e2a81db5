from django.urls import path, register_converter

from .views import account, dashboard, data_use, keys, segments


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
    path("api-keys/<id:key_id>/revoke/", keys.api_key_revoke_view, name="api_key_revoke"),
    path("how-your-data-is-used/", data_use.data_use, name="data_use"),
    path("segments/", segments.segment_list, name="segments"),
    path("segments/new/", segments.segment_new, name="segment_new"),
    path("segments/estimate/", segments.estimate_json, name="estimate_json"),
    path("segments/<id:segment_id>/", segments.segment_detail, name="segment_detail"),
    path("segments/<id:segment_id>/edit/", segments.segment_edit, name="segment_edit"),
    path("segments/<id:segment_id>/refresh/", segments.segment_refresh, name="segment_refresh"),
    path("segments/<id:segment_id>/delete/", segments.segment_delete_view, name="segment_delete"),
    path("segments/<id:segment_id>/lookalike/", segments.segment_lookalike, name="segment_lookalike"),
    path("tags/catalogue.json", segments.tag_catalogue_json, name="tag_catalogue_json"),
]
