"""MLflow tracking: one run per pipeline invocation, one nested run per stage.

Everything logged here counts as released output: counts go through disclosure control,
and no record-level value is ever logged.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow

from tre_link.config import JobConfig
from tre_link.disclosure import release_count

log = logging.getLogger("tre_link")


def configure_mlflow(cfg: JobConfig) -> str:
    """Point MLflow at the configured server, or at the embedded SQLite store under output.root."""
    Path(cfg.output.root).mkdir(parents=True, exist_ok=True)
    uri = cfg.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(cfg.mlflow.experiment)
    return uri


def config_hash(config_path: str | Path) -> str:
    return hashlib.sha256(Path(config_path).read_bytes()).hexdigest()


class Tracker:
    """Logs to the active pipeline run; stages become nested runs with their wall time."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("%s: started", name)
        start = time.perf_counter()
        with mlflow.start_run(run_name=name, nested=True):
            yield
            seconds = round(time.perf_counter() - start, 2)
            mlflow.log_metric("wall_seconds", seconds)
        self.seconds[name] = seconds
        mlflow.log_metric(f"wall_seconds_{name}", seconds)
        log.info("%s: done in %.1fs", name, seconds)

    def log_params(self, params: dict) -> None:
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})

    def log_counts(self, counts: dict[str, int], prefix: str = "") -> dict[str, int | None]:
        """Log counts after disclosure control; suppressed counts are logged as a tag, not a number."""
        released = {name: release_count(value) for name, value in counts.items()}
        for name, value in released.items():
            if value is None:
                mlflow.set_tag(f"suppressed.{prefix}{name}", "under 10")
            else:
                mlflow.log_metric(f"{prefix}{name}", value)
        return released

    def log_rates(self, rates: dict[str, float | None], prefix: str = "") -> None:
        """Log rates that were derived from released counts only."""
        for name, value in rates.items():
            if value is not None:
                mlflow.log_metric(f"{prefix}{name}", value)

    def log_model(self, cfg: JobConfig, model_json: str) -> None:
        """Log the trained Splink model (JSON) with the run."""
        mlflow.log_artifact(model_json, artifact_path="model")

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        mlflow.log_artifact(path, artifact_path=artifact_path)


@contextmanager
def pipeline_run(cfg: JobConfig, config_path: str | Path, run_name: str) -> Iterator[Tracker]:
    configure_mlflow(cfg)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tag("tre_link.config_file", str(config_path))
        yield Tracker(run.info.run_id)


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_params(spark, cfg: JobConfig, config_path: str | Path) -> dict:
    """What a reviewer needs to reproduce the run (source versions are logged by the standardise stage)."""
    import splink

    import tre_link

    return {
        "config_file": str(config_path),
        "config_sha256": config_hash(config_path),
        "tre_link_version": tre_link.__version__,
        "git_commit": _git_commit(),
        "spark_version": spark.version,
        "splink_version": splink.__version__,
        "delta_spark_version": importlib.metadata.version("delta-spark"),
        "seed": cfg.seed,
        "blocking_rules_training": cfg.linkage.blocking_rules_training,
        "blocking_rules_predict": cfg.linkage.blocking_rules_predict,
        "threshold_match_probability": cfg.linkage.threshold_match_probability,
        "u_max_pairs": cfg.linkage.u_max_pairs,
        "nhs_number_form": cfg.linkage.nhs_number_form,
        "model_source": cfg.linkage.model or "trained in this run",
    }


def resolve_model(model: str, default_path: str) -> str:
    """A Splink JSON path for the configured model: a file path, or models:/NAME@ALIAS from the registry."""
    if not model.startswith("models:/"):
        return model
    local_dir = mlflow.artifacts.download_artifacts(artifact_uri=model)
    return str(next(Path(local_dir).rglob("splink_model.json")))
