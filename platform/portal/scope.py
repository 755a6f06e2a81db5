"""The scope switch ("in the whole marketplace" / "among your customers") the tag explorer and the dashboard share:
`?scope=` picks it and the session remembers it per merchant; the whole marketplace until one is picked."""

from __future__ import annotations

from django.http import HttpRequest

from segments.models import SegmentScope

SCOPE_LABELS = {
    SegmentScope.MARKETPLACE: "in the whole marketplace",
    SegmentScope.MY_CUSTOMERS: "among your customers",
}
DEFAULT_SCOPE = SegmentScope.MARKETPLACE


def _session_key(merchant_id: int) -> str:
    return f"portal:scope:{merchant_id}"


def scope_of(request: HttpRequest) -> str:
    """The scope asked for (?scope=, remembered), else the one remembered for this merchant, else the default.
    An unknown value is ignored (the default), never an error."""
    merchant_id = request.portal.merchant.pk  # type: ignore[attr-defined]
    asked = request.GET.get("scope", "")
    if asked in SegmentScope.values:
        request.session[_session_key(merchant_id)] = asked
        return asked
    remembered = request.session.get(_session_key(merchant_id), "")
    return remembered if remembered in SegmentScope.values else DEFAULT_SCOPE


def scope_context(scope: str) -> dict:
    return {
        "scope": scope,
        "scope_label": SCOPE_LABELS[SegmentScope(scope)],
        "scope_choices": [(value, SCOPE_LABELS[SegmentScope(value)]) for value in SegmentScope.values],
    }
