"""Oversized blocks: found before any pair is scored, and dropped from the rule that makes them.

One skewed value (a surname a quarter of people share) makes a block whose pairs grow with the
square of its size and stall a single Spark task. Each predict rule's blocks are sized on the
records alone (one aggregation per rule) and a key whose block would score more undecided pairs
than `max_block_comparisons` is dropped from that rule; other rules still reach its records.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from splink.internals.blocking_analysis import _as_blocking_rule


@dataclass(frozen=True)
class DroppedBlocks:
    rule: str
    blocks: int
    records: int


def equi_join_keys(rule: str) -> list[str]:
    """The left-hand key expressions of a rule's equi-join conditions, as Splink parses them."""
    # Splink's parser is private API; it is the same parse Splink's own blocking uses.
    return [left for left, _ in _as_blocking_rule(rule, "spark")._equi_join_conditions]


def _undecided_pairs(total, undecided):
    # pairs with at least one undecided record: undecided x decided, plus undecided among themselves
    return undecided * (total - undecided) + undecided * (undecided - 1) / 2


def drop_oversized_blocks(
    records: DataFrame, rules: list[str], max_block_comparisons: int
) -> tuple[DataFrame, list[str], list[DroppedBlocks]]:
    """Flag records in oversized blocks and exclude those blocks from their rule."""
    flagged, capped, dropped = records, [], []
    for i, rule in enumerate(rules):
        keys = equi_join_keys(rule)
        if not keys:
            capped.append(rule)
            continue
        key_columns = [F.expr(k).alias(f"_block_key_{j}") for j, k in enumerate(keys)]
        key_names = [f"_block_key_{j}" for j in range(len(keys))]
        sizes = (
            records.select(*key_columns, F.col("deterministic_nhs").isNull().cast("long").alias("_undecided"))
            .dropna(subset=key_names)
            .groupBy(*key_names)
            .agg(F.count(F.lit(1)).alias("_n"), F.sum("_undecided").alias("_u"))
            .where(_undecided_pairs(F.col("_n"), F.col("_u")) > max_block_comparisons)
        )
        oversized = sizes.agg(F.count(F.lit(1)).alias("blocks"), F.sum("_n").alias("records")).first()
        if not oversized["blocks"]:
            capped.append(rule)
            continue
        flag = f"_oversized_block_{i}"
        marks = F.broadcast(sizes.select(*key_names).withColumn(flag, F.lit(True)))
        flagged = (
            flagged.select("*", *key_columns)
            .join(marks, on=key_names, how="left")
            .drop(*key_names)
            .fillna({flag: False})
        )
        capped.append(f"({rule}) and not l.{flag}")
        dropped.append(DroppedBlocks(rule=rule, blocks=int(oversized["blocks"]), records=int(oversized["records"])))
    return flagged, capped, dropped
