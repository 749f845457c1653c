"""The ingest stage: every source read at its pinned (or latest) Delta version, standardised,
opt-outs removed, written to the linkage zone with its quality profile."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from tre_link.ingest import quality, standardise
from tre_link.ingest.optout import remove_opt_outs
from tre_link.platform.config import JobConfig
from tre_link.platform.delta_io import VersionedTable, read_delta, write_table
from tre_link.platform.disclosure import release_count
from tre_link.platform.errors import ConfigError
from tre_link.platform.hmac_sql import hmac_sha256_hex, with_keyed_columns
from tre_link.platform.secrets import load_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceReport:
    path: str
    version: int  # the source's Delta version read
    records: int  # raw counts: release them with `StandardiseReport.released()`
    opted_out: int


@dataclass(frozen=True)
class StandardiseReport:
    sources: dict[str, SourceReport]
    opt_outs_path: str | None
    opt_outs_version: int | None

    def released(self) -> dict:
        """Per source: the version read, and its record and opted-out counts disclosure-controlled."""
        return {
            name: {"version": s.version, "records": release_count(s.records), "opted_out": release_count(s.opted_out)}
            for name, s in self.sources.items()
        }


@dataclass(frozen=True)
class StandardiseResult:
    standardised: dict[str, VersionedTable]  # per source, in the linkage zone
    quality_profile: VersionedTable
    report: StandardiseReport


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


def standardise_sources(spark: SparkSession, cfg: JobConfig) -> StandardiseResult:
    """Read every source at its pinned (or latest) version, standardise, drop opt-outs, profile."""
    key = _linkage_key(cfg)
    opt_outs, opt_outs_version = None, None
    if cfg.opt_outs:
        opt_outs_table = read_delta(spark, cfg.opt_outs, cfg.opt_outs_version, table="opt_outs")
        opt_outs, opt_outs_version = opt_outs_table.df, opt_outs_table.version
    written, reports, profiles = {}, {}, []
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
        written[source.name] = write_table(
            records.observe(profile, *quality.profile_counts()), cfg.output.standardised_table(source.name)
        )
        counts = profile.get
        profiles.append(quality.profile_from_counts(spark, source.name, counts))
        reports[source.name] = SourceReport(
            path=source.path, version=raw.version, records=before, opted_out=before - counts["rows"]
        )
        log.info("standardise: source %s at version %d done", source.name, raw.version)
    profile_table = write_table(standardise.union_sources(profiles), cfg.output.quality_profile_table)
    return StandardiseResult(
        standardised=written,
        quality_profile=profile_table,
        report=StandardiseReport(sources=reports, opt_outs_path=cfg.opt_outs, opt_outs_version=opt_outs_version),
    )


def read_standardised(spark: SparkSession, cfg: JobConfig) -> DataFrame:
    """Every source's standardised table from the linkage zone, as one frame."""
    tables = [
        read_delta(spark, cfg.output.standardised_table(s.name), table=f"standardised/{s.name}").df
        for s in cfg.sources
    ]
    return standardise.union_sources(tables)
