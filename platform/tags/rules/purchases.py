"""Tags from purchase history: discount sensitivity, store and brand loyalty, RFM groups."""

from __future__ import annotations

import numpy as np

from ..arrays import sorted_unique_inverse
from ..inputs import TaggingInput
from .base import Assignments, TagRule, TagValue, distinct_count, group_pairs, quintile_scores


class DiscountSensitivityRule(TagRule):
    """`discount_sensitivity:low|medium|high`: the share of a consumer's purchases made on discount.

    Counts purchased items (purchase events) in the last `window_days`; a
    consumer needs at least `min_purchases` to qualify. low: under
    `medium_from` of them discounted; medium: from `medium_from` to under
    `high_from`; high: `high_from` or more. Score: the discounted share (three decimals).
    """

    family = "discount_sensitivity"
    label = "Discount sensitivity"
    description = "How much of what the consumer buys is bought on discount."
    rule_version = "1"

    window_days = 365
    min_purchases = 3
    medium_from = 0.2
    high_from = 0.5

    def values(self, data: TaggingInput) -> list[TagValue]:
        tail = (
            f"of the items they bought in the last {self.window_days} days were discounted "
            f"(consumers with at least {self.min_purchases} items bought)."
        )
        return [
            TagValue("low", "Rarely buys on discount", f"Less than {self.medium_from:.0%} {tail}"),
            TagValue(
                "medium",
                "Sometimes buys on discount",
                f"From {self.medium_from:.0%} to less than {self.high_from:.0%} {tail}",
            ),
            TagValue("high", "Mostly buys on discount", f"{self.high_from:.0%} or more {tail}"),
        ]

    def compute(self, data: TaggingInput) -> Assignments:
        values = self.values(data)
        purchases = data.purchases
        recent = purchases.age_days <= self.window_days
        consumers = len(data.consumers)
        bought = np.bincount(purchases.consumer[recent], minlength=consumers)
        discounted = np.bincount(purchases.consumer[recent & purchases.discounted], minlength=consumers)
        qualified = np.flatnonzero(bought >= self.min_purchases)
        share = discounted[qualified] / bought[qualified]
        level = np.where(share >= self.high_from, 2, np.where(share >= self.medium_from, 1, 0))
        return Assignments(values, qualified.astype(np.int32), level.astype(np.int32), np.round(share, 3))


class _RepeatPurchaseRule(TagRule):
    """Shared by store and brand loyalty: orders per (consumer, thing) within a window, the best thing counts."""

    window_days: int
    repeat_from = 2
    loyal_from = 4
    thing: str  # "store" or "brand"

    def values(self, data: TaggingInput) -> list[TagValue]:
        window = f"in the last {self.window_days} days"
        return [
            TagValue(
                "one_time",
                f"One-time buyer ({self.thing})",
                f"Consumers who bought {window} but never placed a second order from the same {self.thing} {window}.",
            ),
            TagValue(
                "repeat",
                f"Repeat buyer ({self.thing})",
                f"Consumers who placed {self.repeat_from} to {self.loyal_from - 1} separate orders from the same "
                f"{self.thing} {window}.",
            ),
            TagValue(
                "loyal",
                f"Loyal to a {self.thing}",
                f"Consumers who placed {self.loyal_from} or more separate orders from the same {self.thing} {window}.",
            ),
        ]

    def _things(self, data: TaggingInput) -> tuple[np.ndarray, int]:
        """Per purchase row, the thing it counts for (-1: none), and how many things there are."""
        raise NotImplementedError

    def compute(self, data: TaggingInput) -> Assignments:
        values = self.values(data)
        purchases = data.purchases
        recent = purchases.age_days <= self.window_days
        thing, things = self._things(data)
        keep = recent & (thing >= 0)
        if not keep.any():
            return Assignments.empty(values)
        # Orders per (consumer, thing): distinct order keys within each pair.
        pair_consumer, _, pair_of_row = group_pairs(purchases.consumer[keep], thing[keep], things)
        orders = distinct_count(pair_of_row, purchases.order[keep], pair_consumer.size)
        best = np.zeros(len(data.consumers), dtype=np.int64)
        np.maximum.at(best, pair_consumer, orders)
        buyers = np.flatnonzero(best > 0)
        most = best[buyers]
        level = np.where(most >= self.loyal_from, 2, np.where(most >= self.repeat_from, 1, 0))
        return Assignments(values, buyers.astype(np.int32), level.astype(np.int32), most.astype(np.float64))


class LoyaltyStoreRule(_RepeatPurchaseRule):
    """`loyalty_store:one_time|repeat|loyal`: repeat orders from the same merchant within `window_days`.

    An order is one order reference (or, without one, one calendar day of
    purchases). For each consumer the merchant they ordered from most often in
    the window decides: 1 order one_time, 2–3 repeat, 4 or more loyal. Score:
    that number of orders.
    """

    family = "loyalty_store"
    label = "Store loyalty"
    description = "Whether the consumer comes back to buy from the same store again."
    rule_version = "1"
    window_days = 90
    thing = "store"

    def _things(self, data):
        merchants, inverse = sorted_unique_inverse(data.purchases.merchant)
        return inverse.astype(np.int64), int(merchants.size)


class LoyaltyBrandRule(_RepeatPurchaseRule):
    """`loyalty_brand:one_time|repeat|loyal`: repeat orders of the same brand, across stores, within
    `window_days`. Products without a brand do not count. Score: orders of the consumer's most-bought brand."""

    family = "loyalty_brand"
    label = "Brand loyalty"
    description = "Whether the consumer keeps buying the same brand, from any store."
    rule_version = "1"
    window_days = 180
    thing = "brand"

    def _things(self, data):
        products = data.products
        product = data.purchases.product
        brand = np.where(product >= 0, products.brand[np.maximum(product, 0)], -1)
        return brand.astype(np.int64), len(products.brands)


class RFMRule(TagRule):
    """`rfm:<group>`: recency, frequency and monetary value of purchases, scored 1–5 by quintile.

    Over the last `window_days`, for every consumer with a purchase: R from days
    since the last purchase (more recent scores higher), F from the number of
    orders, M from the total spent. Scores are quintiles of the buying
    population; equal values share a score. Groups, first match wins:

    | group              | rule                                   |
    |--------------------|----------------------------------------|
    | champions          | R ≥ 4, F ≥ 4, M ≥ 4                    |
    | loyal              | F ≥ 4, R ≥ 3                           |
    | new                | R ≥ 4 and exactly one order            |
    | potential_loyalist | R ≥ 3 (recent, not yet frequent)       |
    | at_risk            | R ≤ 2, F ≥ 3 (used to buy often)       |
    | hibernating        | R = 2                                  |
    | lost               | R = 1                                  |

    Score: R×100 + F×10 + M (e.g. 545), for ordering within a group.
    """

    family = "rfm"
    label = "RFM group"
    description = "Groups by recency, frequency and monetary value of purchases, each scored 1 to 5 against all buyers."
    rule_version = "1"
    window_days = 365

    GROUPS = [
        ("champions", "Champions", "bought recently, buy often and spend the most (R, F and M scores all 4 or 5)"),
        ("loyal", "Loyal customers", "buy often (F 4 or 5) and not long ago (R 3 or more)"),
        ("new", "New customers", "placed exactly one order, recently (R 4 or 5)"),
        ("potential_loyalist", "Potential loyalists", "bought recently (R 3 or more) but not yet often"),
        ("at_risk", "At risk", "used to buy often (F 3 or more) but not for a while (R 1 or 2)"),
        ("hibernating", "Hibernating", "last bought a while ago (R 2) and not often"),
        ("lost", "Lost", "last bought long ago (R 1) and not often"),
    ]

    def values(self, data: TaggingInput) -> list[TagValue]:
        scoring = (
            f"Scores are quintiles among everyone who bought in the last {self.window_days} days: "
            "R from days since the last purchase, F from the number of orders, M from the total spent."
        )
        return [TagValue(value, label, f"Consumers who {meaning}. {scoring}") for value, label, meaning in self.GROUPS]

    def compute(self, data: TaggingInput) -> Assignments:
        values = self.values(data)
        purchases = data.purchases
        recent = purchases.age_days <= self.window_days
        if not recent.any():
            return Assignments.empty(values)
        consumer = purchases.consumer[recent]
        consumers = len(data.consumers)
        buyers = np.flatnonzero(np.bincount(consumer, minlength=consumers))
        days_since = np.full(consumers, np.inf)
        np.minimum.at(days_since, consumer, purchases.age_days[recent].astype(np.float64))
        orders = distinct_count(consumer, purchases.order[recent], consumers)
        spent = np.bincount(consumer, weights=purchases.amount[recent], minlength=consumers)

        r = quintile_scores(days_since[buyers], higher_is_better=False)
        f = quintile_scores(orders[buyers].astype(np.float64))
        m = quintile_scores(spent[buyers])
        one_order = orders[buyers] == 1
        group = np.select(
            [
                (r >= 4) & (f >= 4) & (m >= 4),
                (f >= 4) & (r >= 3),
                (r >= 4) & one_order,
                r >= 3,
                f >= 3,
                r == 2,
            ],
            [0, 1, 2, 3, 4, 5],
            default=6,
        )
        score = r.astype(np.float64) * 100 + f * 10 + m
        return Assignments(values, buyers.astype(np.int32), group.astype(np.int32), score)
