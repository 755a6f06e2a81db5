"""Tags read straight from the consumer profile: age range and country of residence."""

from __future__ import annotations

import numpy as np

from consumers.models import AgeRange

from ..countries import country_name
from ..inputs import TaggingInput
from .base import Assignments, TagRule, TagValue


class AgeRangeRule(TagRule):
    """`age_range:<range>`: the age range on the consumer's profile (ages are only ever stored as ranges).

    Consumers without an age range on their profile get no tag in this family.
    """

    family = "age_range"
    label = "Age range"
    description = "The consumer's age range as given on their marketplace profile."
    rule_version = "1"

    def values(self, data: TaggingInput) -> list[TagValue]:
        return [
            TagValue(
                value=choice.value,
                label=f"Aged {choice.label}",
                definition=f"Consumers whose marketplace profile puts their age in the range {choice.label}.",
            )
            for choice in AgeRange
        ]

    def compute(self, data: TaggingInput) -> Assignments:
        values = self.values(data)
        position = {v.value: i for i, v in enumerate(values)}
        encoded = data.profile("age_range")
        # Vocabulary entries that are not a known range (legacy data) get no tag.
        remap = np.array([position.get(raw, -1) for raw in encoded.vocabulary] + [-1], dtype=np.int32)
        value_index = remap[encoded.codes]
        consumers = data.consumers.positions(encoded.ids)
        keep = (value_index >= 0) & (consumers >= 0)
        return Assignments(values, consumers[keep], value_index[keep], None)


class CountryRule(TagRule):
    """`country:<ISO 3166-1 alpha-2>`: the country of residence on the consumer's profile.

    Values are the countries present in the data (addresses are reduced to a
    country at ingestion); a country that disappears keeps its tag with no members.
    """

    family = "country"
    label = "Country of residence"
    description = "The consumer's country of residence, from the address on their profile reduced to a country."
    rule_version = "1"

    def values(self, data: TaggingInput) -> list[TagValue]:
        codes = sorted({raw.strip().upper() for raw in data.profile("country").vocabulary if raw.strip()})
        return [self._value(code) for code in codes]

    @staticmethod
    def _value(code: str) -> TagValue:
        name = country_name(code)
        return TagValue(
            value=code,
            label=name,
            definition=f"Consumers whose marketplace profile gives {name} ({code}) as their country of residence.",
        )

    def compute(self, data: TaggingInput) -> Assignments:
        values = self.values(data)
        position = {v.value: i for i, v in enumerate(values)}
        encoded = data.profile("country")
        remap = np.array([position.get(raw.strip().upper(), -1) for raw in encoded.vocabulary] + [-1], dtype=np.int32)
        value_index = remap[encoded.codes]
        consumers = data.consumers.positions(encoded.ids)
        keep = (value_index >= 0) & (consumers >= 0)
        return Assignments(values, consumers[keep], value_index[keep], None)
