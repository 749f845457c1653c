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
from pathlib import Path

from pyspark.sql import DataFrame, Window
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

    @property
    def overall_match_rate(self) -> float | None:
        """Linked records / records over every source, from the released per-source counts."""
        rows = [r for r in self.match_rates if r["subgroup"] == "source" and r["records"] and r["linked"] is not None]
        records = sum(r["records"] for r in rows)
        return sum(r["linked"] for r in rows) / records if records else None

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
    rows = quality_profile.select("source", "field", "rows", "present", "valid").collect()
    out = []
    for r in rows:
        out.append(
            {
                "source": r["source"],
                "field": r["field"],
                "rows": release_count(int(r["rows"])),
                "present": release_count(int(r["present"])),
                "completeness": release_rate(int(r["present"]), int(r["rows"])),
                "validity": release_rate(int(r["valid"]), int(r["present"])),
            }
        )
    return sorted(out, key=lambda d: (d["source"], d["field"]))


def subgroup_frame(person_index: DataFrame, standardised: DataFrame, age_reference_date: date,
                   hit: F.Column | None = None) -> DataFrame:
    """person_index joined to standardised records with the subgroup columns (still in Spark) and
    `_linked`: `hit` (by default, the record is in a cluster with another)."""
    ref = age_reference_date
    hit = (F.col("cluster_size") > 1) if hit is None else hit
    joined = person_index.select("source", "record_id", hit.cast("int").alias("_linked")).join(
        standardised, on=["source", "record_id"], how="inner"
    )
    cols = [F.col("source").cast("string").alias("source"), "_linked"]
    cols.append(F.col("sex").cast("string").alias("sex") if "sex" in standardised.columns else F.lit(None).alias("sex"))
    cols.append(age_band(F.col("dob"), ref).alias("age_band"))
    for name in ("ethnic_group", "imd_quintile"):
        cols.append(F.col(name).cast("string").alias(name) if name in standardised.columns
                    else F.lit(None).cast("string").alias(name))
    return joined.select(*cols)


def subgroup_match_rates(frame, names: tuple[str, str, str] = ("records", "linked", "match_rate")) -> list[dict]:
    """Aggregate in Spark: per (subgroup, value) records and records with `_linked` (by default, in
    clusters of size > 1), named by `names` (denominator, numerator, rate).

    Returns released counts and rates (from the released counts), subgroups in SUBGROUPS order and
    values in their natural order (age bands by age); only aggregates are collected."""
    # One row per (record, subgroup) from a single scan of `frame` (a union would read it per subgroup).
    per_subgroup = F.explode(F.array(*[
        F.struct(F.lit(name).alias("subgroup"), F.coalesce(F.col(name), F.lit("unknown")).alias("value"))
        for name in SUBGROUPS
    ])).alias("_group")
    stacked = frame.select(per_subgroup, "_linked").select("_group.subgroup", "_group.value", "_linked")
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
                names[0]: release_count(records),
                names[1]: release_count(linked),
                names[2]: release_rate(linked, records),
            }
        )
    return sorted(out, key=lambda d: (SUBGROUPS.index(d["subgroup"]), value_order(d["value"])))


def value_order(value: str) -> tuple:
    """Subgroup values in reading order: age bands and quintiles by number ('5-9' before '10-14',
    '90+' last of them), then text, with 'unknown' at the end."""
    if value == "unknown":
        return (2, 0, value)
    number = re.match(r"^(\d+)", str(value))
    return (0, int(number.group(1)), value) if number else (1, 0, str(value))


def released_duplicates(duplicates: DataFrame) -> list[dict]:
    """`ingest.quality.duplicate_profile` per source, every count released."""
    names = ("rows", "duplicate_record_ids", "duplicate_identifier_groups", "duplicate_identifier_rows")
    out = [{"source": r["source"], **{n: release_count(int(r[n])) for n in names},
            "duplicate_row_share": release_rate(int(r["duplicate_identifier_rows"]), int(r["rows"]))}
           for r in duplicates.collect()]
    return sorted(out, key=lambda d: d["source"])


def truth_recall_by_subgroup(person_index: DataFrame, truth: DataFrame, standardised: DataFrame,
                             age_reference_date: date) -> list[dict]:
    """Per subgroup: of the records whose true person has another record (linkable), the share in
    a cluster with at least one of them (found). Released counts, rates from them."""
    joined = person_index.select("source", "record_id", "person_id").join(
        truth.select("source", "record_id", F.col("person_id").alias("_true")), ["source", "record_id"])
    counted = joined.select(
        "source", "record_id",
        (F.count(F.lit(1)).over(Window.partitionBy("_true")) > 1).alias("_linkable"),
        (F.count(F.lit(1)).over(Window.partitionBy("person_id", "_true")) > 1).alias("_found"),
    ).where("_linkable")
    frame = subgroup_frame(counted, standardised, age_reference_date, hit=F.col("_found"))
    return subgroup_match_rates(frame, ("linkable", "found", "recall"))


# --------------------------------------------------------------------------------------------
# Reading the figures: gaps in words, weights worth a look, changes since the approved model
# --------------------------------------------------------------------------------------------

EXTREME_WEIGHT = 15.0  # |log2 m/u| past this: a level that all but decides a pair on its own


def subgroup_gaps(rates: list[dict], rate: str = "match_rate", what: str = "link rate") -> list[dict]:
    """Per subgroup, the lowest and highest released rate among its known, unsuppressed values and
    a sentence saying so; the largest gap first."""
    gaps = []
    for subgroup in SUBGROUPS:
        rows = [r for r in rates if r["subgroup"] == subgroup and r[rate] is not None and r["value"] != "unknown"]
        if len(rows) < 2:
            continue
        low, high = min(rows, key=lambda r: r[rate]), max(rows, key=lambda r: r[rate])
        points = 100 * (high[rate] - low[rate])
        gaps.append({
            "subgroup": subgroup, "low": low["value"], "low_rate": low[rate], "high": high["value"],
            "high_rate": high[rate], "gap_points": round(points, 1),
            "sentence": (f"By {subgroup.replace('_', ' ')}, the {what} ranges from {low[rate]:.2f} "
                         f"({low['value']}) to {high[rate]:.2f} ({high['value']}): a gap of {points:.1f} "
                         "percentage points."),
        })
    return sorted(gaps, key=lambda g: -g["gap_points"])


def weight_flags(parameters: ModelParameters) -> list[dict]:
    """The model's levels with what a reviewer should look at: untrained (no m or u) and extreme
    (|weight| >= EXTREME_WEIGHT) levels."""
    rows = []
    for level in parameters.levels:
        weight = level["match_weight"]
        flags = []
        if level["m_probability"] is None or level["u_probability"] is None:
            flags.append("untrained")
        elif abs(weight) >= EXTREME_WEIGHT:
            flags.append("extreme")
        rows.append({**level, "flags": flags})
    return rows


def weight_changes(parameters: ModelParameters, approved: ModelParameters) -> list[dict]:
    """Each level's match weight here and in the approved model, and the difference."""
    before = {(r["comparison"], r["label"]): r["match_weight"] for r in approved.levels}
    rows = [{"comparison": r["comparison"], "label": r["label"], "approved": before.get((r["comparison"], r["label"])),
             "this_run": r["match_weight"]} for r in parameters.levels]
    rows.append({"comparison": "prior", "label": "probability two records match",
                 "approved": approved.prior_match_weight, "this_run": parameters.prior_match_weight})
    for row in rows:
        a, b = row["approved"], row["this_run"]
        row["difference"] = b - a if a is not None and b is not None else None
    return rows


# Metrics a change summary always shows, when both runs have them.
KEY_METRICS = ("pairwise_precision", "pairwise_recall", "pairwise_f1", "person_precision", "person_recall",
               "clerical.precision", "clerical.recall", "links_deterministic", "links_probabilistic", "persons")


def metric_changes(metrics: dict[str, float], approved: dict[str, float], largest: int = 10) -> list[dict]:
    """The key metrics and the `largest` other differences (by size) between two runs' released
    metrics; timings left out."""
    shared = [k for k in metrics if k in approved and not k.startswith("wall_seconds")]
    rows = {k: {"metric": k, "approved": approved[k], "this_run": metrics[k], "difference": metrics[k] - approved[k]}
            for k in shared}
    key = [rows[k] for k in KEY_METRICS if k in rows]
    rest = sorted((r for k, r in rows.items() if k not in KEY_METRICS and r["difference"]),
                  key=lambda r: -abs(r["difference"]))[:largest]
    return key + rest


THRESHOLD_PROBABILITIES = (0.5, 0.8, 0.9, 0.95, 0.99, 0.999)


def threshold_sensitivity(histogram: list[tuple[float, int | None]]) -> list[dict]:
    """Scored pairs at or above each candidate threshold: sums of released whole-bin counts (a
    bin counts when it starts at or above the threshold's weight)."""
    rows = []
    for p in THRESHOLD_PROBABILITIES:
        weight = math.log2(p / (1 - p))
        rows.append({"threshold_match_probability": p, "threshold_weight": round(weight, 2),
                     "pairs_at_or_above": sum(c or 0 for b, c in histogram if b >= math.floor(weight))})
    return rows


@dataclass(frozen=True)
class RunReport:
    """Everything the linkage report shows, every figure released, in the report's order."""

    run_id: str
    config_file: str
    sources: dict  # StandardiseReport.released()
    linkage: dict  # LinkReport.released()
    published: dict  # per project: PublishReport.released() (opt-outs applied by person)
    accuracy: dict | None  # Accuracy.released(), against the truth table
    clerical: dict | None  # ClericalEstimates.released()
    quality: LinkageReport
    duplicates: list[dict]
    truth_recall: list[dict] | None
    parameters: ModelParameters
    model: dict  # which model: uri/version or "trained in this run"
    approved: dict | None  # the approved version compared against, with weight and metric changes
    threshold_match_probability: float
    threshold_source: str

    @property
    def match_rate_gaps(self) -> list[dict]:
        return subgroup_gaps(self.quality.match_rates)

    @property
    def recall_gaps(self) -> list[dict]:
        return subgroup_gaps(self.truth_recall or [], "recall", "recall")

    @property
    def flagged_levels(self) -> list[dict]:
        return weight_flags(self.parameters)

    @property
    def sensitivity(self) -> list[dict]:
        return threshold_sensitivity(self.quality.match_weight_histogram)

    def as_dict(self) -> dict:
        """The released figures as JSON-ready data (logged beside the report)."""
        return {
            "run_id": self.run_id, "config_file": self.config_file, "sources": self.sources,
            "linkage": self.linkage, "accuracy": self.accuracy, "clerical": self.clerical,
            "completeness": self.quality.completeness, "duplicates": self.duplicates,
            "cluster_sizes": self.quality.cluster_sizes, "match_rates": self.quality.match_rates,
            "match_rate_gaps": self.match_rate_gaps, "truth_recall": self.truth_recall,
            "recall_gaps": self.recall_gaps, "levels": self.flagged_levels,
            "prior_match_weight": self.parameters.prior_match_weight, "model": self.model,
            "approved": self.approved, "threshold_match_probability": self.threshold_match_probability,
            "threshold_weight": self.quality.threshold_weight, "threshold_source": self.threshold_source,
            "threshold_sensitivity": self.sensitivity,
            "match_weight_histogram": self.quality.match_weight_histogram,
        }
