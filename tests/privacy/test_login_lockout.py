"""Issue 11, item 7: no unlimited password guessing on the portal or the admin.

After LOGIN_FAILURE_LIMIT failures for one username from one address the pair is refused, even with the right
password, with a 429 page that says why; the lockout is audited without the raw username or address; an officer
lifts it (admin action or `manage.py login_unlock`), also audited. API keys are not passwords and are untouched.
"""

from __future__ import annotations

import io
import json

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from privacy.models import AuditEntry

PORTAL = "/login/"
ADMIN = "/admin/login/"


@pytest.fixture(autouse=True)
def _fresh_cache_and_fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # only the count matters here
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(username="opsadmin", password="right-pass-123", is_staff=True)


def sign_in(url: str, password: str, username: str = "opsadmin", address: str = "203.0.113.7"):
    return Client(REMOTE_ADDR=address).post(url, {"username": username, "password": password})


def signed_in(response) -> bool:
    return response.status_code == 302


def lock_out(url: str, **kwargs) -> None:
    from django.conf import settings

    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = sign_in(url, "wrong-guess", **kwargs)
        assert not signed_in(response)


@pytest.mark.parametrize("url", [PORTAL, ADMIN])
def test_after_the_limit_even_the_right_password_is_refused_with_an_explanation(staff, url, settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    lock_out(url)
    response = sign_in(url, "right-pass-123")
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed sign-in attempts" in page and "privacy officer" in page
    assert "right-pass-123" not in page
    # The pair is locked, not the account everywhere: the same user from another address still signs in.
    assert signed_in(sign_in(url, "right-pass-123", address="198.51.100.9"))


@pytest.mark.parametrize("url", [PORTAL, ADMIN])
def test_below_the_limit_the_right_password_works_and_resets_the_count(staff, url, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(url, "wrong-guess")
    assert signed_in(sign_in(url, "right-pass-123"))
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(url, "wrong-guess")
    assert signed_in(sign_in(url, "right-pass-123"))


def test_a_lockout_is_audited_once_without_the_username_or_the_address(staff):
    lock_out(PORTAL)
    for _ in range(3):  # hammering the locked pair writes nothing more
        assert sign_in(PORTAL, "wrong-guess").status_code == 429
    entries = list(AuditEntry.objects.filter(action="auth.login_locked_out"))
    assert len(entries) == 1
    details = entries[0].details
    assert details["user_id"] == staff.pk
    assert details["site"] == "portal" and details["failure_limit"] == 5
    text = json.dumps(list(AuditEntry.objects.values()), default=str).lower()
    assert "opsadmin" not in text and "203.0.113.7" not in text


def test_an_unknown_username_is_audited_by_digest(db):
    lock_out(ADMIN, username="no-such-user@example.com")
    details = AuditEntry.objects.get(action="auth.login_locked_out").details
    assert "user_id" not in details and len(details["username_digest"]) == 16
    assert "no-such-user" not in json.dumps(details)


def test_an_officer_unlocks_with_the_command(staff):
    lock_out(PORTAL)
    assert sign_in(PORTAL, "right-pass-123").status_code == 429
    out = io.StringIO()
    call_command("login_unlock", "--username", "opsadmin", stdout=out)
    assert "unlocked" in out.getvalue()
    assert signed_in(sign_in(PORTAL, "right-pass-123"))
    unlocked = AuditEntry.objects.get(action="auth.login_unlocked")
    assert unlocked.actor == "command:login_unlock" and unlocked.details == {"user_id": staff.pk}


def test_an_officer_unlocks_in_the_admin(staff, officer):
    from axes.models import AccessAttempt

    lock_out(ADMIN)
    assert sign_in(ADMIN, "right-pass-123").status_code == 429
    client = Client()
    client.force_login(officer)
    changelist = "/admin/axes/accessattempt/"
    assert client.get(changelist).status_code == 200
    attempt = AccessAttempt.objects.get()
    response = client.post(changelist, {"action": "unlock_selected", "_selected_action": [attempt.pk]})
    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()
    assert signed_in(sign_in(ADMIN, "right-pass-123"))
    assert AuditEntry.objects.get(action="auth.login_unlocked").actor == f"user:{officer.pk}"


def test_unlocking_nothing_says_so(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="nothing to unlock"):
        call_command("login_unlock", "--username", "nobody")


def test_api_keys_are_not_touched_by_the_lockout(staff, merchant_client, settings):
    from axes.models import AccessAttempt

    lock_out(PORTAL)
    assert merchant_client.get("/api/v1/tags/").status_code == 200
    bad = Client(HTTP_AUTHORIZATION="Bearer not-a-key", REMOTE_ADDR="203.0.113.7")
    for _ in range(settings.AXES_FAILURE_LIMIT + 2):
        assert bad.get("/api/v1/tags/").status_code == 401
    assert AccessAttempt.objects.count() == 1  # only the portal pair; bad keys are not sign-in attempts
