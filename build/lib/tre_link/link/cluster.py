"""Clustering links into one person id per record: the master person index."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from splink import SparkAPI
from splink.clustering import cluster_pairwise_predictions_at_threshold

from tre_link.link.records import UNIQUE_ID


def cluster_records(groups: DataFrame, links: DataFrame) -> DataFrame:
    """Connected components over every link (all of them already at or above threshold).

    Records sharing a deterministic key are one component already, so `groups`
    (`deterministic_groups`) collapses each such group to one node, its anchor, and Splink's
    connected components runs only on the nodes probabilistic links touch: a graph a small
    fraction of the records' size.

    Returns `person_index`: source, record_id, person_id, cluster_size, link_method, where
    link_method says how the record joined its cluster: deterministic, probabilistic, both,
    or singleton. person_id is derived from the cluster's smallest unique_id, so it is stable
    across reruns on the same inputs.
    """
    probabilistic = links.where(F.col("link_method") == "probabilistic")
    # Materialised once: connected components reads the edges in every iteration. Each join
    # hashes its smaller side (the links, the components) rather than sorting both.
    edges = (
        probabilistic.hint("shuffle_hash")
        .join(groups.select(F.col(UNIQUE_ID).alias("unique_id_l"), F.col("node").alias("node_l")), "unique_id_l")
        .hint("shuffle_hash")
        .join(groups.select(F.col(UNIQUE_ID).alias("unique_id_r"), F.col("node").alias("node_r")), "unique_id_r")
        .where(F.col("node_l") != F.col("node_r"))
        .select(F.col("node_l").alias("unique_id_l"), F.col("node_r").alias("unique_id_r"))
    ).localCheckpoint(eager=True)
    graph_nodes = edges.select(F.col("unique_id_l").alias(UNIQUE_ID)).union(
        edges.select(F.col("unique_id_r").alias(UNIQUE_ID))
    ).distinct()
    spark = edges.sparkSession
    if edges.isEmpty():
        components = spark.createDataFrame([], "node string, cluster_id string")
    else:
        components = cluster_pairwise_predictions_at_threshold(
            graph_nodes, edges, db_api=SparkAPI(spark_session=spark), node_id_column_name=UNIQUE_ID
        ).as_spark_dataframe().select(F.col(UNIQUE_ID).alias("node"), "cluster_id")

    # A record's link method, from what the graph already holds: a deterministic group of two or
    # more records links each of them; a probabilistic link links both its ends.
    probabilistic_ends = (
        probabilistic.select(F.col("unique_id_l").alias(UNIQUE_ID))
        .union(probabilistic.select(F.col("unique_id_r").alias(UNIQUE_ID)))
        .distinct()
        .withColumn("_probabilistic", F.lit(True))
    )
    clustered = (
        groups.join(components.hint("shuffle_hash"), on="node", how="left")
        .join(probabilistic_ends.hint("shuffle_hash"), on=UNIQUE_ID, how="left")
        .withColumn("cluster_id", F.coalesce("cluster_id", "node"))
    )
    deterministic, probabilistic_end = F.col("node_size") > 1, F.col("_probabilistic").isNotNull()
    cluster = Window.partitionBy("cluster_id")
    return clustered.select(
        "source",
        "record_id",
        F.substring(F.sha2(F.concat(F.lit("person:"), F.min(UNIQUE_ID).over(cluster)), 256), 1, 20).alias("person_id"),
        F.count(F.lit(1)).over(cluster).cast("int").alias("cluster_size"),
        F.when(deterministic & probabilistic_end, F.lit("both"))
        .when(deterministic, F.lit("deterministic"))
        .when(probabilistic_end, F.lit("probabilistic"))
        .otherwise(F.lit("singleton"))
        .alias("link_method"),
    )
