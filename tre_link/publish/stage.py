"""The publish stage: one project's research dataset from the linkage zone's person index, with
every person who opted out left out, under the project's own key."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tre_link.ingest.optout import opted_out_persons
from tre_link.ingest.stage import linkage_key, read_standardised
from tre_link.link.stage import linked_tables
from tre_link.platform.config import JobConfig, ProjectConfig
from tre_link.platform.delta_io import VersionedTable, commit_metadata, read_delta, version_or_none, write_table
from tre_link.platform.disclosure import release_counts
from tre_link.platform.errors import InputDataError, SecretKeyError
from tre_link.platform.secrets import load_key, require_distinct
from tre_link.publish.projects import build_key_events, key_events_path, publish_project

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishReport:
    opt_outs_version: int | None  # the opt-out list's Delta version applied
    persons_opted_out: int  # raw counts: `released()` is what may leave the linkage zone
    records_opted_out: int

    def released(self) -> dict:
        return {"opt_outs_version": self.opt_outs_version,
                **release_counts({"persons_opted_out": self.persons_opted_out,
                                  "records_opted_out": self.records_opted_out})}


@dataclass(frozen=True)
class OptedOut:
    """The persons left out of every project's dataset: found once for a person index, the
    standardised records and an opt-out list, and reused by each project published from them."""
    basis: tuple  # the Delta versions it was found from
    persons: DataFrame | None  # person_id, materialised; None without an opt-out list
    report: PublishReport


@dataclass(frozen=True)
class PublishResult:
    project: str
    research: VersionedTable  # the project's dataset in the research zone
    report: PublishReport
    key_events: VersionedTable | None = None  # how the project's person keys changed (research zone)
    opted_out: OptedOut | None = None  # to pass to the next project's `publish`


def project_key(cfg: JobConfig, project: ProjectConfig) -> bytes:
    """The project's key, refused if it has the value of any other key this job can read (another
    project's, or the linkage key): the two datasets' person keys would then join."""
    keys = {f"project {project.name}": load_key(project.key, purpose=f"project {project.name}")}
    others = [(f"project {p.name}", p.key) for p in cfg.projects if p.name != project.name]
    others += [("the linkage key", cfg.linkage_key)] if cfg.linkage_key else []
    others += [("the person-ID key", cfg.person_id_key)] if cfg.person_id_key else []
    for purpose, source in others:
        try:
            keys[purpose] = load_key(source, purpose=purpose)
        except SecretKeyError:
            log.debug("%s is not available to this job: not compared", purpose)  # only its own key is needed
    require_distinct(keys)
    return keys[f"project {project.name}"]


def publish(spark: SparkSession, cfg: JobConfig, project_name: str, *, opted_out: OptedOut | None = None) -> PublishResult:
    """Write one project's research dataset from the last link, without any opted-out person.
    `opted_out`: the last project's (`PublishResult.opted_out`), used when it was found from the
    tables this one reads, so publishing every project finds them once."""
    project = cfg.project(project_name)
    key = project_key(cfg, project)
    links, person_index = linked_tables(spark, cfg)
    standardised = read_standardised(spark, cfg)
    opted_out = _opted_out(spark, cfg, person_index, standardised, reuse=opted_out)
    report, left_out = opted_out.report, opted_out.persons
    index = person_index.df if left_out is None else person_index.df.join(F.broadcast(left_out), "person_id", "left_anti")
    metadata = {"link_run": commit_metadata(spark, links.path, links.version).get("link_run"),
                "opt_outs_version": report.opt_outs_version}
    research = publish_project(
        person_index=index,
        standardised=standardised,
        project=project,
        project_key=key,
        output=cfg.output,
        metadata=metadata,
        households=_households(spark, cfg, metadata["link_run"]) if project.household_key else None,
    )
    key_events = write_table(_key_events(spark, cfg, key, left_out), key_events_path(project, cfg.output),
                             metadata=metadata)
    return PublishResult(project=project.name, research=research, report=report, key_events=key_events,
                         opted_out=opted_out)


def _households(spark: SparkSession, cfg: JobConfig, link_run: str | None) -> DataFrame:
    """The household_index the last link wrote, refused when another link run wrote it."""
    path = cfg.output.household_index_table
    if version_or_none(spark, path) is None:
        raise InputDataError("household_index: no such table in the linkage zone; run link (with a source that "
                             "maps a uprn, or an address with a postcode) before publishing household keys")
    table = read_delta(spark, path, table="household_index")
    if commit_metadata(spark, path, table.version).get("link_run") != link_run:
        raise InputDataError("household_index and links were written by different link runs: run link again "
                             "before publishing household keys")
    return table.df


def _key_events(spark: SparkSession, cfg: JobConfig, key: bytes, left_out: DataFrame | None) -> DataFrame:
    """The project's key_events from every person event so far (none before the first)."""
    if version_or_none(spark, cfg.output.person_events_table) is None:
        events = spark.createDataFrame([], "generation int, event string, person_before string, person_after string")
    else:
        events = read_delta(spark, cfg.output.person_events_table, table="person_events").df
    return build_key_events(events, project_key=key, left_out=left_out)


def _opted_out(spark: SparkSession, cfg: JobConfig, person_index: VersionedTable, standardised: DataFrame, *,
               reuse: OptedOut | None) -> OptedOut:
    """Every person who opted out (by any record), found from the last link's person index, the
    standardised records and the opt-out list, unless `reuse` was found from the same versions."""
    opt_outs = read_delta(spark, cfg.opt_outs, cfg.opt_outs_version, table="opt_outs") if cfg.opt_outs else None
    basis = (person_index.version, opt_outs.version if opt_outs else None,
             *(version_or_none(spark, cfg.output.standardised_table(s.name)) for s in cfg.sources))
    if reuse is not None and reuse.basis == basis:
        return reuse
    if opt_outs is None:
        return OptedOut(basis=basis, persons=None,
                        report=PublishReport(opt_outs_version=None, persons_opted_out=0, records_opted_out=0))
    persons = opted_out_persons(person_index.df, standardised, opt_outs.df, linkage_key=linkage_key(cfg)).localCheckpoint()
    removed = person_index.df.join(F.broadcast(persons), "person_id", "left_semi")
    return OptedOut(basis=basis, persons=persons, report=PublishReport(
        opt_outs_version=opt_outs.version, persons_opted_out=persons.count(), records_opted_out=removed.count()))
