"""Where a linked zone's false links are, against the config's truth table. Aggregates only.

    .venv/bin/python bench/false_links.py --config out/d15.yaml > bench/results/false_links.json

Run it after a link of the config's sources (`bench/accuracy.py`). It prints one JSON object:
- the links by method and truth, and the false probabilistic links by match-probability band;
- the false probabilistic links by agreement pattern. For each field, "=" means the two records
  agree, "x" that they differ and "-" that one is null. Each pattern sits beside the true links
  that share it, so a pattern's observed false rate can be read against its probability;
- the clusters by how many valid NHS numbers (deterministic keys) they hold, and whether they hold
  one true person;
- a what-if. A record without a key might join the records of at most one key: the key of its
  strongest link. It would then no longer bridge two persons whose numbers differ. The script
  reports pairwise P/R/F1 from connected components with and without that rule, at the link's
  threshold and at 0.99. Connected components run in scipy on the driver: about 1 GB at 1.5M records.
Counts are raw, as in `bench/accuracy.py`: the data are synthetic.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from functools import reduce
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The fields an agreement pattern shows, where the standardised tables hold them.
PATTERN_FIELDS = ("nhs_number_digits", "given_name", "family_name", "dob", "sex", "postcode", "postcode_district")


def pairwise_accuracy(cluster, person) -> dict:
    """Pairwise precision, recall and F1 of a partition `cluster` against `person` (two label arrays)."""
    import pandas as pd

    cells = pd.Series(1, index=pd.MultiIndex.from_arrays([cluster, person])).groupby(level=[0, 1]).sum()

    def pairs(counts):
        return float((counts * (counts - 1) / 2).sum())

    both, predicted, true = pairs(cells), pairs(cells.groupby(level=0).sum()), pairs(cells.groupby(level=1).sum())
    precision, recall = both / predicted, both / true
    return {"precision": round(precision, 6), "recall": round(recall, 6),
            "f1": round(2 * precision * recall / (precision + recall), 6)}


def strongest_key_only(edges):
    """The edges (node_a, node_b, match_probability; a keyed node's name starts with "K") left when
    each unkeyed node keeps its edges to keyed nodes only towards the keyed node of its strongest
    such edge (ties: the smallest node). Edges between two unkeyed nodes are all kept."""
    import numpy as np

    a_keyed, b_keyed = edges.node_a.str.startswith("K"), edges.node_b.str.startswith("K")
    to_key = a_keyed != b_keyed
    edges = edges.assign(unkeyed=np.where(a_keyed, edges.node_b, edges.node_a),
                         key=np.where(a_keyed, edges.node_a, edges.node_b))
    best = (edges[to_key].sort_values(["match_probability", "key"], ascending=[False, True])
            .drop_duplicates("unkeyed").set_index("unkeyed").key)
    keep = ~to_key | (edges.key == edges.unkeyed.map(best))
    return edges[keep].drop(columns=["unkeyed", "key"])


def components(nodes, edges):
    """Connected-component label of each of `nodes` (a pandas Index) over `edges`."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a, b = nodes.get_indexer(edges.node_a), nodes.get_indexer(edges.node_b)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(nodes), len(nodes)))
    return connected_components(graph, directed=False)[1]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)

    import pandas as pd
    from pyspark.sql import functions as F

    from tre_link import load_config
    from tre_link.link.deterministic import DETERMINISTIC_KEY, assign_deterministic_keys
    from tre_link.platform.spark import build_session

    cfg = load_config(args.config)
    if cfg.truth_path is None:
        parser.error(f"{args.config} names no truth_path")
    with contextlib.redirect_stdout(sys.stderr):
        spark = build_session(cfg.spark)
        zone = cfg.output

        def delta(path):
            return spark.read.format("delta").load(str(path))

        truth = delta(cfg.truth_path).select("source", "record_id", F.col("person_id").cast("string").alias("person"))
        standardised = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True),
                              [delta(zone.standardised_table(s.name)) for s in cfg.sources])
        fields = [f for f in PATTERN_FIELDS if f in standardised.columns]
        records = assign_deterministic_keys(standardised).join(truth, ["source", "record_id"]).select(
            "source", "record_id", "person", DETERMINISTIC_KEY, *fields).cache()
        links = delta(zone.links_table)

        def end(side):
            return records.select(*[F.col(c).alias(f"{c}_{side}") for c in records.columns])

        judged = (links.join(end("l"), ["source_l", "record_id_l"]).join(end("r"), ["source_r", "record_id_r"])
                  .withColumn("is_false", F.col("person_l") != F.col("person_r")))

        def agreement(f):
            return (F.when(F.col(f"{f}_l").isNull() | F.col(f"{f}_r").isNull(), "-")
                    .when(F.col(f"{f}_l") == F.col(f"{f}_r"), "=").otherwise("x"))

        probabilistic = judged.where("link_method = 'probabilistic'").withColumn(
            "pattern", F.concat_ws(" ", *[F.concat(F.lit(f"{f}:"), agreement(f)) for f in fields])).cache()
        by_method = {f"{r.link_method} {'false' if r.is_false else 'true'}": r["count"]
                     for r in judged.groupBy("link_method", "is_false").count().collect()}
        bands = F.when(F.col("match_probability") >= 0.999, ">=0.999").when(
            F.col("match_probability") >= 0.99, "0.99-0.999").otherwise("<0.99")
        false_by_band = {r.band: r["count"] for r in
                         probabilistic.where(F.col("is_false")).groupBy(bands.alias("band")).count().collect()}
        patterns = (probabilistic.groupBy("pattern")
                    .agg(F.sum(F.col("is_false").cast("int")).alias("false_links"),
                         F.sum((~F.col("is_false")).cast("int")).alias("true_links"))
                    .where(F.col("false_links") > 0).orderBy(F.desc("false_links")).limit(15).collect())

        keyed = F.col(DETERMINISTIC_KEY).isNotNull()
        index = delta(zone.person_index_table).select("source", "record_id", "person_id")
        clusters = (index.join(records, ["source", "record_id"]).groupBy("person_id")
                    .agg(F.countDistinct(F.when(keyed, F.col(DETERMINISTIC_KEY))).alias("keys"),
                         F.countDistinct("person").alias("persons")))
        by_keys = [{"keys": r["keys"], "pure": r.pure, "clusters": r["count"]} for r in
                   clusters.groupBy("keys", (F.col("persons") == 1).alias("pure")).count().orderBy("keys", "pure").collect()]

        # The graph at the deterministic groups' level: a keyed record is its key's node.
        node = F.when(keyed, F.concat(F.lit("K"), F.col(DETERMINISTIC_KEY))).otherwise(
            F.concat(F.lit("R"), F.col("source"), F.lit(":"), F.col("record_id")))
        nodes_of = records.select("source", "record_id", "person", node.alias("node")).toPandas()
        edges = (probabilistic.join(records.select(F.col("source").alias("source_l"), F.col("record_id").alias("record_id_l"),
                                                   node.alias("node_a")), ["source_l", "record_id_l"])
                 .join(records.select(F.col("source").alias("source_r"), F.col("record_id").alias("record_id_r"),
                                      node.alias("node_b")), ["source_r", "record_id_r"])
                 .select("node_a", "node_b", "match_probability").toPandas())
    nodes = pd.Index(nodes_of.node.unique())
    where = nodes.get_indexer(nodes_of.node)
    persons = pd.factorize(nodes_of.person)[0]
    threshold = float(edges.match_probability.min()) if len(edges) else None
    what_if = {}
    for name, floor in (("at the link's threshold", 0.0), ("at 0.99", 0.99)):
        above = edges[edges.match_probability >= floor]
        what_if[name] = {
            "as clustered": pairwise_accuracy(components(nodes, above)[where], persons),
            "keyless record joins one key only": pairwise_accuracy(components(nodes, strongest_key_only(above))[where], persons),
        }
    return {
        "config": args.config,
        "links": by_method,
        "false_probabilistic_by_probability": false_by_band,
        "false_probabilistic_by_pattern": [{"pattern": r.pattern, "false": r.false_links, "true": r.true_links} for r in patterns],
        "clusters_by_valid_numbers": by_keys,
        "lowest_link_probability": threshold,
        "what_if": what_if,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
