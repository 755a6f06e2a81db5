"""The register exported as a record of processing activities (PDPA accountability; GDPR Art. 30).

One row per processing activity: purpose, legal basis, what is processed,
data categories, recipients, retention, safeguards, the assessment and
disclosure that the basis needs, and who approved it when. CSV for
spreadsheets, JSON for tools; both from `python manage.py processing_record`
and the admin.
"""

from __future__ import annotations

import csv
import io
import json

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.utils import timezone

from .audit import audit_record
from .models import ActivityStatus, LegalBasis, ProcessingActivity, Purpose

RECORD_FIELDS = [
    "activity_id",
    "name",
    "purpose",
    "purpose_label",
    "legal_basis",
    "legal_basis_label",
    "description",
    "data_categories",
    "recipients",
    "retention",
    "safeguards",
    "assessment",
    "disclosure_url",
    "counter_statement_channel",
    "status",
    "approved_by",
    "approved_at",
    "updated_at",
]


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def processing_record_rows(activities: QuerySet[ProcessingActivity] | None = None) -> list[dict]:
    if activities is None:
        activities = ProcessingActivity.objects.all()
    rows = []
    for activity in activities.select_related("approved_by").order_by("purpose", "name", "pk"):
        rows.append(
            {
                "activity_id": activity.pk,
                "name": activity.name,
                "purpose": activity.purpose,
                "purpose_label": Purpose(activity.purpose).label,
                "legal_basis": activity.legal_basis,
                "legal_basis_label": LegalBasis(activity.legal_basis).label,
                "description": activity.description,
                "data_categories": _split(activity.data_categories),
                "recipients": _split(activity.recipients),
                "retention": activity.retention,
                "safeguards": activity.safeguards,
                "assessment": activity.assessment,
                "disclosure_url": activity.disclosure_url,
                "counter_statement_channel": activity.counter_statement_channel,
                "status": activity.status,
                "approved_by": activity.approved_by.get_username() if activity.approved_by else "",
                "approved_at": activity.approved_at,
                "updated_at": activity.updated_at,
            }
        )
    return rows


def processing_record_json(rows: list[dict]) -> str:
    document = {
        "generated_at": timezone.now(),
        "event_retention_days": settings.EVENT_RETENTION_DAYS,
        "activities": rows,
        "approved_activities": sum(1 for r in rows if r["status"] == ActivityStatus.APPROVED),
    }
    return json.dumps(document, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False) + "\n"


def processing_record_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=RECORD_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = dict(row)
        for key in ("data_categories", "recipients"):
            flat[key] = "; ".join(row[key])
        for key in ("approved_at", "updated_at"):
            flat[key] = row[key].isoformat() if row[key] else ""
        writer.writerow(flat)
    return out.getvalue()


def processing_record_export(*, fmt: str, actor: str, activities: QuerySet | None = None) -> str:
    """The record in `fmt` ("csv" or "json"); the export itself is audited."""
    if fmt not in ("csv", "json"):
        raise ValueError(f"format must be csv or json, not {fmt!r}")
    rows = processing_record_rows(activities)
    text = processing_record_csv(rows) if fmt == "csv" else processing_record_json(rows)
    audit_record(
        actor=actor,
        action="processing_record.exported",
        object_type="ProcessingActivity",
        counts={"activities": len(rows)},
        details={"format": fmt},
    )
    return text
