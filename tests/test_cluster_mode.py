"""`jobs/link.py` on a real Spark standalone cluster (one master, two workers on 127.0.0.1) gives
the same links and person index as the same link in local mode. Runs bench/cluster_check.py, which
starts and always stops the cluster. Takes a few minutes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cluster_and_local_runs_agree(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "cluster_check.py"), "--workdir", str(tmp_path), "--people", "500"],
        cwd=REPO, capture_output=True, text=True, timeout=1500,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no verdict (exit {proc.returncode}); stderr tail:\n{proc.stderr[-3000:]}"
    verdict = json.loads(lines[-1])
    assert "error" not in verdict, verdict["error"]
    assert len(verdict["workers"]) == 2
    assert verdict["cluster_apps"] and all(app["state"] == "FINISHED" for app in verdict["cluster_apps"])
    assert all(n > 0 for n in verdict["executors_per_worker"].values()), verdict["executors_per_worker"]
    for table in ("links", "person_index"):
        assert verdict["tables"][table]["rows_local"] > 0
        assert verdict["tables"][table]["equal"], verdict["tables"][table]
    assert verdict["equal"] is True
    assert proc.returncode == 0
