"""Benchmark: the fixed cost of a run, on the small population the test suite links.

    .venv/bin/python bench/small_run.py [--runs 2] [--people 800] [--out DIR] > bench/results/small_run.json

Runs the demo pipeline (synth, then `TreLink.run`: standardise, train, link, publish every project,
evaluate, report, MLflow) `--runs` times in one JVM, each in fresh zones, with the tests' settings
(`local[2]`, one shuffle partition, u from 200,000 pairs). At 800 people (about 1,450 records) a
run is almost all fixed cost: Spark jobs and query planning, Delta commits, MLflow, the report.
The first run also pays the JVM's warm-up; later runs are what each pipeline run in the test suite
costs. Per run: wall seconds, seconds per stage, and the Spark jobs it ran.

Prints ONE JSON object to stdout (aggregate numbers only); progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.demo_config import demo_config_under  # noqa: E402
from bench.run import provenance  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--people", type=int, default=800)
    p.add_argument("--out", default=str(REPO / "out" / "bench_small_run"))
    return p.parse_args(argv)


def config_for(out: Path, people: int):
    """The tests' small demo config (tests/conftest.small_demo_config), under `out`."""
    from tre_link.platform.config import JobConfig

    raw = demo_config_under(out, people, shuffle_partitions=1, driver_memory="2g")
    raw["spark"]["master"] = "local[2]"
    raw["linkage"]["u_max_pairs"] = 200_000
    return JobConfig.model_validate(raw)


def spark_jobs_so_far(spark) -> int:
    """Jobs the session has started: one more than the newest job id (ids count from 0)."""
    ids = spark.sparkContext.statusTracker().getJobIdsForGroup(None)
    return max(ids, default=-1) + 1


def one_run(spark, cfg) -> dict:
    from tre_link import TreLink
    from tre_link.demo import ensure_demo_keys
    from tre_link.platform.progress import Progress
    from tre_link.synth import generate

    ensure_demo_keys(cfg)
    linker = TreLink(spark, cfg)
    progress = Progress(spark, 1 + linker.stage_count())
    jobs_before, start = spark_jobs_so_far(spark), time.perf_counter()
    with progress.stage("synth"):
        generate(spark, cfg.synth)
    summary = linker.run(run_name="bench", progress=progress).summary
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "stage_seconds": {name: round(s, 1) for name, s in progress.stage_seconds.items()},
        "spark_jobs": spark_jobs_so_far(spark) - jobs_before,
        "records_released": sum(s["records"] or 0 for s in summary["sources"].values()),  # each rounded to 5
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    from tre_link.platform.spark import build_session

    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    spark = build_session(config_for(out / "session", args.people).spark)
    runs = []
    for i in range(args.runs):
        runs.append(one_run(spark, config_for(out / f"run{i}", args.people)))
        logging.getLogger("bench").info("run %d of %d: %s s", i + 1, args.runs, runs[-1]["seconds"])
    result = {"people": args.people, "runs": runs,
              "later_runs_mean_seconds": (round(sum(r["seconds"] for r in runs[1:]) / (len(runs) - 1), 1)
                                          if len(runs) > 1 else None),
              **provenance(spark)}
    spark.stop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
