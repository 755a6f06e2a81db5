"""`interest:<category>`: the product categories a consumer is most drawn to, from recent behaviour."""

from __future__ import annotations

import numpy as np

from consumers.models import EventType

from ..inputs import TaggingInput
from .base import Assignments, TagRule, TagValue, group_pairs, top_within


class InterestRule(TagRule):
    """Category affinity from recency-weighted events.

    Each event in the last `window_days` counts with its type's weight (a
    purchase says more than a view), halved for every `half_life_days` of age.
    A consumer's affinity for a category is its share of their weighted
    activity across all categories. A consumer is tagged with their strongest
    categories: at most `top_k`, each holding at least `min_share` of their
    activity, and only with at least `min_weight` of weighted activity overall
    (one old view is not an interest). Score: the share, to three decimals.
    """

    family = "interest"
    label = "Interests"
    description = (
        "Product categories the consumer engages with most, from their recent views, clicks, favourites, "
        "add-to-carts and purchases, recent activity counting more."
    )
    rule_version = "1"

    window_days = 180
    half_life_days = 30.0
    top_k = 3
    min_share = 0.2
    min_weight = 3.0
    weights = {
        EventType.VIEW: 1.0,
        EventType.CLICK: 2.0,
        EventType.FAVOURITE: 3.0,
        EventType.CART: 4.0,
        EventType.PURCHASE: 8.0,
        EventType.CANCEL: 0.0,
    }

    def _definition(self, label: str) -> str:
        return (
            f"Consumers for whom {label} is among their {self.top_k} strongest product categories over the last "
            f"{self.window_days} days, holding at least {self.min_share:.0%} of their activity. Activity weighs "
            f"views 1, clicks 2, favourites 3, add-to-carts 4 and purchases 8, and halves in weight every "
            f"{self.half_life_days:g} days."
        )

    def values(self, data: TaggingInput) -> list[TagValue]:
        products = data.products
        return [
            TagValue(value=slug, label=label, definition=self._definition(label))
            for slug, label in zip(products.categories, products.category_labels, strict=True)
        ]

    def compute(self, data: TaggingInput) -> Assignments:
        values = self.values(data)
        if not values:
            return Assignments.empty(values)
        events, products = data.events, data.products
        type_weight = np.zeros(256, dtype=np.float64)
        for event_type, weight in self.weights.items():
            type_weight[int(event_type)] = weight
        recent = events.age_days <= self.window_days
        category = np.where(events.product >= 0, products.category[np.maximum(events.product, 0)], -1)
        keep = recent & (category >= 0) & (type_weight[events.event_type] > 0)
        consumer, category = events.consumer[keep], category[keep]
        decay = np.exp2(events.age_days[keep] * np.float32(-1.0 / self.half_life_days))  # float32: half the work
        weight = type_weight[events.event_type[keep]] * decay
        if consumer.size == 0:
            return Assignments.empty(values)

        pair_consumer, pair_category, inverse = group_pairs(consumer, category, len(values))
        pair_weight = np.bincount(inverse, weights=weight, minlength=pair_consumer.size)
        consumer_total = np.bincount(pair_consumer, weights=pair_weight, minlength=len(data.consumers))
        share = pair_weight / consumer_total[pair_consumer]

        chosen = top_within(pair_consumer, pair_weight, self.top_k)
        chosen = chosen[(share[chosen] >= self.min_share) & (consumer_total[pair_consumer[chosen]] >= self.min_weight)]
        return Assignments(
            values,
            pair_consumer[chosen].astype(np.int32),
            pair_category[chosen].astype(np.int32),
            np.round(share[chosen], 3),  # rounded: tiny daily decay should not rewrite every row
        )
