"""Publish one project's research extract: per-project pseudonyms and generalised quasi-identifiers.

The output has one row per linked record and no direct identifiers: the person key is an
HMAC-SHA256 of the linkage-zone person id under the *project's* key, so two projects' extracts
cannot be joined on it, and neither can be joined back to the linkage zone without the key.
Date of birth and postcode are generalised per the project config; other columns appear only
when the project approves them by name.
"""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tre_link.ingest.standardise import STANDARD_COLUMNS
from tre_link.link.deterministic import DETERMINISTIC_KEY
from tre_link.link.records import UNIQUE_ID
from tre_link.platform.config import OutputConfig, ProjectConfig
from tre_link.platform.delta_io import VersionedTable, write_table
from tre_link.platform.errors import ConfigError, InputDataError
from tre_link.platform.hmac_sql import hmac_sha256_hex, with_keyed_columns
from tre_link.platform.paths import overlap

log = logging.getLogger(__name__)

# Columns that identify a person or a record in the linkage zone: never published, even if approved.
# Every standardised identifier and derived key, plus the linkage zone's own ids.
FORBIDDEN_COLUMNS = (frozenset(STANDARD_COLUMNS) - {"source", "sex"}) | {
    "person_id", "cluster_id", "cluster_size", "link_method", UNIQUE_ID, DETERMINISTIC_KEY,
    "household_id", "household_basis",
}
_INDEX_COLUMNS = ("source", "record_id", "person_id")
_STANDARDISED_REQUIRED = ("source", "record_id", "dob", "sex")
TOP_AGE_BAND = 90


def research_path(project: ProjectConfig, output: OutputConfig) -> str:
    """`{research_zone}/{project}/records`, refused when it lies in (or contains) the linkage zone."""
    path = output.research_table(project.name)
    if overlap(path, output.linkage_zone) or overlap(output.research_zone, output.linkage_zone):
        raise ConfigError(
            f"project {project.name}: research output {path} must not lie inside the linkage zone "
            f"{output.linkage_zone} (or contain it)"
        )
    return path


def key_events_path(project: ProjectConfig, output: OutputConfig) -> str:
    """`{research_zone}/{project}/key_events`, refused where the records' path would be."""
    research_path(project, output)
    return output.key_events_table(project.name)


# The person events that change which key a record carries; `new` and `joined` change none, and
# record_removed is a record's, not a key's.
KEY_EVENTS = ("merged", "split", "retired")


def build_key_events(person_events: DataFrame, *, project_key: bytes, left_out: DataFrame | None = None) -> DataFrame:
    """How the project's person keys changed, from the linkage zone's person_events: generation,
    event (merged, split, retired), old_key, new_key (null when a retired person's records all
    went), each key an HMAC of the person ID under the project's key, as the records carry it.
    No linkage-zone ID and no count leaves; events naming a person in `left_out` (person_id: the
    persons who opted out) are left out too."""
    events = person_events.where(F.col("event").isin(*KEY_EVENTS))
    if left_out is not None:
        gone = F.broadcast(left_out.select(F.col("person_id").alias("_gone")).distinct())
        for side in ("person_before", "person_after"):
            events = events.join(gone, events[side] == gone["_gone"], "left_anti")
    keyed = with_keyed_columns(events, project_key, {
        "old_key": hmac_sha256_hex(F.col("person_before")),
        "new_key": hmac_sha256_hex(F.col("person_after")),
    })
    return (keyed.select(F.col("generation").cast("int"), "event", "old_key", "new_key").distinct()
            .repartition(1).sortWithinPartitions("generation", "old_key", "event", "new_key"))


def age_band(dob: Column, reference_date) -> Column:
    """Five-year age band ('40-44') at `reference_date`, '90+' at the top; null for null or future dobs."""
    ref = F.lit(reference_date).cast("date")
    had_birthday = (F.month(dob) < F.month(ref)) | ((F.month(dob) == F.month(ref)) & (F.dayofmonth(dob) <= F.dayofmonth(ref)))
    age = F.year(ref) - F.year(dob) - F.when(had_birthday, F.lit(0)).otherwise(F.lit(1))
    lower = F.floor(age / F.lit(5)).cast("int") * F.lit(5)
    return (
        F.when(dob.isNull() | (age < 0), F.lit(None).cast("string"))
        .when(age >= TOP_AGE_BAND, F.lit(f"{TOP_AGE_BAND}+"))
        .otherwise(F.concat(lower.cast("string"), F.lit("-"), (lower + F.lit(4)).cast("string")))
    )


def _check_columns(project: ProjectConfig, person_index: DataFrame, standardised: DataFrame) -> None:
    missing_index = [c for c in _INDEX_COLUMNS if c not in person_index.columns]
    if missing_index:
        raise InputDataError(f"project {project.name}: person index lacks column(s) {missing_index}")
    missing_std = [c for c in _STANDARDISED_REQUIRED if c not in standardised.columns]
    if project.postcode != "drop":
        missing_std += [c for c in [f"postcode_{project.postcode}"] if c not in standardised.columns]
    if missing_std:
        raise InputDataError(f"project {project.name}: standardised records lack column(s) {missing_std}")
    forbidden = [c for c in project.columns if c in FORBIDDEN_COLUMNS]
    if forbidden:
        raise ConfigError(
            f"project {project.name}: column(s) {forbidden} identify people or records and cannot be "
            "published; use the project's dob/postcode settings for generalised forms"
        )
    fixed = {"person_key", "household_key", "source", "sex", "dob_year_month", "age_band"}
    clashing = [c for c in project.columns if c in fixed]
    if clashing:
        raise ConfigError(f"project {project.name}: column(s) {clashing} are always published; remove them from columns")
    duplicated = sorted({c for c in project.columns if project.columns.count(c) > 1})
    if duplicated:
        raise ConfigError(f"project {project.name}: column(s) {duplicated} listed more than once")
    absent = [c for c in project.columns if c not in standardised.columns]
    if absent:
        raise ConfigError(
            f"project {project.name}: approved column(s) {absent} not present in the standardised records "
            f"(available pass-through columns: {sorted(set(standardised.columns) - FORBIDDEN_COLUMNS - fixed)})"
        )


# Prefixed to a household id before it is keyed, so a household key can never equal a person key.
HOUSEHOLD_KEY_DOMAIN = "household|"


def build_research_records(
    *, person_index: DataFrame, standardised: DataFrame, project: ProjectConfig, project_key: bytes,
    households: DataFrame | None = None,
) -> DataFrame:
    """The research extract as a DataFrame (not written); see publish_project. `households` is the
    linkage zone's household_index, needed when the project publishes household keys."""
    _check_columns(project, person_index, standardised)
    if project.household_key and households is None:
        raise ConfigError(f"project {project.name}: household_key needs the linkage zone's household_index; "
                          "run link with a source that maps a uprn, or an address with a postcode")
    # Hashing the narrow index side spares sorting both sides of a 1:1 join.
    index = person_index.select("source", "record_id", "person_id").hint("shuffle_hash")
    joined = index.join(standardised, on=["source", "record_id"], how="inner")
    keys = {"person_key": hmac_sha256_hex(F.col("person_id").cast("string"))}
    if project.household_key:
        # Only the household id is read: the UPRN and address never leave the linkage zone.
        joined = joined.join(households.select("person_id", "household_id"), "person_id", "left")
        keys["household_key"] = hmac_sha256_hex(F.concat(F.lit(HOUSEHOLD_KEY_DOMAIN), F.col("household_id")))
    keyed = with_keyed_columns(joined, project_key, keys)

    out = [F.col("person_key"), *([F.col("household_key")] if project.household_key else []), F.col("source")]
    if project.dob == "year_month":
        out.append(F.date_format(F.col("dob"), "yyyy-MM").alias("dob_year_month"))
    elif project.dob == "age_band":
        out.append(age_band(F.col("dob"), project.age_reference_date).alias("age_band"))
    out.append(F.col("sex"))
    if project.postcode != "drop":
        name = f"postcode_{project.postcode}"
        out.append(F.col(name).alias(name))
    out.extend(F.col(c) for c in project.columns)
    # Rows go to files by a hash of the keyed pseudonym and are sorted by it within each file, so
    # neither file nor row order reveals source order or record ids. (A global sort says no more
    # and costs an extra pass to sample the key range.)
    return keyed.select(*out).repartition("person_key").sortWithinPartitions("person_key", "source")


def publish_project(
    *,
    person_index: DataFrame,
    standardised: DataFrame,
    project: ProjectConfig,
    project_key: bytes,
    output: OutputConfig,
    metadata: dict | None = None,
    households: DataFrame | None = None,
) -> VersionedTable:
    """Write the project's research extract to `{research_zone}/{project}/records` (Delta), with
    `metadata` (which link run it came from) in the commit.

    Columns: person_key, [household_key: when the project asks for it, from `households`], source, [dob_year_month | age_band], sex, [postcode_district |
    postcode_sector], then the project's approved columns in the configured order.
    """
    path = research_path(project, output)
    records = build_research_records(
        person_index=person_index, standardised=standardised, project=project, project_key=project_key,
        households=households,
    )
    written = write_table(records, path, metadata=metadata)
    log.info("published project %s to %s (Delta version %d)", project.name, path, written.version)
    return written
