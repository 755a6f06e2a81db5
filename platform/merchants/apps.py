from django.apps import AppConfig


class MerchantsConfig(AppConfig):
    name = "merchants"
    verbose_name = "Merchants and access"

    def ready(self) -> None:
        from . import openapi  # noqa: F401  (registers the API-key scheme with drf-spectacular)
