"""Segments, made and refreshed through segments.services."""

from __future__ import annotations

import factory

from segments.models import Segment
from segments.services import segment_create, segment_refresh


class SegmentFactory(factory.django.DjangoModelFactory):
    """A segment made by `segment_create` (from an expression, or a JSON `definition`).

    refresh=True refreshes it at once with `segment_refresh` (which needs an approved tagging activity).
    """

    class Meta:
        model = Segment

    merchant = factory.SubFactory("tests.factories.merchants.MerchantFactory")
    name = factory.Sequence(lambda n: f"Segment {n}")
    expression = "country:SG"
    actor = "test"
    refresh = False

    @classmethod
    def _create(cls, model_class, *args, refresh: bool, **kwargs):
        if kwargs.get("definition") is not None:
            kwargs.pop("expression", None)
        segment = segment_create(**kwargs)
        if refresh:
            segment_refresh(segment_id=segment.pk, actor=kwargs["actor"])
            segment.refresh_from_db()
        return segment


__all__ = ["SegmentFactory"]
