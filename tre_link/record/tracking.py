"""MLflow tracking: one run per pipeline invocation, one nested run per stage.

The tracker only logs what it is given: figures come from `tre_link.record.report`, already
disclosure-controlled, and charts are drawn from them. Everything logged here counts as released
output: no record-level value is ever logged. Every call names its store through an
`MlflowClient`: nothing sets MLflow's process-wide tracking URI or active run.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import json
import logging
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from tre_link.platform.config import JobConfig
from tre_link.platform.paths import normalise
from tre_link.record import charts, environment
from tre_link.record.registry import CANDIDATE_ALIAS, MODEL_ARTIFACT, describe_model
from tre_link.record.report import LinkageReport, ModelParameters, TableChecksum

# The pyfunc is logged from this file's code (never pickled); not imported here, as importing it registers it.
MODEL_CODE_PATH = str(Path(__file__).with_name("mlflow_model.py").resolve())
# What the pyfunc imports, pinned to the versions it was saved with.
MODEL_PACKAGES = ("mlflow", "splink", "duckdb", "pandas", "doublemetaphone")
EXPERIMENT_KIND = "custom_model_development"  # MLflow's kind for classic (not GenAI) model runs
EXPERIMENT_DESCRIPTION = (
    "tre-link record linkage runs. Each run is one pipeline invocation (standardise, train, link, publish, "
    "evaluate) with a nested run per stage. The run holds disclosure-controlled metrics, charts, its "
    "parameters and `report/linkage_report.html`; its registered model version is in the model registry "
    "with aliases `candidate` and `approved`. Nothing logged here is record-level."
)


def model_requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in MODEL_PACKAGES]


def model_signature():
    """Plain records in (see record/mlflow_model.py), scored pairs out, an optional threshold."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("string", c) for c in ("given_name", "family_name", "dob")]
                    + [ColSpec("string", c, required=False)
                       for c in ("record_id", "source", "nhs_number", "sex", "postcode")])
    outputs = Schema([ColSpec("string", "unique_id_l"), ColSpec("string", "unique_id_r"),
                      ColSpec("double", "match_weight"), ColSpec("double", "match_probability")])
    params = ParamSchema([ParamSpec("threshold_match_probability", "double", 0.0)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)

log = logging.getLogger("tre_link")


def config_hash(config_path: str | Path) -> str:
    return hashlib.sha256(Path(config_path).read_bytes()).hexdigest()


def _client(cfg: JobConfig) -> MlflowClient:
    return MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)


def _experiment_id(client: MlflowClient, cfg: JobConfig) -> str:
    """The configured experiment, created on first use; the embedded store keeps its artifacts
    beside it under output.root, not in ./mlruns under whatever the working directory is."""
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        artifacts = None if cfg.mlflow.tracking_uri else (Path(cfg.output.root) / "mlartifacts").resolve().as_uri()
        experiment_id = client.create_experiment(cfg.mlflow.experiment, artifact_location=artifacts)
    # Set on every run, so experiments made before these tags existed get them too.
    client.set_experiment_tag(experiment_id, "mlflow.note.content", EXPERIMENT_DESCRIPTION)
    client.set_experiment_tag(experiment_id, "mlflow.experimentKind", EXPERIMENT_KIND)
    return experiment_id


class Tracker:
    """Logs to one pipeline run; stages become nested runs with their wall time."""

    def __init__(self, cfg: JobConfig, run_id: str, experiment_id: str):
        self.cfg = cfg
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.seconds: dict[str, float] = {}
        self.client = _client(cfg)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.debug("%s: started", name)
        start = time.perf_counter()
        child = self.client.create_run(
            self.experiment_id, tags={MLFLOW_PARENT_RUN_ID: self.run_id, MLFLOW_RUN_NAME: name, **_zone_tag(self.cfg)}
        ).info.run_id
        try:
            yield
        except BaseException:
            self.client.set_terminated(child, RunStatus.to_string(RunStatus.FAILED))
            raise
        seconds = round(time.perf_counter() - start, 2)
        self.client.log_metric(child, "wall_seconds", seconds)
        self.client.set_terminated(child)
        self.seconds[name] = seconds
        self.client.log_metric(self.run_id, f"wall_seconds_{name}", seconds)
        log.debug("%s: done in %.1fs", name, seconds)

    def log_params(self, params: dict) -> None:
        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    def set_tags(self, tags: dict) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def log_released(self, released: dict[str, int | float | None], prefix: str = "") -> None:
        """Log figures already through disclosure control, in one batch; a suppressed count (None)
        is logged as a tag, not a number."""
        now = int(time.time() * 1000)
        metrics = [Metric(f"{prefix}{k}", float(v), now, 0) for k, v in released.items() if v is not None]
        tags = [RunTag(f"suppressed.{prefix}{k}", "under 10") for k, v in released.items() if v is None]
        self.client.log_batch(self.run_id, metrics=metrics, tags=tags)

    def log_quality_warnings(self, warnings: list[str]) -> None:
        """Data-quality warnings (shares only) as a tag a reviewer sees on the run page, and in full as JSON."""
        if warnings:
            self.set_tags({"data_quality_warnings": f"{len(warnings)}: " + "; ".join(warnings)})
            self.log_json(warnings, "report/quality_warnings.json")

    def log_library_warnings(self, warnings: list[str]) -> None:
        """Warnings Splink and MLflow raised during the run, in plain words: a tag, and in full as JSON."""
        if warnings:
            self.set_tags({"library_warnings": f"{len(warnings)}: " + "; ".join(warnings)})
            self.log_json(warnings, "report/library_warnings.json")

    def log_guard_rails(self, untrained_levels: list[str], floored_levels: list[str]) -> None:
        """The comparison levels training never saw and those raised to the weight floor (labels and
        weights only), as tags a reviewer sees on the run page and in full as JSON."""
        if untrained_levels:
            self.set_tags({"model_untrained_levels": f"{len(untrained_levels)}: " + "; ".join(untrained_levels)})
        if floored_levels:
            self.set_tags({"model_floored_levels": f"{len(floored_levels)}: " + "; ".join(floored_levels)})
        self.log_json({"untrained_levels": untrained_levels, "floored_levels": floored_levels},
                      "report/model_guard_rails.json")

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, path, artifact_path=artifact_path)

    def log_json(self, obj, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
            self.log_artifact(str(path), str(Path(artifact_file).parent) if "/" in artifact_file else None)

    # ---------------------------------------------------------------------------- the model

    def _log_model_files(self, model_json: str, parameters: ModelParameters) -> None:
        """The Splink JSON, its m/u/match-weight table and the two parameter charts (no record data)."""
        self.log_artifact(model_json, "model")
        levels = parameters.levels
        with tempfile.TemporaryDirectory() as tmp:
            table = Path(tmp) / "parameters.csv"
            with table.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(levels[0]) if levels else ["comparison"])
                writer.writeheader()
                writer.writerows(levels)
            (Path(tmp) / "parameters.json").write_text(json.dumps(
                {"prior_match_weight": parameters.prior_match_weight, "levels": levels}, indent=2))
            self.log_artifact(str(table), "model")
            self.log_artifact(str(Path(tmp) / "parameters.json"), "model")
            self.log_artifact(charts.plot_match_weights(levels, Path(tmp) / "match_weights.png",
                                                        prior_match_weight=parameters.prior_match_weight), "charts")
            self.log_artifact(charts.plot_m_u(levels, Path(tmp) / "m_u_parameters.png"), "charts")

    def log_model(self, model_json: str, parameters: ModelParameters, standardise_rules: dict,
                  input_example) -> dict:
        """Log the trained Splink model with the run, register it (from code) and alias it `candidate`.
        The pyfunc carries its signature, `input_example` (synthetic records) and exact requirements.

        Returns describe_model() of the new version: model_uri, model_name, model_version..."""
        self._log_model_files(model_json, parameters)
        name = self.cfg.mlflow.registered_model
        # Saved, then logged and registered through the client: MLflow's log_model works only
        # through its process-wide active run.
        with tempfile.TemporaryDirectory() as tmp:
            rules = Path(tmp) / "standardise_rules.json"
            rules.write_text(json.dumps(standardise_rules, indent=1))
            mlflow.pyfunc.save_model(
                f"{tmp}/{MODEL_ARTIFACT}",
                python_model=MODEL_CODE_PATH,
                artifacts={"splink_model": str(model_json), "standardise_rules": str(rules)},
                pip_requirements=model_requirements(),
                signature=model_signature(),
                input_example=input_example,
            )
            self.client.log_artifacts(self.run_id, f"{tmp}/{MODEL_ARTIFACT}", MODEL_ARTIFACT)
        if not self.client.search_registered_models(filter_string=f"name = '{name}'"):
            self.client.create_registered_model(name)
        version = str(self.client.create_model_version(
            name, source=f"runs:/{self.run_id}/{MODEL_ARTIFACT}", run_id=self.run_id
        ).version)
        self.client.set_registered_model_alias(name, CANDIDATE_ALIAS, version)
        self.client.set_model_version_tag(name, version, "tre_link.training_run_id", self.run_id)
        described = describe_model(f"models:/{name}/{version}", self.cfg.tracking_uri)
        self.set_tags({"model_uri": described["model_uri"], "model_version": version, "model_name": name})
        return described

    def log_model_used(self, model: str, model_json: str, parameters: ModelParameters) -> dict:
        """For a run that linked with a configured model (no training): record which one
        (tags model_uri, model_version) and keep a copy of its Splink JSON with the run."""
        described = describe_model(model, self.cfg.tracking_uri)
        self.set_tags({"model_uri": described["model_uri"], "model_version": described["model_version"],
                       "model_name": described.get("model_name") or ""})
        self._log_model_files(model_json, parameters)
        return described

    # ---------------------------------------------------------------------------- outputs

    def log_checksums(self, checksums: dict[str, TableChecksum]) -> None:
        """Order-independent checksums (params output.<table>.checksum) and released row counts
        (metrics output.<table>.rows) of the output tables, for reproduce to compare against."""
        self.log_params({f"output.{t}.checksum": c.checksum for t, c in checksums.items()})
        self.log_released({f"output.{t}.rows": c.released_rows() for t, c in checksums.items()})

    def log_linkage_report(self, report: LinkageReport) -> None:
        """The report's charts, its figures as JSON artifacts and as metrics (all released)."""
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            self.log_artifact(charts.plot_completeness(report.completeness, tmp / "completeness.png"), "charts")
            self.log_artifact(charts.plot_match_weight_histogram(
                report.match_weight_histogram, tmp / "match_weight_histogram.png", report.threshold_weight), "charts")
            self.log_artifact(charts.plot_match_rates(report.match_rates, tmp / "match_rates.png",
                                                      overall=report.overall_match_rate), "charts")
        self.log_json(report.completeness, "report/completeness.json")
        self.log_json([{"bin_start": b, "count": c} for b, c in report.match_weight_histogram],
                      "report/match_weight_histogram.json")
        self.log_json(report.match_rates, "report/match_rates.json")
        self.log_released(report.metrics())
        self.set_tags({f"suppressed.{name}": "under 10" for name in report.suppressed()})

    def log_report(self, paths: list[str], figures: dict) -> None:
        """The run's linkage report files and its figures as JSON, under report/."""
        for path in paths:
            self.log_artifact(path, "report")
        self.log_json(figures, "report/report.json")

    def log_charts_html(self, paths: list[str]) -> None:
        """Splink's own interactive charts of model parameters (no record data)."""
        for path in paths:
            self.log_artifact(path, "charts/splink")

    def describe_run(self, description: str) -> None:
        """The run page's description (markdown), shown above its metrics."""
        self.set_tags({"mlflow.note.content": description})

    def describe_model_version(self, version: str, description: str) -> None:
        """The registered version's description: its model card."""
        self.client.update_model_version(self.cfg.mlflow.registered_model, version, description=description)


@contextmanager
def pipeline_run(cfg: JobConfig, config_path: str | Path, run_name: str) -> Iterator[Tracker]:
    """A new top-level run for one pipeline invocation; marked FAILED if the work raises."""
    client = _client(cfg)
    Path(cfg.output.root).mkdir(parents=True, exist_ok=True)
    experiment_id = _experiment_id(client, cfg)
    run = client.create_run(experiment_id, run_name=run_name,
                            tags={"tre_link.config_file": str(config_path), **_zone_tag(cfg)})
    try:
        yield Tracker(cfg, run.info.run_id, experiment_id)
    except BaseException:
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run.info.run_id)


ZONE_TAG = "tre_link.linkage_zone"


def _zone_tag(cfg: JobConfig) -> dict[str, str]:
    return {ZONE_TAG: normalise(cfg.output.linkage_zone)}


def fail_abandoned_runs(cfg: JobConfig) -> int:
    """Mark FAILED the runs of this linkage zone still RUNNING: a process killed mid-run leaves
    them so. Call it only while holding the zone, when no other run of the zone is alive."""
    client = _client(cfg)
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
    if experiment is None:
        return 0
    zone = _zone_tag(cfg)[ZONE_TAG].replace("'", "\\'")
    abandoned = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{ZONE_TAG}` = '{zone}' and attributes.status = 'RUNNING'"
    )
    for run in abandoned:
        client.set_tag(run.info.run_id, "tre_link.ended", "found still RUNNING when the next run started: it died")
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
    if abandoned:
        log.warning("marked %d MLflow run(s) that ended without finishing as FAILED", len(abandoned))
    return len(abandoned)


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_params(cfg: JobConfig, config_file: str, config_sha256: str, spark_version: str) -> dict:
    """What a reviewer needs to reproduce the run (source versions are logged by the standardise stage)."""
    import splink

    return {
        "config_file": config_file,
        "config_sha256": config_sha256,
        "tre_link_version": importlib.metadata.version("tre-link"),
        "git_commit": _git_commit(),
        "spark_version": spark_version,
        "splink_version": splink.__version__,
        "delta_spark_version": importlib.metadata.version("delta-spark"),
        "seed": cfg.seed,
        "blocking_rules_training": cfg.linkage.blocking_rules_training,
        "blocking_rules_predict": cfg.linkage.blocking_rules_predict,
        "threshold_match_probability": cfg.linkage.threshold_match_probability,
        "u_max_pairs": cfg.linkage.u_max_pairs,
        "nhs_number_form": cfg.linkage.nhs_number_form,
        "model_source": cfg.linkage.model or "trained in this run",
        "max_block_comparisons": cfg.linkage.max_block_comparisons,
        "em_max_pairs": cfg.linkage.em_max_pairs,
        **environment.run_params(),  # the lock file's SHA-256 and the key packages' versions
    }
