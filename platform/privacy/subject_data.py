"""How privacy answers data-subject requests without importing the layers above it.

Every app that holds consumer data has a `subject_data.py` module that
registers a handler: `access(consumer_id)` returns what it holds about the
consumer as JSON-ready data, `erase(consumer_id)` removes it and returns counts
per table. Privacy discovers those modules the way the admin discovers
`admin.py` (autodiscover_modules), so the dependency points downwards only.
Erasure runs handlers from the highest layer down (campaign deliveries and
segment snapshots before events and the consumer row itself).

Conventions a handler keeps (docs/subject-rights.md):
- `access` returns a dict whose keys name what is held (e.g. "events"), and
  `erase` returns counts under the same keys, so an officer can see that the
  access document covers everything the erasure removes;
- `erase` runs inside the caller's transaction and must not commit, enqueue or
  log identifiers; work outside the database (a cache) is done last.

Privacy never looks a consumer up itself: the consumers app registers a
resolver (`register_resolver`) that turns a pseudonym into the consumer's
integer id, the key every handler takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import autodiscover_modules


@dataclass(frozen=True)
class SubjectDataHandler:
    name: str  # section name in the access document, e.g. "tags"
    layer: int  # DESIGN.md layer number; higher layers are erased first
    access: Callable[[int], Any]
    erase: Callable[[int], dict[str, int]]


_registry: dict[str, SubjectDataHandler] = {}
_resolvers: list[Callable[[str], int | None]] = []
_discovered = False


def register(handler: SubjectDataHandler) -> None:
    _registry[handler.name] = handler


def register_resolver(resolve: Callable[[str], int | None]) -> None:
    """Register how a consumer pseudonym becomes the consumer's integer id (the consumers app does)."""
    if resolve not in _resolvers:
        _resolvers.append(resolve)


def _discover() -> None:
    global _discovered
    if not _discovered:
        autodiscover_modules("subject_data")
        _discovered = True


def handlers() -> list[SubjectDataHandler]:
    _discover()
    return sorted(_registry.values(), key=lambda h: (-h.layer, h.name))


def consumer_id_for(pseudonym: str) -> int | None:
    """The consumer id behind a pseudonym, or None when no consumer with it is held."""
    _discover()
    for resolve in _resolvers:
        found = resolve(pseudonym)
        if found is not None:
            return found
    return None
