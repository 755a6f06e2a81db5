"""Structured log lines: `ts level logger event key=value ...`.

Callers pass fields through `extra={"fields": {...}}`. Values are counts,
ids and durations; consumer identifiers never reach a log line (the ingestion
tests assert it).

Log lines go to stderr. A management command run by a person prints its own
progress on stdout, so while one runs the console shows WARNING and above only
(`-v 2` brings the INFO lines back); servers and workers log everything at
LOG_LEVEL. manage.py declares the command (`command_line_declare`) before
Django configures logging through `configure` (settings.LOGGING_CONFIG).
"""

from __future__ import annotations

import copy
import json
import logging
import logging.config
from datetime import UTC, datetime

# Commands whose INFO lines are what the person running them wants to see (a server's request log, a shell).
LOGGING_COMMANDS = frozenset({"runserver", "shell", "dbshell"})
COMMAND_CONSOLE_LEVEL = "WARNING"

_command: tuple[str, int] | None = None  # (command name, verbosity) when manage.py runs a command


def command_line_declare(argv: list[str]) -> None:
    """Record which management command this process runs (argv without the program name)."""
    global _command
    name = next((arg for arg in argv if not arg.startswith("-")), None)
    _command = None if name is None else (name, _verbosity(argv))


def _verbosity(argv: list[str]) -> int:
    for i, arg in enumerate(argv):
        value = None
        if arg in ("-v", "--verbosity") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--verbosity="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-v") and not arg.startswith("--") and len(arg) > 2:
            value = arg[2:]
        if value is not None and value.isdigit():
            return int(value)
    return 1


def configure(logging_settings: dict) -> None:
    """settings.LOGGING_CONFIG: dictConfig, with the console at WARNING while a person's command runs."""
    config = copy.deepcopy(logging_settings)
    if _command is not None and _command[0] not in LOGGING_COMMANDS and _command[1] < 2:
        for handler in config.get("handlers", {}).values():
            if handler.get("class") == "logging.StreamHandler":
                handler["level"] = COMMAND_CONSOLE_LEVEL
    logging.config.dictConfig(config)


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
