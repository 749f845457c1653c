"""The public Python API: `TreLink`, a small facade over the four parts, in the spirit of Splink's
`Linker`.

    from tre_link import TreLink
    tl = TreLink(spark, "conf/demo.yaml")
    standardised = tl.standardise()          # StandardiseResult: tables written + report
    model = tl.train()                       # TrainResult: the model's Splink JSON
    linked = tl.link()                       # LinkResult: links, person_index + report
    tl.publish("cardio_outcomes")            # PublishResult: the project's research dataset
    tl.refresh()                             # RefreshResult: new extracts linked, person IDs carried forward
    linked.report.released()                 # counts as they may leave the linkage zone

Each stage reads and writes Delta tables where the config says, returns a typed result, and logs
nothing to MLflow; `run()` runs them all as one tracked MLflow run. The CLI and `jobs/` call this.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import SparkSession

import pandas as pd

from tre_link.ingest import quality
from tre_link.ingest.changes import SourceChanges, source_changes
from tre_link.ingest import stage as ingest
from tre_link.ingest.stage import StandardiseResult, read_standardised
from tre_link.link import probabilistic
from tre_link.link import stage as link_stage
from tre_link.link.blocking_report import BlockingReport, blocking_report
from tre_link.link.engine import prepare_records
from tre_link.link.records import unique_id
from tre_link.link.refresh import partition_differences
from tre_link.link.stage import LinkResult, TrainResult
from tre_link.platform import storage
from tre_link.platform.config import JobConfig, load_config
from tre_link.platform import logs
from tre_link.platform.delta_io import read_delta
from tre_link.platform.errors import ConfigError, InputDataError
from tre_link.platform.disclosure import release_count
from tre_link.platform import delta_io
from tre_link.platform.progress import Progress
from tre_link.platform.spark import owner_only_dir, remove_abandoned_scratch, run_checkpoint_dir
from tre_link.platform.zone_lock import hold_zone
from tre_link.publish import stage as publish_stage
from tre_link.publish.reidentify import ReidentifyResult, reidentify
from tre_link.publish.stage import PublishResult
from tre_link.record import document, environment, registry, report, review, tracking
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
    report: report.RunReport | None = None  # the linkage report's released figures


@dataclass(frozen=True)
class RefreshResult:
    run_id: str  # the MLflow run, also the link run recorded with every table it wrote
    parent_run: str | None  # the link run whose person index this refresh carried IDs forward from
    standardise: StandardiseResult
    model_json: str
    link: LinkResult
    published: dict[str, PublishResult]
    # Per source, its changes since the versions the index was built from (`ingest.changes`);
    # empty for a refresh that relinked everything (a zone whose link recorded no source versions).
    changes: dict[str, SourceChanges] = field(default_factory=dict)

    @property
    def incremental(self) -> bool:
        return bool(self.changes)

    def released(self) -> dict:
        """What may leave the linkage zone: records added, updated and deleted per source, events
        by type and per-project opt-outs, disclosure-controlled."""
        linkage = self.link.report.released()
        return {
            "run_id": self.run_id,
            "parent_run": self.parent_run,
            "incremental": self.incremental,
            "generation": self.link.generation,
            "person_index_version": self.link.person_index.version,
            "sources": self.standardise.report.released(),
            "changes": {name: {**c.released(), "method": c.method, "from_version": c.from_version,
                               "to_version": c.to_version} for name, c in self.changes.items()},
            "events": {k.removeprefix("events_"): v for k, v in linkage.items() if k.startswith("events_")},
            "records_indexed": linkage["records_indexed"],
            "persons": linkage["persons"],
            "published": {name: p.report.released() for name, p in self.published.items()},
        }


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
        self._opted_out: publish_stage.OptedOut | None = None

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
            published = publish_stage.publish(self.spark, self.config, project, opted_out=self._opted_out)
        self._opted_out = published.opted_out  # the next project's, when it reads the same tables
        return published

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

    def evaluate_labels(self, person_index: str | None = None) -> review.ClericalEstimates | None:
        """Precision and recall of a person index (the configured one by default) on the clerical
        labels, with 95% intervals, overall and by subgroup; None without labels."""
        path = person_index or self.config.output.person_index_table
        index = read_delta(self.spark, path, table="person_index").df
        return review.estimates_for(self.spark, self.config, index, read_standardised(self.spark, self.config))

    def review_sample(self) -> review.ReviewSample:
        """Draw borderline pairs of the latest linkage for clerical review, into the linkage zone: a
        Delta table, an offline labelling page and a CSV to fill in."""
        return review.sample_for_review(self.spark, self.config, read_standardised(self.spark, self.config))

    def review_ingest(self, labels_csv: str | Path) -> dict:
        """Load reviewers' labels (a filled-in CSV) into `clerical_labels`, refusing unknown pairs
        and bad labels by name."""
        return review.ingest_labels(self.spark, self.config, labels_csv)

    def approve(self, version: str, reason: str, approver: str | None = None) -> dict:
        """Move alias `approved` to a registered version, recording approver, time and reason."""
        return registry.approve(self.config.tracking_uri, self.config.mlflow.registered_model, str(version), reason,
                                approver)

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

    def stage_count(self) -> int:
        """How many stages `run()` runs: standardise, train (unless a model is configured), link,
        one publish per project, evaluate (with a truth table), report."""
        cfg = self.config
        return 3 + (cfg.linkage.model is None) + len(cfg.projects) + bool(cfg.truth_path)

    def run(self, *, run_name: str = "pipeline", progress: Progress | None = None) -> RunResult:
        """Standardise, train (unless a model is configured), link, publish every project and
        evaluate, as one MLflow run; write summary.json under output.root. `progress` counts the
        stages on the terminal (one of its own by default); library warnings raised meanwhile are
        recorded with the run (tag library_warnings, report/library_warnings.json) and the summary."""
        cfg, spark = self.config, self.spark
        own_progress = progress is None
        progress = progress or Progress(spark, self.stage_count())
        configured_model = cfg.linkage.model
        # A registry alias is resolved before any work, so a typo costs nothing.
        model_json = registry.resolve_model(configured_model, cfg.tracking_uri) if configured_model else None
        with self._holding_zone(run_name), tracking.pipeline_run(cfg, self._config_label(), run_name) as tracker, \
                logs.library_warnings() as library_warnings:
            tracker.log_params(tracking.run_params(cfg, self._config_label(), self._config_sha256(), spark.version))
            tracker.log_json(environment.all_installed(), "environment/installed.json")
            with progress.stage("standardise"), tracker.stage("standardise"):
                standardised = self._standardise_tracked(tracker)
            trained = None
            if model_json is None:
                with progress.stage("train"), tracker.stage("train"):
                    trained = self.train()
                    model_json = trained.model_json
                    model = tracker.log_model(model_json, report.ModelParameters.from_json(model_json),
                                              registry.standardise_rules(cfg), pd.DataFrame(registry.INPUT_EXAMPLE))
                    model["trained_in_run"] = True
                    tracker.log_guard_rails(list(trained.untrained_levels), list(trained.floored_levels))
                    tracker.log_charts_html(sorted(
                        str(p) for p in probabilistic.model_chart_folder(model_json).glob("*.html")))
            else:
                model = tracker.log_model_used(configured_model, model_json,
                                               report.ModelParameters.from_json(model_json))
                with tempfile.TemporaryDirectory() as tmp:
                    tracker.log_charts_html(probabilistic.save_parameter_charts(
                        probabilistic.load_model(model_json), tmp))
            with progress.stage("link"), tracker.stage("link"):
                linked = link_stage.link(spark, cfg, model_json, run=tracker.run_id)
                tracker.log_released(linked.report.released())
                tracker.log_params({"threshold_match_probability_used": linked.threshold})
                tracker.log_json(list(linked.expected_curve), "report/expected_threshold_curve.json")
                tracker.log_checksums(report.output_checksums(
                    {"links": linked.links.df, "person_index": linked.person_index.df}))
                linkage_figures = self.linkage_report(linked)
                tracker.log_linkage_report(linkage_figures)
            published = {}
            for project in cfg.projects:
                with progress.stage(f"publish {project.name}"), tracker.stage(f"publish_{project.name}"):
                    published[project.name] = self.publish(project.name)
                    released = published[project.name].report.released()
                    tracker.log_released({k: v for k, v in released.items() if k != "opt_outs_version"},
                                         prefix=f"{project.name}.")
            if cfg.opt_outs and published:
                tracker.log_params({"opt_outs.path": cfg.opt_outs,
                                    "opt_outs.version": next(iter(published.values())).report.opt_outs_version})
            accuracy, truth_recall = None, None
            if cfg.truth_path:
                with progress.stage("evaluate"), tracker.stage("evaluate"):
                    accuracy = self.evaluate()
                    tracker.log_released({k: v for k, v in accuracy.released().items() if isinstance(v, float)})
                    truth_recall = report.truth_recall_by_subgroup(
                        linked.person_index.df, read_delta(spark, cfg.truth_path, table="truth").df,
                        read_standardised(spark, cfg), cfg.report.age_reference_date)
                    tracker.log_released({f"recall.{report.metric_key(r['subgroup'], r['value'])}": r["recall"]
                                          for r in truth_recall})
            clerical = review.estimates_for(spark, cfg, linked.person_index.df, read_standardised(spark, cfg))
            if clerical is not None:
                tracker.log_released(clerical.metrics())
            with progress.stage("report"), tracker.stage("report"):
                run_report = self._run_report(tracker, standardised, linked, published, model, accuracy,
                                              truth_recall, clerical, linkage_figures)
                paths = document.write_report(run_report, cfg.output.report_html_path, cfg.output.report_pdf_path)
                tracker.log_report(list(paths), run_report.as_dict())
                card = document.model_card(run_report, tracker.experiment_id, cfg.mlflow.registered_model)
                tracker.describe_run(card)
                if model.get("trained_in_run"):
                    tracker.describe_model_version(model["model_version"], card)
            summary = {
                "tables": {
                    "sources": {s.name: s.path for s in cfg.sources},
                    "standardised": {name: t.path for name, t in standardised.standardised.items()},
                    "quality_profile": standardised.quality_profile.path,
                    "links": linked.links.path,
                    "person_index": linked.person_index.path,
                    "person_events": linked.person_events.path if linked.person_events else None,
                    "research": {name: p.research.path for name, p in published.items()},
                    "key_events": {name: p.key_events.path for name, p in published.items() if p.key_events},
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
                "clerical": clerical.released() if clerical else None,
                "report": {"html": str(cfg.output.report_html_path), "pdf": str(cfg.output.report_pdf_path)},
                "wall_seconds": tracker.seconds,
                "library_warnings": library_warnings.messages,
                "paths_relative_to": str(Path.cwd().resolve()),  # relative paths above are from here
            }
            tracker.log_library_warnings(library_warnings.messages)
            write_summary(cfg, summary)
            tracker.log_artifact(str(cfg.output.summary_path))
        if own_progress:
            progress.finish()
        return RunResult(run_id=tracker.run_id, standardise=standardised, model_json=model_json, link=linked,
                         published=published, accuracy=accuracy, summary=summary, report=run_report)

    def refresh(self, model: str | None = None) -> RefreshResult:
        """Standardise the sources as they are now, link them with an existing model (never
        training), carrying every person ID forward from the last finished link, and publish every
        project, as one MLflow run that records its parent link run, the source versions and the
        released counts of person events by type. A refresh with nothing new commits nothing to
        person_index or person_events.

        The model: `model` (a Splink JSON path or models:/NAME@ALIAS), else `linkage.model`, else
        the registered model's `approved` version, else the model `train()` saved in the zone."""
        cfg, spark = self.config, self.spark
        chosen = model
        model = self._refresh_model(model)
        model_json = registry.resolve_model(model, cfg.tracking_uri)
        base = link_stage.link_base(spark, cfg)
        used = link_stage.model_sha256(model_json)
        if chosen is None and base.model_sha256 and used != base.model_sha256:
            raise ConfigError(f"refresh: the person index was built with another model than {model}; "
                              "give --model to link with it anyway (its changes to persons become events), or "
                              "the model the index was built with")
        with self._holding_zone("refresh"):
            base = link_stage.link_base(spark, cfg)  # again, now the zone is held
            # Found, and every refusal made, before the MLflow run starts or anything is written.
            changes = self._source_changes(base) if base.person_index is not None and base.sources else {}
            with tracking.pipeline_run(cfg, self._config_label(), "refresh") as tracker:
                parent = base.run if base.person_index is not None else None
                tracker.log_params({**tracking.run_params(cfg, self._config_label(), self._config_sha256(), spark.version),
                                    "parent_run": parent or "", "base_generation": base.generation,
                                    "incremental": bool(changes)})
                if parent:
                    tracker.set_tags({"tre_link.parent_run": parent})
                for name, change in changes.items():
                    tracker.log_params({f"source.{name}.from_version": change.from_version,
                                        f"source.{name}.changes_method": change.method})
                    tracker.log_released(change.released(), prefix=f"{name}.")
                with tracker.stage("standardise"):
                    standardised = self._standardise_tracked(tracker, changes)
                tracker.log_model_used(model, model_json, report.ModelParameters.from_json(model_json))
                with tracker.stage("link"):
                    if changes:
                        dropped = sorted(set(base.sources) - {s.name for s in cfg.sources})
                        if dropped:
                            log.info("refresh: source(s) %s are no longer in the config; their records leave "
                                     "the person index", ", ".join(dropped))
                            tracker.log_params({"sources_dropped": ",".join(dropped)})
                        changed, removed = _changed_record_ids(cfg, changes, base.person_index.df, dropped)
                        sources = {name: {"version": change.to_version,
                                          "standardised_version": standardised.standardised[name].version}
                                   for name, change in changes.items()}
                        linked = link_stage.refresh_link(spark, cfg, model_json, changed=changed, removed=removed,
                                                         sources=sources, run=tracker.run_id)
                    else:
                        log.info("refresh: the last link recorded no source versions, so every record is linked again")
                        linked = link_stage.link(spark, cfg, model_json, run=tracker.run_id)
                    tracker.log_released(linked.report.released())
                    tracker.log_params({"generation": linked.generation,
                                        "person_index.version": linked.person_index.version,
                                        "threshold_match_probability_used": linked.threshold})
                    tracker.log_checksums(report.output_checksums(
                        {"links": linked.links.df, "person_index": linked.person_index.df}))
                published = {}
                for project in cfg.projects:
                    with tracker.stage(f"publish_{project.name}"):
                        published[project.name] = self.publish(project.name)
                        released = published[project.name].report.released()
                        tracker.log_released({k: v for k, v in released.items() if k != "opt_outs_version"},
                                             prefix=f"{project.name}.")
                result = RefreshResult(run_id=tracker.run_id, parent_run=parent, standardise=standardised,
                                       model_json=model_json, link=linked, published=published, changes=changes)
                tracker.log_json(result.released(), "refresh.json")
        return result

    def _source_changes(self, base: link_stage.LinkBase) -> dict[str, SourceChanges]:
        """Each source's changes since the version the last finished link read (`base.sources`),
        up to its pinned or latest version; a source new to the index is all inserted."""
        changes = {}
        for source in self.config.sources:
            to_version = source.version if source.version is not None else delta_io.version_or_none(
                self.spark, source.path)
            if to_version is None:
                raise InputDataError(f"table {source.name}: no Delta table at path {source.path}")
            changes[source.name] = source_changes(self.spark, source.name, source.path, source.columns.record_id,
                                                  base.sources.get(source.name, {}).get("version"), to_version)
        return changes

    def _standardise_tracked(self, tracker: tracking.Tracker,
                             changes: dict[str, SourceChanges] | None = None) -> StandardiseResult:
        """standardise() (or, given `changes`, only the changed records), with the source versions
        read, released counts and quality warnings logged."""
        if changes:
            with self._holding_zone("standardise"):
                standardised = ingest.standardise_changes(self.spark, self.config, changes)
        else:
            standardised = self.standardise()
        for name, source in standardised.report.sources.items():
            tracker.log_params({f"source.{name}.path": source.path, f"source.{name}.version": source.version})
        for name, released in standardised.report.released().items():
            tracker.log_released({"records": released["records"]}, prefix=f"{name}.")
        tracker.log_quality_warnings(standardised.report.warnings)
        return standardised

    def _refresh_model(self, model: str | None) -> str:
        """The model a refresh links with; a refresh never trains one."""
        cfg = self.config
        if model or cfg.linkage.model:
            return model or cfg.linkage.model
        if registry.approved_model(cfg.tracking_uri, cfg.mlflow.registered_model) is not None:
            return f"models:/{cfg.mlflow.registered_model}@{registry.APPROVED_ALIAS}"
        if storage.exists(self.spark, cfg.output.model_json):
            return cfg.output.model_json
        raise ConfigError("refresh links with an existing model and never trains one: give --model, set "
                          "linkage.model, approve a registered version, or run `tre-link train` first")

    def _run_report(self, tracker: tracking.Tracker, standardised: StandardiseResult, linked: LinkResult,
                    published: dict[str, PublishResult], model: dict, accuracy: Accuracy | None, truth_recall: list[dict] | None,
                    clerical: review.ClericalEstimates | None, figures: report.LinkageReport) -> report.RunReport:
        """The linkage report's figures, all released, with the approved model's for comparison."""
        cfg = self.config
        parameters = report.ModelParameters.from_json(linked.model_json)
        approved = registry.approved_model(cfg.tracking_uri, cfg.mlflow.registered_model)
        compared = None
        if approved is not None and approved["model_run_id"] != tracker.run_id:
            before = report.ModelParameters.from_json(registry.resolve_model(approved["model_uri"], cfg.tracking_uri))
            compared = {
                "model_uri": approved["model_uri"], "run_id": approved["model_run_id"],
                "weights": report.weight_changes(parameters, before),
                "metrics": report.metric_changes(registry.run_metrics(cfg.tracking_uri, tracker.run_id),
                                                 registry.run_metrics(cfg.tracking_uri, approved["model_run_id"])),
            }
        if cfg.linkage.threshold_match_probability == "auto":
            threshold = (f"It was chosen by the run ({self._config_label()}, linkage.threshold_match_probability: "
                         "auto): the best expected F1 from the model's own match probabilities above the configured "
                         "precision floor.")
        else:
            threshold = (f"It is set in the configuration ({self._config_label()}, "
                         "linkage.threshold_match_probability), reviewed with the model and the clerical estimates.")
        if clerical is not None:
            released = clerical.released()
            threshold += (f" At this threshold the clerical labels estimate precision {released['precision']['value']} "
                          f"and recall {released['recall']['value']}.")
        duplicates = quality.duplicate_profile(read_standardised(self.spark, cfg))
        return report.RunReport(
            run_id=tracker.run_id, config_file=self._config_label(), sources=standardised.report.released(),
            linkage=linked.report.released(),
            published={name: p.report.released() for name, p in published.items()}, accuracy=accuracy.released() if accuracy else None,
            clerical=clerical.released() if clerical else None, quality=figures,
            duplicates=report.released_duplicates(duplicates), truth_recall=truth_recall, parameters=parameters,
            model=model, approved=compared, threshold_match_probability=linked.threshold,
            threshold_source=threshold,
        )

    def reproduce(self, run_id: str) -> dict:
        """Rerun standardise and link for a logged run, every source pinned by Delta time travel to
        the version the run read and with the run's own model, into the linkage zone's
        reproduce/RUN_ID; compare links and person_index with the logged checksums. `identical`
        is True only when both agree. A refresh run is reproduced as a full link of the sources it
        read, at its threshold, and compared by partition with the person index it committed
        (time travel in the zone): its person IDs, inherited from earlier links, are not reissued."""
        cfg = self.config
        run = LoggedRun.load(run_id, cfg.tracking_uri)
        root = f"{cfg.output.linkage_zone.rstrip('/')}/reproduce/{run_id}"
        pinned = pinned_config(cfg, run.params, f"{root}/linkage")
        model_json = run.model_json(cfg.tracking_uri, Path(root) / "model")
        package_differences = environment.differences_from_run(run.params)
        if package_differences:
            log.warning("reproduce: the installed software differs from run %s's, so outputs may differ: %s",
                        run_id, "; ".join(package_differences))
        log.info("reproduce: run %s with sources pinned %s and its logged model", run_id,
                 {s.name: s.version for s in pinned.sources})
        refresh = run.params.get("incremental") == "True"
        if refresh and "threshold_match_probability_used" in run.params:
            # The threshold the refresh linked at (its base link's), not the config's.
            threshold = float(run.params["threshold_match_probability_used"])
            pinned = pinned.model_copy(update={"linkage": pinned.linkage.model_copy(
                update={"threshold_match_probability": threshold})})
        with self._holding_zone(f"reproduce {run_id}"):
            ingest.standardise_sources(self.spark, pinned)
            linked = link_stage.link(self.spark, pinned, model_json)
        if refresh:
            # A refresh's person IDs come from every link before it, which a rerun from an empty
            # index cannot issue again: what it can reproduce is the partition into persons.
            logged = read_delta(self.spark, cfg.output.person_index_table, int(run.params["person_index.version"]),
                                table="person_index").df
            differences = partition_differences(linked.person_index.df, logged)
            tables = {"person_index_partition": {
                "compared": "the partition of records into persons (person IDs of a refresh are inherited "
                            "from earlier links and are not reproduced)",
                "records_in_different_company": release_count(differences),
                "identical": differences == 0}}
        else:
            tables = compare_with_logged(run, report.output_checksums(
                {"links": linked.links.df, "person_index": linked.person_index.df}))
        return {
            "run_id": run_id,
            "refresh": refresh,
            "identical": all(t["identical"] for t in tables.values()),
            "config_file": self._config_label(),
            "config_sha256_matches": self._config_sha256() == run.params.get("config_sha256"),
            "source_versions": {s.name: s.version for s in pinned.sources},
            "model_json": model_json,
            "output_linkage_zone": pinned.output.linkage_zone,
            "opt_outs_version": pinned.opt_outs_version,
            "tables": tables,
            "package_differences": package_differences,
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


def _changed_record_ids(cfg: JobConfig, changes: dict[str, SourceChanges], previous_index=None,
                        dropped=()):
    """(changed, removed) unique_ids over every source: inserted or updated; deleted or updated, and
    every record `previous_index` holds of a source `dropped` from the config."""
    from functools import reduce

    from pyspark.sql import functions as F

    def ids(frames):
        return reduce(lambda a, b: a.unionByName(b), frames).distinct()

    changed, removed = [], []
    for source in cfg.sources:
        change = changes[source.name]

        def uid(df):
            return df.select(unique_id(F.lit(source.name), F.col(source.columns.record_id).cast("string"))
                             .alias("unique_id"))

        changed += [uid(change.inserted), uid(change.updated)]
        removed += [uid(change.updated), uid(change.deleted)]
    if dropped:
        removed.append(previous_index.where(F.col("source").isin(*dropped))
                       .select(unique_id(F.col("source"), F.col("record_id")).alias("unique_id")))
    return ids(changed), ids(removed)


def write_summary(cfg: JobConfig, summary: dict) -> None:
    """Merge `summary` into output.root/summary.json (the demo adds its own keys)."""
    path = cfg.output.summary_path
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing.update(summary)
    path.write_text(json.dumps(existing, indent=2, sort_keys=True, default=str))


def read_summary(path: str | Path | None = None) -> dict:
    """A run's summary.json with every path in it absolute, wherever the caller runs (a notebook's
    kernel starts in notebooks/). `path`, else $TRE_LINK_SUMMARY, else out/demo/summary.json in the
    working directory or the nearest folder above it."""
    given = path or os.environ.get("TRE_LINK_SUMMARY")
    if given:
        found, base = Path(given).resolve(), Path.cwd()
    else:
        here = Path.cwd().resolve()
        folder = next((f for f in (here, *here.parents) if (f / "out" / "demo" / "summary.json").exists()), None)
        if folder is None:
            raise FileNotFoundError(f"no out/demo/summary.json in {here} or above: run `make demo`, "
                                    "or set TRE_LINK_SUMMARY to a run's summary.json")
        found, base = folder / "out" / "demo" / "summary.json", folder
    summary = json.loads(found.read_text())
    base = Path(summary.get("paths_relative_to") or base)

    def absolute(value):
        if isinstance(value, dict):
            return {k: absolute(v) for k, v in value.items()}
        return str(base / value) if isinstance(value, str) and not Path(value).is_absolute() else value

    for key in ("tables", "model_json", "report", "synthetic"):
        if key in summary:
            summary[key] = absolute(summary[key])
    return summary


def format_summary(summary: dict) -> str:
    """The short human summary printed at the end of a run (released figures only)."""

    def show(value) -> str:
        return "suppressed (<10)" if value is None else f"{value:,}" if isinstance(value, int) else str(value)

    lines = ["", "tre-link run summary (counts disclosure-controlled: <10 suppressed, others rounded to 5)"]
    for name, info in summary["sources"].items():
        lines.append(f"  source {name:<10} version {info['version']}: {show(info['records'])} records")
    for warning in summary.get("quality_warnings", []):
        lines.append(f"  data quality: {warning}")
    for warning in summary.get("library_warnings", []):
        lines.append(f"  warning: {warning}")
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
