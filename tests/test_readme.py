"""The README's Python example runs as written (in a scratch folder that sees models/)."""

from __future__ import annotations

import re

from tests.conftest import MODELS, ROOT


def test_python_api_example_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "models").symlink_to(MODELS)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "pruned.onnx").stat().st_size > 0
    assert (tmp_path / "plan.json").read_text().startswith("{")
