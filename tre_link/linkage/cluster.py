"""Clustering links into one person id per record: the master person index."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from splink import SparkAPI
from splink.clustering import cluster_pairwise_predictions_at_threshold

from tre_link.linkage.model import UNIQUE_ID


def cluster_records(spark: SparkSession, nodes: DataFrame, links: DataFrame) -> DataFrame:
    """Connected components over every link (all of them already at or above threshold).

    Returns `person_index`: source, record_id, person_id, cluster_size, link_method, where
    link_method says how the record joined its cluster: deterministic, probabilistic, both,
    or singleton. person_id is derived from the cluster's smallest unique_id, so it is stable
    across reruns on the same inputs.
    """
    db_api = SparkAPI(spark_session=spark)
    clusters = cluster_pairwise_predictions_at_threshold(
        nodes.select(UNIQUE_ID),
        links.select("unique_id_l", "unique_id_r"),
        db_api=db_api,
        node_id_column_name=UNIQUE_ID,
    ).as_spark_dataframe()

    endpoints = links.select(F.col("unique_id_l").alias(UNIQUE_ID), "link_method").unionByName(
        links.select(F.col("unique_id_r").alias(UNIQUE_ID), "link_method")
    )
    methods = endpoints.groupBy(UNIQUE_ID).agg(
        F.when(F.size(F.collect_set("link_method")) > 1, F.lit("both"))
        .otherwise(F.first("link_method"))
        .alias("link_method")
    )
    clustered = (
        clusters.select(UNIQUE_ID, "cluster_id")
        .join(nodes.select(UNIQUE_ID, "source", "record_id"), on=UNIQUE_ID)
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
