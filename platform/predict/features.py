"""Features and labels for the predicted traits, with the cut-off explicit.

Times are days relative to the data's `as_of` (t = -age, so every event has
t <= 0). A model is trained at a cut-off c: its features read only events with
t <= c (`History.until(c)`), its labels only events with c < t <= c + horizon.
`features_build` refuses a history that holds anything after the cut-off it is
asked for (TemporalLeak), so a feature computed from the future fails loudly
instead of flattering the validation.

Stored tags are deliberately not read as features: they were computed at the
latest run, after every training cut-off, so using them would leak the labels'
period into the features. The behavioural quantities behind them (recency,
frequency, spend, category mix, trends, discount share) are recomputed here at
the cut-off instead; the profile's age range (not derived from behaviour) is used
as it stands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np

from consumers.models import EventType, Product
from tags.arrays import sorted_unique, sorted_unique_inverse
from tags.inputs import TaggingInput

AGE_ORDER = ["under-18", "18-24", "25-34", "35-44", "45-54", "55-64", "65-plus"]

# How far back features look from a cut-off, in days.
FEATURE_WINDOW_DAYS = 180.0


class TemporalLeak(AssertionError):
    """A feature builder was handed events from after its cut-off."""


class NotEnoughHistory(ValueError):
    """The data does not reach far enough after a cut-off to label it."""


@dataclass(frozen=True)
class History:
    """The run's events as arrays, times in days relative to the data's as_of.

    `cutoff` is the latest time the history holds (0.0 for a full history; less
    after `until`). `end` is the latest time the data covers at all.
    """

    consumers: int
    ev_consumer: np.ndarray  # int32
    ev_type: np.ndarray  # int8
    ev_t: np.ndarray  # float32
    ev_category: np.ndarray  # int32, -1 unknown
    ev_merchant: np.ndarray  # int32 merchant code, -1 unknown
    ev_product: np.ndarray  # int32 product position, -1 unknown
    pu_consumer: np.ndarray  # int32
    pu_t: np.ndarray  # float32
    pu_amount: np.ndarray  # float64
    pu_discounted: np.ndarray  # bool
    pu_order: np.ndarray  # int64
    pu_category: np.ndarray  # int32
    pu_merchant: np.ndarray  # int32 merchant code
    age_code: np.ndarray  # int8 per consumer, -1 unknown
    product_category: np.ndarray  # int32 category code per product position, -1 none
    product_merchant: np.ndarray  # int32 merchant code per product position, -1 unknown
    categories: list[str]
    merchant_ids: list[int]  # merchant code -> database id
    start: float  # the earliest time the data covers
    cutoff: float = 0.0

    @classmethod
    def from_input(cls, data: TaggingInput) -> History:
        events, purchases, products = data.events, data.purchases, data.products
        category_of = products.category
        product_merchant = _product_merchants(products.index.ids)
        merchant_ids = sorted(set(product_merchant.tolist()) | set(purchases.merchant.tolist()))
        merchant_code = {merchant: code for code, merchant in enumerate(merchant_ids)}
        product_merchant_code = np.array([merchant_code.get(m, -1) for m in product_merchant.tolist()], np.int32)
        has_product = events.product >= 0
        safe = np.maximum(events.product, 0)
        pu_safe = np.maximum(purchases.product, 0)
        known_merchants = np.asarray(merchant_ids, dtype=np.int64)
        pu_merchant = np.searchsorted(known_merchants, purchases.merchant).astype(np.int32)
        ages = data.profile("age_range")
        age_code = np.full(len(data.consumers), -1, dtype=np.int8)
        lookup = np.array([AGE_ORDER.index(v) if v in AGE_ORDER else -1 for v in ages.vocabulary] + [-1], np.int8)
        if ages.ids.size:
            positions = data.consumers.positions(ages.ids)
            keep = positions >= 0
            age_code[positions[keep]] = lookup[ages.codes[keep]]
        return cls(
            consumers=len(data.consumers),
            ev_consumer=events.consumer,
            ev_type=events.event_type,
            ev_t=-events.age_days,
            ev_category=np.where(has_product, category_of[safe] if category_of.size else -1, -1).astype(np.int32),
            ev_merchant=np.where(has_product, product_merchant_code[safe] if safe.size else -1, -1).astype(np.int32),
            ev_product=events.product.astype(np.int32),
            pu_consumer=purchases.consumer,
            pu_t=-purchases.age_days,
            pu_amount=purchases.amount,
            pu_discounted=purchases.discounted,
            pu_order=purchases.order,
            pu_category=np.where(purchases.product >= 0, category_of[pu_safe] if category_of.size else -1, -1).astype(
                np.int32
            ),
            pu_merchant=pu_merchant,
            age_code=age_code,
            product_category=np.asarray(category_of, dtype=np.int32),
            product_merchant=product_merchant_code,
            categories=list(products.categories),
            merchant_ids=merchant_ids,
            start=-float(data.lookback_days),
        )

    def until(self, cutoff: float) -> History:
        """The events at or before `cutoff`, and nothing later: what a model at that cut-off may see."""
        if cutoff >= self.cutoff:
            return self  # already holds nothing later (the data ends at self.cutoff)
        return self._rows(self.ev_t <= cutoff, self.pu_t <= cutoff, cutoff=min(cutoff, self.cutoff))

    def for_consumers(self, keep: np.ndarray) -> History:
        """The events and purchases of the consumers whose position `keep` (bool per consumer) marks. Positions are
        unchanged, so features and labels of a sample index like the whole population's."""
        return self._rows(keep[self.ev_consumer], keep[self.pu_consumer])

    def _rows(self, ev: np.ndarray, pu: np.ndarray, **changes) -> History:
        """The events that `ev` and the purchases that `pu` mark (every ev_ and pu_ array alike), with `changes`."""
        arrays = {
            f.name: getattr(self, f.name)[ev if f.name.startswith("ev_") else pu]
            for f in fields(self)
            if f.name.startswith(("ev_", "pu_"))
        }
        return replace(self, **arrays, **changes)

    def purchases_after(self, cutoff: float, horizon: float) -> np.ndarray:
        """Mask of purchases in (cutoff, cutoff + horizon]. Raises NotEnoughHistory past the data's end."""
        if cutoff + horizon > self.cutoff + 1e-6:
            raise NotEnoughHistory(
                f"labels need data up to {horizon:g} days after the cut-off; the data ends {self.cutoff - cutoff:g} "
                "days after it"
            )
        return (self.pu_t > cutoff) & (self.pu_t <= cutoff + horizon)


def _product_merchants(product_ids: np.ndarray) -> np.ndarray:
    """The merchant id of each product position (ids ascending, as in ProductArrays.index)."""
    if product_ids.size == 0:
        return np.empty(0, dtype=np.int64)
    merchants = dict(Product.objects.values_list("id", "merchant_id").iterator(chunk_size=20_000))
    return np.array([merchants.get(int(p), -1) for p in product_ids.tolist()], dtype=np.int64)


CONSUMER_FEATURES = [
    "days_since_event",
    "days_since_purchase",
    "days_since_cart",
    "events_7d",
    "events_30d",
    "events_window",
    "views_30d",
    "carts_7d",
    "carts_30d",
    "favourites_30d",
    "orders_30d",
    "orders_window",
    "spend_window",
    "spend_30d",
    "trend_30d",  # events in the last 30 days against the 30 before (log ratio)
    "active_days_window",
    "categories_window",
    "discount_share",
    "mean_order_gap",
    "age_range",
]
PAIR_FEATURES = [
    "pair_days_since_event",
    "pair_days_since_purchase",
    "pair_events_30d",
    "pair_carts_30d",
    "pair_orders_window",
    "pair_spend_window",
    "pair_share",  # the pair's share of the consumer's events in the window
    "group_buyers_30d",  # how many consumers bought in the group in the last 30 days (log)
]
# The consumer's recommender factors · the group's mean item factors (predict.factors), when factors are on.
PAIR_FACTOR_FEATURE = "pair_factor_affinity"


@dataclass(frozen=True)
class Features:
    """A feature matrix at one cut-off: one row per unit (a consumer, or a consumer and a group)."""

    cutoff: float
    names: list[str]
    matrix: np.ndarray  # float32 (units x features)
    consumer: np.ndarray  # int32 consumer position of each row
    group: np.ndarray | None  # int32 group code of each row (pair features), else None
    rf_score: np.ndarray  # the recency/frequency baseline's score (higher: more likely to buy)
    has_purchase: np.ndarray  # bool: bought within the feature window


def check_cutoff(history: History, cutoff: float) -> None:
    late = int((history.ev_t > cutoff).sum() + (history.pu_t > cutoff).sum())
    if late or history.cutoff > cutoff:
        raise TemporalLeak(
            f"features at cut-off {cutoff:g} were given {late} events after it; pass history.until(cutoff)"
        )


def _last(index: np.ndarray, t: np.ndarray, size: int, cutoff: float, cap: float) -> np.ndarray:
    last = np.full(size, -np.inf)
    np.maximum.at(last, index, t.astype(np.float64))
    return np.minimum(cutoff - last, cap)


def consumer_features(history: History, *, cutoff: float, window: float = FEATURE_WINDOW_DAYS) -> Features:
    """One row per consumer with any event in the window before the cut-off (events strictly from history.until)."""
    check_cutoff(history, cutoff)
    n = history.consumers
    cap = window + 1.0
    ev_in = history.ev_t > cutoff - window
    pu_in = history.pu_t > cutoff - window
    c, t, kind = history.ev_consumer[ev_in], history.ev_t[ev_in], history.ev_type[ev_in]
    pc, pt = history.pu_consumer[pu_in], history.pu_t[pu_in]
    amount, discounted, order = history.pu_amount[pu_in], history.pu_discounted[pu_in], history.pu_order[pu_in]
    age = cutoff - t

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(c[mask], minlength=n).astype(np.float64)

    events_window = count(np.ones(c.size, dtype=bool))
    units = np.flatnonzero(events_window > 0)
    orders_keys = (pc.astype(np.int64) << 32) | (order & 0xFFFFFFFF)
    unique_orders, order_of = sorted_unique_inverse(orders_keys)  # order references are hashes: no dense range
    order_consumer = (unique_orders >> 32).astype(np.int64)
    order_t = np.full(unique_orders.size, -np.inf)
    np.maximum.at(order_t, order_of, pt.astype(np.float64))
    orders_window = np.bincount(order_consumer, minlength=n).astype(np.float64)
    orders_30d = np.bincount(order_consumer[(cutoff - order_t) <= 30], minlength=n).astype(np.float64)
    days_since_purchase = _last(pc, pt, n, cutoff, cap)
    first_order = np.full(n, np.inf)
    np.minimum.at(first_order, order_consumer, order_t.astype(np.float64))
    span = np.where(orders_window > 1, (cutoff - days_since_purchase) - first_order, np.nan)
    mean_gap = np.where(orders_window > 1, span / np.maximum(orders_window - 1, 1), cap)
    spend_window = np.bincount(pc, weights=amount, minlength=n)
    spend_30d = np.bincount(pc[(cutoff - pt) <= 30], weights=amount[(cutoff - pt) <= 30], minlength=n)
    items = np.bincount(pc, minlength=n).astype(np.float64)
    discount_share = np.where(items > 0, np.bincount(pc[discounted], minlength=n) / np.maximum(items, 1), 0.0)
    first_day = int(np.floor(cutoff - window))
    day = np.floor(t).astype(np.int64) - first_day
    active_days = _distinct(c, day, n, items=int(np.floor(cutoff)) - first_day + 1)
    cat = history.ev_category[ev_in]
    categories = _distinct(c[cat >= 0], cat[cat >= 0].astype(np.int64), n, items=len(history.categories))
    events_30 = count(age <= 30)
    events_prev = count((age > 30) & (age <= 60))
    is_cart = kind == EventType.CART
    cart_last = _last(c[is_cart], t[is_cart], n, cutoff, cap)
    columns = {
        "days_since_event": _last(c, t, n, cutoff, cap),
        "days_since_purchase": days_since_purchase,
        "days_since_cart": cart_last,
        "events_7d": count(age <= 7),
        "events_30d": events_30,
        "events_window": events_window,
        "views_30d": count((age <= 30) & (kind == EventType.VIEW)),
        "carts_7d": count((age <= 7) & is_cart),
        "carts_30d": count((age <= 30) & is_cart),
        "favourites_30d": count((age <= 30) & (kind == EventType.FAVOURITE)),
        "orders_30d": orders_30d,
        "orders_window": orders_window,
        "spend_window": spend_window,
        "spend_30d": spend_30d,
        "trend_30d": np.log1p(events_30) - np.log1p(events_prev),
        "active_days_window": active_days.astype(np.float64),
        "categories_window": categories.astype(np.float64),
        "discount_share": discount_share,
        "mean_order_gap": mean_gap,
        "age_range": history.age_code.astype(np.float64),
    }
    matrix = np.column_stack([columns[name][units] for name in CONSUMER_FEATURES]).astype(np.float32)
    return Features(
        cutoff=cutoff,
        names=list(CONSUMER_FEATURES),
        matrix=matrix,
        consumer=units.astype(np.int32),
        group=None,
        rf_score=rf_score(columns["days_since_purchase"][units], orders_window[units], window),
        has_purchase=orders_window[units] > 0,
    )


def rf_score(days_since_purchase: np.ndarray, orders: np.ndarray, window: float) -> np.ndarray:
    """The recency/frequency baseline: the RFM rule's R and F as rank scores in (0, 1], summed.

    Recent and frequent buyers score highest; consumers who did not buy in the window share the lowest
    recency. This is what a merchant would do without a model.
    """
    return _rank01(-days_since_purchase) + _rank01(orders)


def _rank01(values: np.ndarray) -> np.ndarray:
    if values.size == 0:
        return np.empty(0)
    values = np.asarray(values, dtype=np.float64)
    # The rank of each value among the distinct values (a sort and a search: an argsort of millions is far slower).
    distinct = sorted_unique(values)
    inverse = searchsorted_many(distinct, values)
    top = max(distinct.size - 1, 1)
    return inverse / top


# A table with one entry per possible key replaces sorting when the keys' range is at most this many times their
# number: a sort of the 20M events of a million consumers costs several seconds, the table a fraction of one.
DENSE_FACTOR = 16


def _dense(space: int, keys: int) -> bool:
    return space < 2**31 and space <= DENSE_FACTOR * keys + (1 << 20)


def unique_inverse(keys: np.ndarray, space: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys ascending and each key's index among them; every key is in [0, space)."""
    if keys.size == 0 or not _dense(space, keys.size):
        return sorted_unique_inverse(keys)
    present = np.zeros(space, dtype=bool)
    present[keys] = True
    distinct = np.flatnonzero(present)
    # Each distinct key's index written at its own place only (a cumulative sum over the whole table cost twice as
    # much for the 202M (consumer, store) places of a million consumers).
    index = np.empty(space, dtype=np.int32)
    index[distinct] = np.arange(distinct.size, dtype=np.int32)
    return distinct, index[keys].astype(np.int64)


def _distinct(group: np.ndarray, item: np.ndarray, groups: int, items: int | None = None) -> np.ndarray:
    """How many distinct items each group has. `items`, when known, bounds the items to [0, items)."""
    if group.size == 0:
        return np.zeros(groups, dtype=np.int64)
    if items is not None and _dense(groups * items, group.size):
        present = np.zeros((groups, items), dtype=bool)
        present[group, item] = True
        return np.count_nonzero(present, axis=1)
    keys = (group.astype(np.int64) << 32) | (item.astype(np.int64) & 0xFFFFFFFF)
    return np.bincount(sorted_unique(keys) >> 32, minlength=groups)


def pair_features(
    history: History,
    *,
    cutoff: float,
    by: str,
    groups: list[int],
    window: float = FEATURE_WINDOW_DAYS,
    base: Features | None = None,
    population: History | None = None,
    per_consumer: int | None = None,
    affinity: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Features:
    """One row per (consumer, group) with any event of the consumer in the group within the window.

    `by` is "merchant" or "category"; `groups` the group codes modelled (e.g. the top categories).
    Rows hold the consumer's own features and the pair's. `population`, when `history` is a sample of consumers,
    is the whole history the group-wide figures (buyers per group) are counted over. `per_consumer`, when given,
    keeps each consumer's that many groups with most events in the window (the latest event breaks ties, then the
    group code): `candidate_pairs`. `affinity`, when given, maps the rows' consumers and groups to one more pair
    feature (the recommender factors' `pair_factor_affinity`, predict.factors).
    """
    check_cutoff(history, cutoff)
    if base is None or base.cutoff != cutoff:
        base = consumer_features(history, cutoff=cutoff, window=window)
    cap = window + 1.0
    ev_group = history.ev_merchant if by == "merchant" else history.ev_category
    pu_group = history.pu_merchant if by == "merchant" else history.pu_category
    wanted = np.zeros(max([*groups, int(ev_group.max(initial=-1)), int(pu_group.max(initial=-1))]) + 2, dtype=bool)
    wanted[np.asarray(groups, dtype=np.int64)] = True
    ev_in = (history.ev_t > cutoff - window) & (ev_group >= 0)
    ev_in &= wanted[np.where(ev_group >= 0, ev_group, -1)]
    pu_in = (history.pu_t > cutoff - window) & (pu_group >= 0)
    pu_in &= wanted[np.where(pu_group >= 0, pu_group, -1)]
    width = np.int64(wanted.size)
    ev_keys = history.ev_consumer[ev_in].astype(np.int64) * width + ev_group[ev_in]
    pairs, ev_pair = unique_inverse(ev_keys, history.consumers * int(width))
    pu_keys = history.pu_consumer[pu_in].astype(np.int64) * width + pu_group[pu_in]
    if per_consumer is not None:
        kept = candidate_pairs(pairs // width, ev_pair, history.ev_t[ev_in], limit=per_consumer)
        if not kept.all():
            ev_in[ev_in] = kept[ev_pair]
            ev_pair = (np.cumsum(kept) - 1)[ev_pair[kept[ev_pair]]]
            pairs = pairs[kept]
    p = pairs.size
    found = searchsorted_many(pairs, pu_keys)
    found = np.minimum(found, max(p - 1, 0))
    pu_known = (pairs[found] == pu_keys) if p else np.zeros(pu_keys.size, dtype=bool)
    pu_pair = found[pu_known]
    t = history.ev_t[ev_in]
    kind = history.ev_type[ev_in]
    age = cutoff - t
    pt = history.pu_t[pu_in][pu_known]
    amount = history.pu_amount[pu_in][pu_known]
    order = history.pu_order[pu_in][pu_known]
    pair_consumer = (pairs // width).astype(np.int32)
    pair_group = (pairs % width).astype(np.int32)
    events = np.bincount(ev_pair, minlength=p).astype(np.float64)
    order_keys = (pu_pair.astype(np.int64) << 32) | (order & 0xFFFFFFFF)
    pair_orders = _distinct(pu_pair, order_keys & 0xFFFFFFFF, p).astype(np.float64) if order_keys.size else np.zeros(p)
    group_buyers = recent_group_buyers(population or history, cutoff=cutoff, by=by, width=int(width))
    consumer_row = np.full(history.consumers, -1, dtype=np.int64)
    consumer_row[base.consumer] = np.arange(base.consumer.size)
    rows = consumer_row[pair_consumer]
    pair_columns = {
        "pair_days_since_event": _last(ev_pair, t, p, cutoff, cap),
        "pair_days_since_purchase": _last(pu_pair, pt, p, cutoff, cap),
        "pair_events_30d": np.bincount(ev_pair[age <= 30], minlength=p).astype(np.float64),
        "pair_carts_30d": np.bincount(ev_pair[(age <= 30) & (kind == EventType.CART)], minlength=p).astype(np.float64),
        "pair_orders_window": pair_orders,
        "pair_spend_window": np.bincount(pu_pair, weights=amount, minlength=p),
        "pair_share": events / np.maximum(base.matrix[rows, base.names.index("events_window")], 1.0),
        "group_buyers_30d": np.log1p(group_buyers[pair_group]),
    }
    pair_names = list(PAIR_FEATURES)
    if affinity is not None:
        pair_columns[PAIR_FACTOR_FEATURE] = affinity(pair_consumer, pair_group)
        pair_names.append(PAIR_FACTOR_FEATURE)
    # Filled in place: stacking and converting would copy the (millions of pairs x 28) matrix three times.
    width_base = len(base.names)
    matrix = np.empty((p, width_base + len(pair_names)), dtype=np.float32)
    matrix[:, :width_base] = base.matrix[rows]
    for position, name in enumerate(pair_names, start=width_base):
        matrix[:, position] = pair_columns[name]
    return Features(
        cutoff=cutoff,
        names=[*base.names, *pair_names],
        matrix=matrix,
        consumer=pair_consumer,
        group=pair_group,
        rf_score=rf_score(pair_columns["pair_days_since_purchase"], pair_orders, window),
        has_purchase=pair_orders > 0,
    )


def searchsorted_many(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """np.searchsorted(haystack, needles) for millions of needles: searching them in sorted order walks the
    haystack once instead of jumping around it: 1.6M needles in 12M sorted keys took 0.7 s instead of 8.5 s. A
    haystack small enough for the caches is searched directly."""
    if haystack.size <= 1 << 16:
        return np.searchsorted(haystack, needles)
    order = np.argsort(needles, kind="stable")
    found = np.empty(needles.size, dtype=np.int64)
    found[order] = np.searchsorted(haystack, needles[order])
    return found


# Event counts above this rank equal when choosing a consumer's candidate groups (the sort key's width).
EVENTS_RANKED = (1 << 16) - 1


def candidate_pairs(
    pair_consumer: np.ndarray, event_pair: np.ndarray, event_t: np.ndarray, *, limit: int
) -> np.ndarray:
    """Which pairs (bool per pair; pairs grouped by consumer, ascending) are among their consumer's `limit` pairs
    with most events, the latest event breaking ties, then the pair's order. `event_pair`: each event's pair.
    (Putting the groups the consumer bought from first kept fewer of the next month's buyers: docs/predictions.md.)"""
    pairs = pair_consumer.size
    counts = np.bincount(pair_consumer, minlength=int(pair_consumer.max(initial=-1)) + 1)
    if pairs == 0 or counts.max() <= limit:
        return np.ones(pairs, dtype=bool)
    events = np.minimum(np.bincount(event_pair, minlength=pairs), EVENTS_RANKED)
    latest = np.full(pairs, -np.inf)
    np.maximum.at(latest, event_pair, event_t.astype(np.float64))
    # One sort of one integer key (consumer, fewest events last, oldest last event last; a stable sort keeps the
    # pair order among ties): a lexsort of the four keys took most of the features' time at a million consumers.
    staleness = np.clip(np.round((latest.max(initial=0.0) - latest) * 16), 0, (1 << 16) - 1).astype(np.int64)
    key = (pair_consumer.astype(np.int64) << 32) | ((EVENTS_RANKED - events) << 16) | staleness
    order = np.argsort(key, kind="stable")
    first = np.searchsorted(pair_consumer, pair_consumer)  # a consumer's first pair (pairs are grouped by consumer)
    kept = np.zeros(pairs, dtype=bool)
    kept[order[np.arange(pairs) - first[order] < limit]] = True
    return kept


def recent_group_buyers(history: History, *, cutoff: float, by: str, width: int) -> np.ndarray:
    """Buyers per group code in the 30 days up to the cut-off (the store's or category's popularity right then).
    Reads purchases at or before the cut-off only, whatever the history holds."""
    pu_group = history.pu_merchant if by == "merchant" else history.pu_category
    recent = (history.pu_t <= cutoff) & (history.pu_t >= cutoff - 30) & (pu_group >= 0) & (pu_group < width)
    keys = history.pu_consumer[recent].astype(np.int64) * width + pu_group[recent]
    unique_buyers = sorted_unique(keys)
    return np.bincount((unique_buyers % width).astype(np.int64), minlength=width).astype(np.float64)
