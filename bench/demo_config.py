"""The demo's config, moved under a benchmark's own output directory: the one starting point of every bench."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "conf" / "demo.yaml"


def demo_config_under(out: Path, people: int, shuffle_partitions: int | None = None,
                      driver_memory: str | None = None) -> dict:
    """`conf/demo.yaml` as a dict, every path under `out`, synth at `people`, Spark overrides applied."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text().replace("out/demo", str(out)))
    raw["synth"]["people"] = people
    if shuffle_partitions:
        raw["spark"]["shuffle_partitions"] = shuffle_partitions
    if driver_memory:
        raw["spark"]["driver_memory"] = driver_memory
    raw["spark"].setdefault("conf", {})["spark.sql.warehouse.dir"] = str(out / "spark-warehouse")
    return raw
