"""Clerical review: borderline pairs drawn for people to label, the labels loaded and checked, and
precision and recall estimated from them with confidence intervals.

The design. Every pair the probabilistic pass scored (`scored_pairs`) falls in one stratum: its
match-weight band around the threshold crossed with its source pair (gp-hospital, ...). Most of a
sample comes from the borderline bands (within `review.borderline_weight` of the threshold), where
the model is least sure; the rest spans every other band, so a confident mistake can be found too.
Within a stratum, pairs are drawn by a seeded hash, and each carries how many pairs its stratum
holds, so labels stand for their stratum: a labelled pair of stratum h weighs N_h / n_h, where n_h
is the stratum's pairs labelled match or non-match (Horvitz-Thompson; `unsure` labels are left out).

Against a person index, a pair is predicted a match when both records share a person id. Then
precision = TP / (TP + FP) and recall = TP / (TP + FN) over the scored pairs, from the weighted
labelled pairs; each has a Wilson score interval at Kish's effective sample size (n_eff = (sum w)^2 /
sum w^2), which widens it for unequal weights. Recall is of the pairs the blocking rules reached:
pairs no rule compared and pairs the deterministic pass decided are outside the scored population.

The sample and the labels hold identifiers and live only in the linkage zone. What leaves it is
`ClericalEstimates.released()`: labelled pairs rounded, rates from rounded weighted counts, and no
estimate resting on fewer than 10 labelled pairs.
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from tre_link.link.records import UNIQUE_ID, source_of, unique_id
from tre_link.link.stage import link_threshold
from tre_link.platform.config import JobConfig
from tre_link.platform.delta_io import VersionedTable, read_delta, write_table
from tre_link.platform.disclosure import release_count, release_rate
from tre_link.platform.errors import InputDataError
from tre_link.publish.projects import age_band
from tre_link.record.report import metric_key

LABELS = ("match", "non_match", "unsure")
# The fields a reviewer compares, side by side.
REVIEW_FIELDS = ("source", "record_id", "nhs_number", "given_name", "family_name", "dob", "sex", "postcode")
# Subgroups a pair can be told apart by: its records' value when both agree, else "mixed".
PAIR_SUBGROUPS = ("source_pair", "sex", "age_band", "ethnic_group", "imd_quintile")
Z95 = 1.959963984540054


def threshold_weight(probability: float) -> float:
    return math.log2(probability / (1 - probability))


def band_edges(borderline_weight: float) -> list[float]:
    """Match-weight band edges relative to the threshold: four bands each side, the inner two of
    each side borderline."""
    b = borderline_weight
    return [-2 * b, -b, -b / 2, 0.0, b / 2, b, 2 * b]


def _band(offset: F.Column, edges: list[float]) -> F.Column:
    """0..len(edges): the band of `offset` (match weight minus the threshold's)."""
    return sum((F.when(offset >= F.lit(e), F.lit(1)).otherwise(F.lit(0)) for e in edges), F.lit(0))


def _is_borderline(band: int, edges: list[float]) -> bool:
    return 2 <= band <= len(edges) - 2


def band_label(band: int, edges: list[float]) -> str:
    lo = f"{edges[band - 1]:+g}" if band > 0 else "-inf"
    hi = f"{edges[band]:+g}" if band < len(edges) else "+inf"
    return f"[{lo}, {hi})"


def pair_id(left: F.Column, right: F.Column) -> F.Column:
    """A pair's id: a hash of its two record ids in order (no identifier can be read back from it)."""
    return F.substring(F.sha2(F.concat_ws("|", F.least(left, right), F.greatest(left, right)), 256), 1, 24)


def stratified_pairs(scored: DataFrame, threshold_probability: float, borderline_weight: float) -> DataFrame:
    """Scored pairs with pair_id, band, source_pair and stratum (pure: no sampling yet)."""
    edges = band_edges(borderline_weight)
    left = F.least("unique_id_l", "unique_id_r")
    right = F.greatest("unique_id_l", "unique_id_r")
    sources = F.array_sort(F.array(source_of(left), source_of(right)))
    band = _band(F.col("match_weight") - F.lit(threshold_weight(threshold_probability)), edges)
    return scored.select(
        pair_id(left, right).alias("pair_id"),
        left.alias("unique_id_l"),
        right.alias("unique_id_r"),
        "match_weight",
        "match_probability",
        band.alias("band"),
        F.array_join(sources, "-").alias("source_pair"),
    ).withColumn("stratum", F.concat_ws("/", F.col("band").cast("string"), "source_pair"))


def allocate(strata: dict[tuple[int, str], int], pairs: int, borderline_share: float,
             edges: list[float]) -> dict[tuple[int, str], int]:
    """Pairs to draw per (band, source pair) stratum, from each stratum's size: `borderline_share`
    of `pairs` across the borderline strata and the rest across the others, each in proportion to
    size, at least two per stratum (or all it has)."""
    groups = {True: {}, False: {}}
    for key, size in strata.items():
        groups[_is_borderline(key[0], edges)][key] = size
    sizes = {k: sum(members.values()) for k, members in groups.items()}
    # A group smaller than its share gives the rest to the other.
    borderline = min(pairs * borderline_share, sizes[True])
    outer = min(pairs - borderline, sizes[False])
    budgets = {True: min(pairs - outer, sizes[True]), False: outer}
    out = {}
    for borderline, members in groups.items():
        for key, size in members.items():
            out[key] = min(size, max(2, round(budgets[borderline] * size / sizes[borderline])))
    return out


def draw_sample(stratified: DataFrame, allocation: dict[tuple[int, str], int], seed: int) -> DataFrame:
    """`allocation[stratum]` pairs of each stratum, chosen by a seeded hash of the pair id, with
    the stratum's size (stratum_pairs) and draw (stratum_sampled)."""
    spark = stratified.sparkSession
    plan = spark.createDataFrame(
        [(f"{band}/{sources}", n) for (band, sources), n in allocation.items()], "stratum string, stratum_sampled int"
    )
    sizes = stratified.groupBy("stratum").agg(F.count(F.lit(1)).alias("stratum_pairs"))
    order = Window.partitionBy("stratum").orderBy(F.xxhash64("pair_id", F.lit(seed)), "pair_id")
    return (
        stratified.join(F.broadcast(plan), "stratum")
        .join(F.broadcast(sizes), "stratum")
        .withColumn("_rank", F.row_number().over(order))
        .where(F.col("_rank") <= F.col("stratum_sampled"))
        .drop("_rank")
    )


def with_both_records(pairs: DataFrame, standardised: DataFrame, columns: tuple[str, ...]) -> DataFrame:
    """`pairs` with each record's `columns` alongside, suffixed _l and _r."""
    records = standardised.withColumn(UNIQUE_ID, unique_id(F.col("source"), F.col("record_id")))
    out = pairs
    for side in ("l", "r"):
        side_cols = records.select(
            F.col(UNIQUE_ID).alias(f"unique_id_{side}"), *[F.col(c).alias(f"{c}_{side}") for c in columns]
        )
        out = out.join(side_cols, f"unique_id_{side}", "left")
    return out


@dataclass(frozen=True)
class ReviewSample:
    sample_id: str
    table: VersionedTable  # the sample, with both records' identifiers (linkage zone)
    page: str  # the offline labelling page (linkage zone)
    csv: str  # the same pairs as a CSV to fill in (linkage zone)
    pairs: int  # raw
    strata: int

    def released(self) -> dict:
        return {"sample_id": self.sample_id, "pairs": release_count(self.pairs), "strata": self.strata,
                "table": self.table.path, "labelling_page": self.page, "csv": self.csv}


def sample_for_review(spark: SparkSession, cfg: JobConfig, standardised: DataFrame) -> ReviewSample:
    """Draw a review sample from the latest scored pairs into the linkage zone: the Delta table,
    an offline labelling page and a CSV to fill in."""
    review, out = cfg.review, cfg.output
    scored = read_delta(spark, out.scored_pairs_table, table="scored_pairs")
    stratified = stratified_pairs(scored.df, link_threshold(spark, cfg), review.borderline_weight)
    sizes = {(r["band"], r["source_pair"]): r["n"]
             for r in stratified.groupBy("band", "source_pair").agg(F.count(F.lit(1)).alias("n")).collect()}
    if not sizes:
        raise InputDataError(f"table scored_pairs: no scored pairs at {out.scored_pairs_table}; nothing to review")
    allocation = allocate(sizes, review.pairs, review.borderline_share, band_edges(review.borderline_weight))
    sample_id = f"v{scored.version}-seed{review.seed}"
    drawn = draw_sample(stratified, allocation, review.seed).withColumn("sample_id", F.lit(sample_id))
    table = write_table(with_both_records(drawn, standardised, REVIEW_FIELDS), out.review_sample_table)
    rows = [r.asDict() for r in table.df.orderBy("band", "source_pair", "pair_id").collect()]
    folder = Path(out.review_dir) / sample_id
    folder.mkdir(parents=True, exist_ok=True)
    edges = band_edges(review.borderline_weight)
    csv_path = write_review_csv(rows, folder / "pairs.csv")
    page = write_labelling_page(rows, folder / "labelling.html", sample_id, edges)
    return ReviewSample(sample_id=sample_id, table=table, page=page, csv=csv_path, pairs=len(rows), strata=len(allocation))


# --------------------------------------------------------------------------------------------
# Labelling offline: a CSV to fill in, and a page that writes the same CSV
# --------------------------------------------------------------------------------------------

CSV_COLUMNS = ("pair_id", "label", "reviewer", "match_weight",
               *[f"{c}_{side}" for c in REVIEW_FIELDS for side in ("l", "r")])


def write_review_csv(rows: list[dict], path: Path) -> str:
    """The sample as a CSV: fill in `label` (match, non_match or unsure) and `reviewer`."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**{k: "" if row.get(k) is None else row[k] for k in CSV_COLUMNS},
                             "label": "", "reviewer": "", "match_weight": round(row["match_weight"], 2)})
    return str(path)


_PAGE = Path(__file__).with_name("labelling.html")


def write_labelling_page(rows: list[dict], path: Path, sample_id: str, edges: list[float]) -> str:
    """A single HTML file with the pairs in it: it needs no server and sends nothing anywhere; its
    button saves the labels as the CSV `tre-link review ingest` reads."""
    pairs = [
        {"pair_id": r["pair_id"], "weight": round(r["match_weight"], 2), "band": band_label(r["band"], edges),
         "l": {c: _text(r.get(f"{c}_l")) for c in REVIEW_FIELDS},
         "r": {c: _text(r.get(f"{c}_r")) for c in REVIEW_FIELDS}}
        for r in rows
    ]
    data = json.dumps({"sample_id": sample_id, "fields": REVIEW_FIELDS, "pairs": pairs}).replace("</", "<\\/")
    page = _PAGE.read_text().replace("__SAMPLE_ID__", html.escape(sample_id)).replace("__DATA__", data)
    path.write_text(page)
    return str(path)


def _text(value) -> str:
    return "" if value is None else str(value)


# --------------------------------------------------------------------------------------------
# Loading labels
# --------------------------------------------------------------------------------------------

LABEL_COLUMNS = "pair_id string, label string, reviewer string, labelled_at timestamp"


def read_label_csv(path: str | Path) -> list[dict]:
    """Rows of a filled-in review CSV that carry a label: pair_id, label, reviewer. Refuses (naming
    the row and pair id, never a record value) a missing column, a label not in LABELS, and a pair
    labelled twice in one file."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"labels file not found: {path}")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("pair_id", "label") if c not in (reader.fieldnames or [])]
        if missing:
            raise InputDataError(f"labels file {path.name}: missing column(s) {', '.join(missing)}")
        rows, problems, seen = [], [], {}
        for line, row in enumerate(reader, start=2):
            pid, label = (row.get("pair_id") or "").strip(), (row.get("label") or "").strip().lower()
            if not label:
                continue  # not labelled yet
            if label not in LABELS:
                problems.append(f"line {line} (pair_id {pid}): label {label!r} is not one of {', '.join(LABELS)}")
            elif pid in seen:
                problems.append(f"line {line}: pair_id {pid} is labelled again (first on line {seen[pid]})")
            else:
                seen[pid] = line
                rows.append({"pair_id": pid, "label": label, "reviewer": (row.get("reviewer") or "").strip() or None})
    if problems:
        raise InputDataError(f"labels file {path.name}: " + "; ".join(problems))
    return rows


def ingest_labels(spark: SparkSession, cfg: JobConfig, path: str | Path) -> dict:
    """Validate a labels CSV against the review sample and merge it into `clerical_labels`: a pair
    labelled again takes its new label. Unknown pair ids are refused by id."""
    from delta.tables import DeltaTable

    rows = read_label_csv(path)
    if not rows:
        raise InputDataError(f"labels file {Path(path).name}: no row has a label")
    sample = read_delta(spark, cfg.output.review_sample_table, table="review sample").df
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    labels = spark.createDataFrame([(r["pair_id"], r["label"], r["reviewer"], now) for r in rows], LABEL_COLUMNS)
    known = {r["pair_id"] for r in labels.join(sample.select("pair_id"), "pair_id", "left_semi").collect()}
    unknown = sorted({r["pair_id"] for r in rows} - known)
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise InputDataError(f"labels file {Path(path).name}: pair_id(s) not in the review sample: {shown}")
    design = sample.select("pair_id", "sample_id", "unique_id_l", "unique_id_r", "match_weight", "match_probability",
                           "band", "source_pair", "stratum", "stratum_pairs", "stratum_sampled")
    incoming = labels.join(design, "pair_id")
    table = cfg.output.clerical_labels_table
    if DeltaTable.isDeltaTable(spark, table):
        (DeltaTable.forPath(spark, table).alias("t").merge(incoming.alias("s"), "t.pair_id = s.pair_id")
         .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
    else:
        write_table(incoming, table)
    counts = {r["label"]: r["count"] for r in labels.groupBy("label").count().collect()}
    total = read_delta(spark, table, table="clerical_labels").df.count()
    return {"table": table, "loaded": {k: release_count(counts.get(k, 0)) for k in LABELS},
            "labelled_pairs": release_count(total)}


# --------------------------------------------------------------------------------------------
# Estimates
# --------------------------------------------------------------------------------------------


def wilson(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion p observed on n (possibly effective, fractional) trials."""
    if n <= 0:
        return 0.0, 1.0
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At p = 0 or 1 the bound is exactly 0 or 1; floating point would put it a hair inside.
    return (0.0 if p <= 0 else max(0.0, centre - half)), (1.0 if p >= 1 else min(1.0, centre + half))


@dataclass(frozen=True)
class Estimate:
    """A weighted share among labelled pairs: `hits` of `total` (both estimated pairs of the
    scored population), from `labelled` labelled pairs, with its 95% interval."""

    hits: float
    total: float
    labelled: int
    lower: float
    upper: float

    @property
    def value(self) -> float | None:
        return self.hits / self.total if self.total else None

    def released(self) -> dict:
        """Rounded estimated pairs, the rate from them, and the interval (3 dp, widened to hold the
        rate); all None when fewer than 10 labelled pairs stand behind it."""
        if release_count(self.labelled) is None:
            return {"value": None, "lower": None, "upper": None, "labelled_pairs": None}
        value = release_rate(round(self.hits), round(self.total))
        lower, upper = math.floor(self.lower * 1000) / 1000, math.ceil(self.upper * 1000) / 1000
        if value is not None:
            lower, upper = min(lower, value), max(upper, value)
        return {"value": value, "lower": lower, "upper": upper, "labelled_pairs": release_count(self.labelled)}


def weighted_share(pairs: list[tuple[float, bool]]) -> Estimate:
    """From (weight, hit) per labelled pair: the weighted share of hits and its Wilson interval at
    Kish's effective sample size."""
    total = sum(w for w, _ in pairs)
    hits = sum(w for w, hit in pairs if hit)
    if not total:
        return Estimate(0.0, 0.0, len(pairs), 0.0, 1.0)
    n_eff = total * total / sum(w * w for w, _ in pairs)
    lower, upper = wilson(hits / total, n_eff)
    return Estimate(hits=hits, total=total, labelled=len(pairs), lower=lower, upper=upper)


def design_weights(labelled: list[dict]) -> list[float]:
    """N_h / n_h for each labelled pair (match or non_match), n_h counted among those labels."""
    per_stratum = defaultdict(int)
    for row in labelled:
        per_stratum[row["stratum"]] += 1
    return [row["stratum_pairs"] / per_stratum[row["stratum"]] for row in labelled]


@dataclass(frozen=True)
class ClericalEstimates:
    sample_id: str | None
    labelled_pairs: int  # match or non_match
    unsure: int
    precision: Estimate
    recall: Estimate
    by_subgroup: list[dict] = field(default_factory=list)  # subgroup, value, precision, recall (Estimates)

    def released(self) -> dict:
        return {
            "sample_id": self.sample_id,
            "labelled_pairs": release_count(self.labelled_pairs),
            "unsure": release_count(self.unsure),
            "precision": self.precision.released(),
            "recall": self.recall.released(),
            "by_subgroup": [
                {"subgroup": g["subgroup"], "value": g["value"],
                 "precision": g["precision"].released(), "recall": g["recall"].released()}
                for g in self.by_subgroup
            ],
        }

    def metrics(self) -> dict[str, float]:
        """Released figures as MLflow metrics (clerical.precision, clerical.recall_lower, ...)."""
        out = {}
        released = self.released()
        for name in ("precision", "recall"):
            for key, value in released[name].items():
                suffix = "" if key == "value" else f"_{key}"
                out[f"clerical.{name}{suffix}"] = value
        for g in released["by_subgroup"]:
            for name in ("precision", "recall"):
                out[f"clerical.{name}.{metric_key(g['subgroup'], g['value'])}"] = g[name]["value"]
        out["clerical.labelled_pairs"] = released["labelled_pairs"]
        return {k: v for k, v in out.items() if v is not None}


def estimate(labelled: list[dict]) -> ClericalEstimates:
    """Precision and recall of `predicted` against the labels, overall and by pair subgroup.

    Each row: stratum, stratum_pairs, label, predicted, and the PAIR_SUBGROUPS values."""
    decided = [r for r in labelled if r["label"] in ("match", "non_match")]
    weights = design_weights(decided)

    def shares(rows_weights) -> tuple[Estimate, Estimate]:
        precision = weighted_share([(w, r["label"] == "match") for r, w in rows_weights if r["predicted"]])
        recall = weighted_share([(w, r["predicted"]) for r, w in rows_weights if r["label"] == "match"])
        return precision, recall

    paired = list(zip(decided, weights))
    precision, recall = shares(paired)
    by_subgroup = []
    for subgroup in PAIR_SUBGROUPS:
        values = sorted({str(r.get(subgroup)) for r in decided})
        for value in values:
            p, r = shares([(row, w) for row, w in paired if str(row.get(subgroup)) == value])
            by_subgroup.append({"subgroup": subgroup, "value": value, "precision": p, "recall": r})
    return ClericalEstimates(
        sample_id=decided[0].get("sample_id") if decided else None,
        labelled_pairs=len(decided),
        unsure=sum(1 for r in labelled if r["label"] == "unsure"),
        precision=precision,
        recall=recall,
        by_subgroup=by_subgroup,
    )


def labelled_pairs(labels: DataFrame, person_index: DataFrame, standardised: DataFrame,
                   age_reference_date) -> DataFrame:
    """Labels of the sample labelled last with `predicted` (both records in one person of
    `person_index`) and each pair's subgroups: one narrow row per labelled pair, no identifier."""
    latest = labels.orderBy(F.desc("labelled_at")).select("sample_id").first()[0]  # the latest labelled sample
    ours = labels.where(F.col("sample_id") == latest)
    persons = person_index.select(unique_id(F.col("source"), F.col("record_id")).alias(UNIQUE_ID), "person_id")
    attrs = standardised.select(
        "source", "record_id", "sex", age_band(F.col("dob"), age_reference_date).alias("age_band"),
        *[(F.col(c).cast("string") if c in standardised.columns else F.lit(None).cast("string")).alias(c)
          for c in ("ethnic_group", "imd_quintile")],
    )
    out = with_both_records(ours, attrs, ("sex", "age_band", "ethnic_group", "imd_quintile"))
    for side in ("l", "r"):
        out = out.join(persons.withColumnRenamed(UNIQUE_ID, f"unique_id_{side}")
                       .withColumnRenamed("person_id", f"person_{side}"), f"unique_id_{side}", "left")

    def agreed(name: str) -> F.Column:
        left, right = F.col(f"{name}_l").cast("string"), F.col(f"{name}_r").cast("string")
        both = F.coalesce(left, F.lit("unknown"))
        return F.when(both == F.coalesce(right, F.lit("unknown")), both).otherwise(F.lit("mixed")).alias(name)

    return out.select(
        "sample_id", "stratum", "stratum_pairs", "label",
        F.coalesce(F.col("person_l") == F.col("person_r"), F.lit(False)).alias("predicted"),
        "source_pair", *[agreed(c) for c in PAIR_SUBGROUPS if c != "source_pair"],
    )


def estimates_for(spark: SparkSession, cfg: JobConfig, person_index: DataFrame,
                  standardised: DataFrame) -> ClericalEstimates | None:
    """Precision and recall of `person_index` on the clerical labels; None when there are none."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, cfg.output.clerical_labels_table):
        return None
    labels = read_delta(spark, cfg.output.clerical_labels_table, table="clerical_labels").df
    rows = [r.asDict() for r in labelled_pairs(labels, person_index, standardised,
                                               cfg.report.age_reference_date).collect()]
    return estimate(rows) if rows else None
