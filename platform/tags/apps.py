from django.apps import AppConfig


class TagsConfig(AppConfig):
    name = "tags"
    verbose_name = "Tags"

    def ready(self) -> None:
        # Register the bitmaps that are brought up to date on read (tags.bitmaps.fresh_on_read).
        from . import consent_bitmap, live_bitmap  # noqa: F401
