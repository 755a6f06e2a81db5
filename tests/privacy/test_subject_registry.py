import ast
from pathlib import Path

from privacy.subject_data import consumer_id_for, handlers
from tests.privacy.rights_data import make_consumer

ROOT = Path(__file__).resolve().parents[2]
ABOVE_PRIVACY = {"consumers", "tags", "recommend", "segments", "campaigns", "portal"}
ABOVE_CONSUMERS = {"tags", "recommend", "segments", "campaigns", "portal"}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_privacy_imports_nothing_above_it():
    for path in (ROOT / "platform" / "privacy").rglob("*.py"):
        assert not imported_packages(path) & ABOVE_PRIVACY, path.relative_to(ROOT)


def test_the_consumers_rights_modules_import_nothing_above_them():
    for name in ("risk.py", "tasks.py", "subject_data.py"):
        path = ROOT / "platform" / "consumers" / name
        assert not imported_packages(path) & ABOVE_CONSUMERS, name


def test_handlers_are_discovered_and_erased_from_the_highest_layer_down():
    found = handlers()
    assert "consumers" in {h.name for h in found}
    layers = [h.layer for h in found]
    assert layers == sorted(layers, reverse=True)
    assert found[-1].layer >= 1


def test_pseudonyms_resolve_through_the_consumers_resolver(db):
    consumer = make_consumer("resolver@example.test")
    assert consumer_id_for(consumer.pseudonym) == consumer.pk
    assert consumer_id_for("0" * 64) is None
    assert consumer_id_for("") is None
