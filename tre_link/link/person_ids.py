"""Stable person IDs: this linkage's clusters take over the IDs of the previous person index by
fixed rules, and every change is an event.

A cluster is labelled by its smallest unique_id (`cluster_records`); that label is internal and is
never written. Against the previous index (source, record_id, person_id, issued_in):

- **kept / joined**: each previous person is claimed by the cluster holding most of its records
  (ties: the smallest cluster label). A record new to the index that lands in a cluster keeping an
  ID has *joined* that person.
- **merged**: a cluster claiming several previous persons keeps the oldest ID (smallest
  `issued_in`, then the smallest ID); the others are *retired*, their records *merged* into it.
- **split**: the records of a previous person outside the cluster that claimed it are *split* off
  into their own cluster's ID.
- **new**: a cluster that claims no previous person gets a new ID: 20 hex characters of an
  HMAC-SHA256, under the person-ID key, of the index generation and the cluster's label. Without
  the key nobody can derive an ID from record ids; with the same key, inputs and previous index,
  a rerun (or `reproduce`) issues the same IDs. `issued_in` records the generation that issued it.
- **record_removed**: a previous record absent now (deleted, or removed upstream).
- **retired**: a previous ID no cluster keeps, with its heir (the ID its claiming cluster kept) or
  none when every one of its records was removed.

Everything is DataFrame → DataFrame in Spark SQL: no Python UDF, nothing record-level collected.
An unchanged relink gives every cluster its own previous person, so no events and the same IDs.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from tre_link.platform.hmac_sql import hmac_sha256_hex, with_keyed_columns

EVENTS = ("new", "joined", "merged", "split", "retired", "record_removed")
PERSON_INDEX_COLUMNS = ("source", "record_id", "person_id", "cluster_size", "link_method", "issued_in")
EVENT_SCHEMA = ("generation int, event string, person_before string, person_after string, record_count long")
_PREVIOUS_SCHEMA = "source string, record_id string, person_id string, issued_in int"
ID_LENGTH = 20


def previous_persons(previous: DataFrame | None, spark) -> DataFrame:
    """The previous index's columns this module reads; an index from before stable IDs (no
    `issued_in`) counts as issued in generation 0, and no index as an empty one."""
    if previous is None:
        return spark.createDataFrame([], _PREVIOUS_SCHEMA)
    issued = F.col("issued_in") if "issued_in" in previous.columns else F.lit(0)
    return previous.select("source", "record_id", "person_id", F.coalesce(issued.cast("int"), F.lit(0)).alias("issued_in"))


def _new_id(generation: int, cluster: Column) -> Column:
    """A new person ID, keyed: valid only inside `with_keyed_columns`."""
    return F.substring(hmac_sha256_hex(F.concat(F.lit(f"person:{generation}:"), cluster)), 1, ID_LENGTH)


def _claims(clusters: DataFrame, prev: DataFrame) -> DataFrame:
    """Per previous person still holding a record: the cluster that claims it (most of its records,
    ties to the smallest label), with the person's issued_in."""
    keys = ["source", "record_id"]
    parts = (clusters.select(*keys, "cluster").join(prev, keys)
             .groupBy("cluster", "person_id", "issued_in").agg(F.count(F.lit(1)).alias("n")))
    by_person = Window.partitionBy("person_id").orderBy(F.desc("n"), F.asc("cluster"))
    return parts.withColumn("_rank", F.row_number().over(by_person)).where("_rank = 1").drop("_rank", "n")


def assign_person_ids(clusters: DataFrame, previous: DataFrame | None, *, generation: int, key: bytes) -> DataFrame:
    """`clusters` (source, record_id, cluster, cluster_size, link_method) with person IDs carried
    forward from `previous` (a person index, or None for the first): PERSON_INDEX_COLUMNS and the
    internal `cluster` label, which `person_events` reads and which is never written."""
    prev = previous_persons(previous, clusters.sparkSession)
    by_cluster = Window.partitionBy("cluster").orderBy(F.asc("issued_in"), F.asc("person_id"))
    kept = (_claims(clusters, prev).withColumn("_rank", F.row_number().over(by_cluster)).where("_rank = 1")
            .select("cluster", F.col("person_id").alias("_kept"), F.col("issued_in").alias("_kept_in")))
    labels = clusters.select("cluster").distinct().join(kept, "cluster", "left")
    assigned = with_keyed_columns(labels, key, {
        "person_id": F.when(F.col("_kept").isNotNull(), F.col("_kept")).otherwise(_new_id(generation, F.col("cluster"))),
        "issued_in": F.coalesce(F.col("_kept_in"), F.lit(generation)).cast("int"),
    }).select("cluster", "person_id", "issued_in")
    return clusters.join(assigned, "cluster").select(*PERSON_INDEX_COLUMNS, "cluster")


def link_persons(clusters: DataFrame, previous: DataFrame | None, *, generation: int,
                 key: bytes) -> tuple[DataFrame, DataFrame]:
    """The person index (PERSON_INDEX_COLUMNS) and its events, both lazy (for small frames: the
    link stage materialises the assigned index before reading it twice)."""
    assigned = assign_person_ids(clusters, previous, generation=generation, key=key)
    return assigned.select(*PERSON_INDEX_COLUMNS), person_events(assigned, previous, generation)


def person_events(assigned: DataFrame, previous: DataFrame | None, generation: int) -> DataFrame:
    """The events (EVENT_SCHEMA) of an index from `assign_person_ids` against `previous`."""
    keys = ["source", "record_id"]
    prev = previous_persons(previous, assigned.sparkSession)
    # The heir of each previous person still holding a record: the ID its claiming cluster kept.
    heirs = _claims(assigned, prev).join(
        assigned.select("cluster", F.col("person_id").alias("heir")).distinct(), "cluster"
    ).select(F.col("person_id").alias("before"), "heir")
    index = assigned
    now = index.select(*keys, F.col("person_id").alias("after"), F.col("issued_in").alias("after_in"))
    before = prev.select(*keys, F.col("person_id").alias("before"))
    moves = (now.join(before, keys, "full_outer").groupBy("before", "after", "after_in")
             .agg(F.count(F.lit(1)).alias("record_count")).join(heirs, "before", "left"))
    b, a = F.col("before"), F.col("after")
    moved = moves.select(
        F.when(b.isNull() & (F.col("after_in") < generation), F.lit("joined"))
        .when(a.isNull(), F.lit("record_removed"))
        .when(b.isNotNull() & (b != a) & (a == F.col("heir")), F.lit("merged"))
        .when(b.isNotNull() & (b != a), F.lit("split"))
        .alias("event"),
        b.alias("person_before"),
        F.when(a.isNull(), F.lit(None).cast("string")).otherwise(a).alias("person_after"),
        "record_count",
    ).where(F.col("event").isNotNull())  # unchanged records, and new records of a new ID (its `new` event)
    issued = (index.where(F.col("issued_in") == generation).groupBy("person_id").agg(F.count(F.lit(1)).alias("record_count"))
              .select(F.lit("new").alias("event"), F.lit(None).cast("string").alias("person_before"),
                      F.col("person_id").alias("person_after"), "record_count"))
    retired = (prev.groupBy(F.col("person_id").alias("before")).agg(F.count(F.lit(1)).alias("record_count"))
               .join(index.select(F.col("person_id").alias("before")).distinct(), "before", "left_anti")
               .join(heirs, "before", "left")
               .select(F.lit("retired").alias("event"), F.col("before").alias("person_before"),
                       F.col("heir").alias("person_after"), "record_count"))
    return (moved.unionByName(issued).unionByName(retired)
            .select(F.lit(generation).cast("int").alias("generation"), "event", "person_before", "person_after",
                    F.col("record_count").cast("long")))
