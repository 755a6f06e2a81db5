"""Tags as a tagging run leaves them: rows, counts, catalogue and bitmaps, written by tags.services.

Tests that need particular consumers to hold particular tags (without building the behaviour a real rule
would need) run the real tagging service with a rule whose answer is given: `tags_compute` writes the family
(catalogue, rows, counts, per-tag bitmaps), rebuilds the live-consumer and consent bitmaps, records the
TaggingRun and audits it. No test writes the bitmap index itself (tests/config/test_layout.py checks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import factory
import numpy as np

from privacy.models import Purpose
from tags.models import ConsumerTag, Tag, TaggingRun
from tags.rules import Assignments, TagRule, TagValue
from tags.services import tags_compute

from .privacy import basis_for


class GivenRule(TagRule):
    """A tag family whose assignments are given: value -> consumer ids (and all of the family's values)."""

    purpose = "tagging"

    def __init__(
        self,
        family: str,
        members: Mapping[str, Iterable[int]],
        *,
        values: Iterable[str] = (),
        label: Callable[[str, str], str] | None = None,
        definition: Callable[[str, str], str] | None = None,
        rule_version: str = "t1",
    ):
        self.family = family
        self.label = family
        self.description = f"Given by the test for {family}."
        self.rule_version = rule_version
        names = list(dict.fromkeys([*values, *members]))
        label = label or (lambda f, v: f"{f} {v}")
        definition = definition or (lambda f, v: f"Consumers tagged {f}={v}.")
        self._values = [TagValue(value=v, label=label(family, v), definition=definition(family, v)) for v in names]
        self._members = {value: sorted(set(ids)) for value, ids in members.items()}

    def values(self, data) -> list[TagValue]:
        return self._values

    def compute(self, data) -> Assignments:
        index = {v.value: i for i, v in enumerate(self._values)}
        consumers, value_index = [], []
        for value, ids in self._members.items():
            positions = data.consumers.positions(np.asarray(ids, dtype=np.int64))
            positions = positions[positions >= 0]  # consumers deleted meanwhile get nothing
            consumers.append(positions)
            value_index.append(np.full(positions.size, index[value], dtype=np.int32))
        if not consumers:
            return Assignments.empty(self._values, with_scores=False)
        return Assignments(
            self._values,
            np.concatenate(consumers).astype(np.int32),
            np.concatenate(value_index).astype(np.int32),
            None,
        )


def family_members(family: str) -> dict[str, set[int]]:
    """The family's current holders per value, from the tag rows (the source of truth)."""
    members: dict[str, set[int]] = {}
    for value, consumer_id in ConsumerTag.objects.filter(tag__family=family).values_list("tag__value", "consumer_id"):
        members.setdefault(value, set()).add(consumer_id)
    return members


class TaggingRunFactory(factory.django.DjangoModelFactory):
    """A tagging run of the real service with given assignments.

    tags: {(family, value): consumer ids}; catalogue: {family: values}, the values every family has even
    when nobody holds them. Each family named is replaced as a whole, as a real run does; `keep=True` keeps
    the family's current holders and adds the new ones. Runs under the approved tagging activity, or under
    one approved for the run and suspended after it when the register has none (see privacy.basis_for).
    Returns the TaggingRun.
    """

    class Meta:
        model = TaggingRun

    tags = factory.LazyFunction(dict)
    catalogue = factory.LazyFunction(dict)
    keep = False
    label = None
    definition = None
    rule_version = "t1"
    actor = "test"

    @classmethod
    def _create(cls, model_class, *args, tags, catalogue, keep, label, definition, rule_version, actor):
        by_family: dict[str, dict[str, set[int]]] = {family: {} for family in catalogue}
        for (family, value), ids in tags.items():
            by_family.setdefault(family, {}).setdefault(value, set()).update(int(i) for i in ids)
        rules = []
        for family, members in by_family.items():
            if keep:
                for value, ids in family_members(family).items():
                    members.setdefault(value, set()).update(ids)
            known = list(Tag.objects.filter(family=family).values_list("value", flat=True)) if keep else []
            rules.append(
                GivenRule(
                    family,
                    members,
                    values=[*catalogue.get(family, ()), *known],
                    label=label,
                    definition=definition,
                    rule_version=rule_version,
                )
            )
        with basis_for(Purpose.TAGGING):
            report = tags_compute(rules=rules, actor=actor)
        return TaggingRun.objects.get(pk=report.run_id)


def tags_assign(tags: Mapping[tuple[str, str], Iterable[int]], **options) -> TaggingRun:
    """Shorthand: a tagging run that gives these consumers these tags."""
    return TaggingRunFactory(tags=dict(tags), **options)


def bitmaps_refresh() -> TaggingRun:
    """A tagging run of no family: stores the live-consumer and consent bitmaps as they are now."""
    return TaggingRunFactory()


__all__ = ["GivenRule", "TaggingRunFactory", "bitmaps_refresh", "family_members", "tags_assign"]
