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


# --- a small tagged population, built directly (what a tagging run leaves behind: rows, counts, bitmaps) ---


class Population:
    """Consumers with tags and direct-marketing consent, and their bitmaps, for portal tests."""

    def __init__(self):
        self.consumers = []
        self.tags = {}

    def build(self, n: int, tags: dict, consented) -> "Population":
        from django.utils import timezone
        from pyroaring import BitMap

        from consumers.models import Consumer
        from privacy.models import ConsentKind, ConsentStatus, Purpose
        from privacy.services import ConsentChange, consents_record
        from tags.bitmaps import (
            DIRECT_MARKETING_CONSENT_KEY,
            LIVE_CONSUMERS_KEY,
            bitmap_cache_clear,
            bitmap_store,
            tag_key,
        )
        from tags.models import ConsumerTag, Tag

        start = len(self.consumers)
        self.consumers += Consumer.objects.bulk_create(
            Consumer(pseudonym=f"portal-test-{start + i:06d}") for i in range(n)
        )
        now = timezone.now()
        for (family, value), indexes in tags.items():
            tag, _ = Tag.objects.get_or_create(
                family=family,
                value=value,
                defaults={
                    "label": value.replace("_", " ").title(),
                    "definition": f"{family} is {value}.",
                    "rule_version": "1",
                },
            )
            self.tags[(family, value)] = tag
            ConsumerTag.objects.bulk_create(
                [ConsumerTag(consumer=self.consumers[i], tag=tag, assigned_at=now) for i in indexes],
                ignore_conflicts=True,
            )
        for tag in Tag.objects.all():
            members = BitMap(ConsumerTag.objects.filter(tag=tag).values_list("consumer_id", flat=True))
            bitmap_store(key=tag_key(tag.pk), bitmap=members)
            Tag.objects.filter(pk=tag.pk).update(consumer_count=len(members))
        bitmap_store(key=LIVE_CONSUMERS_KEY, bitmap=BitMap(c.pk for c in self.consumers))
        consents_record(
            changes=[
                ConsentChange(
                    consumer_id=self.consumers[i].pk,
                    purpose=Purpose.DIRECT_MARKETING,
                    status=ConsentStatus.GRANTED,
                    kind=ConsentKind.EXPRESS,
                    source="test",
                    occurred_at=now,
                )
                for i in consented
            ],
            actor="test",
        )
        bitmap_store(key=DIRECT_MARKETING_CONSENT_KEY, bitmap=BitMap(self.consumers[i].pk for i in consented))
        bitmap_cache_clear()
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
