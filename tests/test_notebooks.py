"""Execute the notebooks with nbclient against the shared small demo run (tests/conftest.py)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _kernel_name() -> str:
    """The venv's own python3 kernel (ipykernel ships its spec into sys.prefix); install it if missing."""
    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
        if spec.argv and Path(spec.argv[0]).name.startswith("python"):
            return "python3"
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(prefix=sys.prefix, kernel_name="python3")
    return "python3"


def _execute(name: str, env: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # The kernel must run this interpreter (it has tre_link installed): jupyter_client swaps a bare
    # "python" in the spec's argv for sys.executable.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        # The kernel starts in notebooks/, as when a researcher opens them from JupyterLab.
        NotebookClient(nb, timeout=300, kernel_name=_kernel_name(),
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def _text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def _images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


@pytest.fixture(scope="session")
def run(tracked_run):
    return tracked_run


def test_notebook_headings_render_as_markdown():
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        heads = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown"]
        assert heads and all(re.match(r"^#{1,3} \S", h) for h in heads), (path.name, heads)


def test_model_review_notebook_compares_with_the_approved_model_by_default(run):
    summary_path = Path(run["cfg"].output.summary_path)
    nb = _execute("model_review.ipynb", {"TRE_LINK_SUMMARY": str(summary_path)})
    text = _text(nb)
    # summary.json names the last run (the one that linked with the approved model); the approved
    # version was trained in the first
    assert f"trained in run {run['run_id']}" in text and run["approved_run_id"] in text
    assert "config_sha256" in text and "source.gp.version" in text
    assert "match_weight_other" in text and "difference" in text
    assert "match_rate.sex.F" in text
    assert "approved" in text and "candidate" in text
    assert _images(nb) >= 5


def test_researcher_quickstart_notebook_checks_its_cohort_table_with_acro(run):
    summary_path = Path(run["cfg"].output.summary_path)
    nb = _execute("researcher_quickstart.ipynb", {"TRE_LINK_SUMMARY": str(summary_path),
                                                  "TRE_LINK_PROJECT": "cardio_outcomes"})
    text = _text(nb)
    assert "cardio_outcomes" in text and "person_key" in text
    assert "people (released):" in text
    assert "age_band" in text
    assert re.search(r"ACRO output_0: status (pass|review|fail)", text)
