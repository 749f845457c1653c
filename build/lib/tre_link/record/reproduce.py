"""Reproducing a logged pipeline run: its config with every source pinned to the Delta version the
run read, the run's own model (no retraining), and the output checksums compared with the logged
ones. `TreLink.reproduce` runs it; the pieces here read the run and compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from tre_link.platform.config import JobConfig
from tre_link.platform.errors import ConfigError
from tre_link.record.report import TableChecksum


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    params: dict[str, str]
    metrics: dict[str, float]

    @classmethod
    def load(cls, run_id: str, tracking_uri: str) -> LoggedRun:
        run = MlflowClient(tracking_uri=tracking_uri).get_run(run_id)
        return cls(run_id=run_id, params=dict(run.data.params), metrics=dict(run.data.metrics))

    def model_json(self, tracking_uri: str, dest: Path) -> str:
        """The Splink JSON the run linked with (logged under model/ by the tracker)."""
        dest.mkdir(parents=True, exist_ok=True)
        return mlflow.artifacts.download_artifacts(run_id=self.run_id, artifact_path="model/splink_model.json",
                                                   dst_path=str(dest), tracking_uri=tracking_uri)


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


def compare_with_logged(run: LoggedRun, recomputed: dict[str, TableChecksum]) -> dict[str, dict]:
    """Per table: the logged and recomputed checksums and released row counts, and whether they agree."""
    tables = {}
    for table, now in recomputed.items():
        logged_checksum = run.params.get(f"output.{table}.checksum")
        logged_rows = run.metrics.get(f"output.{table}.rows")
        tables[table] = {
            "logged_checksum": logged_checksum,
            "checksum": now.checksum,
            "logged_rows": int(logged_rows) if logged_rows is not None else None,
            "rows": now.released_rows(),
            "identical": logged_checksum is not None and logged_checksum == now.checksum,
        }
    return tables
