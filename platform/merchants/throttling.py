"""API rate limits: per key for authenticated calls, per client address for calls without a valid key.

Counts live in the default cache, which production requires to be shared (REDIS_URL): with a per-process
cache every web and worker process would count on its own and the limits would multiply.
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.throttling import SimpleRateThrottle


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Rate limit per API key (API_THROTTLE_RATE). Calls without a key are AnonymousRateThrottle's."""

    scope = "api_key"

    def get_cache_key(self, request, view):
        api_key_id = getattr(request.user, "api_key_id", None)
        if api_key_id is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": f"key-{api_key_id}"}


class AnonymousRateThrottle(SimpleRateThrottle):
    """Rate limit per client address for requests with no key or a bad one (API_ANON_THROTTLE_RATE).

    DRF checks throttles only after authentication and permissions, and those refuse exactly these requests
    first, so they were never counted. The authentication class calls `throttle_unauthenticated` instead,
    before it answers 401 or lets a keyless request through. The address is REMOTE_ADDR, or the client's
    entry of X-Forwarded-For behind API_NUM_PROXIES trusted proxies.
    """

    scope = "anon"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": f"ip-{self.get_ident(request)}"}


def throttle_unauthenticated(request) -> None:
    """Count one request without a valid key against its address; raise Throttled (429) over the rate."""
    throttle = AnonymousRateThrottle()
    if not throttle.allow_request(request, None):
        raise exceptions.Throttled(wait=throttle.wait())
