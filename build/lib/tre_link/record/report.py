"""The run's figures, computed from Spark and released: what the tracker logs, the charts draw
and the summary prints. Every count passes `release_count` and every rate comes from released
counts; only aggregates are collected to the driver, never a record-level row.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import date
from functools import reduce
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tre_link.platform.disclosure import release_count, release_rate
from tre_link.publish.projects import age_band

# Subgroups for match rates, each a column of the subgroup frame.
SUBGROUPS = ("source", "sex", "age_band", "ethnic_group", "imd_quintile")
_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_.\- /]")


def metric_key(*parts: str) -> str:
    return ".".join(_METRIC_UNSAFE.sub("_", str(p)).strip() or "unknown" for p in parts)


# --------------------------------------------------------------------------------------------
# Model parameters (from the Splink JSON: parameters only, never records)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelParameters:
    prior_match_weight: float | None
    levels: list[dict]  # per non-null level: comparison, level, label, m, u, match_weight, tf_adjustment

    @classmethod
    def from_json(cls, model_json: str | Path | dict) -> ModelParameters:
        settings = model_json if isinstance(model_json, dict) else json.loads(Path(model_json).read_text())
        return cls(prior_match_weight=prior_match_weight(settings), levels=model_parameters(settings))


def model_parameters(model_json: str | Path | dict) -> list[dict]:
    """One row per non-null comparison level: comparison, level, m, u, match_weight (log2 m/u).

    Read from the Splink model JSON, which holds parameters only, never records."""
    settings = model_json if isinstance(model_json, dict) else json.loads(Path(model_json).read_text())
    rows = []
    for comparison in settings.get("comparisons", []):
        name = comparison.get("output_column_name") or comparison.get("comparison_description", "?")
        for index, level in enumerate(comparison.get("comparison_levels", [])):
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            weight = math.log2(m / u) if m and u else None
            rows.append(
                {
                    "comparison": name,
                    "level": index,
                    "label": level.get("label_for_charts") or level.get("sql_condition", "")[:40],
                    "m_probability": m,
                    "u_probability": u,
                    "match_weight": weight,
                    "tf_adjustment": bool(level.get("tf_adjustment_column")),
                }
            )
    return rows


def prior_match_weight(model_json: str | Path | dict) -> float | None:
    settings = model_json if isinstance(model_json, dict) else json.loads(Path(model_json).read_text())
    p = settings.get("probability_two_random_records_match")
    return math.log2(p / (1 - p)) if p and 0 < p < 1 else None




# --------------------------------------------------------------------------------------------
# Output tables
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableChecksum:
    rows: int  # raw: `released_rows()` is what may be logged
    checksum: str

    def released_rows(self) -> int | None:
        return release_count(self.rows)


def table_checksum(df: DataFrame) -> str:
    """An order-independent checksum of a whole table, aggregated in Spark (no row is collected):
    the sum (as decimal, so no overflow) and the xor of xxhash64 over every column, hashed with the
    sorted column names. Equal tables give equal checksums whatever their row order or partitioning."""
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


def output_checksums(tables: dict[str, DataFrame]) -> dict[str, TableChecksum]:
    """Row counts and checksums of the run's output tables, by name."""
    return {name: TableChecksum(rows=df.count(), checksum=table_checksum(df)) for name, df in tables.items()}


# --------------------------------------------------------------------------------------------
# The linkage report: data quality, match weights, match rates by subgroup, cluster sizes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkageReport:
    """Released figures only."""

    completeness: list[dict]  # per (source, field): rows, present, completeness
    match_weight_histogram: list[tuple[float, int | None]]  # (bin start, scored pairs) per bin
    threshold_weight: float
    match_rates: list[dict]  # per (subgroup, value): records, linked, match_rate
    cluster_sizes: dict[str, int | None]  # persons per cluster size, sizes of 5 or more pooled

    def metrics(self) -> dict[str, float]:
        """Every released figure that has a value, by MLflow metric name."""
        out = {metric_key("completeness", r["source"], r["field"]): r["completeness"] for r in self.completeness}
        for row in self.match_rates:
            key = metric_key(row["subgroup"], row["value"])
            out[f"match_rate.{key}"] = row["match_rate"]
            out.update({f"subgroup.{key}.{name}": row[name] for name in ("records", "linked")})
        out.update({f"persons_with_cluster_size.{band}": n for band, n in self.cluster_sizes.items()})
        return {name: value for name, value in out.items() if value is not None}

    def suppressed(self) -> list[str]:
        """The names of counts suppressed under 10 (their rates are simply absent)."""
        names = [
            f"subgroup.{metric_key(row['subgroup'], row['value'])}.{name}"
            for row in self.match_rates
            for name in ("records", "linked")
            if row[name] is None
        ]
        return names + [f"persons_with_cluster_size.{band}" for band, n in self.cluster_sizes.items() if n is None]


def linkage_report(*, quality_profile: DataFrame, person_index: DataFrame, standardised: DataFrame,
                   released_histogram: list[tuple[float, int | None]], threshold_match_probability: float,
                   age_reference_date: date) -> LinkageReport:
    """The released figures of one linkage: from the quality profile, the match-weight histogram
    of every scored pair, and the person index joined to the standardised records."""
    p = threshold_match_probability
    band = F.when(F.col("cluster_size") >= 5, F.lit("5_or_more")).otherwise(F.col("cluster_size").cast("string"))
    persons = person_index.select("person_id", band.alias("band")).distinct().groupBy("band").count().collect()
    return LinkageReport(
        completeness=released_completeness(quality_profile),
        match_weight_histogram=sorted(released_histogram),
        threshold_weight=math.log2(p / (1 - p)),
        match_rates=subgroup_match_rates(subgroup_frame(person_index, standardised, age_reference_date)),
        cluster_sizes={row["band"]: release_count(row["count"]) for row in persons},
    )


def released_completeness(quality_profile) -> list[dict]:
    """Per (source, field): released rows/present counts and completeness from them.

    `quality_profile` is the Spark quality_profile table (already aggregate: a handful of rows)."""
    rows = quality_profile.select("source", "field", "rows", "present").collect()
    out = []
    for r in rows:
        out.append(
            {
                "source": r["source"],
                "field": r["field"],
                "rows": release_count(int(r["rows"])),
                "present": release_count(int(r["present"])),
                "completeness": release_rate(int(r["present"]), int(r["rows"])),
            }
        )
    return sorted(out, key=lambda d: (d["source"], d["field"]))


def subgroup_frame(person_index: DataFrame, standardised: DataFrame, age_reference_date: date) -> DataFrame:
    """person_index joined to standardised records with the subgroup columns (still in Spark)."""
    ref = age_reference_date
    joined = person_index.select("source", "record_id", "cluster_size").join(
        standardised, on=["source", "record_id"], how="inner"
    )
    cols = [F.col("source").cast("string").alias("source"),
            (F.col("cluster_size") > 1).cast("int").alias("_linked")]
    cols.append(F.col("sex").cast("string").alias("sex") if "sex" in standardised.columns else F.lit(None).alias("sex"))
    cols.append(age_band(F.col("dob"), ref).alias("age_band"))
    for name in ("ethnic_group", "imd_quintile"):
        cols.append(F.col(name).cast("string").alias(name) if name in standardised.columns
                    else F.lit(None).cast("string").alias(name))
    return joined.select(*cols)


def subgroup_match_rates(frame) -> list[dict]:
    """Aggregate in Spark: per (subgroup, value) records and records in clusters of size > 1.

    Returns released counts and rates (from the released counts); only aggregates are collected."""
    parts = [
        frame.select(F.lit(name).alias("subgroup"),
                     F.coalesce(F.col(name), F.lit("unknown")).alias("value"), "_linked")
        for name in SUBGROUPS
    ]
    stacked = reduce(lambda a, b: a.unionByName(b), parts)
    agg = stacked.groupBy("subgroup", "value").agg(
        F.count(F.lit(1)).alias("records"), F.sum("_linked").alias("linked")
    )
    out = []
    for r in agg.collect():
        records, linked = int(r["records"]), int(r["linked"] or 0)
        out.append(
            {
                "subgroup": r["subgroup"],
                "value": r["value"],
                "records": release_count(records),
                "linked": release_count(linked),
                "match_rate": release_rate(linked, records),
            }
        )
    return sorted(out, key=lambda d: (SUBGROUPS.index(d["subgroup"]), d["value"]))
