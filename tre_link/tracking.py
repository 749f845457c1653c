"""MLflow tracking: one run per pipeline invocation, one nested run per stage.

Everything logged here counts as released output: counts go through disclosure control,
and no record-level value is ever logged.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import json
import logging
import math
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow
from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from tre_link import charts
from tre_link.config import JobConfig
from tre_link.disclosure import release_count, release_counts

CANDIDATE_ALIAS = "candidate"
OUTPUT_TABLES = ("links", "person_index")
# The pyfunc is logged from this file's code (never pickled); not imported here, as importing it registers it.
MODEL_CODE_PATH = str(Path(__file__).with_name("mlflow_model.py").resolve())
MODEL_REQUIREMENTS = ["mlflow>=3,<4", "splink>=5,<6", "duckdb>=1.1", "pandas"]

log = logging.getLogger("tre_link")


def configure_mlflow(cfg: JobConfig) -> str:
    """Point MLflow at the configured server, or at the embedded SQLite store under output.root."""
    Path(cfg.output.root).mkdir(parents=True, exist_ok=True)
    uri = cfg.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if not cfg.mlflow.tracking_uri and mlflow.get_experiment_by_name(cfg.mlflow.experiment) is None:
        # The embedded store keeps artifacts beside it, not in ./mlruns under whatever the cwd is.
        artifacts = (Path(cfg.output.root) / "mlartifacts").resolve().as_uri()
        mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=artifacts)
    mlflow.set_experiment(cfg.mlflow.experiment)
    return uri


def config_hash(config_path: str | Path) -> str:
    return hashlib.sha256(Path(config_path).read_bytes()).hexdigest()


class Tracker:
    """Logs to the pipeline run (by id, so figures land on the top-level run even inside a stage);
    stages become nested runs with their wall time."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.seconds: dict[str, float] = {}
        self.client = MlflowClient()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("%s: started", name)
        start = time.perf_counter()
        with mlflow.start_run(run_name=name, nested=True):
            yield
            seconds = round(time.perf_counter() - start, 2)
            mlflow.log_metric("wall_seconds", seconds)
        self.seconds[name] = seconds
        self.client.log_metric(self.run_id, f"wall_seconds_{name}", seconds)
        log.info("%s: done in %.1fs", name, seconds)

    def log_params(self, params: dict) -> None:
        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    def set_tags(self, tags: dict) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def log_counts(self, counts: dict[str, int], prefix: str = "") -> dict[str, int | None]:
        """Log counts after disclosure control; suppressed counts are logged as a tag, not a number."""
        released = release_counts(counts)
        for name, value in released.items():
            if value is None:
                self.client.set_tag(self.run_id, f"suppressed.{prefix}{name}", "under 10")
            else:
                self.client.log_metric(self.run_id, f"{prefix}{name}", value)
        return released

    def log_rates(self, rates: dict[str, float | None], prefix: str = "") -> None:
        """Log rates that were derived from released counts only."""
        for name, value in rates.items():
            if value is not None:
                self.client.log_metric(self.run_id, f"{prefix}{name}", float(value))

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, path, artifact_path=artifact_path)

    def log_json(self, obj, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
            self.log_artifact(str(path), str(Path(artifact_file).parent) if "/" in artifact_file else None)

    # ---------------------------------------------------------------------------- the model

    def _log_model_files(self, model_json: str) -> list[dict]:
        """The Splink JSON, its m/u/match-weight table and the two parameter charts (no record data)."""
        self.log_artifact(model_json, "model")
        params = charts.model_parameters(model_json)
        with tempfile.TemporaryDirectory() as tmp:
            table = Path(tmp) / "parameters.csv"
            with table.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(params[0]) if params else ["comparison"])
                writer.writeheader()
                writer.writerows(params)
            (Path(tmp) / "parameters.json").write_text(json.dumps(
                {"prior_match_weight": charts.prior_match_weight(model_json), "levels": params}, indent=2))
            self.log_artifact(str(table), "model")
            self.log_artifact(str(Path(tmp) / "parameters.json"), "model")
            self.log_artifact(charts.plot_match_weights(params, Path(tmp) / "match_weights.png"), "charts")
            self.log_artifact(charts.plot_m_u(params, Path(tmp) / "m_u_parameters.png"), "charts")
        return params

    def log_model(self, cfg: JobConfig, model_json: str) -> dict:
        """Log the trained Splink model with the run, register it (from code) and alias it `candidate`.

        Returns describe_model() of the new version: model_uri, model_name, model_version..."""
        self._log_model_files(model_json)
        info = mlflow.pyfunc.log_model(
            name="splink_pyfunc",
            python_model=MODEL_CODE_PATH,
            artifacts={"splink_model": str(model_json)},
            registered_model_name=cfg.mlflow.registered_model,
            pip_requirements=MODEL_REQUIREMENTS,
            await_registration_for=60,
        )
        version = str(info.registered_model_version)
        self.client.set_registered_model_alias(cfg.mlflow.registered_model, CANDIDATE_ALIAS, version)
        self.client.set_model_version_tag(cfg.mlflow.registered_model, version, "tre_link.training_run_id", self.run_id)
        described = describe_model(f"models:/{cfg.mlflow.registered_model}/{version}")
        self.set_tags({"model_uri": described["model_uri"], "model_version": version,
                       "model_name": cfg.mlflow.registered_model})
        return described

    def log_model_used(self, model: str, model_json: str) -> dict:
        """For a run that linked with a configured model (no training): record which one
        (tags model_uri, model_version) and keep a copy of its Splink JSON with the run."""
        described = describe_model(model)
        self.set_tags({"model_uri": described["model_uri"], "model_version": described["model_version"],
                       "model_name": described.get("model_name") or ""})
        self._log_model_files(model_json)
        return described

    # ---------------------------------------------------------------------------- outputs

    def log_outputs(self, spark, zones) -> dict:
        """Order-independent checksums (params output.<table>.checksum) and released row counts
        (metrics output.<table>.rows) of links and person_index, for reproduce() to compare against."""
        result = output_checksums(spark, zones)
        self.log_params({f"output.{t}.checksum": v["checksum"] for t, v in result.items()})
        self.log_counts({f"output.{t}.rows": v["rows"] for t, v in result.items()})
        return {t: {"checksum": v["checksum"], "rows": release_count(v["rows"])} for t, v in result.items()}


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
        "max_block_comparisons": cfg.linkage.max_block_comparisons,
        "em_max_pairs": cfg.linkage.em_max_pairs,
    }


def resolve_model(model: str) -> str:
    """A Splink JSON path for the configured model: a file path, or models:/NAME@ALIAS from the registry."""
    if not model.startswith("models:/"):
        return model
    local_dir = mlflow.artifacts.download_artifacts(artifact_uri=model)
    return str(next(Path(local_dir).rglob("splink_model.json")))


def describe_model(uri: str) -> dict:
    """Which model a URI names: models:/NAME@ALIAS or models:/NAME/VERSION is resolved to its registry
    version (so a run records the version it used, not just a moving alias); a file path is identified
    by its SHA-256."""
    if not uri.startswith("models:/"):
        return {"model_uri": uri, "model_name": None, "model_version": "file",
                "sha256": hashlib.sha256(Path(uri).read_bytes()).hexdigest()}
    client = MlflowClient()
    rest = uri[len("models:/"):]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
    else:
        name, version = rest.rsplit("/", 1)
        mv = client.get_model_version(name, version)
    return {
        "model_uri": f"models:/{mv.name}/{mv.version}",
        "requested_uri": uri,
        "model_name": mv.name,
        "model_version": str(mv.version),
        "aliases": sorted(getattr(mv, "aliases", []) or []),
        "model_run_id": mv.run_id,
        "source": mv.source,
    }


def table_checksum(df) -> str:
    """An order-independent checksum of a whole table, aggregated in Spark (no row is collected):
    the sum (as decimal, so no overflow) and the xor of xxhash64 over every column, hashed with the
    sorted column names. Equal tables give equal checksums whatever their row order or partitioning."""
    from pyspark.sql import functions as F

    columns = sorted(df.columns)
    row_hash = F.xxhash64(*[F.col(c) for c in columns], F.lit("|"))
    # Nulls leave Spark's hash unchanged, so fold in which columns are null.
    nulls = F.concat_ws("", *[F.when(F.col(c).isNull(), F.lit("1")).otherwise(F.lit("0")) for c in columns])
    row_hash = F.xxhash64(row_hash, nulls)
    agg = df.agg(
        F.sum(row_hash.cast("decimal(38,0)")).alias("s"),
        F.bit_xor(row_hash).alias("x"),
    ).first()
    digest = hashlib.sha256(f"{','.join(columns)}|{agg['s']}|{agg['x']}".encode()).hexdigest()
    return digest[:32]


def output_checksums(spark, zones) -> dict:
    """Raw row counts and checksums of the run's links and person_index (raw counts stay in
    process: Tracker.log_outputs releases them before logging)."""
    result = {}
    for table in OUTPUT_TABLES:
        df = spark.read.format("delta").load(getattr(zones, table))
        result[table] = {"rows": df.count(), "checksum": table_checksum(df)}
    return result


def log_linkage_report(tracker: Tracker, spark, cfg: JobConfig, histogram=None) -> dict:
    """Charts and subgroup metrics after linking (aggregates only, all counts released):

    * charts/completeness.png + report/completeness.json, from the quality_profile table;
    * charts/match_weight_histogram.png + report/match_weight_histogram.json, from `histogram`
      (rows of bin_start, count of *all* scored pairs, e.g. probabilistic.match_weight_histogram)
      or, when not given, from the probabilistic links in the links table;
    * charts/match_rates.png + report/match_rates.json, and metrics match_rate.<subgroup>.<value>
      (rate) with subgroup.<subgroup>.<value>.records / .linked (released counts), for source, sex,
      age band, ethnic group and IMD quintile.
    """
    from pyspark.sql import functions as F

    from tre_link.linkage.probabilistic import match_weight_histogram
    from tre_link.pipeline import Zones, read_standardised

    zones = Zones(cfg.output.linkage_zone)
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # data quality
        profile = spark.read.format("delta").load(zones.quality_profile)
        completeness = charts.released_completeness(profile)
        report["completeness"] = completeness
        tracker.log_artifact(charts.plot_completeness(completeness, tmp / "completeness.png"), "charts")
        tracker.log_json(completeness, "report/completeness.json")
        for row in completeness:
            tracker.log_rates({charts.metric_key("completeness", row["source"], row["field"]): row["completeness"]})

        # match-weight histogram
        if histogram is None:
            links = spark.read.format("delta").load(zones.links).where(F.col("link_method") == "probabilistic")
            histogram = match_weight_histogram(links.select("match_weight")).collect()
            title = "Match weights of probabilistic links (at or above threshold)"
        else:
            title = None
        bins = charts.released_histogram(histogram)
        report["match_weight_histogram"] = [{"bin_start": b, "count": c} for b, c in bins]
        p = cfg.linkage.threshold_match_probability
        threshold_weight = math.log2(p / (1 - p))
        tracker.log_artifact(charts.plot_match_weight_histogram(bins, tmp / "match_weight_histogram.png",
                                                                threshold_weight, title), "charts")
        tracker.log_json(report["match_weight_histogram"], "report/match_weight_histogram.json")

        # match rates per source and subgroup
        person_index = spark.read.format("delta").load(zones.person_index)
        standardised = read_standardised(spark, cfg)
        reference = cfg.projects[0].age_reference_date if cfg.projects else None
        rates = charts.subgroup_match_rates(charts.subgroup_frame(spark, person_index, standardised, reference))
        report["match_rates"] = rates
        tracker.log_artifact(charts.plot_match_rates(rates, tmp / "match_rates.png"), "charts")
        tracker.log_json(rates, "report/match_rates.json")
        for row in rates:
            key = charts.metric_key(row["subgroup"], row["value"])
            tracker.log_rates({f"match_rate.{key}": row["match_rate"]})
            for name in ("records", "linked"):
                if row[name] is None:
                    tracker.set_tags({f"suppressed.subgroup.{key}.{name}": "under 10"})
                else:
                    tracker.log_rates({f"subgroup.{key}.{name}": row[name]})

        # cluster-size distribution: persons per cluster size, sizes of 5 or more pooled
        band = F.when(F.col("cluster_size") >= 5, F.lit("5_or_more")).otherwise(F.col("cluster_size").cast("string"))
        persons = person_index.select("person_id", band.alias("band")).distinct().groupBy("band").count().collect()
        report["cluster_sizes"] = tracker.log_counts(
            {row["band"]: row["count"] for row in persons}, prefix="persons_with_cluster_size."
        )
    return report
