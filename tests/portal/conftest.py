import pytest
from django.test import Client

from merchants.models import Role
from tests.factories import member_create


@pytest.fixture
def portal_client(merchant_user) -> Client:
    """A browser-like client signed in as the marketer of `merchant` (Acme)."""
    client = Client()
    client.force_login(merchant_user)
    return client


@pytest.fixture
def analyst(merchant):
    return member_create(merchant=merchant, role=Role.ANALYST, username="analyst", password="analyst-pass-123")


@pytest.fixture
def analyst_client(analyst) -> Client:
    client = Client()
    client.force_login(analyst)
    return client


# --- a small tagged population, made as ingestion, the consent ledger and a tagging run leave it ---


class Population:
    """Consumers with tags and direct-marketing consent, and their bitmaps, for portal tests."""

    def __init__(self):
        self.consumers = []
        self.tags = {}

    def build(self, n: int, tags: dict, consented) -> "Population":
        from tags.models import Tag
        from tests.factories import TaggingRunFactory, consents_record_for, consumers_create

        self.consumers += consumers_create(n, prefix="portal")
        consents_record_for([self.consumers[i].pk for i in consented])
        TaggingRunFactory(
            tags={key: [self.consumers[i].pk for i in indexes] for key, indexes in tags.items()},
            keep=True,
            label=lambda family, value: value.replace("_", " ").title(),
            definition=lambda family, value: f"{family} is {value}.",
            rule_version="1",
        )
        for family, value in tags:
            self.tags[(family, value)] = Tag.objects.get(family=family, value=value)
        return self


@pytest.fixture
def population(db, approve_activity) -> Population:
    """600 consumers: 0-399 in SG, 400-599 in MY; 0-249 like outdoor; 0-49 also like chess (a small group);
    0-299 have express direct-marketing consent. Tagging is approved."""
    approve_activity("tagging")
    return Population().build(
        600,
        {
            ("country", "SG"): range(400),
            ("country", "MY"): range(400, 600),
            ("interest", "outdoor"): range(250),
            ("interest", "chess"): range(50),
        },
        consented=range(300),
    )
