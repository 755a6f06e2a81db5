"""What the visual rule builder needs from the segment language: the actions and their arguments (the vocabulary
the builder's rows are drawn from), and parsing and rendering through the language's own functions, so the builder
is a second view of the same language and never a second grammar.

The arguments are read from `segments.language.ACTION_ARGS` and probed through the public `from_json` / `to_json`
(does the argument take a number, is 1 its default), so an argument added to the language appears in the builder
without a change here; the labels below only make the known ones read better.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from merchants.models import Merchant
from segments import language
from segments.selectors import segments_for_merchant
from segments.services import InvalidDefinition

ACTION_LABELS = {
    "purchased": "bought",
    "viewed": "viewed",
    "carted": "added to cart",
    "favourited": "favourited",
}
ARGUMENT_LABELS = {
    "category": ("Category", "a top-level category or a path such as beauty/skincare"),
    "brand": ("Brand", "the product's brand"),
    "merchant": ("Only in my store", "your own merchant slug: counts only your store's events"),
    "within": ("Within", "12h, 30d or 8w: hours, days or weeks"),
    "min_count": ("At least (times)", "a whole number"),
}
SUGGESTED_VALUES = {"category": "category", "brand": "brand", "merchant": "merchant"}
MAX_SEGMENTS_OFFERED = 500


PROBE_VALUES: tuple[Any, ...] = (2, "2", "30d", "tents")


def _probe(name: str, value: Any) -> language.Node | None:
    """An action that has `name=value`, or None when the language refuses the value for every action (spend and
    order-value arguments apply to purchased only)."""
    for action in language.ACTIONS:
        try:
            return language.from_json({"action": action, name: value})
        except language.SegmentSyntaxError:
            continue
    return None


@cache
def action_arguments() -> tuple[dict[str, Any], ...]:
    """Every action argument the language accepts, in its canonical order: whether it takes a number, whether the
    canonical text quotes it, and the default the canonical form leaves out."""
    arguments = []
    for name in language.ACTION_ARGS:
        numeric, quoted = False, True
        for value in PROBE_VALUES:
            node = _probe(name, value)
            if node is not None and name in language.to_json(node):
                shown = language.to_json(node)[name]
                numeric = isinstance(shown, int | float) and not isinstance(shown, bool)
                quoted = f'{name}="' in language.to_text(node)
                break
        default = None
        one = _probe(name, 1) if numeric else None
        if one is not None and name not in language.to_json(one):
            default = 1  # the canonical form leaves it out (min_count=1 means "at least once")
        label, help_text = ARGUMENT_LABELS.get(name, (name.replace("_", " ").capitalize(), ""))
        arguments.append(
            {
                "name": name,
                "label": label,
                "help": help_text,
                "kind": "number" if numeric else "text",
                "quoted": quoted,
                "default": default,
                "suggest": SUGGESTED_VALUES.get(name, ""),
            }
        )
    return tuple(arguments)


def builder_vocabulary(*, merchant: Merchant, exclude_segment_id: int | None = None) -> dict[str, Any]:
    """The builder's vocabulary: actions, their arguments (in canonical order), the merchant's own segments (a
    segment may not name itself) and the merchant's slug (the one value `merchant=` accepts)."""
    segments = segments_for_merchant(merchant).order_by("name")
    if exclude_segment_id is not None:
        segments = segments.exclude(pk=exclude_segment_id)
    offered = segments.values_list("pk", "name")[:MAX_SEGMENTS_OFFERED]
    return {
        "actions": [{"name": name, "label": ACTION_LABELS.get(name, name)} for name in language.ACTIONS],
        "arguments": list(action_arguments()),
        "segments": [{"id": pk, "name": name} for pk, name in offered],
        "merchant": merchant.slug,
    }


def expression_canonical(*, expression: Any = None, definition: Any = None) -> dict[str, Any]:
    """The JSON form and the canonical text of an expression given as text or as JSON (purely syntactic: whether
    tags and segments exist is the estimate's business). Raises InvalidDefinition (400) with the position."""
    try:
        node = language.definition_parse(expression=expression, definition=definition)
    except language.SegmentSyntaxError as exc:
        raise InvalidDefinition(exc, field="expression" if expression is not None else "definition") from None
    return {"definition": language.to_json(node), "expression": language.to_text(node)}
