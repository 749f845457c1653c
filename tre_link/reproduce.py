"""Reproduce a logged pipeline run: same config, every source pinned to the Delta version the run
read, the run's own model (no retraining), and compare output checksums with the logged ones.

Outputs go to <output.root>/reproduce/<run_id>/linkage; the linkage and research zones of the
original run are not touched, and nothing is published.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from tre_link import pipeline, tracking
from tre_link.config import JobConfig, load_config
from tre_link.disclosure import release_count
from tre_link.errors import ConfigError

log = logging.getLogger("tre_link")


def pinned_config(cfg: JobConfig, params: dict[str, str], linkage_zone: str) -> JobConfig:
    """The config with each source at its logged path and version, outputs in `linkage_zone`."""
    sources = []
    for source in cfg.sources:
        version = params.get(f"source.{source.name}.version")
        if version is None:
            raise ConfigError(f"run has no logged version for source {source.name}; cannot pin it")
        path = params.get(f"source.{source.name}.path", source.path)
        sources.append(source.model_copy(update={"path": path, "version": int(version)}))
    output = cfg.output.model_copy(update={"linkage_zone": linkage_zone})
    pins = {"sources": sources, "output": output}
    if cfg.opt_outs and "opt_outs.version" in params:
        pins["opt_outs_version"] = int(params["opt_outs.version"])
    return cfg.model_copy(update=pins)


def _run_model_json(client: MlflowClient, run_id: str, dest: Path) -> str:
    """The Splink JSON the run linked with (logged under model/ by log_model or log_model_used)."""
    dest.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model/splink_model.json",
                                                dst_path=str(dest))
    return local


def reproduce(spark, run_id: str, tracking_uri: str, config_path: str | None = None) -> dict:
    """Rerun standardise + link for `run_id` and compare links/person_index with the logged checksums.

    config_path defaults to the run's logged config_file. Returns
    {"identical": bool, "run_id", "config_sha256_matches", "output_linkage_zone",
     "tables": {table: {"logged_checksum", "checksum", "logged_rows", "rows", "identical"}}, ...}
    where rows are released counts."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient()
    run = client.get_run(run_id)
    params = dict(run.data.params)
    metrics = dict(run.data.metrics)
    config_file = config_path or params.get("config_file")
    if not config_file:
        raise ConfigError(f"run {run_id} has no config_file param; pass the config explicitly")
    cfg = load_config(config_file)
    sha = tracking.config_hash(config_file)
    root = Path(cfg.output.root) / "reproduce" / run_id
    pinned = pinned_config(cfg, params, str(root / "linkage"))

    model_json = _run_model_json(client, run_id, root / "model")
    log.info("reproduce: run %s with sources pinned %s and its logged model", run_id,
             {s.name: s.version for s in pinned.sources})
    pipeline.run_standardise(spark, pinned)
    pipeline.run_link(spark, pinned, model_json)

    recomputed = tracking.output_checksums(spark, pipeline.Zones(pinned.output.linkage_zone))
    tables = {}
    for table, now in recomputed.items():
        logged_checksum = params.get(f"output.{table}.checksum")
        logged_rows = metrics.get(f"output.{table}.rows")
        rows = release_count(now["rows"])
        tables[table] = {
            "logged_checksum": logged_checksum,
            "checksum": now["checksum"],
            "logged_rows": int(logged_rows) if logged_rows is not None else None,
            "rows": rows,
            "identical": logged_checksum is not None and logged_checksum == now["checksum"],
        }
    return {
        "run_id": run_id,
        "identical": all(t["identical"] for t in tables.values()),
        "config_file": str(config_file),
        "config_sha256_matches": sha == params.get("config_sha256"),
        "source_versions": {s.name: s.version for s in pinned.sources},
        "model_json": model_json,
        "output_linkage_zone": pinned.output.linkage_zone,
        "opt_outs_version": pinned.opt_outs_version,
        "tables": tables,
    }
