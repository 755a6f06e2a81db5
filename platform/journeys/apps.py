"""Event-triggered, multi-step journeys: durable per-consumer state machines whose steps run as idempotent tasks."""

from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "journeys"
    verbose_name = "Journeys"

    def ready(self) -> None:
        from . import engine, tasks  # noqa: F401 - registers the Celery tasks

        # Journey messages count toward the campaigns' frequency caps, and campaigns' toward journeys'.
        engine.register()
