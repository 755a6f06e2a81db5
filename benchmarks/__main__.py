"""Run every benchmark module and print one table. BENCH_ONLY=ingest,tags to choose; BENCH_SCALE=0.1 to shrink."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for source_root in (ROOT / "platform", ROOT):
    if str(source_root) not in sys.path:
        sys.path.insert(1, str(source_root))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DMP_VAR_DIR", str(ROOT / "var" / "bench"))


def main() -> int:
    import django

    django.setup()

    from benchmarks import BenchContext, Row, audit_checkpoint_for_database
    from dbtools.backend import on_postgresql

    audit_checkpoint_for_database()

    ctx = BenchContext(
        scale=float(os.environ.get("BENCH_SCALE", "1.0")),
        only=[s for s in os.environ.get("BENCH_ONLY", "").split(",") if s],
        on_postgres=on_postgresql(),
    )
    rows: list[Row] = []
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
    for name in names:
        short = name.removeprefix("bench_")
        if ctx.only and short not in ctx.only:
            continue
        print(f"running {short} ...", file=sys.stderr, flush=True)
        try:
            rows.extend(importlib.import_module(f"benchmarks.{name}").run(ctx))
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            rows.append(Row(short, "(failed)", None, "", note=f"{type(exc).__name__}: {exc}"[:120]))
    print_table(rows)
    return 0


def print_table(rows) -> None:
    headers = ["benchmark", "figure", "median", "unit", "target", "ratio", "note"]
    body = []
    for r in rows:
        median = "skipped" if r.skipped else ("" if r.median is None else f"{r.median:,.4g}")
        note = r.skipped or r.note
        body.append([r.benchmark, r.figure, median, r.unit, r.target, r.ratio, note])
    widths = [max(len(h), *(len(str(row[i])) for row in body)) if body else len(h) for i, h in enumerate(headers)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for row in body:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    raise SystemExit(main())
