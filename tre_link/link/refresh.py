"""What a refresh links again, and what it keeps: pure DataFrame transforms the link stage's
`refresh_link` composes.

A refresh scores only the pairs holding a *changed* record: one inserted or updated, or one sharing
a linkable NHS number with a changed or removed record (its deterministic key hangs on the commonest
date of birth among the records carrying that number, so it may change with them). The records it
*touches* are the changed ones and the removed ones (deleted, or the old side of an update). Links
with no touched end are kept; links with a touched end are replaced by the new ones. Only the
persons of the previous index holding a touched record, or at an end of a new link, are clustered
again: no kept link crosses from them to another person, so every other person is a component of
the final graph as it stands, and its records, links and ID are left alone.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tre_link.link.deterministic import LINKABLE_STATUSES
from tre_link.link.engine import CHANGED
from tre_link.link.records import UNIQUE_ID, unique_id


def linkable_numbers(records: DataFrame) -> DataFrame:
    """The distinct NHS numbers (or tokens) among `records` that the deterministic pass links on."""
    return (records.where(F.col("nhs_number_status").isin(*LINKABLE_STATUSES) & F.col("nhs_number").isNotNull())
            .select("nhs_number").distinct())


def flag_changed(prepared: DataFrame, changed: DataFrame, removed_numbers: DataFrame) -> DataFrame:
    """`prepared` (every record now, with unique_id) with the boolean column CHANGED: the record is in
    `changed` (unique_id), or carries a linkable number in `removed_numbers` (nhs_number) or one a
    changed record carries. Both sets are small: broadcast."""
    marked = changed.select(UNIQUE_ID).distinct().withColumn("_changed", F.lit(True))
    with_changed = prepared.join(F.broadcast(marked), UNIQUE_ID, "left")
    numbers = linkable_numbers(with_changed.where("_changed")).unionByName(removed_numbers.select("nhs_number")) \
        .distinct().withColumn("_shares_number", F.lit(True))
    linkable = F.col("nhs_number_status").isin(*LINKABLE_STATUSES)
    return (with_changed.join(F.broadcast(numbers), "nhs_number", "left")
            .withColumn(CHANGED, F.coalesce(F.col("_changed"), F.lit(False))
                        | (linkable & F.coalesce(F.col("_shares_number"), F.lit(False))))
            .drop("_changed", "_shares_number"))


def with_end_ids(links: DataFrame) -> DataFrame:
    """Links as the links table holds them (source and record_id of each end) with unique_id_l and _r."""
    return links.select("*", unique_id(F.col("source_l"), F.col("record_id_l")).alias("unique_id_l"),
                        unique_id(F.col("source_r"), F.col("record_id_r")).alias("unique_id_r"))


def with_an_end_in(pairs: DataFrame, ids: DataFrame) -> DataFrame:
    """The pairs (unique_id_l, unique_id_r) with either end in `ids` (unique_id)."""
    ends = ids.select(UNIQUE_ID).distinct()
    left = pairs.join(F.broadcast(ends.withColumnRenamed(UNIQUE_ID, "unique_id_l")), "unique_id_l", "left_semi")
    right = pairs.join(F.broadcast(ends.withColumnRenamed(UNIQUE_ID, "unique_id_r")), "unique_id_r", "left_semi")
    return left.unionByName(right).distinct()


def without_an_end_in(pairs: DataFrame, ids: DataFrame) -> DataFrame:
    """The pairs with neither end in `ids`: the links a refresh keeps."""
    ends = ids.select(UNIQUE_ID).distinct()
    return (pairs.join(F.broadcast(ends.withColumnRenamed(UNIQUE_ID, "unique_id_l")), "unique_id_l", "left_anti")
            .join(F.broadcast(ends.withColumnRenamed(UNIQUE_ID, "unique_id_r")), "unique_id_r", "left_anti"))


def touched_persons(previous: DataFrame, touched: DataFrame, new_links: DataFrame) -> DataFrame:
    """The rows of the previous person index (source, record_id, person_id, ...) of every person
    holding a touched record or a record at an end of a new link: the persons clustered again."""
    indexed = previous.withColumn(UNIQUE_ID, unique_id(F.col("source"), F.col("record_id")))
    ends = (touched.select(UNIQUE_ID)
            .unionByName(new_links.select(F.col("unique_id_l").alias(UNIQUE_ID)))
            .unionByName(new_links.select(F.col("unique_id_r").alias(UNIQUE_ID))).distinct())
    persons = indexed.join(ends, UNIQUE_ID, "left_semi").select("person_id").distinct()
    return previous.join(persons, "person_id", "left_semi")


def with_linked_persons(previous: DataFrame, persons: DataFrame, links: DataFrame) -> DataFrame:
    """The rows of the previous person index of `persons` (rows of it) and of every person holding
    the other end of a link (unique_id_l, unique_id_r) from one of their records. Where records
    without an NHS number may not bridge numbers, a link can join two persons; a record whose
    strongest link changed may move to the person of another of its links."""
    ids = persons.select(unique_id(F.col("source"), F.col("record_id")).alias(UNIQUE_ID))
    return touched_persons(previous, ids, with_an_end_in(links, ids))


def partition_differences(index: DataFrame, other: DataFrame) -> int:
    """How many records two person indexes (source, record_id, person_id) put in different
    company: each record is labelled by the smallest unique_id of its person in each index, and
    two partitions of the same records are equal exactly when every record's labels agree.
    Records in only one index count as different."""
    def labelled(df: DataFrame, name: str) -> DataFrame:
        uid = unique_id(F.col("source"), F.col("record_id"))
        return df.select(uid.alias(UNIQUE_ID), "person_id").withColumn(
            name, F.min(UNIQUE_ID).over(_by_person())).select(UNIQUE_ID, name)

    joined = labelled(index, "_a").join(labelled(other, "_b"), UNIQUE_ID, "full_outer")
    return joined.where(~F.col("_a").eqNullSafe(F.col("_b"))).count()


def _by_person():
    from pyspark.sql import Window

    return Window.partitionBy("person_id")
