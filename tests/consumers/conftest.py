"""Fixtures for ingestion tests: a valid event row factory, and identifiers that must never be stored."""

from __future__ import annotations

import itertools

import pytest

_counter = itertools.count(1)


@pytest.fixture
def event_row(merchant):
    """event_row(**overrides) -> a valid event row for the `merchant` fixture, with a fresh event id."""

    def make(**overrides) -> dict:
        n = next(_counter)
        row = {
            "event_id": f"evt-{n}",
            "consumer_id": f"shopper{n % 7}@example.org",
            "merchant": merchant.slug,
            "sku": f"SKU-{n % 5}",
            "event_type": "view",
            "occurred_at": "2024-05-01T12:30:00Z",
            "quantity": 1,
            "price": "19.90",
            "discount": "0",
        }
        row.update(overrides)
        return row

    return make
