"""What a run records about the software that produced it, and what reproduce compares."""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

from tre_link.record import environment

REPO = Path(__file__).resolve().parents[1]


def test_locked_versions_reads_pins_and_skips_hashes_and_comments(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("# via make lock\nPy_Spark==4.1.4 \\\n    --hash=sha256:abc\n    # via tre-link (pyproject.toml)\n"
                    "numpy==2.4.6 ; python_version >= '3.11' \\\n    --hash=sha256:def\n")
    assert environment.locked_versions(lock) == {"py-spark": "4.1.4", "numpy": "2.4.6"}


def test_run_params_name_the_lock_file_installed_from_and_its_sha256():
    params = environment.run_params()
    lock = REPO / params["requirements_lock"]
    assert lock.name in environment.LOCK_FILES
    assert params["requirements_lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert environment.locked_versions(lock)["pyspark"] == importlib.metadata.version("pyspark")
    assert params["version.pyspark"] == importlib.metadata.version("pyspark")
    assert params["version.splink"] == importlib.metadata.version("splink")


def test_differences_from_run_names_each_package_whose_version_changed():
    params = {f"version.{name}": version for name, version in environment.installed_versions().items()}
    assert environment.differences_from_run(params) == []
    params["version.pyspark"] = "3.5.0"
    assert environment.differences_from_run(params) == [
        f"pyspark: run used 3.5.0, installed now {importlib.metadata.version('pyspark')}"]


def test_differences_from_run_warns_about_a_run_that_recorded_no_versions():
    assert environment.differences_from_run({"config_sha256": "x"})
