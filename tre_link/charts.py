"""Review charts for a linkage run: matplotlib PNGs built from aggregates only.

Inputs are the trained Splink model JSON (parameters, no records), counts of scored pairs per
match-weight bin, the quality_profile table (counts per source and field) and person_index joined
to the standardised records, aggregated in Spark to counts per subgroup. Every count is passed
through `release_count` before it is drawn or logged, and every rate comes from released counts.
Nothing here collects a record-level row to the driver.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date
from pathlib import Path
from typing import Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tre_link.disclosure import release_count, release_rate  # noqa: E402

# Subgroups for match rates: name -> how to derive it from the standardised records.
SUBGROUPS = ("source", "sex", "age_band", "ethnic_group", "imd_quintile")
_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_.\- /]")


# --------------------------------------------------------------------------------------------
# Model parameters (from the Splink JSON)
# --------------------------------------------------------------------------------------------


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


def _labels(rows: list[dict]) -> list[str]:
    return [f"{r['comparison']}: {r['label']}" for r in rows]


def plot_match_weights(params: list[dict], path: str | Path, title: str = "Match weight per comparison level") -> str:
    rows = [r for r in params if r["match_weight"] is not None]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5))
    weights = [r["match_weight"] for r in rows]
    ax.barh(range(len(rows)), weights, color=["tab:green" if w >= 0 else "tab:red" for w in weights])
    ax.set_yticks(range(len(rows)), _labels(rows), fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("match weight (log2 m/u)")
    ax.set_title(title)
    return _save(fig, path)


def plot_m_u(params: list[dict], path: str | Path) -> str:
    rows = [r for r in params if r["m_probability"] is not None and r["u_probability"] is not None]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.3 * len(rows) + 1.5), sharey=True)
    for ax, key, colour in ((axes[0], "m_probability", "tab:blue"), (axes[1], "u_probability", "tab:orange")):
        ax.barh(range(len(rows)), [r[key] for r in rows], color=colour)
        ax.set_xlim(0, 1)
        ax.set_title(key.replace("_", " "))
    axes[0].set_yticks(range(len(rows)), _labels(rows), fontsize=7)
    axes[0].invert_yaxis()
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Match-weight histogram (from aggregated bin counts)
# --------------------------------------------------------------------------------------------


def released_histogram(bins: Iterable) -> list[tuple[float, int | None]]:
    """(bin_start, released count) per bin; accepts rows/tuples/dicts or a pandas DataFrame."""
    if hasattr(bins, "to_dict"):  # pandas
        bins = bins.to_dict("records")
    out = []
    for row in bins:
        if isinstance(row, dict):
            start, count = row["bin_start"], row["count"]
        elif hasattr(row, "asDict"):
            start, count = row["bin_start"], row["count"]
        else:
            start, count = row
        out.append((float(start), release_count(int(count))))
    return sorted(out)


def plot_match_weight_histogram(released_bins: list[tuple[float, int | None]], path: str | Path,
                                threshold_weight: float | None = None, title: str | None = None) -> str:
    """Bars for released counts only; suppressed bins (<10) are shown as empty."""
    fig, ax = plt.subplots(figsize=(8, 4))
    starts = [b for b, _ in released_bins]
    counts = [c or 0 for _, c in released_bins]
    width = min((b - a for a, b in zip(starts, starts[1:])), default=1.0) or 1.0
    ax.bar(starts, counts, width=width, align="edge", color="tab:blue")
    if threshold_weight is not None:
        ax.axvline(threshold_weight, color="tab:red", linestyle="--", label="threshold")
        ax.legend()
    ax.set_xlabel("match weight")
    ax.set_ylabel("pairs (released: <10 suppressed, rounded to 5)")
    ax.set_title(title or "Match-weight distribution of scored pairs")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Data quality and match rates (Spark aggregates)
# --------------------------------------------------------------------------------------------


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


def plot_completeness(completeness: list[dict], path: str | Path) -> str:
    sources = sorted({r["source"] for r in completeness})
    fields = sorted({r["field"] for r in completeness})
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(sources), 1)
    for i, source in enumerate(sources):
        lookup = {r["field"]: r["completeness"] for r in completeness if r["source"] == source}
        ax.bar([f + i * width for f in range(len(fields))], [lookup.get(f) or 0 for f in fields],
               width=width, label=source)
    ax.set_xticks([f + width * (len(sources) - 1) / 2 for f in range(len(fields))], fields)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("completeness (from released counts)")
    ax.set_title("Identifier completeness per source")
    ax.legend()
    return _save(fig, path)


def subgroup_frame(spark, person_index, standardised, age_reference_date: date | None = None):
    """person_index joined to standardised records with the subgroup columns (still in Spark)."""
    from pyspark.sql import functions as F

    from tre_link.publish import age_band

    ref = age_reference_date or date(2026, 1, 1)
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
    from functools import reduce

    from pyspark.sql import functions as F

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


def metric_key(*parts: str) -> str:
    return ".".join(_METRIC_UNSAFE.sub("_", str(p)).strip() or "unknown" for p in parts)


def plot_match_rates(rates: list[dict], path: str | Path) -> str:
    groups = [g for g in SUBGROUPS if any(r["subgroup"] == g for r in rates)]
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 2.2 * len(groups) + 0.5), squeeze=False)
    for ax, group in zip(axes[:, 0], groups):
        rows = [r for r in rates if r["subgroup"] == group]
        ax.bar([str(r["value"]) for r in rows], [r["match_rate"] or 0 for r in rows], color="tab:purple")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("match rate")
        ax.set_title(f"by {group} (suppressed groups shown as 0)", fontsize=9)
        ax.tick_params(axis="x", labelsize=7, rotation=30)
    fig.suptitle("Records in clusters of size > 1 / records (released counts)")
    return _save(fig, path)


def _save(fig, path: str | Path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)
