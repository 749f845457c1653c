"""The pipeline stages, each reading and writing Delta tables in the zones the config names.

synth -> standardise (+ quality profile, opt-outs) -> train -> link -> publish, and `run_all`
for the lot. Each stage returns a plain dict for the run summary; nothing record-level goes in it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from tre_link import linkage, quality, standardise, tracking
from tre_link.config import JobConfig
from tre_link.delta_io import read_delta, write_delta
from tre_link.disclosure import release_count, release_rate
from tre_link.errors import ConfigError
from tre_link.evaluate import Accuracy, evaluate_person_index
from tre_link.hmac_sql import hmac_sha256_hex, with_keyed_columns
from tre_link.linkage.probabilistic import match_weight_histogram
from tre_link.optout import remove_opt_outs
from tre_link.publish import publish_project
from tre_link.secrets import load_key

log = logging.getLogger("tre_link")


@dataclass(frozen=True)
class Zones:
    """Where each linkage-zone table lives."""

    root: str

    def standardised(self, source: str) -> str:
        return f"{self.root}/standardised/{source}"

    @property
    def quality_profile(self) -> str:
        return f"{self.root}/quality_profile"

    @property
    def links(self) -> str:
        return f"{self.root}/links"

    @property
    def person_index(self) -> str:
        return f"{self.root}/person_index"

    @property
    def model_json(self) -> str:
        return f"{self.root}/model/splink_model.json"


def _linkage_key(cfg: JobConfig) -> bytes | None:
    """The shared linkage key, needed only when any NHS number arrives or is linked as a token."""
    needs_key = cfg.linkage.nhs_number_form == "token" or any(s.nhs_number_form == "token" for s in cfg.sources)
    if not needs_key:
        return None
    if cfg.linkage_key is None:
        raise ConfigError("linkage_key: required when any source or the linkage uses nhs_number_form: token")
    return load_key(cfg.linkage_key, purpose="linkage")


def _tokenise(records: DataFrame, key: bytes) -> DataFrame:
    """Bring plain NHS numbers into token form so they join with sources that arrived tokenised."""
    plain = F.col("nhs_number_status") == "valid"
    return with_keyed_columns(
        records,
        key,
        {
            "nhs_number": F.when(plain, hmac_sha256_hex(F.col("nhs_number"))).otherwise(F.col("nhs_number")),
            "nhs_number_status": F.when(plain, F.lit("token")).otherwise(F.col("nhs_number_status")),
            "nhs_number_digits": F.lit(None).cast("string"),
        },
    )


def run_standardise(spark: SparkSession, cfg: JobConfig) -> dict:
    """Read every source at its pinned (or latest) version, standardise, drop opt-outs, profile."""
    zones = Zones(cfg.output.linkage_zone)
    key = _linkage_key(cfg)
    report: dict = {"sources": {}}
    opt_outs = None
    if cfg.opt_outs:
        opt_outs_table = read_delta(spark, cfg.opt_outs, cfg.opt_outs_version, table="opt_outs")
        opt_outs = opt_outs_table.df
        report["opt_outs"] = {"path": cfg.opt_outs, "version": opt_outs_table.version}
    profiles = []
    for source in cfg.sources:
        raw = read_delta(spark, source.path, source.version, table=source.name)
        standardised = standardise.standardise_source(raw.df, source)
        # Checked before anything is written; the standardisation itself runs once, in the write,
        # and the quality profile is counted as the rows go by.
        before = standardise.check_standardised(
            standardised, source.name, record_ids=standardise.source_record_ids(raw.df, source)
        )["rows"]
        records = standardised
        if opt_outs is not None:
            records = remove_opt_outs(records, opt_outs, linkage_key=key if source.nhs_number_form == "token" else None)
        if cfg.linkage.nhs_number_form == "token" and source.nhs_number_form == "plain":
            records = _tokenise(records, key)
        profile = Observation(f"quality_profile_{source.name}")
        write_delta(records.observe(profile, *quality.profile_counts()), zones.standardised(source.name))
        counts = profile.get
        profiles.append(quality.profile_from_counts(spark, source.name, counts))
        report["sources"][source.name] = {
            "path": source.path,
            "version": raw.version,
            "records": before,
            "opted_out": before - counts["rows"],
        }
        log.info("standardise: source %s at version %d done", source.name, raw.version)
    write_delta(linkage.union_sources(profiles), zones.quality_profile)
    return report


def read_standardised(spark: SparkSession, cfg: JobConfig) -> DataFrame:
    """Every source's standardised table, as one frame."""
    zones = Zones(cfg.output.linkage_zone)
    tables = [read_delta(spark, zones.standardised(s.name), table=f"standardised/{s.name}").df for s in cfg.sources]
    return linkage.union_sources(tables)


def run_train(spark: SparkSession, cfg: JobConfig) -> dict:
    zones = Zones(cfg.output.linkage_zone)
    # Training reads no deterministic key: only the records with their unique_id.
    records = linkage.with_unique_id(read_standardised(spark, cfg))
    path = linkage.train_model(spark, records, cfg.linkage, cfg.seed, zones.model_json)
    return {"model_json": path}


def run_link(spark: SparkSession, cfg: JobConfig, model_json: str | None = None) -> dict:
    zones = Zones(cfg.output.linkage_zone)
    prepared = linkage.prepare_records(read_standardised(spark, cfg))
    with linkage.link_records(spark, prepared, cfg.linkage, model_json or zones.model_json) as outputs:
        write_delta(outputs.links, zones.links)
        write_delta(outputs.person_index, zones.person_index)
        # The scored pairs are materialised, so this aggregate does not score them again.
        histogram = [(r["bin_start"], r["count"]) for r in match_weight_histogram(outputs.scored_pairs).collect()]
        scored_pairs = outputs.scored_pairs.count()
    links = spark.read.format("delta").load(zones.links)
    person_index = spark.read.format("delta").load(zones.person_index)
    by_method = {row["link_method"]: row["count"] for row in links.groupBy("link_method").count().collect()}
    return {
        "estimated_comparisons": outputs.estimated_comparisons,
        "scored_pairs": scored_pairs,
        "links_deterministic": by_method.get("deterministic", 0),
        "links_probabilistic": by_method.get("probabilistic", 0),
        "nhs_dob_conflicts": outputs.nhs_dob_conflicts,
        "oversized_blocks_dropped": sum(d.blocks for d in outputs.dropped_blocks),
        "records_in_dropped_blocks": sum(d.records for d in outputs.dropped_blocks),
        "records_indexed": person_index.count(),
        "persons": person_index.select("person_id").distinct().count(),
        "match_weight_histogram": histogram,
    }


def run_publish(spark: SparkSession, cfg: JobConfig, project_name: str) -> str:
    """Write one project's research dataset under its own key."""
    project = cfg.project(project_name)
    project_key = load_key(project.key, purpose=f"project {project.name}")
    zones = Zones(cfg.output.linkage_zone)
    person_index = read_delta(spark, zones.person_index, table="person_index").df
    return publish_project(
        spark,
        person_index=person_index,
        standardised=read_standardised(spark, cfg),
        project=project,
        project_key=project_key,
        output=cfg.output,
    )


def run_evaluate(spark: SparkSession, cfg: JobConfig) -> Accuracy | None:
    if not cfg.truth_path:
        return None
    zones = Zones(cfg.output.linkage_zone)
    person_index = read_delta(spark, zones.person_index, table="person_index").df
    truth = read_delta(spark, cfg.truth_path, table="truth").df
    return evaluate_person_index(person_index, truth)


def released_accuracy(accuracy: Accuracy) -> dict:
    """Accuracy as it may be released: counts disclosure-controlled, rates from the released counts."""
    counts = {
        name: release_count(getattr(accuracy, name))
        for name in ("true_pairs", "predicted_pairs", "true_positive_pairs", "clusters", "true_persons",
                     "pure_clusters", "complete_persons")
    }
    precision = release_rate(counts["true_positive_pairs"], counts["predicted_pairs"])
    recall = release_rate(counts["true_positive_pairs"], counts["true_pairs"])
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return {
        **counts,
        "pairwise_precision": precision,
        "pairwise_recall": recall,
        "pairwise_f1": f1,
        "person_precision": release_rate(counts["pure_clusters"], counts["clusters"]),
        "person_recall": release_rate(counts["complete_persons"], counts["true_persons"]),
    }


def run_all(spark: SparkSession, cfg: JobConfig, config_path: str, *, run_name: str = "pipeline") -> dict:
    """Standardise, train (unless a model is configured), link, publish every project and evaluate,
    as one MLflow run; write and return the run summary."""
    zones = Zones(cfg.output.linkage_zone)
    with tracking.pipeline_run(cfg, config_path, run_name) as tracker:
        tracker.log_params(tracking.run_params(spark, cfg, config_path))
        with tracker.stage("standardise"):
            standardised = run_standardise(spark, cfg)
            for name, info in standardised["sources"].items():
                tracker.log_params({f"source.{name}.path": info["path"], f"source.{name}.version": info["version"]})
                tracker.log_counts({"records": info["records"], "opted_out": info["opted_out"]}, prefix=f"{name}.")
            if "opt_outs" in standardised:
                tracker.log_params({"opt_outs.path": cfg.opt_outs, "opt_outs.version": standardised["opt_outs"]["version"]})
        model_json = tracking.resolve_model(cfg.linkage.model) if cfg.linkage.model else None
        if model_json is None:
            with tracker.stage("train"):
                model_json = run_train(spark, cfg)["model_json"]
                tracker.log_model(cfg, model_json)
        else:
            tracker.log_model_used(cfg.linkage.model, model_json)
        with tracker.stage("link"):
            link_report = run_link(spark, cfg, model_json)
            histogram = link_report.pop("match_weight_histogram")
            released_links = tracker.log_counts(link_report)
            tracker.log_outputs(spark, zones)
            tracking.log_linkage_report(tracker, spark, cfg, histogram=histogram)
        research = {}
        for project in cfg.projects:
            with tracker.stage(f"publish_{project.name}"):
                research[project.name] = run_publish(spark, cfg, project.name)
        accuracy = None
        if cfg.truth_path:
            with tracker.stage("evaluate"):
                accuracy = released_accuracy(run_evaluate(spark, cfg))
                tracker.log_rates({k: v for k, v in accuracy.items() if isinstance(v, float)})
        summary = {
            "tables": {
                "sources": {s.name: s.path for s in cfg.sources},
                "standardised": {s.name: zones.standardised(s.name) for s in cfg.sources},
                "quality_profile": zones.quality_profile,
                "links": zones.links,
                "person_index": zones.person_index,
                "research": research,
            },
            "model_json": model_json,
            "mlflow": {"tracking_uri": cfg.tracking_uri, "experiment": cfg.mlflow.experiment, "run_id": tracker.run_id},
            "sources": {
                name: {"version": info["version"], "records": release_count(info["records"]),
                       "opted_out": release_count(info["opted_out"])}
                for name, info in standardised["sources"].items()
            },
            "linkage": released_links,
            "accuracy": accuracy,
            "wall_seconds": tracker.seconds,
        }
        write_summary(cfg, summary)
        tracker.log_artifact(str(cfg.output.summary_path))
    return summary


def write_summary(cfg: JobConfig, summary: dict) -> None:
    """Merge this stage's keys into output.root/summary.json (other stages add their own)."""
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
        lines.append(f"  source {name:<10} version {info['version']}: {show(info['records'])} records, "
                     f"{show(info['opted_out'])} opted out")
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
        lines.append(f"  research dataset {project}: {path}")
    lines.append(f"  MLflow: run {summary['mlflow']['run_id']} at {summary['mlflow']['tracking_uri']}")
    return "\n".join(lines)
