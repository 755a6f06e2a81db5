"""How privacy answers data-subject requests without importing the layers above it.

Every app that holds consumer data has a `subject_data.py` module that
registers a handler: `access(consumer_id)` returns what it holds about the
consumer as JSON-ready data, `erase(consumer_id)` removes it and returns counts
per table. Privacy discovers those modules the way the admin discovers
`admin.py` (autodiscover_modules), so the dependency points downwards only.
Erasure runs handlers from the highest layer down (campaign deliveries and
segment snapshots before events and the consumer row itself).
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
_discovered = False


def register(handler: SubjectDataHandler) -> None:
    _registry[handler.name] = handler


def handlers() -> list[SubjectDataHandler]:
    global _discovered
    if not _discovered:
        autodiscover_modules("subject_data")
        _discovered = True
    return sorted(_registry.values(), key=lambda h: (-h.layer, h.name))
