"""May this consumer be messaged now: the one home of the rule every sender applies (docs/privacy.md).

A direct-marketing message may reach a consumer only when every part holds:

1. the consumer exists (an erased consumer is gone, with their consent and suppressions);
2. their current direct-marketing consent is an express opt-in (granted, kind express);
3. no active suppression for every campaign (an objection, the operator's blacklist);
4. for a message that carries an offer, no active suppression for offers (a risk flag, the operator's);
5. they are not a minor (age range under 18), unless the privacy officers' messaging policy allows it.

The parts are defined once, as querysets (`PARTS`), and used in three shapes that agree (a hypothesis test proves
it): `may_message` for one consumer (the inbox; with the reason), `messageable_consumer_ids` for a set in SQL
(dispatch, export) and `reachable_combine` for the bitmap form, which tags builds from the same parts
(`tags.selectors.reachable_bitmap`: estimates' reachable counts, activation, the campaign preview).

The consumer's age range is a column of consumers.Consumer (layer 2). Privacy (layer 1) never imports it: it reads
the column through the foreign key its own models already hold (ConsentState.consumer), and declares which age
ranges are minors' (models.MINOR_AGE_RANGES, which consumers.AgeRange takes its value from).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from django.conf import settings
from django.db.models import Q, QuerySet

from .models import (
    MINOR_AGE_RANGES,
    ConsentKind,
    ConsentState,
    ConsentStatus,
    MessagingPolicy,
    Purpose,
    Suppression,
    SuppressionReason,
    SuppressionScope,
)


class Reason:
    """Why a consumer may or may not be messaged (the codes in a Decision)."""

    ALLOWED = "allowed"
    ERASED = "erased"
    NO_EXPRESS_CONSENT = "no_express_consent"
    OBJECTION = "objection"
    SUPPRESSED = "suppressed"
    OFFER_SUPPRESSED = "offer_suppressed"
    MINOR = "minor"
    CHANGED = "changed_during_check"  # refused by the set form, allowed by the later reads: refused, to be safe


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


# ------------------------------------------------------------------------------------------------ the policy


def minors_allowed() -> bool:
    """The officers' setting (Messaging policy in the admin), else the environment default."""
    value = MessagingPolicy.objects.filter(pk=1).values_list("minors_allowed", flat=True).first()
    return bool(settings.DIRECT_MARKETING_MINORS_ALLOWED if value is None else value)


@dataclass(frozen=True)
class Rule:
    """The rule for one kind of message: whether it carries an offer, and the officers' minors setting."""

    with_offer: bool
    minors_allowed: bool

    @property
    def blocking(self) -> list[Part]:
        """The parts that take consumers out of the opted-in set, in the order a Decision names them."""
        return [part for part in PARTS if part.applies(self)]


def messaging_rule(*, with_offer: bool, minors: bool | None = None) -> Rule:
    return Rule(with_offer=with_offer, minors_allowed=minors_allowed() if minors is None else minors)


# ------------------------------------------------------------------------------------------------ the parts


def _consumer_model():
    """consumers.Consumer, through privacy's own foreign key (no import of a higher layer)."""
    return ConsentState._meta.get_field("consumer").related_model


def opted_in_states() -> QuerySet[ConsentState]:
    """Current direct-marketing consent that is an express opt-in (part 2, the set everything starts from)."""
    return ConsentState.objects.filter(
        purpose=Purpose.DIRECT_MARKETING, status=ConsentStatus.GRANTED, kind=ConsentKind.EXPRESS
    )


def active_suppressions(*, scope: str, at: datetime | None = None) -> QuerySet[Suppression]:
    """Suppressions of one scope in force at `at` (now): created by then and not lifted by then."""
    rows = Suppression.objects.filter(scope=scope)
    if at is None:
        return rows.filter(lifted_at__isnull=True)
    return rows.filter(created_at__lte=at).filter(Q(lifted_at__isnull=True) | Q(lifted_at__gt=at))


def _minor(prefix: str = "") -> Q:
    """The minors part's condition on a consumer row (prefix: the path to it, e.g. "consumer__")."""
    return Q(**{f"{prefix}age_range__in": sorted(MINOR_AGE_RANGES)})


@dataclass(frozen=True)
class Part:
    """One blocking part of the rule: a reason, when it applies, and the consumers it blocks (a queryset whose
    `consumer_field` holds consumer ids). `on_states`, when given, is the same condition as a filter on
    ConsentState rows (a join instead of a subquery over the whole table)."""

    name: str
    applies: Callable[[Rule], bool]
    rows: Callable[[datetime | None], QuerySet]
    consumer_field: str = "consumer_id"
    on_states: Callable[[datetime | None], Q] | None = None

    def consumer_ids(self, *, at: datetime | None = None, within: Q | None = None) -> QuerySet:
        rows = self.rows(at)
        if within is not None:
            rows = rows.filter(within)
        return rows.values_list(self.consumer_field, flat=True)

    def states_filter(self, *, at: datetime | None = None) -> Q:
        """The ConsentState rows of the consumers this part blocks."""
        if self.on_states is not None:
            return self.on_states(at)
        return Q(consumer_id__in=self.rows(at).values(self.consumer_field))


PARTS: list[Part] = [
    Part(
        name="suppressed_all",
        applies=lambda rule: True,
        rows=lambda at: active_suppressions(scope=SuppressionScope.ALL, at=at),
    ),
    Part(
        name="suppressed_offers",
        applies=lambda rule: rule.with_offer,
        rows=lambda at: active_suppressions(scope=SuppressionScope.OFFERS, at=at),
    ),
    Part(
        name="minors",
        applies=lambda rule: not rule.minors_allowed,
        rows=lambda at: _consumer_model().objects.filter(_minor()),
        consumer_field="id",
        on_states=lambda at: _minor("consumer__"),
    ),
]
PARTS_BY_NAME = {part.name: part for part in PARTS}


# ------------------------------------------------------------------------------------------------ the three shapes


def messageable_consumer_ids(
    *,
    with_offer: bool,
    at: datetime | None = None,
    consumer_ids: Sequence[int] | None = None,
    within: Q | None = None,
    rule: Rule | None = None,
) -> QuerySet:
    """The set form, in SQL: ids of the consumers a message may reach now (of `consumer_ids`, or of those matching
    `within`, a plain filter on consumer_id such as a range; all when neither is given)."""
    rule = rule or messaging_rule(with_offer=with_offer)
    rows = opted_in_states()
    if consumer_ids is not None:
        rows = rows.filter(consumer_id__in=list(consumer_ids))
    if within is not None:
        rows = rows.filter(within)
    for part in rule.blocking:
        rows = rows.exclude(part.states_filter(at=at))
    return rows.values_list("consumer_id", flat=True)


def messaging_refusals(
    consumer_ids: Sequence[int], *, with_offer: bool, at: datetime | None = None, rule: Rule | None = None
) -> dict[int, str]:
    """For a batch: the consumers who may not be messaged now and why (the Decision's reason for each)."""
    ids = list(dict.fromkeys(consumer_ids))
    if not ids:
        return {}
    rule = rule or messaging_rule(with_offer=with_offer)
    allowed = set(messageable_consumer_ids(with_offer=with_offer, at=at, consumer_ids=ids, rule=rule))
    refused = [cid for cid in ids if cid not in allowed]
    if not refused:
        return {}
    existing = set(_consumer_model().objects.filter(pk__in=refused).values_list("pk", flat=True))
    opted = set(opted_in_states().filter(consumer_id__in=refused).values_list("consumer_id", flat=True))
    objected = set(
        active_suppressions(scope=SuppressionScope.ALL, at=at)
        .filter(consumer_id__in=refused, reason=SuppressionReason.OBJECTION)
        .values_list("consumer_id", flat=True)
    )
    blocked = {
        part.name: set(part.consumer_ids(at=at, within=Q(**{f"{part.consumer_field}__in": refused})))
        for part in rule.blocking
    }
    return {cid: _reason(cid, existing, opted, objected, blocked) for cid in refused}


_PART_REASONS = {
    "suppressed_all": Reason.SUPPRESSED,
    "suppressed_offers": Reason.OFFER_SUPPRESSED,
    "minors": Reason.MINOR,
}


def _reason(cid: int, existing: set[int], opted: set[int], objected: set[int], blocked: dict[str, set[int]]) -> str:
    if cid not in existing:
        return Reason.ERASED
    if cid not in opted:
        return Reason.NO_EXPRESS_CONSENT
    for name, ids in blocked.items():
        if cid in ids:
            if name == "suppressed_all" and cid in objected:
                return Reason.OBJECTION
            return _PART_REASONS[name]
    return Reason.CHANGED


def may_message(
    *, consumer_id: int, with_offer: bool, merchant_id: int | None = None, at: datetime | None = None
) -> Decision:
    """The per-consumer form: may a message (with an offer or not) reach this consumer now, and if not, why.

    `at` (default: now) is when the message would go: suppressions count from their creation until they are
    lifted; consent and the age range are read as they stand (the ledger's current state). `merchant_id` names
    the sender; the rule does not depend on it today (consent to direct marketing and suppressions are
    platform-wide), it is taken so callers state who is asking.
    """
    del merchant_id
    reasons = messaging_refusals([consumer_id], with_offer=with_offer, at=at)
    if consumer_id not in reasons:
        return Decision(True, Reason.ALLOWED)
    return Decision(False, reasons[consumer_id])


T = TypeVar("T")


def reachable_combine(*, opted_in: T, blocked: dict[str, T], rule: Rule) -> T:
    """The bitmap (or any set) form: opted-in minus every part of the rule that applies.

    `blocked` maps each part's name to its set (built from `PARTS[...].consumer_ids()` or an equivalent index of
    the same column); parts that do not apply to the rule are ignored, a part that applies must be given.
    """
    result = opted_in
    for part in rule.blocking:
        result = result - blocked[part.name]
    return result
