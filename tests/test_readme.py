"""The README's Python API example runs as written (against the shared small demo's config)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _api_example() -> str:
    text = README.read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_api_example_runs(spark, demo_run, capsys):
    code = _api_example().replace('"conf/demo.yaml"', repr(str(demo_run.config_path)))
    exec(compile(code, "README.md (Python API)", "exec"), {})
    printed = capsys.readouterr().out
    assert "pairwise_f1" not in printed and re.search(r"^(0\.9\d+|1\.0)$", printed.strip().splitlines()[-1])
