from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "segments"
    verbose_name = "Segments"

    def ready(self) -> None:
        # Real-time segments hear about every committed ingestion batch (consumers.changes, a layer below).
        from consumers.changes import consumer_changes_subscribe

        from .membership import membership_changes_record

        consumer_changes_subscribe(name="segments.membership", listener=membership_changes_record)
