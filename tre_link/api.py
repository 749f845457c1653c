"""The public Python API: `TreLink`, a small facade over the four parts, in the spirit of Splink's
`Linker`.

    from tre_link import TreLink
    tl = TreLink(spark, "conf/demo.yaml")
    standardised = tl.standardise()          # StandardiseResult: tables written + report
    model = tl.train()                       # TrainResult: the model's Splink JSON
    linked = tl.link()                       # LinkResult: links, person_index + report
    tl.publish("cardio_outcomes")            # PublishResult: the project's research dataset
    linked.report.released()                 # counts as they may leave the linkage zone

Each stage reads and writes Delta tables where the config says, returns a typed result, and logs
nothing to MLflow; `run()` runs them all as one tracked MLflow run. The CLI and `jobs/` call this.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

from tre_link.ingest import stage as ingest
from tre_link.ingest.stage import StandardiseResult, read_standardised
from tre_link.link import stage as link_stage
from tre_link.link.blocking_report import BlockingReport, blocking_report
from tre_link.link.engine import prepare_records
from tre_link.link.stage import LinkResult, TrainResult
from tre_link.platform import storage
from tre_link.platform.config import JobConfig, load_config
from tre_link.platform.delta_io import read_delta
from tre_link.platform.spark import owner_only_dir, remove_abandoned_scratch, run_checkpoint_dir
from tre_link.platform.zone_lock import hold_zone
from tre_link.publish import stage as publish_stage
from tre_link.publish.reidentify import ReidentifyResult, reidentify
from tre_link.publish.stage import PublishResult
from tre_link.record import registry, report, tracking
from tre_link.record.evaluate import Accuracy, evaluate_person_index
from tre_link.record.reproduce import LoggedRun, compare_with_logged, pinned_config

log = logging.getLogger("tre_link")


@dataclass(frozen=True)
class RunResult:
    run_id: str  # the MLflow run
    standardise: StandardiseResult
    model_json: str
    link: LinkResult
    published: dict[str, PublishResult]
    accuracy: Accuracy | None
    summary: dict  # released figures and table paths: what summary.json holds


class TreLink:
    """Link the sources one config names, stage by stage or all at once.

    `config` is a JobConfig or the path of its YAML (`load_config`)."""

    def __init__(self, spark: SparkSession, config: JobConfig | str | Path, *, config_path: str | Path | None = None):
        self.spark = spark
        if isinstance(config, (str, Path)):
            config_path, config = config, load_config(config)
        self.config: JobConfig = config
        self.config_path = str(config_path) if config_path is not None else None
        self._holding = False

    # ------------------------------------------------------------------------------------ stages

    def standardise(self) -> StandardiseResult:
        """Every source standardised, quality profiled and checked against its floors, into the linkage zone."""
        with self._holding_zone("standardise"):
            return ingest.standardise_sources(self.spark, self.config)

    def train(self) -> TrainResult:
        """A new model trained on the standardised records, saved in the linkage zone."""
        with self._holding_zone("train"):
            return link_stage.train(self.spark, self.config)

    def link(self, model: str | None = None, *, run: str | None = None) -> LinkResult:
        """Links and person index from the standardised records. `model` is a Splink JSON path or
        models:/NAME@ALIAS; by default `linkage.model`, else the model `train()` saved. `run` is
        recorded with both tables (a new id by default)."""
        model = model or self.config.linkage.model
        model_json = registry.resolve_model(model, self.config.tracking_uri) if model else None
        with self._holding_zone("link"):
            return link_stage.link(self.spark, self.config, model_json, run=run)

    def publish(self, project: str) -> PublishResult:
        """One project's research dataset, under its own key, without any person who opted out."""
        with self._holding_zone(f"publish {project}"):
            return publish_stage.publish(self.spark, self.config, project)

    def reidentify(self, project: str, keys_file: str, reason: str, *,
                   requested_by: str | None = None) -> ReidentifyResult:
        """Map research person keys of `project` back to source record ids, into the linkage zone
        only, with an entry in the append-only audit table (who, when, why, how many)."""
        with self._holding_zone(f"reidentify {project}"):
            return reidentify(self.spark, self.config, project, keys_file, reason, requested_by)

    def evaluate(self) -> Accuracy | None:
        """The person index against the configured truth table (None without one)."""
        if not self.config.truth_path:
            return None
        person_index = read_delta(self.spark, self.config.output.person_index_table, table="person_index").df
        truth = read_delta(self.spark, self.config.truth_path, table="truth").df
        return evaluate_person_index(person_index, truth)

    def blocking_report(self) -> BlockingReport:
        """What each predict rule adds to the pairs scored, cumulatively, with its largest blocks;
        with the configured truth table, the share of true pairs the rules reach (with the
        deterministic pass). Reads the standardised records; counts only."""
        truth = read_delta(self.spark, self.config.truth_path, table="truth").df if self.config.truth_path else None
        prepared = prepare_records(read_standardised(self.spark, self.config))
        return blocking_report(prepared, self.config.linkage, truth)

    def linkage_report(self, linked: LinkResult) -> report.LinkageReport:
        """The released figures of a linkage: data quality, match weights, subgroup match rates."""
        cfg = self.config
        return report.linkage_report(
            quality_profile=read_delta(self.spark, cfg.output.quality_profile_table, table="quality_profile").df,
            person_index=linked.person_index.df,
            standardised=read_standardised(self.spark, cfg),
            released_histogram=linked.report.released_histogram(),
            threshold_match_probability=linked.threshold,
            age_reference_date=cfg.report.age_reference_date,
        )

    # ------------------------------------------------------------------------------------ whole runs

    def run(self, *, run_name: str = "pipeline") -> RunResult:
        """Standardise, train (unless a model is configured), link, publish every project and
        evaluate, as one MLflow run; write summary.json under output.root."""
        cfg, spark = self.config, self.spark
        configured_model = cfg.linkage.model
        # A registry alias is resolved before any work, so a typo costs nothing.
        model_json = registry.resolve_model(configured_model, cfg.tracking_uri) if configured_model else None
        with self._holding_zone(run_name), tracking.pipeline_run(cfg, self._config_label(), run_name) as tracker:
            tracker.log_params(tracking.run_params(cfg, self._config_label(), self._config_sha256(), spark.version))
            with tracker.stage("standardise"):
                standardised = self.standardise()
                for name, source in standardised.report.sources.items():
                    tracker.log_params({f"source.{name}.path": source.path, f"source.{name}.version": source.version})
                for name, released in standardised.report.released().items():
                    tracker.log_released({"records": released["records"]}, prefix=f"{name}.")
                tracker.log_quality_warnings(standardised.report.warnings)
            trained = None
            if model_json is None:
                with tracker.stage("train"):
                    trained = self.train()
                    model_json = trained.model_json
                    tracker.log_model(model_json, report.ModelParameters.from_json(model_json))
                    tracker.log_guard_rails(list(trained.untrained_levels), list(trained.floored_levels))
            else:
                tracker.log_model_used(configured_model, model_json, report.ModelParameters.from_json(model_json))
            with tracker.stage("link"):
                linked = link_stage.link(spark, cfg, model_json, run=tracker.run_id)
                tracker.log_released(linked.report.released())
                tracker.log_params({"threshold_match_probability_used": linked.threshold})
                tracker.log_json(list(linked.expected_curve), "report/expected_threshold_curve.json")
                tracker.log_checksums(report.output_checksums(
                    {"links": linked.links.df, "person_index": linked.person_index.df}))
                tracker.log_linkage_report(self.linkage_report(linked))
            published = {}
            for project in cfg.projects:
                with tracker.stage(f"publish_{project.name}"):
                    published[project.name] = self.publish(project.name)
                    released = published[project.name].report.released()
                    tracker.log_released({k: v for k, v in released.items() if k != "opt_outs_version"},
                                         prefix=f"{project.name}.")
            if cfg.opt_outs and published:
                tracker.log_params({"opt_outs.path": cfg.opt_outs,
                                    "opt_outs.version": next(iter(published.values())).report.opt_outs_version})
            accuracy = None
            if cfg.truth_path:
                with tracker.stage("evaluate"):
                    accuracy = self.evaluate()
                    tracker.log_released({k: v for k, v in accuracy.released().items() if isinstance(v, float)})
            summary = {
                "tables": {
                    "sources": {s.name: s.path for s in cfg.sources},
                    "standardised": {name: t.path for name, t in standardised.standardised.items()},
                    "quality_profile": standardised.quality_profile.path,
                    "links": linked.links.path,
                    "person_index": linked.person_index.path,
                    "research": {name: p.research.path for name, p in published.items()},
                },
                "model_json": model_json,
                "model_guard_rails": {"untrained_levels": list(trained.untrained_levels),
                                      "floored_levels": list(trained.floored_levels)} if trained else None,
                "mlflow": {"tracking_uri": cfg.tracking_uri, "experiment": cfg.mlflow.experiment,
                           "run_id": tracker.run_id},
                "sources": standardised.report.released(),
                "quality_warnings": standardised.report.warnings,
                "linkage": linked.report.released(),
                "threshold_match_probability": linked.threshold,
                "published": {name: p.report.released() for name, p in published.items()},
                "accuracy": accuracy.released() if accuracy else None,
                "wall_seconds": tracker.seconds,
            }
            write_summary(cfg, summary)
            tracker.log_artifact(str(cfg.output.summary_path))
        return RunResult(run_id=tracker.run_id, standardise=standardised, model_json=model_json, link=linked,
                         published=published, accuracy=accuracy, summary=summary)

    def reproduce(self, run_id: str) -> dict:
        """Rerun standardise and link for a logged run, every source pinned by Delta time travel to
        the version the run read and with the run's own model, into the linkage zone's
        reproduce/RUN_ID; compare links and person_index with the logged checksums. `identical`
        is True only when both agree."""
        cfg = self.config
        run = LoggedRun.load(run_id, cfg.tracking_uri)
        root = f"{cfg.output.linkage_zone.rstrip('/')}/reproduce/{run_id}"
        pinned = pinned_config(cfg, run.params, f"{root}/linkage")
        model_json = run.model_json(cfg.tracking_uri, Path(root) / "model")
        log.info("reproduce: run %s with sources pinned %s and its logged model", run_id,
                 {s.name: s.version for s in pinned.sources})
        with self._holding_zone(f"reproduce {run_id}"):
            ingest.standardise_sources(self.spark, pinned)
            linked = link_stage.link(self.spark, pinned, model_json)
        tables = compare_with_logged(run, report.output_checksums(
            {"links": linked.links.df, "person_index": linked.person_index.df}))
        return {
            "run_id": run_id,
            "identical": all(t["identical"] for t in tables.values()),
            "config_file": self._config_label(),
            "config_sha256_matches": self._config_sha256() == run.params.get("config_sha256"),
            "source_versions": {s.name: s.version for s in pinned.sources},
            "model_json": model_json,
            "output_linkage_zone": pinned.output.linkage_zone,
            "opt_outs_version": pinned.opt_outs_version,
            "tables": tables,
        }

    @contextmanager
    def _holding_zone(self, purpose: str) -> Iterator[None]:
        """Hold the linkage zone for the work inside (re-entrant within this object): one writer at
        a time, the zone readable by its owner only, a checkpoint directory of this run's own that
        is removed when it ends, and the MLflow runs a crashed run left RUNNING marked FAILED."""
        if self._holding:
            yield
            return
        zone, local_dir = self.config.output.linkage_zone, self.config.spark.local_dir
        if storage.local_path(zone) is not None:
            owner_only_dir(zone)
        if local_dir and Path(local_dir).is_dir():
            remove_abandoned_scratch(local_dir)  # a killed run's shuffle files
        with hold_zone(self.spark, zone, purpose), run_checkpoint_dir(self.spark, self.config.spark.checkpoint_dir):
            tracking.fail_abandoned_runs(self.config)
            self._holding = True
            try:
                yield
            finally:
                self._holding = False

    # ------------------------------------------------------------------------------------ helpers

    def _config_label(self) -> str:
        return self.config_path or "(config given in Python)"

    def _config_sha256(self) -> str:
        """Of the config file as written, or of the config itself when it was given in Python."""
        if self.config_path:
            return tracking.config_hash(self.config_path)
        return hashlib.sha256(self.config.model_dump_json().encode()).hexdigest()


def write_summary(cfg: JobConfig, summary: dict) -> None:
    """Merge `summary` into output.root/summary.json (the demo adds its own keys)."""
    path = cfg.output.summary_path
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing.update(summary)
    path.write_text(json.dumps(existing, indent=2, sort_keys=True, default=str))


def format_summary(summary: dict) -> str:
    """The short human summary printed at the end of a run (released figures only)."""

    def show(value) -> str:
        return "suppressed (<10)" if value is None else f"{value:,}" if isinstance(value, int) else str(value)

    lines = ["", "tre-link run summary (counts disclosure-controlled: <10 suppressed, others rounded to 5)"]
    for name, info in summary["sources"].items():
        lines.append(f"  source {name:<10} version {info['version']}: {show(info['records'])} records")
    for warning in summary.get("quality_warnings", []):
        lines.append(f"  data quality: {warning}")
    link = summary["linkage"]
    lines.append(f"  links: {show(link['links_deterministic'])} deterministic, "
                 f"{show(link['links_probabilistic'])} probabilistic; "
                 f"{show(link['persons'])} persons from {show(link['records_indexed'])} records")
    if summary.get("accuracy"):
        acc = summary["accuracy"]
        lines.append("  accuracy against truth: pairwise precision {:.4f}, recall {:.4f}, F1 {:.4f}; "
                     "person precision {:.4f}".format(acc["pairwise_precision"], acc["pairwise_recall"],
                                                      acc["pairwise_f1"], acc["person_precision"]))
    tables = summary["tables"]
    lines.append(f"  linkage zone: {tables['person_index'].rsplit('/', 1)[0]}")
    for project, path in tables["research"].items():
        opted = summary.get("published", {}).get(project, {})
        lines.append(f"  research dataset {project}: {path} (opted out: {show(opted.get('persons_opted_out'))} "
                     f"persons, {show(opted.get('records_opted_out'))} records)")
    lines.append(f"  MLflow: run {summary['mlflow']['run_id']} at {summary['mlflow']['tracking_uri']}")
    return "\n".join(lines)
