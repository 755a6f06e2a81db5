from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tags.reach import public_count, round_significant


def test_small_counts_are_hidden_and_large_ones_rounded(settings):
    settings.MIN_AUDIENCE = 100
    assert public_count(0) == {"size": None, "display": "fewer than 100", "hidden": True}
    assert public_count(99) == {"size": None, "display": "fewer than 100", "hidden": True}
    assert public_count(None)["hidden"] is True
    assert public_count(100) == {"size": 100, "display": "100", "hidden": False}
    assert public_count(12_345) == {"size": 12_000, "display": "12,000", "hidden": False}
    assert public_count(1_250) == {"size": 1_300, "display": "1,300", "hidden": False}
    assert public_count(999) == {"size": 1_000, "display": "1,000", "hidden": False}


def test_the_threshold_follows_the_setting(settings):
    settings.MIN_AUDIENCE = 500
    assert public_count(450) == {"size": None, "display": "fewer than 500", "hidden": True}


@given(st.integers(min_value=100, max_value=10**12))
def test_rounding_keeps_two_significant_figures_and_stays_close(n):
    size = public_count(n)["size"]
    assert len(str(size).rstrip("0")) <= 2
    assert abs(size - n) <= 0.05 * n


@given(st.integers(min_value=0, max_value=99))
def test_no_number_below_the_threshold_ever_shows(n):
    shown = public_count(n)
    assert shown["size"] is None and str(n) not in shown["display"].replace("100", "")


def test_round_significant_half_up():
    assert round_significant(125, 2) == 130
    assert round_significant(124, 2) == 120
    assert round_significant(7, 2) == 7
