"""OpenAPI description of `Authorization: Bearer <key>` (drf-spectacular), so every endpoint documents its auth."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "merchants.auth.BearerKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A merchant or operator API key: `Authorization: Bearer <key>`.",
        }
