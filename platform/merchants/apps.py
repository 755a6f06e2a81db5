from django.apps import AppConfig


class MerchantsConfig(AppConfig):
    name = "merchants"
    verbose_name = "Merchants and access"

    def ready(self) -> None:
        from . import schema  # noqa: F401 - registers the Bearer scheme with drf-spectacular
        from .api_fields import errors_without_input

        errors_without_input()
