import pytest
from django.test import Client

from journeys.templates import journey_from_template
from merchants.models import Role
from merchants.services import membership_grant
from portal.access import CAPABILITY_REFUSALS, SESSION_MERCHANT_KEY


def test_anonymous_users_are_sent_to_sign_in(db):
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/")


def test_a_user_without_a_merchant_gets_a_clear_page_not_an_error(django_user_model):
    user = django_user_model.objects.create_user(username="nobody", password="x-pass-123456")
    client = Client()
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 403
    assert "not a member of any merchant" in response.content.decode()


def test_switcher_keeps_the_choice_in_the_session(portal_client, merchant_user, merchant, other_merchant):
    membership_grant(user=merchant_user, merchant=other_merchant, role=Role.ANALYST)
    assert "Acme Outdoor" in portal_client.get("/").content.decode()
    response = portal_client.post("/switch-merchant/", {"merchant": other_merchant.pk, "next": "/api-keys/"})
    assert response.status_code == 302 and response["Location"] == "/api-keys/"
    assert portal_client.session[SESSION_MERCHANT_KEY] == other_merchant.pk
    page = portal_client.get("/").content.decode()
    assert "<h1>Globex Beauty</h1>" in page


def test_switching_to_a_merchant_you_do_not_belong_to_is_a_404(portal_client, merchant, other_merchant):
    response = portal_client.post("/switch-merchant/", {"merchant": other_merchant.pk})
    assert response.status_code == 404
    assert portal_client.session.get(SESSION_MERCHANT_KEY) in (None, merchant.pk)


@pytest.mark.parametrize("payload", [{}, {"merchant": "abc"}, {"merchant": "-1"}, {"merchant": "9" * 40}])
def test_switcher_rejects_garbage_without_an_error_page(portal_client, payload):
    response = portal_client.post("/switch-merchant/", payload)
    assert response.status_code in (302, 404)


def test_switching_from_an_object_page_goes_home(portal_client, merchant_user, other_merchant):
    membership_grant(user=merchant_user, merchant=other_merchant, role=Role.OWNER)
    response = portal_client.post("/switch-merchant/", {"merchant": other_merchant.pk, "next": "/api-keys/12/revoke/"})
    assert response["Location"] == "/"
    response = portal_client.post("/switch-merchant/", {"merchant": other_merchant.pk, "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_a_membership_removed_mid_session_falls_back_to_a_remaining_merchant(
    portal_client, merchant_user, merchant, other_merchant
):
    membership_grant(user=merchant_user, merchant=other_merchant, role=Role.OWNER)
    portal_client.post("/switch-merchant/", {"merchant": other_merchant.pk})
    merchant_user.memberships.filter(merchant=other_merchant).delete()
    assert "<h1>Acme Outdoor</h1>" in portal_client.get("/").content.decode()


def test_merchant_users_cannot_enter_the_admin(portal_client):
    response = portal_client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


# --- the views the portal's scripts fetch: every refusal is the portal's JSON error, which the scripts show ---

JSON_ROUTES = [
    ("post", "/journeys/build/save/"),
    ("post", "/segments/estimate/"),
    ("post", "/segments/parse/"),
    ("post", "/campaigns/preview/"),
    ("get", "/segments/values.json?argument=category"),
    ("get", "/tags/catalogue.json"),
]


def _fetch(client: Client, method: str, path: str):
    """As the portal's scripts call: a JSON body, asking for JSON, with the page's CSRF token when it has one."""
    if method == "get":
        return client.get(path, HTTP_ACCEPT="application/json")
    return client.post(path, data="{}", content_type="application/json", HTTP_ACCEPT="application/json")


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_a_signed_out_script_is_told_to_sign_in_again_not_sent_the_login_page(db, method, path):
    response = _fetch(Client(), method, path)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "signed_out"
    assert "Sign in again" in error["message"]


def test_a_session_signed_out_in_another_tab_is_a_401_on_the_next_save(portal_client):
    portal_client.post("/logout/")  # the other tab
    response = _fetch(portal_client, "post", "/journeys/build/save/")
    assert response.status_code == 401 and response.json()["error"]["code"] == "signed_out"


def test_the_pages_still_send_a_signed_out_browser_to_sign_in(db):
    for path in ("/journeys/build/", "/segments/new/", "/campaigns/new/"):
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


def test_a_missing_capability_is_a_json_403_naming_it(analyst_client):
    response = _fetch(analyst_client, "post", "/journeys/build/save/")
    assert response.status_code == 403
    assert response.json() == {"error": {"code": "forbidden", "message": CAPABILITY_REFUSALS["manage_campaigns"]}}
    # The page itself keeps its HTML refusal.
    assert analyst_client.get("/journeys/build/").status_code == 403
    assert "application/json" not in analyst_client.get("/journeys/build/")["Content-Type"]


def test_a_user_without_a_merchant_is_a_json_403(django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_user(username="nobody", password="x-pass-123456"))
    response = _fetch(client, "post", "/segments/parse/")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


def test_another_merchants_object_and_a_missing_one_are_the_same_json_404(portal_client, other_merchant):
    foreign = journey_from_template(merchant=other_merchant, key="post_purchase", actor="test")
    theirs = _fetch(portal_client, "post", f"/journeys/{foreign.pk}/save/")
    missing = _fetch(portal_client, "post", f"/journeys/{foreign.pk + 1000}/save/")
    progress = _fetch(portal_client, "get", "/campaigns/999999/progress.json")

    assert theirs.status_code == missing.status_code == progress.status_code == 404
    assert theirs.content == missing.content == progress.content
    assert theirs.json()["error"]["code"] == "not_found"


def test_a_csrf_failure_is_a_json_403_that_says_to_reload(merchant_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(merchant_user)
    response = _fetch(client, "post", "/journeys/build/save/")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "csrf_failed" and "Reload the page" in error["message"]


def test_a_csrf_failure_on_a_form_keeps_the_html_page(merchant_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(merchant_user)
    response = client.post("/segments/new/", {"name": "x"})
    assert response.status_code == 403
    assert "CSRF" in response.content.decode() and "application/json" not in response["Content-Type"]
