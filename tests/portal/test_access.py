import pytest
from django.test import Client

from merchants.models import Role
from merchants.services import membership_grant
from portal.access import SESSION_MERCHANT_KEY


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
