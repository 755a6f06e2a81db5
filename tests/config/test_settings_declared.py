"""Every setting is declared once, in config/settings.py from the environment, and listed in the README."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE_ROOTS = ("platform", "segments", "recommend", "benchmarks")


def code_files():
    for name in CODE_ROOTS:
        yield from sorted((ROOT / name).rglob("*.py"))


def environment_names() -> set[str]:
    """The variables settings.py reads through env.py's env_* helpers."""
    tree = ast.parse((ROOT / "platform" / "config" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id.startswith("env_")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(node.args[0].value)
    return names


def readme_configuration_names() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    return names


def test_no_setting_is_read_with_a_fallback_default():
    # getattr(settings, "X", default) hides a setting from operators: declare it in settings.py and read settings.X.
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in code_files()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"getattr\(\s*(django\.conf\.)?settings\b", line)
    ]
    assert offenders == []


def test_only_env_py_reads_the_environment():
    allowed = re.compile(r"os\.environ\.setdefault\(\"(DJANGO_SETTINGS_MODULE|DMP_VAR_DIR)\"")
    offenders = []
    for path in code_files():
        if path.parts[-2:] == ("config", "env.py") or "benchmarks" in path.relative_to(ROOT).parts[:1]:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"os\.environ|os\.getenv|getenv\(", line) and not allowed.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []


def test_every_environment_setting_is_in_the_readme_table():
    declared = environment_names()
    assert {"SECRET_KEY", "DATABASE_URL", "INGEST_WRITERS"} <= declared  # the parser finds them
    missing = sorted(declared - readme_configuration_names())
    assert missing == [], f"add these to the README's configuration table: {missing}"


def test_the_readme_table_lists_no_variable_that_is_not_read():
    stale = sorted(readme_configuration_names() - environment_names())
    assert stale == []
