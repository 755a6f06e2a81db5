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
