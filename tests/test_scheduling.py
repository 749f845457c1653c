"""How `make test` spreads files over its xdist workers (tests/conftest.py): under `--dist loadfile`
every file reading the shared demo run goes to one worker, so the run is built once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Tests that read neither Spark nor the demo run, from three files that read the demo run elsewhere
# and one that does not, so the runs below take seconds.
SELECTED = [
    "tests/test_linkage.py::test_probabilistic_rules_skip_pairs_the_deterministic_pass_decided",
    "tests/test_progress.py::test_duration_reads_minutes_and_seconds",
    "tests/test_review.py::test_label_csv_refuses_a_file_without_a_label_column",
    "tests/test_disclosure.py",
]
DEMO_RUN_FILES = {"tests/test_linkage.py", "tests/test_progress.py", "tests/test_review.py"}


def _workers_by_file(dist: str) -> dict[str, set[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-n", "2", "--dist", dist,
         "--no-loadscope-reorder", *SELECTED],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},  # not this run's worker
    )
    assert done.returncode == 0, done.stdout[-3000:]
    workers = defaultdict(set)
    for worker, test_file in re.findall(r"^\[(gw\d)\].* PASSED (tests/\w+\.py)::", done.stdout, re.M):
        workers[test_file].add(worker)
    assert set(workers) == DEMO_RUN_FILES | {"tests/test_disclosure.py"}, done.stdout[-3000:]
    return workers


@pytest.mark.parametrize("dist", ["loadfile", "loadscope"])
def test_files_reading_the_demo_run_share_one_worker_only_under_loadfile(dist):
    workers = _workers_by_file(dist)
    demo_run_workers = set().union(*(workers[f] for f in DEMO_RUN_FILES))
    if dist == "loadfile":  # make test's: one worker for them all, and the other file on the other
        assert len(demo_run_workers) == 1 and workers["tests/test_disclosure.py"] != demo_run_workers
    else:  # xdist's own file-by-file scheduling sends the first two files to different workers
        assert len(demo_run_workers) == 2
