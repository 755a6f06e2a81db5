"""Each tagging rule on small hand-built data, with the tags a person would expect."""

from __future__ import annotations

import numpy as np
import pytest

from consumers.models import EventType
from tags.inputs import TaggingInput
from tags.rules import RULES
from tags.rules.base import quintile_scores
from tags.rules.persona import name_clusters

from .conftest import AS_OF

V, C, F, K, P = EventType.VIEW, EventType.CLICK, EventType.FAVOURITE, EventType.CART, EventType.PURCHASE


def tags_of(family: str) -> dict[int, dict[str, float | None]]:
    """consumer id -> {value: score} as the family's rule computes them now."""
    data = TaggingInput(as_of=AS_OF)
    result = RULES[family].compute(data)
    ids = data.consumers.ids[result.consumers]
    out: dict[int, dict[str, float | None]] = {}
    for n, (consumer_id, value_index) in enumerate(zip(ids.tolist(), result.value_index.tolist(), strict=True)):
        score = None if result.scores is None else float(result.scores[n])
        out.setdefault(consumer_id, {})[result.values[value_index].value] = score
    return out


def values_of(family: str) -> dict[int, set[str]]:
    return {consumer: set(values) for consumer, values in tags_of(family).items()}


# -- profile ---------------------------------------------------------------------------------------------


def test_age_range_comes_from_the_profile_and_unknown_ranges_get_nothing(world):
    young = world.consumer(age_range="25-34")
    old = world.consumer(age_range="65-plus")
    blank = world.consumer(age_range="")
    legacy = world.legacy_consumer(age_range="30-40")  # not a range the platform knows
    tags = values_of("age_range")
    assert tags[young.pk] == {"25-34"}
    assert tags[old.pk] == {"65-plus"}
    assert blank.pk not in tags and legacy.pk not in tags
    values = {v.value: v for v in RULES["age_range"].values(TaggingInput(as_of=AS_OF))}
    assert values["25-34"].label == "Aged 25–34"
    assert "25–34" in values["25-34"].definition


def test_country_is_the_iso_code_with_the_country_name_as_label(world):
    sg = world.consumer(country="SG")
    gb = world.legacy_consumer(country="gb")  # stored lower-case by some old import
    nowhere = world.consumer(country="")
    tags = values_of("country")
    assert tags == {sg.pk: {"SG"}, gb.pk: {"GB"}}
    assert nowhere.pk not in tags
    labels = {v.value: v.label for v in RULES["country"].values(TaggingInput(as_of=AS_OF))}
    assert labels == {"GB": "United Kingdom", "SG": "Singapore"}


# -- interest --------------------------------------------------------------------------------------------


def test_interest_takes_the_strongest_categories_weighted_by_type_and_recency(world, other_merchant):
    sports = world.product(category="Sports")
    beauty = world.product(category="Beauty", merchant=other_merchant)
    books = world.product(category="Books")
    toys = world.product(category="Toys")
    garden = world.product(category="Home & Garden")

    focused = world.consumer()  # ten sports views and one beauty view: beauty is under the share threshold
    buyer = world.consumer()  # two beauty purchases (8 each) outweigh five book views, which still count
    broad = world.consumer()  # four categories with equal weight: only the top three are kept
    idle = world.consumer()  # one view: too little activity to speak of an interest
    stale = world.consumer()  # strong activity, but outside the window
    fading = world.consumer()  # many old toy views against a few fresh garden views
    rows = [(focused, V, 1, sports)] * 10 + [(focused, V, 1, beauty)]
    rows += [(buyer, P, 2, beauty)] * 2 + [(buyer, V, 2, books)] * 5
    rows += [(broad, V, 0, product) for product in (sports, beauty, books, toys) for _ in range(5)]
    rows += [(idle, V, 1, sports)]
    rows += [(stale, P, 200, sports)] * 5
    rows += [(fading, V, 60, toys)] * 6 + [(fading, V, 0, garden)] * 2
    world.events([(c, t, d, p, None, None, 1, "0", "") for c, t, d, p in rows])

    tags = tags_of("interest")
    assert set(tags[focused.pk]) == {"sports"}
    assert set(tags[buyer.pk]) == {"beauty", "books"}
    assert tags[buyer.pk]["beauty"] == pytest.approx(16 / 21, rel=0.02)
    assert len(tags[broad.pk]) == 3
    assert idle.pk not in tags and stale.pk not in tags
    # Six views 60 days ago weigh 6 x 2^-2 = 1.5; two views today weigh 2: the fresh interest is stronger.
    assert set(tags[fading.pk]) == {"home-garden", "toys"}
    assert tags[fading.pk]["home-garden"] > tags[fading.pk]["toys"]
    labels = {v.value: v.label for v in RULES["interest"].values(TaggingInput(as_of=AS_OF))}
    assert labels["home-garden"] == "Home & Garden"


def test_interest_ignores_events_without_a_categorised_product(world):
    uncategorised = world.product(category="")
    consumer = world.consumer()
    world.events([(consumer, P, 1, uncategorised, None, None, 1, "0", "")] * 5)
    world.events([(consumer, V, 1, None, None, None, 1, "0", "")] * 5)
    assert consumer.pk not in tags_of("interest")


# -- discount sensitivity --------------------------------------------------------------------------------


def test_discount_sensitivity_levels_and_minimum_purchases(world):
    product = world.product(category="Sports")
    never = world.consumer()
    sometimes = world.consumer()
    mostly = world.consumer()
    too_few = world.consumer()
    long_ago = world.consumer()
    for consumer, discounted, count, days in (
        (never, 0, 4, 5),
        (sometimes, 1, 4, 5),
        (mostly, 3, 4, 5),
        (too_few, 2, 2, 5),
        (long_ago, 4, 4, 380),
    ):
        for n in range(count):
            world.purchase(consumer, product, days_ago=days + n, discount="2.00" if n < discounted else "0")
    tags = tags_of("discount_sensitivity")
    assert set(tags[never.pk]) == {"low"}
    assert set(tags[sometimes.pk]) == {"medium"}
    assert tags[sometimes.pk]["medium"] == pytest.approx(0.25)
    assert set(tags[mostly.pk]) == {"high"}
    assert too_few.pk not in tags and long_ago.pk not in tags


# -- loyalty ---------------------------------------------------------------------------------------------


def test_store_loyalty_counts_orders_from_the_same_store_within_the_window(world, other_merchant):
    ours = world.product(category="Sports")
    theirs = world.product(category="Beauty", merchant=other_merchant)
    repeat = world.consumer()
    loyal = world.consumer()
    two_stores = world.consumer()
    one_too_old = world.consumer()
    one_big_order = world.consumer()
    no_refs_two_days = world.consumer()
    no_refs_same_day = world.consumer()
    for n in range(3):
        world.purchase(repeat, ours, days_ago=10 + n, order=f"repeat-{n}")
    for n in range(5):
        world.purchase(loyal, ours, days_ago=5 + n, order=f"loyal-{n}")
    world.purchase(two_stores, ours, days_ago=3, order="two-a")
    world.purchase(two_stores, theirs, days_ago=4, order="two-b")
    world.purchase(one_too_old, ours, days_ago=20, order="old-a")
    world.purchase(one_too_old, ours, days_ago=100, order="old-b")
    for _ in range(3):
        world.purchase(one_big_order, ours, days_ago=2, order="big")
    world.purchase(no_refs_two_days, ours, days_ago=1.5)
    world.purchase(no_refs_two_days, ours, days_ago=3.5)
    world.purchase(no_refs_same_day, ours, days_ago=0.1)
    world.purchase(no_refs_same_day, ours, days_ago=0.2)
    tags = tags_of("loyalty_store")
    assert set(tags[repeat.pk]) == {"repeat"}
    assert tags[repeat.pk]["repeat"] == 3
    assert set(tags[loyal.pk]) == {"loyal"}
    assert set(tags[two_stores.pk]) == {"one_time"}
    assert set(tags[one_too_old.pk]) == {"one_time"}
    assert set(tags[one_big_order.pk]) == {"one_time"}
    assert set(tags[no_refs_two_days.pk]) == {"repeat"}
    assert set(tags[no_refs_same_day.pk]) == {"one_time"}


def test_brand_loyalty_spans_stores_and_normalises_brand_names(world, other_merchant):
    acme_here = world.product(brand="Acme")
    acme_there = world.product(brand=" ACME ", merchant=other_merchant)
    unbranded = world.product(brand="")
    fan = world.consumer()
    unbranded_buyer = world.consumer()
    world.purchase(fan, acme_here, days_ago=3, order="fan-1")
    world.purchase(fan, acme_there, days_ago=30, order="fan-2")
    for n in range(4):
        world.purchase(unbranded_buyer, unbranded, days_ago=n + 1, order=f"u-{n}")
    tags = values_of("loyalty_brand")
    assert tags[fan.pk] == {"repeat"}
    assert unbranded_buyer.pk not in tags
    assert values_of("loyalty_store")[fan.pk] == {"one_time"}  # two stores, one order each


# -- RFM -------------------------------------------------------------------------------------------------


def test_quintile_scores_share_a_score_between_equal_values():
    assert quintile_scores(np.arange(10.0)).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert quintile_scores(np.arange(10.0), higher_is_better=False).tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    tied = quintile_scores(np.array([1.0, 1.0, 1.0, 1.0, 9.0]))
    assert len(set(tied[:4].tolist())) == 1 and tied[4] == 5


def test_rfm_groups(world):
    product = world.product(category="Sports")
    # name: (orders, days since the last one, total spent). Scores worked out by hand for these ten buyers:
    #   R by days  1,2 -> 5; 3,4 -> 4; 30,60 -> 3; 200,300 -> 2; 340,350 -> 1
    #   F by orders: five buyers with 1 order share F 2; 2 orders F 3; 6 orders F 4; 7 and 8 orders F 5
    #   M by spend: 5,6 -> 1; 15,20 -> 2; 30,30 -> 3; 40,300 -> 4; 630,800 -> 5
    buyers = {
        "champion": (8, 1, 800),
        "champion_too": (7, 2, 630),
        "loyal": (6, 60, 30),
        "new": (1, 3, 20),
        "new_too": (1, 4, 15),
        "at_risk": (6, 300, 300),
        "lost": (1, 340, 5),
        "lost_too": (1, 350, 6),
        "hibernating": (1, 200, 30),
        "potential": (2, 30, 40),
    }
    consumers = {}
    for name, (orders, last, spent) in buyers.items():
        consumers[name] = consumer = world.consumer()
        for n in range(orders):
            world.purchase(
                consumer, product, days_ago=last + n * 0.5, order=f"{name}-{n}", price=f"{spent / orders:.4f}"
            )
    tags = values_of("rfm")
    expected = {
        "champion": "champions",
        "champion_too": "champions",
        "loyal": "loyal",
        "new": "new",
        "new_too": "new",
        "at_risk": "at_risk",
        "lost": "lost",
        "lost_too": "lost",
        "hibernating": "hibernating",
        "potential": "potential_loyalist",
    }
    assert {name: tags[c.pk] for name, c in consumers.items()} == {n: {g} for n, g in expected.items()}
    assert tags_of("rfm")[consumers["champion"].pk]["champions"] == 555


# -- lifecycle -------------------------------------------------------------------------------------------


def test_lifecycle_stages_from_first_and_last_activity(world):
    new, active, lapsing, churned, silent = (world.consumer() for _ in range(5))
    rows = [(new, 10), (active, 100), (active, 5), (lapsing, 200), (lapsing, 60), (churned, 120)]
    world.events([(c, V, d, None, None, None, 1, "0", "") for c, d in rows])
    tags = tags_of("lifecycle")
    assert {c: set(v) for c, v in tags.items()} == {
        new.pk: {"new"},
        active.pk: {"active"},
        lapsing.pk: {"lapsing"},
        churned.pk: {"churned"},
    }
    assert silent.pk not in tags


# -- persona ---------------------------------------------------------------------------------------------


def test_personas_are_learned_and_named_after_what_sets_each_group_apart(world):
    rng = np.random.default_rng(7)
    brands = [world.product(category=f"Cat {n % 2}", brand=f"Brand {n}") for n in range(10)]
    favourite = world.product(category="Cat 0", brand="Favourite")
    groups = {"bargain_hunter": [], "window_shopper": [], "brand_loyalist": []}
    rows = []
    for n in range(40):
        hunter = world.consumer()
        groups["bargain_hunter"].append(hunter.pk)
        for i in range(4 + rng.integers(0, 2)):
            rows.append((hunter, V, rng.uniform(0, 20), brands[i], None, None, 1, "0", ""))
            rows.append((hunter, P, rng.uniform(0, 20), brands[i], None, "20", 1, "5", f"h{n}-{i}"))
        browser = world.consumer()
        groups["window_shopper"].append(browser.pk)
        for i in range(12 + rng.integers(0, 4)):
            rows.append((browser, V, rng.uniform(0, 20), brands[i % 10], None, None, 1, "0", ""))
        fan = world.consumer()
        groups["brand_loyalist"].append(fan.pk)
        for i in range(4 + rng.integers(0, 2)):
            rows.append((fan, V, rng.uniform(0, 20), favourite, None, None, 1, "0", ""))
            rows.append((fan, P, rng.uniform(0, 20), favourite, None, "20", 1, "0", f"f{n}-{i}"))
    world.events(rows)
    tags = values_of("persona")
    for persona, members in groups.items():
        names = [next(iter(tags[m])) for m in members]
        assert max(set(names), key=names.count) == persona, (persona, sorted(set(names)))
        assert names.count(persona) >= 0.9 * len(members)


def test_cluster_naming_gives_every_cluster_a_different_best_matching_name():
    from tags.rules.persona import FEATURES

    centre = dict.fromkeys(FEATURES, 0.0)
    discount = np.array([{**centre, "discount_share": 2.0}[f] for f in FEATURES])
    also_discount = np.array([{**centre, "discount_share": 1.5, "conversion": 1.5}[f] for f in FEATURES])
    dormant = np.array([{**centre, "dormancy": 2.5}[f] for f in FEATURES])
    names = name_clusters(np.vstack([discount, also_discount, dormant]))
    assert names[0] == "bargain_hunter"
    assert names[2] == "dormant"
    assert names[1] not in {"bargain_hunter", "dormant"}
    assert len(set(names)) == 3


def test_too_few_active_consumers_get_no_persona(world):
    consumer = world.consumer()
    world.events([(consumer, V, 1, None, None, None, 1, "0", "")] * 10)
    assert tags_of("persona") == {}
