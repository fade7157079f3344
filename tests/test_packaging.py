"""pyproject.toml lists every package of the source tree, so a non-editable install ships them all."""

from __future__ import annotations

import tomllib

from tests.conftest import ROOT


def test_every_package_is_listed_for_setuptools():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "onnxprune").rglob("__init__.py")}
    found |= {"onnxprune.passes"} if (ROOT / "passes" / "__init__.py").exists() else set()
    assert found - listed == set(), "add these packages to [tool.setuptools] packages"
    assert config["package-dir"]["onnxprune.passes"] == "passes"
