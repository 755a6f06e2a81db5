import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_platform_is_still_the_standard_library_module():
    import platform

    assert hasattr(platform, "python_version")
    assert "platform/" not in getattr(platform, "__file__", "").replace(str(ROOT), "")
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_platform_module_is_standard_library_under_manage_py():
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", "import platform; print(platform.python_version())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == platform_version()


def platform_version() -> str:
    import platform

    return platform.python_version()


# The doors: modules that may speak HTTP. Everything else (services, selectors, tasks, models, commands) raises
# the plain domain errors of merchants.errors and leaves HTTP to these.
HTTP_DOOR_MODULES = {
    "api",
    "api_base",
    "api_errors",
    "api_fields",
    "api_urls",
    "auth",
    "pagination",
    "parsers",
    "permissions",
    "schema",
    "throttling",
    "urls",
}
HTTP_IMPORTS = ("rest_framework", "drf_spectacular", "merchants.api_errors", "merchants.api_base")


def _app_modules():
    for base in (ROOT / "platform", ROOT / "segments", ROOT / "recommend"):
        for path in sorted(base.rglob("*.py")):
            relative = path.relative_to(ROOT)
            if relative.parts[0] == "platform" and relative.parts[1] in ("config", "portal"):
                continue
            if "migrations" in relative.parts or path.stem in HTTP_DOOR_MODULES:
                continue
            yield path


def _imported_names(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            prefix = "." * node.level
            names.add(prefix + node.module)
    return names


def test_services_and_other_inner_modules_do_not_import_http_errors():
    offenders = {}
    for path in _app_modules():
        bad = sorted(
            name
            for name in _imported_names(path)
            if name.startswith(HTTP_IMPORTS) or name == ".api_errors" or name.endswith(".api") or name == ".api"
        )
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert not offenders, f"only the API and portal turn errors into HTTP; these import HTTP classes: {offenders}"


def test_service_errors_are_plain_domain_errors():
    from rest_framework.exceptions import APIException

    from campaigns import services as campaign_services
    from merchants.errors import DomainError
    from segments import services as segment_services

    assert issubclass(segment_services.InvalidDefinition, DomainError)
    assert not issubclass(segment_services.InvalidDefinition, APIException)
    assert issubclass(campaign_services.Conflict, DomainError)


# Layers, lowest first: a package imports only from its own layer and the ones below (docs/architecture.md).
# dbtools is layer 0, database plumbing that every layer may use; config is wiring (its urls are layer 7).
LAYERS = {
    "dbtools": 0,
    "config": 1,
    "merchants": 1,
    "privacy": 1,
    "consumers": 2,
    "tags": 3,
    "recommend": 4,
    "predict": 4,  # above recommend in practice: it reads the recommender's factors; recommend never imports it
    "segments": 5,
    "campaigns": 6,
    "journeys": 6,  # sends by the campaigns' rules; campaigns never imports journeys
    "portal": 7,
}


def _package_modules():
    for package in LAYERS:
        base = ROOT / ("platform" if package not in ("segments", "recommend") else "") / package
        for path in sorted(base.rglob("*.py")):
            if "migrations" in path.relative_to(base).parts:
                continue
            yield package, path


def test_packages_import_only_from_their_layer_and_below():
    offenders = {}
    for package, path in _package_modules():
        layer = 7 if path.relative_to(ROOT).parts[-2:] == ("config", "urls.py") else LAYERS[package]
        above = sorted(
            name
            for name in _imported_names(path)
            if name.split(".")[0] in LAYERS and LAYERS[name.split(".")[0]] > layer and not name.startswith(".")
        )
        if above:
            offenders[str(path.relative_to(ROOT))] = above
    assert not offenders, f"imports from a higher layer: {offenders}"


def test_dbtools_is_the_lowest_layer():
    for package, path in _package_modules():
        if package == "dbtools":
            imported = {name.split(".")[0] for name in _imported_names(path) if not name.startswith(".")}
            assert not imported & set(LAYERS), path
