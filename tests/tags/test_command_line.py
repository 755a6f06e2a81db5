"""The command-line pieces compute_tags and compute_predictions share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.core.management import CommandError

from tags.command_line import as_of_option


def test_as_of_is_absent_when_not_given():
    assert as_of_option(None) is None
    assert as_of_option("") is None


def test_a_naive_as_of_is_read_as_utc_and_an_offset_is_kept():
    assert as_of_option("2010-12-13T23:59:59") == datetime(2010, 12, 13, 23, 59, 59, tzinfo=UTC)
    plus_eight = as_of_option("2010-12-13T23:59:59+08:00")
    assert plus_eight is not None and plus_eight.utcoffset() == timedelta(hours=8)
    assert plus_eight == datetime(2010, 12, 13, 23, 59, 59, tzinfo=timezone(timedelta(hours=8)))


def test_a_bad_as_of_names_the_option_and_the_value():
    with pytest.raises(CommandError, match=r"--as-of 'yesterday' is not an ISO 8601 date-time"):
        as_of_option("yesterday")
