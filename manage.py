#!/usr/bin/env python
"""Django's command-line utility for the Merchant DMP."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def main() -> None:
    # platform/ is a source root (like src/), never a package: its apps are
    # imported by their own names. The repository root holds segments/ and
    # recommend/. Appending keeps the standard library's `platform` first.
    for source_root in (ROOT / "platform", ROOT):
        if str(source_root) not in sys.path:
            sys.path.insert(1, str(source_root))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    from config.logformat import command_line_declare

    # A person reads this command's output: its log lines stay off the console unless asked for (-v 2).
    command_line_declare(sys.argv[1:])
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
