"""`persona:<archetype>`: learned shopper personas, by clustering behaviour.

Each consumer with at least `min_events` events in the last `window_days` is
described by nine behaviour features (below), standardised. MiniBatchKMeans
clusters them for every k from `k_min` to `k_max` on a fixed-seed sample, and
the k with the highest silhouette score (on a sample) wins: the criterion
prefers clusters that are tight and well apart. Every consumer then joins the
nearest centre.

Each cluster is named after the archetype its centre matches best: an archetype
is a direction in the standardised feature space (e.g. "bargain hunter" points
towards a high discount share). Centres and archetypes are matched greedily,
best match first, so two clusters never share a name. The names are a fixed
vocabulary, so `persona:bargain_hunter` keeps meaning the same thing from one
run to the next even though the clusters are re-learned.
"""

from __future__ import annotations

import numpy as np
from django.conf import settings
from threadpoolctl import threadpool_limits

from consumers.models import EventType

from ..inputs import TaggingInput
from .base import Assignments, TagRule, TagValue, distinct_codes, distinct_count, group_pairs

FEATURES = [
    "activity",  # log(1 + events)
    "browse_share",  # views and clicks / all events
    "cart_rate",  # add-to-carts per view or click
    "conversion",  # orders per view or click
    "discount_share",  # discounted purchases / purchases
    "brand_concentration",  # share of branded purchases on the top brand
    "category_breadth",  # log(1 + distinct categories)
    "spend",  # log(1 + amount spent)
    "dormancy",  # days since the last event
]

# name -> (label, plain-language meaning, direction over FEATURES)
ARCHETYPES: dict[str, tuple[str, str, dict[str, float]]] = {
    "bargain_hunter": (
        "Bargain hunter",
        "buys mostly on discount",
        {"discount_share": 2.0, "conversion": 0.5},
    ),
    "brand_loyalist": (
        "Brand loyalist",
        "keeps to a favourite brand",
        {"brand_concentration": 2.0, "category_breadth": -0.5},
    ),
    "window_shopper": (
        "Window shopper",
        "browses a lot and rarely buys",
        {"browse_share": 1.0, "conversion": -1.5, "spend": -0.5},
    ),
    "big_spender": ("Big spender", "spends the most", {"spend": 1.5, "activity": 0.5}),
    "cart_abandoner": (
        "Cart abandoner",
        "adds to cart often but seldom completes the order",
        {"cart_rate": 1.5, "conversion": -1.0},
    ),
    "explorer": (
        "Explorer",
        "roams across many categories",
        {"category_breadth": 1.5, "activity": 0.5},
    ),
    "dormant": ("Dormant", "has not been seen for a while", {"dormancy": 2.0}),
    "decisive_buyer": (
        "Decisive buyer",
        "buys after little browsing",
        {"conversion": 1.5, "browse_share": -0.5},
    ),
    "casual_shopper": ("Casual shopper", "shows light, occasional activity", {"activity": -1.0}),
}


class PersonaRule(TagRule):
    family = "persona"
    label = "Persona"
    description = (
        "Shopper personas learned by clustering consumers with similar behaviour (browsing, carting, buying, "
        "discounts, brands, categories, spend, recency), each named after what sets its members apart."
    )
    rule_version = "1"

    window_days = 180
    min_events = 5
    k_min = 3
    k_max = 8
    fit_sample = 50_000
    silhouette_sample = 3_000
    random_state = 0

    def values(self, data: TaggingInput) -> list[TagValue]:
        return [
            TagValue(
                name,
                label,
                f"Consumers in the behaviour cluster that best matches this profile: a shopper who {meaning}. "
                f"Learned from the last {self.window_days} days of activity of consumers with at least "
                f"{self.min_events} events.",
            )
            for name, (label, meaning, _) in ARCHETYPES.items()
        ]

    def features(self, data: TaggingInput) -> tuple[np.ndarray, np.ndarray]:
        """(consumer positions, feature matrix) for the consumers that qualify."""
        consumers = len(data.consumers)
        events, purchases, products = data.events, data.purchases, data.products
        recent = events.age_days <= self.window_days
        consumer = events.consumer[recent]
        event_type = events.event_type[recent]
        count = np.bincount(consumer, minlength=consumers).astype(np.float64)
        qualified = np.flatnonzero(count >= self.min_events)
        if qualified.size == 0:
            return qualified, np.empty((0, len(FEATURES)))

        browsing = (event_type == EventType.VIEW) | (event_type == EventType.CLICK)
        browse = np.bincount(consumer[browsing], minlength=consumers).astype(np.float64)
        carts = np.bincount(consumer[event_type == EventType.CART], minlength=consumers).astype(np.float64)
        recent_purchase = purchases.age_days <= self.window_days
        buyer = purchases.consumer[recent_purchase]
        bought = np.bincount(buyer, minlength=consumers).astype(np.float64)
        discounted = np.bincount(buyer[purchases.discounted[recent_purchase]], minlength=consumers)
        spent = np.bincount(buyer, weights=purchases.amount[recent_purchase], minlength=consumers)
        orders = _distinct(buyer, purchases.order[recent_purchase], consumers)

        product = events.product[recent]
        known = product >= 0
        category = np.full(product.shape, -1, dtype=np.int64)
        category[known] = products.category[product[known]]
        has_category = category >= 0
        breadth = distinct_codes(consumer[has_category], category[has_category], len(products.categories), consumers)
        bought_product = purchases.product[recent_purchase]
        brand = np.where(bought_product >= 0, products.brand[np.maximum(bought_product, 0)], -1)
        branded = brand >= 0
        top_brand = _top_count(buyer[branded], brand[branded], consumers, len(products.brands))
        branded_purchases = np.bincount(buyer[branded], minlength=consumers).astype(np.float64)
        dormancy = np.full(consumers, float(self.window_days))
        np.minimum.at(dormancy, consumer, events.age_days[recent].astype(np.float64))

        q = qualified
        with np.errstate(divide="ignore", invalid="ignore"):
            matrix = np.column_stack(
                [
                    np.log1p(count[q]),
                    browse[q] / count[q],
                    np.minimum(carts[q] / np.maximum(browse[q], 1.0), 1.0),
                    np.minimum(orders[q] / np.maximum(browse[q], 1.0), 1.0),
                    np.where(bought[q] > 0, discounted[q] / np.maximum(bought[q], 1.0), 0.0),
                    np.where(branded_purchases[q] > 0, top_brand[q] / np.maximum(branded_purchases[q], 1.0), 0.0),
                    np.log1p(breadth[q]),
                    np.log1p(np.maximum(spent[q], 0.0)),
                    dormancy[q],
                ]
            )
        return qualified, matrix

    def compute(self, data: TaggingInput) -> Assignments:
        # One BLAS/OpenMP thread per process (BLAS_THREADS): clustering small matrices on a busy machine is
        # many times slower when every call spreads over all cores. scikit-learn is imported first because
        # threadpool_limits only reaches the thread pools of libraries already loaded.
        import sklearn.cluster  # noqa: F401

        with threadpool_limits(limits=settings.BLAS_THREADS):
            return self._compute(data)

    def _compute(self, data: TaggingInput) -> Assignments:
        from sklearn.cluster import MiniBatchKMeans
        from sklearn.metrics import silhouette_score
        from sklearn.preprocessing import StandardScaler

        values = self.values(data)
        qualified, matrix = self.features(data)
        if qualified.size < self.k_min * 10:
            return Assignments.empty(values)  # too few consumers to learn personas from
        scaled = StandardScaler().fit_transform(matrix)
        rng = np.random.default_rng(self.random_state)
        sample = scaled[rng.choice(scaled.shape[0], min(self.fit_sample, scaled.shape[0]), replace=False)]
        distinct_points = np.unique(np.round(sample, 6), axis=0).shape[0]
        best: tuple[float, int, MiniBatchKMeans] | None = None
        for k in range(self.k_min, min(self.k_max, distinct_points) + 1):
            model = MiniBatchKMeans(n_clusters=k, random_state=self.random_state, n_init=3, batch_size=2048).fit(sample)
            if np.unique(model.labels_).size < 2:
                continue
            try:
                score = silhouette_score(
                    sample,
                    model.labels_,
                    sample_size=min(self.silhouette_sample, sample.shape[0]),
                    random_state=self.random_state,
                )
            except ValueError:  # the silhouette sample drew a single cluster, or as many clusters as points
                continue
            if best is None or score > best[0]:
                best = (float(score), k, model)
        if best is None:
            return Assignments.empty(values)
        _, k, model = best
        cluster = model.predict(scaled)
        distance = np.linalg.norm(scaled - model.cluster_centers_[cluster], axis=1)
        names = name_clusters(model.cluster_centers_)
        position = {value.value: i for i, value in enumerate(values)}
        value_index = np.array([position[names[c]] for c in range(k)], dtype=np.int32)[cluster]
        # Score: closeness to the persona's centre, 1 at the centre falling towards 0 (three decimals).
        return Assignments(values, qualified.astype(np.int32), value_index, np.round(1.0 / (1.0 + distance), 3))


def name_clusters(centres: np.ndarray) -> list[str]:
    """An archetype name per cluster centre (standardised features): best matches first, no name twice."""
    names = list(ARCHETYPES)
    directions = np.zeros((len(names), len(FEATURES)))
    for row, name in enumerate(names):
        for feature, weight in ARCHETYPES[name][2].items():
            directions[row, FEATURES.index(feature)] = weight
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    match = centres @ directions.T  # clusters x archetypes
    assigned: dict[int, str] = {}
    taken: set[int] = set()
    for flat in np.argsort(-match, axis=None, kind="stable"):
        cluster, archetype = divmod(int(flat), len(names))
        if cluster in assigned or archetype in taken:
            continue
        assigned[cluster] = names[archetype]
        taken.add(archetype)
        if len(assigned) == centres.shape[0]:
            break
    return [assigned[c] for c in range(centres.shape[0])]


def _distinct(group: np.ndarray, item: np.ndarray, groups: int) -> np.ndarray:
    return distinct_count(group, item, groups).astype(np.float64)


def _top_count(group: np.ndarray, item: np.ndarray, groups: int, items: int) -> np.ndarray:
    """Per group, how often its most frequent item occurs."""
    top = np.zeros(groups, dtype=np.float64)
    if group.size == 0:
        return top
    pair_group, _, inverse = group_pairs(group, item, items)
    pair_count = np.bincount(inverse, minlength=pair_group.size).astype(np.float64)
    np.maximum.at(top, pair_group, pair_count)
    return top
