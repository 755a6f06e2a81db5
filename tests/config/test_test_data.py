"""Tests build their data through the services (tests/factories), never by writing the bitmap index.

The bitmap index (tags.bitmaps: StoredBitmap rows, bitmap_store, bitmap_store_if_version) is written only
by the services that keep it in step with its source rows: a tagging run, the live-consumer and consent
refreshers, segment snapshots, erasure. A test that writes a bitmap itself can build a state those services
never leave behind, and then tests a platform that does not exist. Tests that need tags use
tests.factories.TaggingRunFactory, which runs the real tagging service.

The one exception is the bitmap index's own unit tests, listed in ALLOWED with the reason; the list is kept
exact (a file that no longer writes the index must leave it).
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
WRITERS = {"bitmap_store", "bitmap_store_if_version", "_remember"}
MODEL = "StoredBitmap"
MODEL_WRITES = {"create", "bulk_create", "get_or_create", "update_or_create", "update", "bulk_update", "delete", "save"}
TABLE = "storedbitmap"

ALLOWED = {
    # Unit tests of the bitmap index's refreshers: they age a stored mark or drop the stored rows to show
    # the refresher rebuilds what it finds stale or missing.
    "tags/test_live_bitmap.py": "ages the live bitmap's mark and deletes stored bitmaps",
    "tags/test_consent_bitmap.py": "ages the consent bitmap's mark and deletes stored bitmaps",
    # Fault injection into the tagging service: its own bitmap write fails, and nothing may be left half-done.
    "tags/test_services.py": "replaces the service's bitmap_store with a failing one",
    # Erasure from the index must reach bitmaps of layers above tags, which the tags layer cannot make.
    "tags/test_subject_data.py": "stores a higher layer's bitmap for the tags layer's erasure to find",
}


def _chain_names(node: ast.AST) -> set[str]:
    """Every plain name and attribute in an expression like StoredBitmap.objects.filter(...).update."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def direct_writes(source: str) -> list[str]:
    """Where the source writes the bitmap index itself, as 'line: what'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("bitmaps"):
            found += [f"{line}: imports {a.name}" for a in node.names if a.name in WRITERS]
        elif isinstance(node, ast.Attribute) and node.attr in WRITERS:
            found.append(f"{line}: uses .{node.attr}")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == MODEL:
                found.append(f"{line}: makes a {MODEL}")
            elif isinstance(func, ast.Attribute) and func.attr in MODEL_WRITES and MODEL in _chain_names(func.value):
                found.append(f"{line}: {MODEL} ... .{func.attr}()")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.lower()
            if TABLE in text and any(verb in text for verb in ("insert", "update", "delete", "truncate")):
                found.append(f"{line}: SQL writing the {TABLE} table")
    return found


def _test_sources():
    this = Path(__file__).resolve()
    for path in sorted(TESTS.rglob("*.py")):
        if path.resolve() != this:
            yield path.relative_to(TESTS).as_posix(), path.read_text(encoding="utf-8")


def test_no_test_writes_the_bitmap_index_directly():
    offenders = {
        name: writes for name, source in _test_sources() if name not in ALLOWED and (writes := direct_writes(source))
    }
    assert offenders == {}, (
        "build tags with tests.factories (TaggingRunFactory / tags_assign / bitmaps_refresh) instead of "
        f"writing the bitmap index: {offenders}"
    )


def test_the_exceptions_are_exact():
    sources = dict(_test_sources())
    for name in ALLOWED:
        assert name in sources, f"{name} is gone: take it out of ALLOWED"
        assert direct_writes(sources[name]), f"{name} no longer writes the bitmap index: take it out of ALLOWED"


def test_the_guard_sees_each_kind_of_direct_write():
    samples = [
        "from tags.bitmaps import bitmap_store",
        "from tags import bitmaps\nbitmaps.bitmap_store(key='k', bitmap=b)",
        "StoredBitmap.objects.create(key='k', data=b'')",
        "StoredBitmap.objects.filter(key='k').update(version=2)",
        "StoredBitmap(key='k').save()",
        "cursor.execute('DELETE FROM tags_storedbitmap')",
    ]
    for sample in samples:
        assert direct_writes(sample), sample
    reads = "from tags.bitmaps import bitmaps_load\nStoredBitmap.objects.values_list('key', flat=True)"
    assert direct_writes(reads) == []
