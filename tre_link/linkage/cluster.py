"""Clustering links into one person id per record: the master person index."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from splink import SparkAPI
from splink.clustering import cluster_pairwise_predictions_at_threshold

from tre_link.linkage.model import UNIQUE_ID


def cluster_records(spark: SparkSession, nodes: DataFrame, links: DataFrame) -> DataFrame:
    """Connected components over every link (all of them already at or above threshold).

    Records sharing a deterministic key are one component already, so each such group is
    collapsed to one node first and Splink's connected components runs only on the nodes
    probabilistic links touch: a graph a small fraction of the records' size.

    Returns `person_index`: source, record_id, person_id, cluster_size, link_method, where
    link_method says how the record joined its cluster: deterministic, probabilistic, both,
    or singleton. person_id is derived from the cluster's smallest unique_id, so it is stable
    across reruns on the same inputs.
    """
    # Both small and read by every iteration of connected components: materialised once.
    node_of = _collapse_deterministic_groups(nodes).localCheckpoint(eager=True)
    probabilistic = links.where(F.col("link_method") == "probabilistic")
    edges = (
        probabilistic.join(node_of.withColumnsRenamed({UNIQUE_ID: "unique_id_l", "node": "node_l"}), "unique_id_l")
        .join(node_of.withColumnsRenamed({UNIQUE_ID: "unique_id_r", "node": "node_r"}), "unique_id_r")
        .where(F.col("node_l") != F.col("node_r"))
        .select(F.col("node_l").alias("unique_id_l"), F.col("node_r").alias("unique_id_r"))
    ).localCheckpoint(eager=True)
    graph_nodes = edges.select(F.col("unique_id_l").alias(UNIQUE_ID)).union(
        edges.select(F.col("unique_id_r").alias(UNIQUE_ID))
    ).distinct()
    if edges.isEmpty():
        components = spark.createDataFrame([], "node string, cluster_id string")
    else:
        components = cluster_pairwise_predictions_at_threshold(
            graph_nodes, edges, db_api=SparkAPI(spark_session=spark), node_id_column_name=UNIQUE_ID
        ).as_spark_dataframe().select(F.col(UNIQUE_ID).alias("node"), "cluster_id")
    clusters = node_of.join(components, on="node", how="left").select(
        UNIQUE_ID, F.coalesce("cluster_id", "node").alias("cluster_id")
    )

    endpoints = links.select(F.col("unique_id_l").alias(UNIQUE_ID), "link_method").unionByName(
        links.select(F.col("unique_id_r").alias(UNIQUE_ID), "link_method")
    )
    methods = endpoints.groupBy(UNIQUE_ID).agg(
        F.when(F.size(F.collect_set("link_method")) > 1, F.lit("both"))
        .otherwise(F.first("link_method"))
        .alias("link_method")
    )
    clustered = (
        clusters.join(nodes.select(UNIQUE_ID, "source", "record_id"), on=UNIQUE_ID)
        .join(methods, on=UNIQUE_ID, how="left")
    )
    sized = clustered.groupBy("cluster_id").agg(
        F.count(F.lit(1)).alias("cluster_size"), F.min(UNIQUE_ID).alias("_anchor")
    )
    return clustered.join(sized, on="cluster_id").select(
        "source",
        "record_id",
        F.substring(F.sha2(F.concat(F.lit("person:"), F.col("_anchor")), 256), 1, 20).alias("person_id"),
        F.col("cluster_size").cast("int").alias("cluster_size"),
        F.coalesce(F.col("link_method"), F.lit("singleton")).alias("link_method"),
    )


def _collapse_deterministic_groups(records: DataFrame) -> DataFrame:
    """unique_id -> node: the smallest unique_id sharing its deterministic key, or itself."""
    anchors = (
        records.where(F.col("deterministic_nhs").isNotNull())
        .groupBy("deterministic_nhs")
        .agg(F.min(UNIQUE_ID).alias("_group_anchor"))
    )
    return records.select(UNIQUE_ID, "deterministic_nhs").join(anchors, on="deterministic_nhs", how="left").select(
        UNIQUE_ID, F.coalesce("_group_anchor", UNIQUE_ID).alias("node")
    )
