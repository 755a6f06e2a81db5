"""Event-triggered, multi-step journeys: durable per-consumer state machines whose steps run as idempotent tasks."""

from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "journeys"
    verbose_name = "Journeys"

    def ready(self) -> None:
        from . import engine, tasks  # tasks: registers the Celery tasks (and has the change-feed listener)

        # Journey messages count toward the campaigns' frequency caps, and campaigns' toward journeys'.
        engine.register()

        # Journey messages reach consumers through the operator's inbox, beside the campaigns'.
        from campaigns.inbox import inbox_source_register

        from .inbox import journey_inbox_take

        inbox_source_register(journey_inbox_take)

        # Opens, clicks and conversions of journey messages arrive at the campaigns' tracking endpoint.
        from .tracking import register as tracking_register

        tracking_register()

        # Event-triggered journeys hear about committed ingestion batches (consumers.changes, a layer below) and
        # schedule a tick within seconds instead of waiting for beat's minute.
        from consumers.changes import consumer_changes_subscribe

        consumer_changes_subscribe(name="journeys.event_tick", listener=tasks.journeys_event_tick_request)

        # Segment-triggered journeys hear of entries as they commit (segments' entry feed): the same tick.
        from segments.membership import membership_entries_subscribe

        membership_entries_subscribe(name="journeys.segment_tick", listener=tasks.journeys_segment_tick_request)
