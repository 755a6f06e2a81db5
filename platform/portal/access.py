"""Who is using the portal, for which merchant, and what their role lets them do.

The current merchant is chosen with the switcher and kept in the session. Every
portal view that touches merchant data is wrapped in `merchant_view`, which
resolves the user's membership (a merchant they are not a member of is the same
404 as a missing one, and a stale session choice falls back to their first
merchant) and puts it on the request as `request.portal`.

A view the portal's scripts fetch is marked `merchant_view(..., json=True)`: what
refuses it before or around its work (signed out, a missing capability, a missing or
another merchant's object, a CSRF failure) answers the portal's JSON error, which the
scripts show, instead of a login redirect or an HTML error page they cannot read.

Roles (documented in docs/portal.md):
- owner: everything, including API keys and the store's settings (quiet hours);
- marketer: segments, campaigns (create, launch, cancel), API keys and the store's settings;
- analyst: reads everything, builds segments and lookalikes, but cannot create
  or launch campaigns and cannot manage API keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from merchants.models import Membership, Merchant, Role
from merchants.selectors import membership_get, merchants_for_user
from portal.errors import json_error

SESSION_MERCHANT_KEY = "portal_merchant_id"


class Capability:
    EDIT_SEGMENTS = "edit_segments"
    MANAGE_CAMPAIGNS = "manage_campaigns"
    MANAGE_KEYS = "manage_keys"
    MANAGE_SETTINGS = "manage_settings"


ROLE_CAPABILITIES: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(
        {Capability.EDIT_SEGMENTS, Capability.MANAGE_CAMPAIGNS, Capability.MANAGE_KEYS, Capability.MANAGE_SETTINGS}
    ),
    Role.MARKETER: frozenset(
        {Capability.EDIT_SEGMENTS, Capability.MANAGE_CAMPAIGNS, Capability.MANAGE_KEYS, Capability.MANAGE_SETTINGS}
    ),
    Role.ANALYST: frozenset({Capability.EDIT_SEGMENTS}),
}

CAPABILITY_REFUSALS = {
    Capability.EDIT_SEGMENTS: "Your role cannot change segments.",
    Capability.MANAGE_CAMPAIGNS: "Analysts can read campaigns and their reports but cannot create or launch them.",
    Capability.MANAGE_KEYS: "Only owners and marketers can create or revoke API keys.",
    Capability.MANAGE_SETTINGS: "Only owners and marketers can change the store's settings.",
}


@dataclass(frozen=True)
class PortalContext:
    """The signed-in user's current merchant and role."""

    membership: Membership
    merchants: tuple[Merchant, ...]

    @property
    def merchant(self) -> Merchant:
        return self.membership.merchant

    @property
    def role(self) -> str:
        return self.membership.role

    @property
    def role_label(self) -> str:
        return self.membership.get_role_display()

    def can(self, capability: str) -> bool:
        return capability in ROLE_CAPABILITIES.get(self.role, frozenset())

    @property
    def can_edit_segments(self) -> bool:
        return self.can(Capability.EDIT_SEGMENTS)

    @property
    def can_manage_campaigns(self) -> bool:
        return self.can(Capability.MANAGE_CAMPAIGNS)

    @property
    def can_manage_keys(self) -> bool:
        return self.can(Capability.MANAGE_KEYS)

    @property
    def can_manage_settings(self) -> bool:
        return self.can(Capability.MANAGE_SETTINGS)

    def require(self, capability: str) -> None:
        if not self.can(capability):
            raise PermissionDenied(CAPABILITY_REFUSALS[capability])


def portal_context_for(request: HttpRequest) -> PortalContext | None:
    """The user's current merchant: the session's choice if still a member, else the one they own (or first)."""
    merchants = tuple(merchants_for_user(user=request.user))
    if not merchants:
        return None
    chosen = request.session.get(SESSION_MERCHANT_KEY)
    ids = {m.pk for m in merchants}
    merchant_id = chosen if chosen in ids else _default_merchant_id(request.user)
    membership = membership_get(user=request.user, merchant_id=merchant_id)
    if chosen != merchant_id:
        request.session[SESSION_MERCHANT_KEY] = merchant_id
    return PortalContext(membership=membership, merchants=merchants)


ROLE_RANK = {Role.OWNER: 0, Role.MARKETER: 1, Role.ANALYST: 2}


def _default_merchant_id(user) -> int:
    """Where a user lands first: the merchant they have the strongest role in (owner first), then by name."""
    memberships = Membership.objects.filter(user=user).select_related("merchant")
    best = min(memberships, key=lambda m: (ROLE_RANK.get(m.role, 9), m.merchant.name, m.merchant_id))
    return best.merchant_id


def merchant_switch(request: HttpRequest, *, merchant_id: int) -> Merchant:
    """Make merchant_id the session's current merchant; 404 unless the user is a member."""
    membership = membership_get(user=request.user, merchant_id=merchant_id)
    request.session[SESSION_MERCHANT_KEY] = membership.merchant_id
    return membership.merchant


# The refusals of a JSON view, as the scripts show them: each says what to do next, since the page stays open.
SIGNED_OUT = "You are signed out (your session ended). Sign in again in another tab, then try again here."
NO_MERCHANT = "Your account is not a member of any merchant: ask the store's owner to add you."
NOT_PERMITTED = "Your role cannot do this."
NOT_FOUND = "Not found: it may have been deleted. Reload the page to see what is there now."
CSRF_FAILED = "This page is out of date (you may have signed in again since it opened). Reload the page, then retry."

# The attribute that marks a JSON view, read by the CSRF failure view (the CSRF check runs before any view).
JSON_VIEW_MARK = "portal_json_view"


def is_json_view(request: HttpRequest) -> bool:
    """Whether the request is for a view marked `merchant_view(json=True)`: the URL it resolved to says so,
    not its headers, so a script that forgets an Accept header still reads its refusals."""
    match = getattr(request, "resolver_match", None)
    return bool(match is not None and getattr(match.func, JSON_VIEW_MARK, False))


def merchant_view(capability: str | None = None, *, json: bool = False) -> Callable:
    """Decorate a portal view: signed in, a member of some merchant, and (optionally) allowed `capability`.

    The view receives the request with `request.portal` set to a PortalContext. With `json`, a view the portal's
    scripts fetch: a refusal is the portal's JSON error (401 signed_out, 403 forbidden, 404 not_found; the same
    404 for another merchant's object as for a missing one) rather than a redirect to the login page or an HTML
    error page.
    """

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            context = portal_context_for(request)
            if context is None:
                if json:
                    return json_error(403, "forbidden", NO_MERCHANT)
                return render(request, "portal/no_merchant.html", status=403)
            request.portal = context
            if capability is not None:
                context.require(capability)
            # Pages show, and forms read, the merchant's local time.
            with timezone.override(context.merchant.zone):
                return view(request, *args, **kwargs)

        if not json:
            return login_required(wrapper)
        return _refusals_as_json(wrapper)

    return decorate


def _refusals_as_json(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return json_error(401, "signed_out", SIGNED_OUT)
        try:
            return view(request, *args, **kwargs)
        except PermissionDenied as exc:
            return json_error(403, "forbidden", str(exc) or NOT_PERMITTED)
        except Http404:
            # One body whatever the 404 said: a missing object and another merchant's are told apart by nothing.
            return json_error(404, "not_found", NOT_FOUND)

    setattr(wrapper, JSON_VIEW_MARK, True)
    return wrapper
