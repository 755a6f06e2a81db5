"""Data-subject requests for tags (layer 3): what tags a consumer holds, and erasing them everywhere."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from pyroaring import BitMap, FrozenBitMap

from dbtools.locks import TAGGING
from privacy.subject_data import SubjectDataHandler, register

from .models import StoredBitmap, Tag
from .selectors import consumer_tag_rows, consumer_tags


def tags_access(consumer_id: int) -> list[dict]:
    """The consumer's tags, each with the definition a merchant reads."""
    return [
        {
            "tag": held.code,
            "family": held.family,
            "value": held.value,
            "label": held.label,
            "definition": held.definition,
            "score": held.score,
            "assigned_at": held.assigned_at.isoformat(),
        }
        for held in consumer_tags(consumer_id)
    ]


def tags_erase(consumer_id: int) -> dict[str, int]:
    """Delete the consumer's tag rows and remove them from every stored bitmap (tags, live, consent, and any
    other bitmap kept in StoredBitmap). Waits for a running tagging run, so it cannot write them back.

    The live and consent bitmaps are refreshed on read from the consumer and consent tables, which the
    lower layers' handlers empty later in the same erasure: nothing in that transaction should read those
    two bitmaps in between, or it would see the consumer's rows still there.
    """
    with transaction.atomic():
        TAGGING.hold_for_transaction()
        rows = consumer_tag_rows(consumer_id)
        held = list(rows.values_list("tag_id", flat=True))
        deleted, _ = rows.delete()
        Tag.objects.filter(pk__in=held, consumer_count__gt=0).update(consumer_count=F("consumer_count") - 1)
        bitmaps = 0
        for pk, data in StoredBitmap.objects.values_list("pk", "data").iterator(chunk_size=100):
            if consumer_id not in FrozenBitMap.deserialize(bytes(data)):
                continue
            # Lock and re-read the one row that needs changing, so a concurrent writer's update is not lost.
            stored = StoredBitmap.objects.select_for_update().get(pk=pk)
            bitmap = BitMap.deserialize(bytes(stored.data))
            bitmap.discard(consumer_id)
            stored.data = bytes(bitmap.serialize())
            stored.cardinality = len(bitmap)
            stored.version = F("version") + 1
            stored.save(update_fields=["data", "cardinality", "version", "updated_at"])
            bitmaps += 1
    return {"consumer_tags": deleted, "bitmaps": bitmaps}


register(SubjectDataHandler(name="tags", layer=3, access=tags_access, erase=tags_erase))
