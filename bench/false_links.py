"""Where a linked zone's false links are, against the config's truth table. Aggregates only.

    .venv/bin/python bench/false_links.py --config out/d15.yaml > bench/results/false_links.json

Run it after a link of the config's sources (`bench/accuracy.py`). It prints one JSON object:
- the links by method and truth, and the false probabilistic links by match-probability band;
- the false probabilistic links by agreement pattern. For each field, "=" means the two records
  agree, "x" that they differ and "-" that one is null. Each pattern sits beside the true links
  that share it, so a pattern's observed false rate can be read against its probability;
- the clusters by how many valid NHS numbers (deterministic keys) they hold, and whether they hold
  one true person;
- what clustering gives with and without `linkage.bridge_nhs_numbers`, from the same links, by
  tre-link's own clustering: pairwise P/R/F1 at the link's threshold and at 0.99.
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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)

    from pyspark.sql import functions as F

    from tre_link import load_config
    from tre_link.link.cluster import cluster_records
    from tre_link.link.deterministic import DETERMINISTIC_KEY, assign_deterministic_keys, deterministic_groups
    from tre_link.link.records import with_unique_id
    from tre_link.link.refresh import with_end_ids
    from tre_link.platform.spark import build_session
    from tre_link.record.evaluate import evaluate_person_index

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

        # The same links clustered again by tre-link's own clustering, with and without bridges.
        groups = deterministic_groups(with_unique_id(records)).cache()
        ends = with_end_ids(links)
        clustered_again = {}
        for name, floor in (("at the link's threshold", 0.0), ("at 0.99", 0.99)):
            above = ends.where(F.col("match_probability") >= floor)
            clustered_again[name] = {}
            for bridge in (True, False):
                clustered = cluster_records(groups, above, bridge_nhs_numbers=bridge)
                accuracy = evaluate_person_index(clustered.withColumnRenamed("cluster", "person_id"),
                                                 truth.withColumnRenamed("person", "person_id"))
                clustered_again[name][f"bridge_nhs_numbers: {str(bridge).lower()}"] = {
                    "precision": round(accuracy.pairwise_precision, 6), "recall": round(accuracy.pairwise_recall, 6),
                    "f1": round(accuracy.pairwise_f1, 6)}
        lowest = links.where("link_method = 'probabilistic'").agg(F.min("match_probability")).first()[0]
    return {
        "config": args.config,
        "links": by_method,
        "false_probabilistic_by_probability": false_by_band,
        "false_probabilistic_by_pattern": [{"pattern": r.pattern, "false": r.false_links, "true": r.true_links} for r in patterns],
        "clusters_by_valid_numbers": by_keys,
        "lowest_link_probability": lowest,
        "clustered_again": clustered_again,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
