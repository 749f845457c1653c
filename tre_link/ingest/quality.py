"""Data-quality profiles of standardised sources: matching statistics to show ahead of linkage results.

The profiles are built from counts of the output of `standardise_source` and are small aggregate
frames of counts only: no record values leave them.

profile_from_counts: one row per (source, field), for nhs_number, given_name, family_name, dob, sex,
postcode, address and uprn (a field the source does not map counts 0 present).
  rows          rows in the source
  present       rows where the raw field held something (nhs_number: status != 'missing';
                dob/sex/postcode/uprn: the *_raw_present flags; names and address: non-null after
                cleaning, since a name that cleans to nothing, e.g. only a title, carries no identity)
  valid         rows where the standardised value is usable (nhs_number: status valid or token;
                uprn: 12 digits; others: non-null after standardisation)
  completeness  present / rows
  validity      valid / present (null when nothing is present)

duplicate_profile: one row per source.
  rows                        rows in the source
  duplicate_record_ids        distinct record_id values occurring more than once
  duplicate_identifier_groups distinct (nhs_number, given_name, family_name, dob, postcode) tuples
                              occurring more than once (all-null tuples ignored)
  duplicate_identifier_rows   rows belonging to such groups
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from tre_link.platform.config import QUALITY_FIELDS, SourceConfig

PROFILE_FIELDS = QUALITY_FIELDS
DUPLICATE_KEY = ("nhs_number", "given_name", "family_name", "dob", "postcode")
PROFILE_COUNTS = ("rows", *(f"{field}__{count}" for field in PROFILE_FIELDS for count in ("present", "valid")))


def _present_valid(field: str) -> tuple[Column, Column]:
    if field == "nhs_number":
        status = F.col("nhs_number_status")
        return status != "missing", status.isin("valid", "token")
    valid = F.col(field).isNotNull()
    if field in ("dob", "sex", "postcode", "uprn"):
        return F.col(f"{field}_raw_present") | valid, valid
    return valid, valid


def profile_counts() -> list[Column]:
    """The aggregates behind a quality profile, named by `PROFILE_COUNTS`: rows, and per field
    present and valid. Usable in groupBy().agg() or as observed metrics of a write."""
    aggs = [F.count(F.lit(1))]
    for field in PROFILE_FIELDS:
        present, valid = _present_valid(field)
        aggs += [F.count(F.when(present, F.lit(1))), F.count(F.when(valid, F.lit(1)))]
    return [agg.alias(name) for agg, name in zip(aggs, PROFILE_COUNTS)]


# A mapped field whose present values are valid less often than this, or present in fewer rows,
# is worth a warning in the terminal and in MLflow (a floor, below, stops the run).
WARN_VALIDITY = 0.9
WARN_COMPLETENESS = 0.5


def floor_breaches(source: SourceConfig, counts: dict) -> list[str]:
    """Fields whose share of rows with a valid value is under the source's floor for it."""
    rows = counts["rows"] or 1
    return [
        f"{field}: valid in {counts[f'{field}__valid'] / rows:.1%} of rows, under the floor of "
        f"{source.quality_floor(field):.1%}"
        for field in PROFILE_FIELDS
        if counts[f"{field}__valid"] / rows < source.quality_floor(field)
    ]


def quality_warnings(source: SourceConfig, counts: dict) -> list[str]:
    """Mapped fields often missing or often invalid: shares only, never counts or values."""
    warnings = []
    mapped = [f for f in PROFILE_FIELDS if f in source.columns.mapped_fields()]
    for field in mapped:
        present, valid = counts[f"{field}__present"], counts[f"{field}__valid"]
        if counts["rows"] and present / counts["rows"] < WARN_COMPLETENESS:
            warnings.append(f"{source.name}.{field}: present in {present / counts['rows']:.0%} of rows")
        if present and valid / present < WARN_VALIDITY:
            warnings.append(f"{source.name}.{field}: {valid / present:.0%} of present values are valid")
    return warnings


def profile_from_counts(spark: SparkSession, source: str, counts: dict) -> DataFrame:
    """The quality profile of one source from its `profile_counts` already computed, e.g.
    observed while the source was written (counts only, one row of them)."""
    # Literals in one JVM-side row: a frame made from a Python list would start a Python worker.
    row = [F.lit(source).alias("source"), *(F.lit(counts[name]).cast("long").alias(name) for name in PROFILE_COUNTS)]
    return _profile_rows(spark.range(1).select(*row))


def _profile_rows(wide: DataFrame) -> DataFrame:
    """One row per (source, field) from one row per source of `profile_counts`."""
    long = wide.select(
        "source",
        "rows",
        F.explode(
            F.array(
                *[
                    F.struct(
                        F.lit(field).alias("field"),
                        F.col(f"{field}__present").alias("present"),
                        F.col(f"{field}__valid").alias("valid"),
                    )
                    for field in PROFILE_FIELDS
                ]
            )
        ).alias("p"),
    )
    return long.select(
        F.col("source").cast("string").alias("source"),
        F.col("p.field").alias("field"),
        F.col("rows").cast("long").alias("rows"),
        F.col("p.present").cast("long").alias("present"),
        F.col("p.valid").cast("long").alias("valid"),
        F.when(F.col("rows") > 0, F.col("p.present") / F.col("rows")).cast("double").alias("completeness"),
        F.when(F.col("p.present") > 0, F.col("p.valid") / F.col("p.present")).cast("double").alias("validity"),
    )


def duplicate_profile(standardised: DataFrame) -> DataFrame:
    """Per source: duplicated record ids and exact-duplicate identifier rows (counts only)."""
    by_id = (
        standardised.groupBy("source", "record_id")
        .agg(F.count(F.lit(1)).alias("n"))
        .groupBy("source")
        .agg(
            F.sum("n").alias("rows"),
            F.count(F.when(F.col("record_id").isNotNull() & (F.col("n") > 1), F.lit(1))).alias(
                "duplicate_record_ids"
            ),
        )
    )
    any_key = F.greatest(*[F.col(c).isNotNull() for c in DUPLICATE_KEY])
    by_key = (
        standardised.where(any_key)
        .groupBy("source", *DUPLICATE_KEY)
        .agg(F.count(F.lit(1)).alias("n"))
        .where(F.col("n") > 1)
        .groupBy("source")
        .agg(
            F.count(F.lit(1)).alias("duplicate_identifier_groups"),
            F.sum("n").alias("duplicate_identifier_rows"),
        )
    )
    return by_id.join(by_key, "source", "left").select(
        F.col("source").cast("string").alias("source"),
        F.col("rows").cast("long").alias("rows"),
        F.col("duplicate_record_ids").cast("long").alias("duplicate_record_ids"),
        F.coalesce(F.col("duplicate_identifier_groups"), F.lit(0)).cast("long").alias("duplicate_identifier_groups"),
        F.coalesce(F.col("duplicate_identifier_rows"), F.lit(0)).cast("long").alias("duplicate_identifier_rows"),
    )
