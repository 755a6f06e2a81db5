"""Event-triggered, multi-step journeys: durable per-consumer state machines whose steps run as idempotent tasks."""

from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "journeys"
    verbose_name = "Journeys"

    def ready(self) -> None:
        from . import engine, tasks  # noqa: F401 - registers the Celery tasks

        # Journey messages count toward the campaigns' frequency caps, and campaigns' toward journeys'.
        engine.register()

        # Journey messages reach consumers through the operator's inbox, beside the campaigns'.
        from campaigns.inbox import inbox_source_register

        from .inbox import journey_inbox_take

        inbox_source_register(journey_inbox_take)

        # Opens, clicks and conversions of journey messages arrive at the campaigns' tracking endpoint.
        from .tracking import register as tracking_register

        tracking_register()
