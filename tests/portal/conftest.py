import pytest
from django.test import Client

from merchants.models import Role
from merchants.services import membership_grant


@pytest.fixture
def portal_client(merchant_user) -> Client:
    """A browser-like client signed in as the marketer of `merchant` (Acme)."""
    client = Client()
    client.force_login(merchant_user)
    return client


@pytest.fixture
def analyst(django_user_model, merchant):
    user = django_user_model.objects.create_user(username="analyst", password="analyst-pass-123")
    membership_grant(user=user, merchant=merchant, role=Role.ANALYST)
    return user


@pytest.fixture
def analyst_client(analyst) -> Client:
    client = Client()
    client.force_login(analyst)
    return client
