from django.urls import path, register_converter

from .views import account, dashboard, data_use, keys


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
]
