"""Smoke test for bench/run.py: a tiny run in its own process (its own SparkSession), JSON on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "run.py"


@pytest.mark.slow
def test_bench_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--people", "300", "--skip-spark-baseline", "--shuffle-partitions", "1",
         "--out", str(tmp_path / "bench")],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)  # stdout holds exactly one JSON object

    assert result["people"] == 300
    assert result["records"]["total"] > 300
    assert set(result["records"]["per_source"]) == {"gp", "hospital", "council"}
    assert result["records"]["baseline_input"] == result["records"]["total"]
    assert set(result["engines"]) == {"tre_link", "duckdb_plain_tutorial", "duckdb", "duckdb_tre_link_model"}
    for engine in result["engines"].values():
        for field in ("stage_seconds", "total_seconds", "comparisons_scored", "links"):
            assert field in engine
        assert engine["total_seconds"] > 0
        for field in ("pairwise_precision", "pairwise_recall", "pairwise_f1"):
            assert isinstance(engine[field], float) and 0.0 <= engine[field] <= 1.0, (field, engine[field])
    assert {"standardise", "train", "link", "evaluate"} <= set(result["engines"]["tre_link"]["stage_seconds"])
    assert {"train", "predict_and_cluster"} <= set(result["engines"]["duckdb"]["stage_seconds"])
    assert result["ratios"]["tre_link_over_duckdb"] > 0
    plain = result["engines"]["duckdb_plain_tutorial"]
    assert {"u", "em_1", "em_2", "predict", "cluster_at_0.5"} <= set(plain["stage_seconds"])
    assert result["ratios"]["tre_link_over_plain_duckdb"] == pytest.approx(
        result["engines"]["tre_link"]["total_seconds"] / plain["total_seconds"], rel=1e-2)
    assert 0.0 <= plain["best_pairs_f1_over_thresholds"] <= 1.0
    assert result["ratios"]["spark_over_tre_link"] is None
    assert result["peak_memory_mb"]["python_ru_maxrss"] > 0
    assert result["peak_memory_mb"]["jvm_vmhwm"] > 0
    assert result["versions"]["splink"]
    profiled = {row["label"] for row in result["spark_profile"]}
    assert {"tre_link / link", "tre_link / train / u (random sampling)"} <= profiled, profiled


def test_sources_config_brings_its_sources_truth_and_projects(tmp_path):
    """`--sources-config` links another config's sources (here conf/altsynth.yaml's) and publishes
    that config's projects, not the demo's, whose columns those sources need not carry."""
    from bench import run as bench
    from tre_link.platform.config import load_config

    config = BENCH.parents[1] / "conf" / "altsynth.yaml"
    theirs = load_config(config)
    cfg = bench.build_config(bench.parse_args(["--sources-config", str(config), "--out", str(tmp_path)]))
    assert cfg.synth is None
    assert cfg.sources == theirs.sources and cfg.truth_path == theirs.truth_path
    assert cfg.projects == theirs.projects


def test_links_differing_counts_each_side_by_why(spark):
    """bench/refresh.py's explanation of an equivalence difference: a link only one index made is
    either scored by the other below the threshold (with the gap) or never scored by it; pairs are
    matched whichever way round each table holds them."""
    from types import SimpleNamespace

    from bench.refresh import links_differing

    def links(rows):
        return spark.createDataFrame(rows, "source_l string, record_id_l string, source_r string, "
                                           "record_id_r string, match_probability double")

    def scored(rows):
        return spark.createDataFrame(rows, "unique_id_l string, unique_id_r string, match_probability double")

    def result(link_rows, scored_rows):
        return SimpleNamespace(links=SimpleNamespace(df=links(link_rows)),
                               scored_pairs=SimpleNamespace(df=scored(scored_rows)))

    refreshed = result(
        [("s", "a", "s", "b", 0.99), ("s", "c", "s", "d", 0.97), ("s", "g", "s", "h", 0.96)],
        [("s:a", "s:b", 0.99), ("s:c", "s:d", 0.97), ("s:g", "s:h", 0.96), ("s:e", "s:f", 0.949)],
    )
    full = result(
        [("s", "b", "s", "a", 0.99), ("s", "e", "s", "f", 0.951)],  # (a, b) held the other way round
        [("s:b", "s:a", 0.99), ("s:d", "s:c", 0.94), ("s:e", "s:f", 0.951)],
    )
    out = links_differing(refreshed, full, 0.95)
    assert out["refreshed_only"] == {"links": 2, "scored_below_threshold_by_other": 1, "not_scored_by_other": 1,
                                     "largest_probability_move": 0.03}
    assert out["full_only"] == {"links": 1, "scored_below_threshold_by_other": 1, "not_scored_by_other": 0,
                                "largest_probability_move": 0.002}
