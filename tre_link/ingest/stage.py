"""The ingest stage: every source read at its pinned (or latest) Delta version, standardised,
checked against its quality floors and written to the linkage zone with its quality profile."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from tre_link.ingest import quality, standardise
from tre_link.platform.config import JobConfig, SourceConfig
from tre_link.platform.delta_io import (
    VersionedTable,
    commit_metadata,
    read_delta,
    reading,
    restore,
    version_or_none,
    write_table,
)
from tre_link.platform.disclosure import release_count
from tre_link.platform.errors import ConfigError, InputDataError
from tre_link.platform.hmac_sql import hmac_sha256_hex, with_keyed_columns
from tre_link.platform.secrets import load_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceReport:
    path: str
    version: int  # the source's Delta version read
    records: int  # raw count: release it with `StandardiseReport.released()`


@dataclass(frozen=True)
class StandardiseReport:
    run: str  # recorded with every table this standardisation wrote
    sources: dict[str, SourceReport]
    warnings: list[str]  # data-quality warnings: shares only, never counts or values

    def released(self) -> dict:
        """Per source: the version read, and its record count disclosure-controlled."""
        return {name: {"version": s.version, "records": release_count(s.records)} for name, s in self.sources.items()}


@dataclass(frozen=True)
class StandardiseResult:
    standardised: dict[str, VersionedTable]  # per source, in the linkage zone
    quality_profile: VersionedTable
    report: StandardiseReport


def linkage_key(cfg: JobConfig) -> bytes | None:
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


@contextmanager
def _all_or_nothing(spark: SparkSession, cfg: JobConfig) -> Iterator[dict[str, int | None]]:
    """The standardised tables' versions before the block; if the block fails, every table it
    changed is put back to them."""
    previous = {s.name: version_or_none(spark, cfg.output.standardised_table(s.name)) for s in cfg.sources}
    try:
        yield previous
    except BaseException:
        for name, version in previous.items():
            if version_or_none(spark, cfg.output.standardised_table(name)) != version:
                restore(spark, cfg.output.standardised_table(name), version)
        raise


def standardise_sources(spark: SparkSession, cfg: JobConfig) -> StandardiseResult:
    """Read every source at its pinned (or latest) version, standardise, profile, and check each
    field's share of valid values against its floor. Opted-out records stay: opt-outs apply to
    persons, after linkage. All or nothing: if any source fails, every table this call wrote is
    put back as it was."""
    key = linkage_key(cfg)
    run = uuid.uuid4().hex
    written, reports, profiles, warnings = {}, {}, [], []
    with _all_or_nothing(spark, cfg):
        for source in cfg.sources:
            written[source.name], reports[source.name], counts, notes = _standardise_one(spark, cfg, source, key, run)
            profiles.append(quality.profile_from_counts(spark, source.name, counts))
            warnings += notes
        profile_table = write_table(standardise.union_sources(profiles), cfg.output.quality_profile_table,
                                    metadata={"standardise_run": run})
    for warning in warnings:
        log.warning("data quality: %s", warning)
    return StandardiseResult(standardised=written, quality_profile=profile_table,
                             report=StandardiseReport(run=run, sources=reports, warnings=warnings))


def _in_linkage_form(records: DataFrame, cfg: JobConfig, source: SourceConfig, key: bytes | None) -> DataFrame:
    """Standardised records with their NHS numbers in the form the linkage compares."""
    if cfg.linkage.nhs_number_form == "token" and source.nhs_number_form == "plain":
        return _tokenise(records, key)
    return records


def _standardise_one(spark: SparkSession, cfg: JobConfig, source: SourceConfig, key: bytes | None, run: str):
    raw = read_delta(spark, source.path, source.version, table=source.name)
    with reading(source.name):
        notes = [note] if (note := standardise.check_dob_order(raw.df, source)) else []
        records = standardise.standardise_source(raw.df, source)
        # Checked before anything is written; the standardisation itself runs once, in the write,
        # and the quality profile is counted as the rows go by.
        rows = standardise.check_standardised(
            records, source.name, record_ids=standardise.source_record_ids(raw.df, source)
        )["rows"]
        records = _in_linkage_form(records, cfg, source, key)
        profile = Observation(f"quality_profile_{source.name}")
        path = cfg.output.standardised_table(source.name)
        table = write_table(records.observe(profile, *quality.profile_counts()), path, merged=True,
                            metadata={"standardise_run": run, "source_version": raw.version})
    counts = profile.get
    if breaches := quality.floor_breaches(source, counts):
        raise InputDataError(f"table {source.name}: below its quality floors: " + "; ".join(breaches)
                             + " (set sources[].quality_floors to change a floor, or fix the mapping or extract)")
    log.info("standardise: source %s at version %d done", source.name, raw.version)
    report = SourceReport(path=source.path, version=raw.version, records=rows)
    return table, report, counts, notes + quality.quality_warnings(source, counts)


def standardised_versions(spark: SparkSession, cfg: JobConfig) -> dict[str, dict]:
    """Per source with a standardised table: the source version it holds (recorded with its last
    commit) and the table's own version. A link records these with its links commit, so a refresh
    knows which source versions the person index was built from (`link_stage.link_base`)."""
    held = {}
    for source in cfg.sources:
        path = cfg.output.standardised_table(source.name)
        version = version_or_none(spark, path)
        if version is not None:
            held[source.name] = {"version": commit_metadata(spark, path, version).get("source_version"),
                                 "standardised_version": version}
    return held


def standardise_changes(spark: SparkSession, cfg: JobConfig, changes: dict) -> StandardiseResult:
    """Standardise only the changed records of each source (`changes`: name -> `changes.SourceChanges`)
    and MERGE them into its standardised table, deleted records removed, one commit per source that
    changed; then the quality profile of every source as it now stands (read from the standardised
    tables, not standardised again), checked against the floors. All or nothing, as
    `standardise_sources`; a rerun with the same changes commits nothing more to the tables."""
    from tre_link.platform.delta_io import merge_changes

    key = linkage_key(cfg)
    run = uuid.uuid4().hex
    written, reports, profiles, warnings, runs = {}, {}, [], [], {}
    with _all_or_nothing(spark, cfg) as previous:
        for source in cfg.sources:
            change, path = changes[source.name], cfg.output.standardised_table(source.name)
            if change.any or previous[source.name] is None:
                with reading(source.name):
                    upserts = standardise.standardise_source(change.inserted.unionByName(change.updated), source)
                    if change.added or change.changed:
                        ids = standardise.source_record_ids(change.inserted.unionByName(change.updated), source)
                        standardise.check_record_ids(upserts, source.name, record_ids=ids)
                    deleted = change.deleted.select(F.col(source.columns.record_id).cast("string").alias("record_id"))
                    merge_changes(_in_linkage_form(upserts, cfg, source, key), deleted, path, on=["record_id"],
                                  metadata={"standardise_run": run, "source_version": change.to_version})
            table = read_delta(spark, path, table=f"standardised/{source.name}")
            runs[source.name] = commit_metadata(spark, path, table.version).get("standardise_run")
            counts = table.df.agg(*quality.profile_counts()).first().asDict()
            if breaches := quality.floor_breaches(source, counts):
                raise InputDataError(f"table {source.name}: below its quality floors: " + "; ".join(breaches)
                                     + " (set sources[].quality_floors to change a floor, or fix the mapping or extract)")
            profiles.append(quality.profile_from_counts(spark, source.name, counts))
            warnings += quality.quality_warnings(source, counts)
            written[source.name] = table
            reports[source.name] = SourceReport(path=source.path, version=change.to_version, records=counts["rows"])
        profile_table = write_table(standardise.union_sources(profiles), cfg.output.quality_profile_table,
                                    metadata={"standardise_run": run, "standardised_runs": runs})
    for warning in warnings:
        log.warning("data quality: %s", warning)
    return StandardiseResult(standardised=written, quality_profile=profile_table,
                             report=StandardiseReport(run=run, sources=reports, warnings=warnings))


def read_standardised(spark: SparkSession, cfg: JobConfig) -> DataFrame:
    """Every source's standardised table from the linkage zone, as one frame. Refused when they
    were not all written by the standardisation that wrote the quality profile (one stopped
    half-way), so a half-finished run is never linked."""
    runs = {s.name: commit_metadata(spark, cfg.output.standardised_table(s.name)).get("standardise_run")
            for s in cfg.sources if version_or_none(spark, cfg.output.standardised_table(s.name)) is not None}
    profile = commit_metadata(spark, cfg.output.quality_profile_table) \
        if version_or_none(spark, cfg.output.quality_profile_table) is not None else {}
    finished = profile.get("standardise_run")
    # A refresh commits only the sources that changed; its profile names the run behind each table.
    expected = profile.get("standardised_runs") or {}
    stale = sorted(name for name, run in runs.items() if run != expected.get(name, finished))
    if finished is not None and stale:
        raise InputDataError(
            f"standardised tables {stale} were not written by the last finished standardisation "
            "(one stopped half-way): run standardise again"
        )
    tables = [
        read_delta(spark, cfg.output.standardised_table(s.name), table=f"standardised/{s.name}").df
        for s in cfg.sources
    ]
    return standardise.union_sources(tables)
