from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Merchant portal"

    def ready(self) -> None:
        from .admin_site import configure_admin_site

        configure_admin_site()
