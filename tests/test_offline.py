"""The offline (air-gapped) route: a session built from a bundle's jars (spark.jars_dir) resolves
nothing through Ivy, and the demo links the tiny test data with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tre_link.platform.config import SparkSettings
from tre_link.platform.errors import EnvironmentProblem
from tre_link.platform.spark import SPARK_IVY_HOMES, delta_packages, session_jars

from conftest import small_demo_config

REPO = Path(__file__).resolve().parents[1]
TRE_LINK = Path(sys.executable).parent / "tre-link"


def _ivy_cache() -> Path:
    """Spark's own Ivy cache, filled when the test session's `spark` fixture resolved Delta."""
    for candidate in (Path(home).expanduser() / "cache" for home in SPARK_IVY_HOMES):
        if candidate.is_dir():
            return candidate
    raise AssertionError("no Ivy cache: the spark fixture should have resolved Delta's jars into one")


def test_session_jars_refuse_a_jars_dir_without_delta(tmp_path):
    (tmp_path / "unrelated.jar").write_bytes(b"")
    with pytest.raises(EnvironmentProblem, match="no Delta jar"):
        session_jars(SparkSettings(jars_dir=str(tmp_path)))


@pytest.mark.slow
def test_the_demo_links_offline_from_bundled_jars_with_no_ivy_lookup(spark, tmp_path):
    jars = tmp_path / "bundle" / "jars"
    built = subprocess.run([sys.executable, "-m", "tre_link.platform.bundle_jars", str(jars),
                            "--ivy-cache", str(_ivy_cache())], capture_output=True, text=True, cwd=REPO)
    assert built.returncode == 0, built.stderr[-3000:]
    _, artifact, version = delta_packages().split(",")[0].split(":")
    names = {p.name for p in jars.glob("*.jar")}
    assert f"io.delta_{artifact}-{version}.jar" in names and any(n.startswith("scala-udf-similarity") for n in names)

    empty_ivy = tmp_path / "ivy-empty"
    empty_ivy.mkdir()
    root = tmp_path / "demo"
    config = small_demo_config(root, people=400)
    raw = yaml.safe_load(config.read_text())
    raw["spark"].update(master="local[2]", driver_memory="1g", jars_dir=str(jars), conf={
        "spark.jars.ivy": str(empty_ivy),  # where Ivy would cache anything it resolved
        "spark.jars.repositories": "http://127.0.0.1:9/unreachable",  # any lookup would fail here
    })
    config.write_text(yaml.safe_dump(raw, sort_keys=False))

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_")}
    done = subprocess.run([str(TRE_LINK), "demo", "--config", str(config)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(empty_ivy.iterdir()) == []  # Ivy never ran: nothing resolved, nothing cached
    [log_file] = (root / "logs").glob("tre-link-*.log")
    logged = log_file.read_text()
    assert ":: resolving dependencies" not in logged and "Ivy Default Cache" not in logged
    summary = json.loads((root / "summary.json").read_text())
    assert summary["linkage"]["persons"] and summary["accuracy"]["pairwise_f1"] > 0.9
    # The terminal: stage lines and warnings only, one screen; JVM and library noise went to the log file.
    terminal = done.stderr.splitlines()
    # Heartbeats come once a minute per stage when stderr is not a terminal (their number follows the
    # machine's speed); everything else fits on one screen.
    assert len([line for line in terminal if " running; " not in line]) <= 40, done.stderr
    assert not [line for line in terminal if "WARN" in line and "data quality" not in line], done.stderr
    assert "[1/8] synth" in done.stderr and "finished 8 stages in" in done.stderr
