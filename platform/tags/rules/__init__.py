"""The tag catalogue's rules, one small documented class per family (see docs/tags.md).

RULES lists them in the order a full run computes them: profile families
first (cheapest), then those from purchases, then those from all events, then
personas (which reuse the arrays the others loaded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .base import Assignments, TagRule, TagValue
from .interest import InterestRule
from .lifecycle import LifecycleRule
from .persona import PersonaRule
from .profile import AgeRangeRule, CountryRule
from .purchases import DiscountSensitivityRule, LoyaltyBrandRule, LoyaltyStoreRule, RFMRule

RULES: dict[str, TagRule] = {
    rule.family: rule
    for rule in (
        AgeRangeRule(),
        CountryRule(),
        DiscountSensitivityRule(),
        LoyaltyStoreRule(),
        LoyaltyBrandRule(),
        RFMRule(),
        InterestRule(),
        LifecycleRule(),
        PersonaRule(),
    )
}
FAMILIES: tuple[str, ...] = tuple(RULES)


@dataclass(frozen=True)
class ExternalFamily:
    """A family computed by a higher layer through tags_compute(rules=...) (e.g. predicted traits).

    `note` (optional) gives a plain-words line merchants read under the family in the tag explorer, such as a
    model card's summary; it is called when the catalogue is shown.
    """

    family: str
    label: str
    description: str
    rule_version: str
    note: Callable[[], str] | None = None
    # Values are "<merchant slug>.<rest>" and concern that merchant's store alone: the catalogue shows a merchant
    # only its own (tag_visible_to).
    merchant_scoped: bool = False


# Families registered by higher layers (at app start), shown in the catalogue after the rules' own.
EXTERNAL_FAMILIES: dict[str, ExternalFamily] = {}


def family_register(family: ExternalFamily) -> None:
    """Make a higher layer's family part of the catalogue (tag explorer, GET tags/). Idempotent."""
    if family.family in RULES:
        raise ValueError(f"{family.family!r} is a tagging rule's family")
    EXTERNAL_FAMILIES[family.family] = family


def tag_visible_to(*, family: str, value: str, merchant_slug: str) -> bool:
    """Whether a merchant's catalogue lists this tag: merchant-scoped families show only the merchant's values."""
    extra = EXTERNAL_FAMILIES.get(family)
    if extra is None or not extra.merchant_scoped:
        return True
    return value.startswith(f"{merchant_slug}.")


def known_families() -> tuple[str, ...]:
    """Every family the catalogue knows: the rules' and the registered ones."""
    return (*FAMILIES, *EXTERNAL_FAMILIES)


class UnknownFamily(ValueError):
    def __init__(self, family: str):
        self.family = family
        super().__init__(f"Unknown tag family {family!r}; known families: {', '.join(FAMILIES)}.")


def rules_for(families: list[str] | None) -> list[TagRule]:
    """The rules for families (all when None), in run order. Raises UnknownFamily naming the first unknown one."""
    if families is None:
        return list(RULES.values())
    wanted = []
    for family in families:
        if family not in RULES:
            raise UnknownFamily(family)
        wanted.append(family)
    return [rule for family, rule in RULES.items() if family in wanted]


__all__ = [
    "EXTERNAL_FAMILIES",
    "FAMILIES",
    "RULES",
    "Assignments",
    "ExternalFamily",
    "TagRule",
    "TagValue",
    "UnknownFamily",
    "family_register",
    "known_families",
    "rules_for",
    "tag_visible_to",
]
