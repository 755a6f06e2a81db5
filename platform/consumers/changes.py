"""The change feed of ingestion: which consumers an accepted batch touched, told to whoever listens, after commit.

Ingestion (layer 2) cannot call the packages that react to new data (segments, layer 5, keeps real-time
audiences up to date). They subscribe here instead, once, when their app is ready; every door that writes
a batch (events, profiles, consents: the API and the import commands alike) calls `consumers_changed` inside
the batch's transaction, and the listeners run only once it commits (`transaction.on_commit`), so no listener
ever reads a row that is not committed, and a rolled-back batch tells nobody.

A listener must be quick (it runs in the request path): it records or enqueues, it does not evaluate. A
listener that fails is logged and does not fail the ingestion that already committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import transaction

logger = logging.getLogger("dmp.ingest")

EVENTS = "events"
PROFILES = "profiles"
CONSENTS = "consents"
INPUTS = (EVENTS, PROFILES, CONSENTS)


@dataclass(frozen=True)
class ConsumersChanged:
    """What one committed batch changed: the consumers (internal ids) and which input (events, profiles,
    consents); for events, the event types written (EventType values)."""

    consumer_ids: tuple[int, ...]
    input: str
    event_types: frozenset[int] = frozenset()


Listener = Callable[[ConsumersChanged], None]
_listeners: dict[str, Listener] = {}


def consumer_changes_subscribe(*, name: str, listener: Listener) -> None:
    """Register a listener under a name (registering the same name again replaces it)."""
    _listeners[name] = listener


def consumer_changes_unsubscribe(*, name: str) -> None:
    _listeners.pop(name, None)


def consumer_changes_listened() -> bool:
    """Whether anyone listens (a door may skip work it does only for the feed)."""
    return bool(_listeners)


def consumers_changed(*, consumer_ids: Iterable[int], input: str, event_types: Iterable[int] = ()) -> None:
    """Call inside the writing transaction: the listeners hear of it after commit (at once outside one)."""
    if input not in INPUTS:
        raise ValueError(f"input must be one of {', '.join(INPUTS)}")
    ids = tuple(sorted(set(consumer_ids)))
    if not ids or not _listeners:
        return
    change = ConsumersChanged(consumer_ids=ids, input=input, event_types=frozenset(event_types))
    transaction.on_commit(lambda: _notify(change))


def _notify(change: ConsumersChanged) -> None:
    for name, listener in list(_listeners.items()):
        try:
            listener(change)
        except Exception as exc:  # the batch is committed; a listener's failure must not fail the ingestion
            logger.warning(
                "ingest.change_listener_failed",
                extra={"fields": {"listener": name, "input": change.input, "error": type(exc).__name__}},
            )


__all__ = [
    "CONSENTS",
    "EVENTS",
    "PROFILES",
    "ConsumersChanged",
    "consumer_changes_listened",
    "consumer_changes_subscribe",
    "consumer_changes_unsubscribe",
    "consumers_changed",
]
