"""The deterministic pass: records sharing a valid NHS number (or token) are the same person,
unless their dates of birth disagree, in which case they are reported and left to the
probabilistic pass rather than linked silently."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from tre_link.link.records import UNIQUE_ID

LINKABLE_STATUSES = ("valid", "token")
# The column holding a record's deterministic key: its NHS number (or token), or null when the
# record is left to the probabilistic pass.
DETERMINISTIC_KEY = "deterministic_nhs"


def assign_deterministic_keys(records: DataFrame) -> DataFrame:
    """Add `deterministic_nhs`: the NHS number (or token) when it is valid and the record's DOB
    agrees with the commonest DOB among records carrying that number (or is missing), else null.
    Also adds `nhs_dob_conflict` for records whose valid number came with a disagreeing DOB."""
    usable = F.col("nhs_number_status").isin(*LINKABLE_STATUSES)
    # An aggregate rather than a ranking window: Spark then knows nhs_number is unique here and
    # drops this join from plans that read only the records' own columns (the term-frequency
    # counts), instead of running it again for each.
    modal_dob = (
        records.where(usable & F.col("dob").isNotNull())
        .groupBy("nhs_number", "dob")
        .count()
        .groupBy("nhs_number")
        # the commonest DOB; on a tie, the earliest (the largest negated day number)
        .agg(F.max_by("dob", F.struct("count", -F.unix_date("dob"))).alias("_modal_dob"))
    )
    joined = records.join(modal_dob, on="nhs_number", how="left")
    conflict = usable & F.col("dob").isNotNull() & (F.col("dob") != F.col("_modal_dob"))
    return joined.select(
        *records.columns,
        F.when(usable & ~conflict, F.col("nhs_number")).alias(DETERMINISTIC_KEY),
        F.coalesce(conflict, F.lit(False)).alias("nhs_dob_conflict"),
    )


def deterministic_groups(keyed_records: DataFrame) -> DataFrame:
    """unique_id, source, record_id -> node: the anchor of the record's deterministic group (the
    smallest unique_id sharing its key), or the record itself when it has no key; node_size,
    the records in that group (1 without a key); and keyed, whether the group has a key. A
    window, not a join back to each group: one shuffle of the keyed records."""
    group = Window.partitionBy(DETERMINISTIC_KEY)
    keyed = keyed_records.where(F.col(DETERMINISTIC_KEY).isNotNull()).select(
        UNIQUE_ID, "source", "record_id",
        F.min(UNIQUE_ID).over(group).alias("node"),
        F.count(F.lit(1)).over(group).cast("int").alias("node_size"),
        F.lit(True).alias("keyed"),
    )
    unkeyed = keyed_records.where(F.col(DETERMINISTIC_KEY).isNull()).select(
        UNIQUE_ID, "source", "record_id", F.col(UNIQUE_ID).alias("node"), F.lit(1).alias("node_size"),
        F.lit(False).alias("keyed"),
    )
    return keyed.unionByName(unkeyed)


def deterministic_groups_of(keyed_records: DataFrame, ids: DataFrame) -> DataFrame:
    """`deterministic_groups` of the records in `ids` (unique_id; a few: broadcast) and of every
    record sharing a key with one of them, each group whole: what a refresh reads, without
    grouping every record."""
    wanted = keyed_records.join(F.broadcast(ids.select(UNIQUE_ID).distinct()), UNIQUE_ID, "left_semi")
    keys = wanted.where(F.col(DETERMINISTIC_KEY).isNotNull()).select(DETERMINISTIC_KEY).distinct()
    return deterministic_groups(keyed_records.join(F.broadcast(keys), DETERMINISTIC_KEY, "left_semi")
                                .unionByName(wanted.where(F.col(DETERMINISTIC_KEY).isNull())))


def deterministic_edges(groups: DataFrame) -> DataFrame:
    """A star of edges per deterministic group (see `deterministic_groups`), from its anchor to
    every other record: n-1 edges per group instead of n*(n-1)/2 pairs, with the same connected
    components."""
    return groups.where(F.col(UNIQUE_ID) != F.col("node")).select(
        F.col("node").alias("unique_id_l"),
        F.col(UNIQUE_ID).alias("unique_id_r"),
        F.lit(None).cast("double").alias("match_weight"),
        F.lit(1.0).alias("match_probability"),
        F.lit("deterministic").alias("link_method"),
    )


def exclude_decided_pairs(blocking_rule: str) -> str:
    """Restrict a blocking rule to pairs the deterministic pass has not already decided:
    two records that both carry a usable NHS number are either linked (same number) or,
    since a single-digit typo always fails Modulus 11, different people."""
    return f"({blocking_rule}) and (l.{DETERMINISTIC_KEY} is null or r.{DETERMINISTIC_KEY} is null)"
