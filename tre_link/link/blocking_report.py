"""Blocking recall you can see: what each predict rule adds, and (given a truth table or clerical
labels) the share of true pairs the rules reach, with the deterministic pass.

Counts only: the largest blocks are reported by their pair counts, never by their key values.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tre_link.link import probabilistic
from tre_link.link.blocks import block_sizes, equi_join_keys
from tre_link.link.deterministic import DETERMINISTIC_KEY, exclude_decided_pairs
from tre_link.link.records import UNIQUE_ID, unique_id
from tre_link.platform.config import LinkageConfig
from tre_link.platform.disclosure import release_count

_TRUE_PERSON = "__true_person"
LARGEST_BLOCKS = 5


@dataclass(frozen=True)
class RuleReach:
    rule: str
    pairs_added: int  # undecided pairs this rule makes that no earlier rule made
    cumulative_pairs: int
    largest_blocks: tuple[int, ...]  # pairs in this rule's largest blocks (equi-join rules), largest first
    true_pairs_reached: int | None  # cumulative, with the deterministic pass; None without truth


@dataclass(frozen=True)
class BlockingReport:
    deterministic_pairs: int  # pairs the deterministic pass links (same usable NHS number)
    rules: tuple[RuleReach, ...]
    true_pairs: int | None  # true pairs among the records; None without truth
    true_pairs_deterministic: int | None

    def released(self) -> dict:
        """Counts through disclosure control; the shares from released counts."""
        true = release_count(self.true_pairs) if self.true_pairs is not None else None

        def share(n):
            reached = release_count(n) if n is not None else None
            return round(reached / true, 6) if reached is not None and true else None

        return {
            "deterministic_pairs": release_count(self.deterministic_pairs),
            "true_pairs": true,
            "true_pairs_reached_share_deterministic": share(self.true_pairs_deterministic),
            "rules": [
                {"rule": r.rule, "pairs_added": release_count(r.pairs_added),
                 "cumulative_pairs": release_count(r.cumulative_pairs),
                 "largest_blocks_pairs": [release_count(n) for n in r.largest_blocks],
                 "true_pairs_reached_share_cumulative": share(r.true_pairs_reached)}
                for r in self.rules
            ],
        }


def _pairs(n):
    return (n * (n - 1) / 2).cast("long")


def blocking_report(prepared: DataFrame, linkage: LinkageConfig, truth: DataFrame | None = None) -> BlockingReport:
    """`prepared`: records with their unique_id and deterministic key (`engine.prepare_records`).
    `truth`: source, record_id, person_id (a truth table or clerical labels), or None."""
    records = prepared
    if truth is not None:
        labels = truth.select(unique_id(F.col("source"), F.col("record_id")).alias(UNIQUE_ID),
                              F.col("person_id").cast("string").alias(_TRUE_PERSON))
        records = prepared.join(labels, on=UNIQUE_ID, how="left")
    rules = [exclude_decided_pairs(rule) for rule in linkage.blocking_rules_predict]
    keep = (DETERMINISTIC_KEY,) + ((_TRUE_PERSON,) if truth is not None else ())
    model = probabilistic.new_model(linkage)
    with probabilistic.register_records(records, model, rules, keep=keep) as registered:
        keyed = registered.df.where(F.col(DETERMINISTIC_KEY).isNotNull())
        deterministic = keyed.groupBy(DETERMINISTIC_KEY).count().agg(F.sum(_pairs(F.col("count")))).first()[0] or 0
        true_pairs = true_deterministic = None
        if truth is not None:
            labelled = registered.df.where(F.col(_TRUE_PERSON).isNotNull())
            true_pairs = labelled.groupBy(_TRUE_PERSON).count().agg(F.sum(_pairs(F.col("count")))).first()[0] or 0
            true_deterministic = (keyed.where(F.col(_TRUE_PERSON).isNotNull())
                                  .groupBy(DETERMINISTIC_KEY, _TRUE_PERSON).count()
                                  .agg(F.sum(_pairs(F.col("count")))).first()[0] or 0)
        spark = registered.df.sparkSession
        reach, previous = [], 0
        for i, rule in enumerate(linkage.blocking_rules_predict):
            columns = [f"l.{_TRUE_PERSON} = r.{_TRUE_PERSON} as __same"] if truth is not None else ["true as __same"]
            pairs_sql = probabilistic._pairs_sql(rules[: i + 1], columns, registered.view)
            row = spark.sql(
                f"select count(*) as n, count(case when __same then 1 end) as t from ({pairs_sql})"
            ).first()
            keys = equi_join_keys(rule)
            largest = ()
            if keys:
                sizes = block_sizes(registered.df, keys).orderBy(F.col("_n").desc()).limit(LARGEST_BLOCKS)
                largest = tuple(int(r["p"]) for r in sizes.select(_pairs(F.col("_n")).alias("p")).collect())
            reach.append(RuleReach(
                rule=rule, pairs_added=int(row["n"]) - previous, cumulative_pairs=int(row["n"]),
                largest_blocks=largest,
                true_pairs_reached=int(row["t"]) + int(true_deterministic) if truth is not None else None,
            ))
            previous = int(row["n"])
    return BlockingReport(deterministic_pairs=int(deterministic), rules=tuple(reach),
                          true_pairs=None if true_pairs is None else int(true_pairs),
                          true_pairs_deterministic=None if true_deterministic is None else int(true_deterministic))
