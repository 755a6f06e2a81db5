"""Which brand and category values a merchant may name in an action condition, and the suggestions offered.

Behaviour is counted across the marketplace, so `viewed(brand="Aether")` for a brand only one competitor sells
would be an audience of that competitor's shoppers, which naming the competitor (`merchant=`) already refuses.
The rule, one for both arguments and for every door (estimates, saved segments, refreshes, nested segments,
both evaluators, suggestions):

    a `category` or `brand` value is targetable by a merchant when its own catalogue has a product matching it,
    or when products matching it are sold by at least SEGMENT_SHARED_VALUE_MIN_MERCHANTS distinct merchants.

An action naming both is checked as the pair (products of that brand in that category), so two common values
cannot be combined into one competitor's niche. Matching is the behaviour query's own: a brand
case-insensitively, a category as the top-level category, a category path or a path prefix. A value nobody
sells gets the same refusal as a value only others sell: the message never tells which merchant sells what.

The checks run when an expression is resolved (`segments.evaluation.definition_resolve`), before either
evaluator sees it. Answers are cached for five minutes in the shared cache, keyed by the newest product id:
a product added counts at once, a product deleted or re-branded within five minutes.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache
from django.db.models import Case, Count, Max, Min, Q, When
from django.db.models.functions import Coalesce, Upper

from consumers.models import Product

from .language import ActionTerm, SegmentSyntaxError

TARGETABLE_ARGS = ("category", "brand")
CACHE_SECONDS = 300
MAX_SUGGESTIONS = 50


class ValueNotTargetable(SegmentSyntaxError):
    """A category or brand the merchant does not sell and too few merchants sell (a 400 like any bad term)."""


def min_merchants() -> int:
    return max(1, int(settings.SEGMENT_SHARED_VALUE_MIN_MERCHANTS))


def product_condition(*, category: str | None = None, brand: str | None = None, prefix: str = "") -> Q:
    """Products in `category` (top level, path or path prefix) of `brand`; `prefix` reaches Product through a
    relation (e.g. "product__" from Event). The behaviour query and the targeting rule share it."""
    condition = Q()
    if category is not None:
        condition &= (
            Q(**{f"{prefix}category__iexact": category})
            | Q(**{f"{prefix}category_path__iexact": category})
            | Q(**{f"{prefix}category_path__istartswith": category + "/"})
        )
    if brand is not None:
        condition &= Q(**{f"{prefix}brand__iexact": brand})
    return condition


def _catalogue_version() -> int:
    return Product.objects.aggregate(newest=Max("id"))["newest"] or 0


GENERATION_KEY = "segments:targeting:generation"


def _cache_key(kind: str, *parts: object) -> str:
    raw = "\x1f".join(str(part) for part in (cache.get(GENERATION_KEY, 0), *parts))
    return f"segments:targeting:{kind}:" + hashlib.sha256(raw.encode()).hexdigest()


def targeting_cache_invalidate() -> None:
    """Forget every cached answer (bumping the generation changes every key)."""
    try:
        cache.incr(GENERATION_KEY)
    except ValueError:
        cache.set(GENERATION_KEY, 1, None)


def value_targetable(
    *, merchant_id: int, category: str | None = None, brand: str | None = None, version: int | None = None
) -> bool:
    """True when the merchant sells a matching product, or at least min_merchants() merchants do."""
    if category is None and brand is None:
        return True
    needed = min_merchants()
    version = _catalogue_version() if version is None else version
    key = _cache_key("value", version, merchant_id, needed, category, brand)
    cached = cache.get(key)
    if cached is not None:
        return bool(cached)
    products = Product.objects.filter(product_condition(category=category, brand=brand)).order_by()
    allowed = products.filter(merchant_id=merchant_id).exists() or (
        len(products.values_list("merchant_id", flat=True).distinct()[:needed]) >= needed
    )
    cache.set(key, allowed, CACHE_SECONDS)
    return allowed


def _refusal(what: str) -> str:
    return f"{what} is not in your catalogue and is sold by too few merchants to target"


def _describe(term: ActionTerm) -> tuple[str, str]:
    """What to name in a refusal of this term's pair, and the argument to point at."""
    if term.brand is not None and term.category is not None:
        return f'brand "{term.brand}" in category "{term.category}"', "brand"
    if term.brand is not None:
        return f'brand "{term.brand}"', "brand"
    return f'category "{term.category}"', "category"


def action_term_refusal(term: ActionTerm, *, merchant_id: int, version: int) -> tuple[str, str] | None:
    """None when the term's category and brand are targetable, else (what to name, argument to point at)."""
    if term.category is None and term.brand is None:
        return None
    if value_targetable(merchant_id=merchant_id, category=term.category, brand=term.brand, version=version):
        return None
    # Blame the single value that fails, where one does; else the combination.
    if term.category is not None and term.brand is not None:
        if not value_targetable(merchant_id=merchant_id, brand=term.brand, version=version):
            return f'brand "{term.brand}"', "brand"
        if not value_targetable(merchant_id=merchant_id, category=term.category, version=version):
            return f'category "{term.category}"', "category"
    return _describe(term)


def action_terms_check(terms: list[ActionTerm], *, merchant_id: int, text: str | None = None) -> None:
    """Raise ValueNotTargetable at the first action term naming a category or brand the merchant may not target."""
    checked = [t for t in terms if t.category is not None or t.brand is not None]
    if not checked:
        return
    version = _catalogue_version()
    for term in checked:
        refusal = action_term_refusal(term, merchant_id=merchant_id, version=version)
        if refusal is not None:
            what, argument = refusal
            raise ValueNotTargetable(
                _refusal(what),
                position=term.position_of(argument),
                found=getattr(term, argument),
                expected=[],
                text=text,
            )


def nested_refusal(terms: list[ActionTerm], *, merchant_id: int) -> str | None:
    """For a segment named inside another: the refusal of its first disallowed term, or None."""
    checked = [t for t in terms if t.category is not None or t.brand is not None]
    if not checked:
        return None
    version = _catalogue_version()
    for term in checked:
        refusal = action_term_refusal(term, merchant_id=merchant_id, version=version)
        if refusal is not None:
            return refusal[0]
    return None


def targetable_values(*, merchant_id: int, argument: str, prefix: str = "", limit: int = 20) -> list[str]:
    """Values of `argument` (category or brand) starting with `prefix` that the merchant may target, sorted
    case-insensitively: the merchant's own (in its spelling) and those sold by enough merchants. Categories
    are offered as top-level categories and full category paths."""
    if argument not in TARGETABLE_ARGS:
        raise ValueError(f"argument must be one of {', '.join(TARGETABLE_ARGS)}")
    limit = max(1, min(int(limit), MAX_SUGGESTIONS))
    needed = min_merchants()
    key = _cache_key("suggest", _catalogue_version(), merchant_id, needed, argument, prefix, limit)
    cached = cache.get(key)
    if cached is not None:
        return list(cached)
    fields = ("brand",) if argument == "brand" else ("category", "category_path")
    found: dict[str, str] = {}
    for field in fields:
        rows = (
            Product.objects.filter(**{f"{field}__istartswith": prefix})
            .exclude(**{field: ""})
            .order_by()
            .annotate(key=Upper(field))
            .values("key")
            .annotate(
                merchants=Count("merchant_id", distinct=True),
                own=Max(Case(When(merchant_id=merchant_id, then=1), default=0)),
                spelling=Coalesce(Max(Case(When(merchant_id=merchant_id, then=field))), Min(field)),
            )
            .filter(Q(own=1) | Q(merchants__gte=needed))
            .order_by("key")
            .values_list("key", "spelling")[:limit]
        )
        for folded, spelling in rows:
            found.setdefault(folded, spelling)
    values = [found[k] for k in sorted(found)][:limit]
    cache.set(key, values, CACHE_SECONDS)
    return values


__all__ = [
    "ValueNotTargetable",
    "action_terms_check",
    "min_merchants",
    "nested_refusal",
    "product_condition",
    "targetable_values",
    "targeting_cache_invalidate",
    "value_targetable",
]
