"""Tagging the real online-retail sample gives the countries in the file and repeat-buyer store loyalty,
checked against counts worked out here from the CSV itself."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta

import pytest

from tags.bitmaps import bitmap_load, tag_key
from tags.models import ConsumerTag, Tag
from tags.services import tags_compute

from .conftest import ONLINE_RETAIL_COUNTRIES, online_retail_rows, online_retail_time

pytestmark = pytest.mark.shared_data


def test_countries_and_store_loyalty_match_the_file(online_retail, approve_activity):
    path, consumer_ids = online_retail
    approve_activity("tagging")
    rows = online_retail_rows(path)
    as_of = max(online_retail_time(r["InvoiceDate"]) for r in rows) + timedelta(minutes=1)

    report = tags_compute(families=["country", "loyalty_store"], actor="test", as_of=as_of)

    assert len(consumer_ids) == len({row["CustomerID"] for row in rows if row["CustomerID"]})
    # Countries, straight from the file: one per customer.
    country_of = {}
    for row in rows:
        if row["CustomerID"]:
            country_of[row["CustomerID"]] = ONLINE_RETAIL_COUNTRIES[row["Country"].strip()]
    expected_countries = Counter(code for code in country_of.values() if code)
    assert expected_countries["GB"] > 500 and len(expected_countries) >= 15
    counted = dict(Tag.objects.filter(family="country").values_list("value", "consumer_count"))
    assert counted == dict(expected_countries)
    rows_by_customer = set(ConsumerTag.objects.filter(tag__family="country").values_list("consumer_id", "tag__value"))
    assert rows_by_customer == {(consumer_ids[cid], code) for cid, code in country_of.items() if code}

    # Store loyalty: the sample is one store, so a customer's distinct invoices are their orders from it
    # (cancellations and returns, negative quantities, aside); the sample's 13 days fit the 90-day window.
    invoices = defaultdict(set)
    for row in rows:
        if row["CustomerID"] and not row["InvoiceNo"].startswith("C") and int(row["Quantity"]) > 0:
            invoices[row["CustomerID"]].add(row["InvoiceNo"])
    expected_loyalty = {
        consumer_ids[cid]: "loyal" if len(numbers) >= 4 else "repeat" if len(numbers) >= 2 else "one_time"
        for cid, numbers in invoices.items()
    }
    repeat_buyers = sum(1 for numbers in invoices.values() if len(numbers) >= 2)
    assert repeat_buyers > 100
    tagged = dict(ConsumerTag.objects.filter(tag__family="loyalty_store").values_list("consumer_id", "tag__value"))
    assert tagged == expected_loyalty
    for tag in Tag.objects.filter(family="loyalty_store"):
        assert set(bitmap_load(tag_key(tag.pk))) == {c for c, v in expected_loyalty.items() if v == tag.value}
    assert {f.family: f.assigned for f in report.families} == {
        "country": sum(expected_countries.values()),
        "loyalty_store": len(invoices),
    }
