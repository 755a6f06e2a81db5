from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


class PrivacyConfig(AppConfig):
    name = "privacy"
    verbose_name = "Privacy: register, consent, audit"

    def ready(self) -> None:
        from .roles import officer_group_sync

        # After auth has created this app's permissions (auth's handler is connected first).
        post_migrate.connect(officer_group_sync, sender=self, dispatch_uid="privacy.officer_group_sync")
        if apps.is_installed("axes"):  # its permissions exist only once its own post_migrate has run
            post_migrate.connect(
                officer_group_sync, sender=apps.get_app_config("axes"), dispatch_uid="privacy.officer_group_sync.axes"
            )
            from axes.signals import user_locked_out

            from .logins import login_lockout_record

            user_locked_out.connect(login_lockout_record, dispatch_uid="privacy.login_lockout_record")
