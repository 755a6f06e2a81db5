"""The tag catalogue's rules, one small documented class per family (see docs/tags.md).

RULES lists them in the order a full run computes them: profile families
first (cheapest), then those from purchases, then those from all events, then
personas (which reuse the arrays the others loaded).
"""

from __future__ import annotations

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


__all__ = ["FAMILIES", "RULES", "Assignments", "TagRule", "TagValue", "UnknownFamily", "rules_for"]
