"""Tells drf-spectacular how API keys are sent, so the schema documents the Bearer scheme on every endpoint."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "merchants.auth.BearerKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A merchant or operator API key: `Authorization: Bearer <key>`.",
        }
