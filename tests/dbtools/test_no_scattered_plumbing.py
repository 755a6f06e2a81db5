"""The plumbing lives in dbtools only: no module checks the vendor or takes an advisory lock by itself."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve()


def code_lines(*bases: str):
    for base in bases:
        for path in sorted((ROOT / base).rglob("*.py")):
            if path == HERE:
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                yield path, number, line


def test_no_module_checks_the_vendor_itself():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path, number, line in code_lines("platform", "segments", "recommend", "benchmarks", "tests")
        if path.parts[-2:] != ("dbtools", "backend.py")
        and (".vendor" in line or ('"django.db.backends.postgresql"' in line and path.name != "settings.py"))
    ]
    assert offenders == []


def test_every_advisory_lock_comes_from_the_registry():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path, number, line in code_lines("platform", "segments", "recommend")
        if "pg_advisory" in line and path.parts[-2:] != ("dbtools", "locks.py")
    ]
    assert offenders == []


def test_copy_statements_are_written_in_dbtools_only():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path, number, line in code_lines("platform", "segments", "recommend", "benchmarks")
        if ".copy(" in line and "COPY" in line and path.parts[-2] != "dbtools"
    ]
    assert offenders == []
