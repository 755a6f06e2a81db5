from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PrivacyConfig(AppConfig):
    name = "privacy"
    verbose_name = "Privacy: register, consent, audit"

    def ready(self) -> None:
        from .roles import officer_group_sync

        # After auth has created this app's permissions (auth's handler is connected first).
        post_migrate.connect(officer_group_sync, sender=self, dispatch_uid="privacy.officer_group_sync")
