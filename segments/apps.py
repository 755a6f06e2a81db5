from django.apps import AppConfig
from django.db.models.signals import post_migrate

# Privacy officers read segments in the admin (the fairness spread of persuadable and lookalike audiences).
OFFICER_PERMISSIONS = ("view_segment",)


def officer_permissions_sync(**_signal_kwargs) -> None:
    from privacy.roles import officer_permissions_grant

    officer_permissions_grant(app_label="segments", codenames=OFFICER_PERMISSIONS)


class SegmentsConfig(AppConfig):
    name = "segments"
    verbose_name = "Segments"

    def ready(self) -> None:
        post_migrate.connect(officer_permissions_sync, sender=self, dispatch_uid="segments-officer-permissions")
        # Real-time segments hear about every committed ingestion batch (consumers.changes, a layer below).
        from consumers.changes import consumer_changes_subscribe

        from .membership import membership_changes_record

        consumer_changes_subscribe(name="segments.membership", listener=membership_changes_record)
