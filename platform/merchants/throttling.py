from rest_framework.throttling import SimpleRateThrottle

from .auth import ApiPrincipal


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Rate limit per API key (per client address for unauthenticated calls)."""

    scope = "api_key"

    def get_cache_key(self, request, view):
        user = request.user
        ident = f"key-{user.api_key_id}" if isinstance(user, ApiPrincipal) else f"ip-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
