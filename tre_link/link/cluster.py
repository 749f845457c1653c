"""Clustering links into one person id per record: the master person index."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from splink import SparkAPI
from splink.clustering import cluster_pairwise_predictions_at_threshold

from tre_link.link.records import UNIQUE_ID


def links_with_nodes(links: DataFrame, groups: DataFrame) -> DataFrame:
    """`links` with node_l, node_r, keyed_l and keyed_r: the deterministic group (`groups`) of
    each end and whether it has a key. Links with an end outside `groups` drop out. Each join
    hashes its smaller side (the links) rather than sorting both."""
    ends = groups.select(UNIQUE_ID, "node", "keyed")
    return (links.hint("shuffle_hash").join(ends.toDF("unique_id_l", "node_l", "keyed_l"), "unique_id_l")
            .hint("shuffle_hash").join(ends.toDF("unique_id_r", "node_r", "keyed_r"), "unique_id_r"))


def links_to_one_number(links: DataFrame) -> DataFrame:
    """The probabilistic links (`links_with_nodes`) a record without a key (an NHS number) keeps
    when it may not bridge two keys: of its links to keyed records, only those to the key of its
    strongest one (on a tie, the key whose group's anchor is smallest). Links between keyless
    records, and between keyed ones, are all kept.

    A keyless record that matches two people's records (a name and birthday two people share)
    would otherwise join both persons into one, although the deterministic pass holds records of
    different valid numbers to be different people."""
    keyed_l = F.col("keyed_l")
    marked = links.withColumns({
        "_to_key": keyed_l != F.col("keyed_r"),
        "_keyless": F.when(keyed_l, F.col("unique_id_r")).otherwise(F.col("unique_id_l")),
        "_key": F.when(keyed_l, F.col("node_l")).otherwise(F.col("node_r")),
    })
    strongest = (marked.where("_to_key").groupBy("_keyless")
                 .agg(F.min_by("_key", F.struct(-F.col("match_probability"), F.col("_key"))).alias("_strongest")))
    return (marked.join(strongest, "_keyless", "left")
            .where(~F.col("_to_key") | (F.col("_key") == F.col("_strongest")))
            .select(*links.columns))


def cluster_records(groups: DataFrame, links: DataFrame, *, bridge_nhs_numbers: bool) -> DataFrame:
    """Connected components over every link (all of them already at or above threshold), or,
    without `bridge_nhs_numbers`, over the links `links_to_one_number` keeps.

    Records sharing a deterministic key are one component already, so `groups`
    (`deterministic_groups`) collapses each such group to one node, its anchor, and Splink's
    connected components runs only on the nodes probabilistic links touch: a graph a small
    fraction of the records' size.

    Returns the clusters: source, record_id, cluster, cluster_size, link_method, where cluster
    labels the cluster by its smallest unique_id (internal: `person_ids.assign_person_ids` gives
    each cluster its person ID, carried forward from the previous index, and the label is never
    written), and link_method says how the record joined its cluster: deterministic,
    probabilistic, both, or singleton.
    """
    probabilistic = links_with_nodes(links.where(F.col("link_method") == "probabilistic"), groups)
    if not bridge_nhs_numbers:
        probabilistic = links_to_one_number(probabilistic)
    # Materialised once: connected components reads the edges in every iteration, and the link
    # methods below read the links' ends.
    probabilistic = probabilistic.select("unique_id_l", "unique_id_r", "node_l", "node_r").localCheckpoint(eager=True)
    edges = probabilistic.where(F.col("node_l") != F.col("node_r")).select(
        F.col("node_l").alias("unique_id_l"), F.col("node_r").alias("unique_id_r"))
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
        F.min(UNIQUE_ID).over(cluster).alias("cluster"),
        F.count(F.lit(1)).over(cluster).cast("int").alias("cluster_size"),
        F.when(deterministic & probabilistic_end, F.lit("both"))
        .when(deterministic, F.lit("deterministic"))
        .when(probabilistic_end, F.lit("probabilistic"))
        .otherwise(F.lit("singleton"))
        .alias("link_method"),
    )
