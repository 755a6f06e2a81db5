"""Structured log lines: `ts level logger event key=value ...`.

Callers pass fields through `extra={"fields": {...}}`. Values are counts,
ids and durations; consumer identifiers never reach a log line (the ingestion
tests assert it).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime


class StructuredFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        parts = [ts, record.levelname, record.name, record.getMessage()]
        fields = getattr(record, "fields", None)
        if fields:
            parts.extend(f"{key}={json.dumps(value, default=str)}" for key, value in fields.items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line
