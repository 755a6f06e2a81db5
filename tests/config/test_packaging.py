"""Installing prints no deprecation warnings: the licence is declared the way current setuptools expects."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_licence_is_an_spdx_expression_and_setuptools_understands_it():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # A TOML table ({text = ...}) makes setuptools print a SetuptoolsDeprecationWarning on every install.
    assert pyproject["project"]["license"] == "Apache-2.0"
    (setuptools,) = [r for r in pyproject["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = int(re.search(r">=\s*(\d+)", setuptools).group(1))
    assert minimum >= 77  # the first setuptools to read SPDX licence strings (PEP 639)
