"""Blocking, sized before any pair is scored: oversized blocks dropped, the total pairs guarded.

One skewed value (a surname a quarter of people share) makes a block whose pairs grow with the
square of its size and stall a single Spark task. Each predict rule's blocks are sized on the
records alone (one aggregation per rule) and a key whose block would score more undecided pairs
than `max_block_comparisons` is dropped from that rule; other rules still reach its records.
The same aggregation gives the pairs each rule will score, for the guard on the total.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tre_link.link.deterministic import DETERMINISTIC_KEY
from tre_link.link.records import UNIQUE_ID
from tre_link.platform.splink_internals import parse_blocking_rule


@dataclass(frozen=True)
class DroppedBlocks:
    rule: str
    blocks: int
    records: int


@dataclass
class BlockingPlan:
    records: DataFrame  # the input, with a flag column per rule that dropped blocks
    rules: list[str]  # the rules, each excluding its dropped blocks
    dropped: list[DroppedBlocks]
    pairs_per_rule: list[int | None]  # pairs each rule scores on its own; None for a rule with no equi-join


def equi_join_keys(rule: str) -> list[str]:
    """The left-hand key expressions of a rule's equi-join conditions, as Splink parses them."""
    return [left for left, _ in parse_blocking_rule(rule).equi_joins]


def same_key_joins(rule: str) -> list[str] | None:
    """A rule's keys when each of its equi-joins pairs a key with itself (`l.x = r.x`), whatever
    its filters; None for a rule with no equi-join or another kind (`l.x = r.y`)."""
    conditions = parse_blocking_rule(rule).equi_joins
    if not conditions or any(left != right for left, right in conditions):
        return None
    return [left for left, _ in conditions]


def pure_equi_join_keys(rule: str) -> list[str] | None:
    """A rule's keys when it is nothing but `l.x = r.x` conditions, so the pairs it makes follow
    from block sizes alone; None for any other rule."""
    return None if parse_blocking_rule(rule).filters else same_key_joins(rule)


def records_in_blocks_holding(records: DataFrame, rules: list[str], holding: Column) -> DataFrame | None:
    """unique_id of every record where `holding` is true (a few: their blocks' keys are broadcast),
    and of every record sharing a block of any rule with one: the only records that can pair with
    them, and every record of the blocks they are in. None when a rule pairs on anything but the
    same key on both sides (`l.x = r.x`), as its pairs cannot be found from the keys alone. A
    rule's filters only remove pairs, so they are ignored here.

    One pass over `records`: each record's block key under every rule, as (rule, key) rows."""
    keys_of = [same_key_joins(rule) for rule in rules]
    if not all(keys_of):
        return None

    def block_keys(frame: DataFrame) -> DataFrame:
        # A record is in no block of a rule where any of its keys is null.
        entries = [
            F.when(reduce(lambda a, b: a & b, [F.expr(k).isNotNull() for k in keys]), F.struct(
                F.lit(i).alias("_rule"), F.to_json(F.array(*[F.expr(k).cast("string") for k in keys])).alias("_key")))
            for i, keys in enumerate(keys_of)
        ]
        return (frame.select(UNIQUE_ID, F.explode(F.array(*entries)).alias("_block")).where(F.col("_block").isNotNull())
                .select(UNIQUE_ID, "_block._rule", "_block._key"))

    held = records.where(holding)
    wanted = block_keys(held).select("_rule", "_key").distinct()
    in_blocks = block_keys(records).join(F.broadcast(wanted), ["_rule", "_key"], "left_semi").select(UNIQUE_ID)
    return in_blocks.unionByName(held.select(UNIQUE_ID)).distinct()


def pairs_in_blocks(records: DataFrame, keys: list[str]) -> DataFrame:
    """One row, one column `pairs`: the pairs an equi-join on `keys` makes, n(n-1)/2 per block."""
    n = F.col("_n")
    return block_sizes(records, keys).agg(F.coalesce(F.sum(n * (n - 1) / 2), F.lit(0)).cast("long").alias("pairs"))


def _undecided_pairs(total, undecided):
    # pairs with at least one undecided record: undecided x decided, plus undecided among themselves
    return undecided * (total - undecided) + undecided * (undecided - 1) / 2


def block_key_names(keys: list[str]) -> list[str]:
    return [f"_block_key_{j}" for j in range(len(keys))]


def block_key_columns(keys: list[str]) -> list[Column]:
    """A rule's equi-join keys as columns named by `block_key_names`."""
    return [F.expr(k).alias(name) for k, name in zip(keys, block_key_names(keys))]


def block_sizes(records: DataFrame, keys: list[str], undecided: Column | None = None,
                holding: Column | None = None) -> DataFrame:
    """One row per block of an equi-join rule (rows with a null key never pair): the key columns
    `_block_key_<j>`, its record count `_n`, and, given an `undecided` flag, `_u` of them undecided.
    Given `holding`, only the blocks holding a record where it is true (a few: broadcast)."""
    names = block_key_names(keys)
    flags = [] if undecided is None else [undecided.cast("long").alias("_undecided")]
    counts = [F.count(F.lit(1)).alias("_n")] + ([] if undecided is None else [F.sum("_undecided").alias("_u")])
    keyed = records.select(*block_key_columns(keys), *flags).dropna(subset=names)
    if holding is not None:
        wanted = records.where(holding).select(*block_key_columns(keys)).dropna().distinct()
        keyed = keyed.join(F.broadcast(wanted), names, "left_semi")
    return keyed.groupBy(*names).agg(*counts)


def plan_blocking(records: DataFrame, rules: list[str], max_block_comparisons: int,
                  holding: Column | None = None) -> BlockingPlan:
    """Size every rule's blocks, flag records in oversized blocks and exclude those blocks from their rule.

    Given `holding` (a refresh's changed records, which every pair it scores holds), only the
    blocks holding such a record are sized, flagged and counted: the others make no pair."""
    keys_of = {i: keys for i, rule in enumerate(rules) if (keys := equi_join_keys(rule))}
    sizes_of = {
        i: block_sizes(records, keys, undecided=F.col(DETERMINISTIC_KEY).isNull(), holding=holding)
        .withColumn("_pairs", _undecided_pairs(F.col("_n"), F.col("_u")))
        .withColumn("_oversized", F.col("_pairs") > max_block_comparisons)
        for i, keys in keys_of.items()
    }
    # Every rule's summary in one Spark job: the aggregations run side by side.
    summaries = [
        sizes.agg(
            F.lit(i).alias("rule"),
            F.count(F.when(F.col("_oversized"), 1)).alias("blocks"),
            F.sum(F.when(F.col("_oversized"), F.col("_n"))).alias("records"),
            F.sum(F.when(~F.col("_oversized"), F.col("_pairs"))).alias("pairs"),
        )
        for i, sizes in sizes_of.items()
    ]
    summary_of = {row["rule"]: row for row in reduce(DataFrame.unionByName, summaries).collect()} if summaries else {}

    flagged, capped, dropped, pairs_per_rule = records, [], [], []
    for i, rule in enumerate(rules):
        if i not in keys_of:
            capped.append(rule)
            pairs_per_rule.append(None)
            continue
        summary = summary_of[i]
        pairs_per_rule.append(int(summary["pairs"] or 0))
        if not summary["blocks"]:
            capped.append(rule)
            continue
        flag, key_names = f"_oversized_block_{i}", block_key_names(keys_of[i])
        marks = F.broadcast(sizes_of[i].where("_oversized").select(*key_names).withColumn(flag, F.lit(True)))
        flagged = (
            flagged.select("*", *block_key_columns(keys_of[i]))
            .join(marks, on=key_names, how="left")
            .drop(*key_names)
            .fillna({flag: False})
        )
        capped.append(f"({rule}) and not l.{flag}")
        dropped.append(DroppedBlocks(rule=rule, blocks=int(summary["blocks"]), records=int(summary["records"])))
    return BlockingPlan(records=flagged, rules=capped, dropped=dropped, pairs_per_rule=pairs_per_rule)
