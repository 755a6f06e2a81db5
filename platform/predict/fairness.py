"""How an audience spreads over age ranges and countries against the whole population, with large skews flagged.

`spread(members)` is for any engineer with a set of consumers (a predicted band, a persuadable audience, a
lookalike): it returns exact counts, so it is for privacy officers (the admin), never for a merchant path.

A group is flagged when its share of the members is less than half or more than twice its share of the
population (ratio outside [0.5, 2]) and there is enough support to tell: at least MIN_SUPPORT members in the
group, or at least MIN_SUPPORT expected there at the population's share.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pyroaring import BitMap, FrozenBitMap

from tags.bitmaps import bitmaps_load, tag_key
from tags.selectors import live_consumers_bitmap, tag_catalogue_rows

DIMENSIONS = ("age_range", "country")
LOW_RATIO = 0.5
HIGH_RATIO = 2.0
MIN_SUPPORT = 30
UNKNOWN = "unknown"


@dataclass(frozen=True)
class GroupSpread:
    group: str
    members: int
    population: int
    member_share: float
    population_share: float
    ratio: float | None
    flagged: bool


@dataclass
class FairnessReport:
    members: int
    population: int
    dimensions: dict[str, list[GroupSpread]] = field(default_factory=dict)

    @property
    def flags(self) -> list[str]:
        return [f"{dimension}:{g.group}" for dimension, groups in self.dimensions.items() for g in groups if g.flagged]

    def as_dict(self) -> dict:
        return {
            "members": self.members,
            "population": self.population,
            "flags": self.flags,
            "dimensions": {d: [asdict(g) for g in groups] for d, groups in self.dimensions.items()},
        }


@dataclass(frozen=True)
class Population:
    """The population and its groups, loaded once for many spreads: (dimension, value, members in population)."""

    everyone: FrozenBitMap | BitMap
    groups: list[tuple[str, str, BitMap | FrozenBitMap]]


def population_load(*, dimensions: tuple[str, ...] = DIMENSIONS) -> Population:
    everyone = live_consumers_bitmap()
    rows = tag_catalogue_rows(families=list(dimensions))
    bitmaps = bitmaps_load([tag_key(tag_id) for tag_id, _, _ in rows])
    groups: list[tuple[str, str, BitMap | FrozenBitMap]] = []
    for dimension in dimensions:
        for tag_id, family, value in sorted(rows, key=lambda r: r[2]):
            if family == dimension:
                group = bitmaps.get(tag_key(tag_id), FrozenBitMap()) & everyone
                if group:
                    groups.append((dimension, value, group))
    return Population(everyone=everyone, groups=groups)


def spread(
    members_bitmap: BitMap | FrozenBitMap,
    *,
    dimensions: tuple[str, ...] = DIMENSIONS,
    population: Population | None = None,
) -> FairnessReport:
    """Members' spread over each dimension's tag values against the live population, skews flagged.

    `population` (from population_load) saves reloading the population when spreading many audiences at once.
    """
    population = population or population_load(dimensions=dimensions)
    everyone = population.everyone
    members = members_bitmap & everyone
    report = FairnessReport(members=len(members), population=len(everyone))
    for dimension in dimensions:
        groups: list[GroupSpread] = []
        covered_members, covered_population = BitMap(), BitMap()
        for group_dimension, value, group in population.groups:
            if group_dimension != dimension:
                continue
            covered_population |= group
            in_members = members & group
            covered_members |= in_members
            groups.append(_group(value, len(in_members), len(group), report))
        unknown_population = len(everyone) - len(covered_population)
        if unknown_population:
            groups.append(_group(UNKNOWN, len(members) - len(covered_members), unknown_population, report))
        groups.sort(key=lambda g: -g.population)
        report.dimensions[dimension] = groups
    return report


def _group(name: str, members: int, population: int, report: FairnessReport) -> GroupSpread:
    member_share = members / report.members if report.members else 0.0
    population_share = population / report.population if report.population else 0.0
    ratio = member_share / population_share if population_share else None
    expected = population_share * report.members
    supported = max(members, expected) >= MIN_SUPPORT
    flagged = bool(ratio is not None and supported and (ratio < LOW_RATIO or ratio > HIGH_RATIO))
    return GroupSpread(
        group=name,
        members=members,
        population=population,
        member_share=round(member_share, 4),
        population_share=round(population_share, 4),
        ratio=None if ratio is None else round(ratio, 3),
        flagged=flagged,
    )
