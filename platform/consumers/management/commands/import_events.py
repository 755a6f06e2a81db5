"""`python manage.py import_events --format {online_retail,taobao,movielens,csv} PATH [--merchant SLUG]`."""

from __future__ import annotations

import json
import time
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from consumers.events import events_ingest
from consumers.importers import (
    DEFAULT_MERCHANTS,
    FORMATS,
    IMPORTERS,
    ImportFormatError,
    ImportSummary,
    merchant_for_import,
)
from consumers.ingestion import IngestReport
from consumers.profiles import profiles_ingest

ACTOR = "command:import_events"


class Command(BaseCommand):
    help = (
        "Import a public behaviour dataset (or our own CSV) through the ingestion service: "
        "validated, pseudonymised, idempotent. See docs/import-formats.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--format", required=True, choices=FORMATS, dest="data_format")
        parser.add_argument("path", help="a file, or a folder of them")
        parser.add_argument(
            "--merchant",
            help="merchant slug the events belong to (created if missing); each dataset has a default, "
            "and csv files may name it per row instead",
        )
        parser.add_argument("--batch-size", type=int, default=None, help="rows per transaction")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handle(self, *args, data_format, path, merchant, batch_size, no_progress, json: bool, **options):
        source = Path(path)
        if not source.exists():
            raise CommandError(f"{path} does not exist")
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        slug = merchant
        if slug is None and data_format in DEFAULT_MERCHANTS:
            slug, name = DEFAULT_MERCHANTS[data_format]
        else:
            name = slug
        if slug:
            try:
                merchant_obj, created = merchant_for_import(slug=slug, name=name or slug)
            except ValidationError as exc:
                problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
                raise CommandError(f"cannot create merchant {slug!r}: {problems}") from None
            if created:
                self.stderr.write(f"created merchant {merchant_obj.slug}")

        summary = ImportSummary(format=data_format)
        total = sum(p.stat().st_size for p in _files_for_total(source))
        bar = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc=f"import {data_format}",
            file=self.stderr._out if hasattr(self.stderr, "_out") else None,
            disable=no_progress,
            mininterval=0.5,
        )
        importer = IMPORTERS[data_format](source, merchant=slug or "", summary=summary, on_read=bar.update)
        started = time.perf_counter()
        try:
            events = events_ingest(rows=importer.events(), actor=ACTOR, batch_size=batch_size)
            profiles = profiles_ingest(rows=importer.profiles(), actor=ACTOR, batch_size=batch_size)
        except ImportFormatError as exc:
            raise CommandError(str(exc)) from None
        finally:
            bar.close()
        elapsed = time.perf_counter() - started
        result = _summary_dict(summary, events, profiles, elapsed)
        if json:
            self.stdout.write(_json_dumps(result))
        else:
            self.stdout.write(_summary_text(result))


def _files_for_total(source: Path) -> list[Path]:
    if source.is_dir():
        return [p for p in source.iterdir() if p.is_file()]
    return [source]


def _summary_dict(summary: ImportSummary, events: IngestReport, profiles: IngestReport, elapsed: float) -> dict:
    return {
        "format": summary.format,
        "files": summary.files,
        "seconds": round(elapsed, 2),
        "read": summary.read,
        "skipped": sum(summary.skipped.values()),
        "skipped_by_reason": dict(summary.skipped.most_common()),
        "sent": summary.sent,
        "accepted": events.accepted,
        "duplicates": events.duplicates,
        "rejected": events.rejected_rows,
        "rejected_by_reason": events.reasons(),
        "consumers_created": events.consumers_created + profiles.consumers_created,
        "products_created": events.products_created,
        "profiles": {
            "sent": summary.profiles_sent,
            "accepted": profiles.accepted,
            "rejected": profiles.rejected_rows,
            "rejected_by_reason": profiles.reasons(),
            "skipped_by_reason": dict(summary.profiles_skipped.most_common()),
        },
        "notes": summary.notes,
    }


def _json_dumps(result: dict) -> str:
    return json.dumps(result, indent=2, sort_keys=False)


def _summary_text(r: dict) -> str:
    def reasons(counts: dict) -> str:
        return "; ".join(f"{reason}: {n:,}" for reason, n in counts.items()) or "none"

    rate = r["sent"] / r["seconds"] if r["seconds"] else 0
    lines = [
        f"import_events --format {r['format']}: {r['read']:,} rows read from {len(r['files'])} file(s) "
        f"in {r['seconds']:.1f} s ({rate:,.0f} events/s)",
        f"  accepted (written): {r['accepted']:,}",
        f"  duplicates (already imported): {r['duplicates']:,}",
        f"  skipped before ingestion: {r['skipped']:,} ({reasons(r['skipped_by_reason'])})",
        f"  rejected by validation: {r['rejected']:,} ({reasons(r['rejected_by_reason'])})",
        f"  consumers created: {r['consumers_created']:,}; products created: {r['products_created']:,}",
    ]
    p = r["profiles"]
    if p["sent"] or p["skipped_by_reason"]:
        lines.append(
            f"  profiles: {p['accepted']:,} applied, {p['rejected']:,} rejected "
            f"({reasons(p['rejected_by_reason'])}), skipped: {reasons(p['skipped_by_reason'])}"
        )
    lines.extend(f"  note: {note}" for note in r["notes"])
    return "\n".join(lines)
