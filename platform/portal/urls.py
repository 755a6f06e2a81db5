from django.urls import path

from .views import account, dashboard, data_use, keys

app_name = "portal"

urlpatterns = [
    path("login/", account.SignInView.as_view(), name="login"),
    path("logout/", account.SignOutView.as_view(), name="logout"),
    path("switch-merchant/", account.switch_merchant, name="switch_merchant"),
    path("", dashboard.dashboard, name="dashboard"),
    path("api-keys/", keys.api_keys, name="api_keys"),
    path("api-keys/<int:key_id>/revoke/", keys.api_key_revoke_view, name="api_key_revoke"),
    path("how-your-data-is-used/", data_use.data_use, name="data_use"),
]
