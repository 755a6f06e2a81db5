"""What the commands that run tagging rules share: compute_tags, and predict's compute_predictions (predicted
traits are tag families). Both read `--as-of` the same way and record a refusal where tagging runs are looked at."""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.management.base import CommandError
from django.utils import timezone

from privacy.services import ProcessingNotPermitted

from .services import tagging_refusal_record


def as_of_option(value: str | None) -> datetime | None:
    """`--as-of` as an aware moment (a naive one is taken as UTC); None when it was not given."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"--as-of {value!r} is not an ISO 8601 date-time") from exc
    return timezone.make_aware(when, UTC) if timezone.is_naive(when) else when


def tagging_refused(*, actor: str, families: list[str] | None, error: ProcessingNotPermitted) -> CommandError:
    """Record the refused run next to the other tagging runs, and give the error the command raises."""
    tagging_refusal_record(actor=actor, families=families, reason=str(error))
    return CommandError(str(error))
