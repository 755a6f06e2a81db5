"""`lifecycle:new|active|lapsing|churned`: where a consumer is in their life with the marketplace."""

from __future__ import annotations

import numpy as np

from ..inputs import TaggingInput
from .base import Assignments, TagRule, TagValue


class LifecycleRule(TagRule):
    """From the first and the last event of any kind (within event retention), measured at the run's as_of.

    new: first activity within `new_days`; otherwise active: last activity
    within `active_days`; lapsing: last activity within `lapsing_days`;
    churned: no activity for longer than that. Consumers with no retained
    events get no lifecycle tag. No score: a days-since-activity score would change
    for every consumer every day and rewrite the whole family each night.
    """

    family = "lifecycle"
    label = "Lifecycle stage"
    description = "How recently the consumer started and last showed activity on the marketplace."
    rule_version = "1"

    new_days = 30
    active_days = 30
    lapsing_days = 90

    def values(self, data: TaggingInput) -> list[TagValue]:
        return [
            TagValue("new", "New", f"Consumers whose first activity was in the last {self.new_days} days."),
            TagValue(
                "active",
                "Active",
                f"Consumers active in the last {self.active_days} days whose first activity was earlier.",
            ),
            TagValue(
                "lapsing",
                "Lapsing",
                f"Consumers last active {self.active_days + 1} to {self.lapsing_days} days ago.",
            ),
            TagValue(
                "churned",
                "Churned",
                f"Consumers with no activity for more than {self.lapsing_days} days.",
            ),
        ]

    def compute(self, data: TaggingInput) -> Assignments:
        values = self.values(data)
        events = data.events
        if len(events) == 0:
            return Assignments.empty(values)
        consumers = len(data.consumers)
        age = events.age_days.astype(np.float64)
        first = np.full(consumers, -np.inf)  # oldest event: the largest age
        last = np.full(consumers, np.inf)  # newest event: the smallest age
        np.maximum.at(first, events.consumer, age)
        np.minimum.at(last, events.consumer, age)
        seen = np.flatnonzero(np.isfinite(last))
        first, last = first[seen], last[seen]
        stage = np.select(
            [first <= self.new_days, last <= self.active_days, last <= self.lapsing_days],
            [0, 1, 2],
            default=3,
        )
        return Assignments(values, seen.astype(np.int32), stage.astype(np.int32), None)
