"""The probabilistic pass: Splink's Fellegi-Sunter model, driven as a few whole Spark jobs.

Splink's Spark backend runs each training and scoring step as many small jobs with a
lineage-breaking write between them; on a few cores that orchestration, not the arithmetic,
is most of the time. Here Splink still writes every piece of model SQL (comparison levels,
term-frequency adjustments, match weights), runs EM and keeps the model, but the work is
driven differently:

- each comparison vector is computed once, in the Spark stage that makes its pair (for
  scoring, narrow blocking joins make the pairs and each pair then fetches its columns by id);
- u and EM need only how often each agreement pattern occurs, so Spark returns those counts
  (at most a few thousand rows of small integers, nothing record-level) and Splink's EM
  iterates on them in an in-process DuckDB, where an iteration takes milliseconds;
- scoring is one Spark job from blocking to match probability.
"""

from __future__ import annotations

import json
import logging
import math
from functools import reduce
from itertools import combinations
from pathlib import Path

import sqlglot
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from splink import DuckDBAPI, SettingsCreator
from splink.internals.blocking import BlockingRule
from splink.internals.em_training_session import EMTrainingSession
from splink.internals.estimate_u import _rows_needed_for_n_pairs
from splink.internals.m_u_records_to_parameters import (
    append_u_probability_to_comparison_level_trained_probabilities,
    m_u_records_to_lookup_dict,
)
from splink.internals.parse_sql import get_columns_used_from_sql
from splink.internals.predict import predict_from_comparison_vectors_sqls_using_settings
from splink.internals.settings import Settings
from splink.internals.spark.spark_helpers import custom_spark_dialect  # noqa: F401  (registers "customspark" in sqlglot)

from tre_link.config import LinkageConfig
from tre_link.linkage.blocks import equi_join_keys, pairs_in_blocks, pure_equi_join_keys
from tre_link.linkage.model import UNIQUE_ID, build_settings

log = logging.getLogger(__name__)

# Rules that admit almost no false positives, used to estimate the prior match probability.
PRIOR_RULES = [
    "l.nhs_number_digits = r.nhs_number_digits",
    "l.given_name = r.given_name and l.family_name = r.family_name and l.dob = r.dob",
]
PRIOR_RECALL = 0.9
RECORDS_VIEW = "__tre_link_records"


# ------------------------------------------------------------------------------------------------
# The model: a Splink Settings object, new from the config or loaded from saved JSON
# ------------------------------------------------------------------------------------------------


def new_model(linkage: LinkageConfig) -> Settings:
    return build_settings(linkage).get_settings("spark")


def load_model(path: str) -> Settings:
    return load_model_dict(json.loads(Path(path).read_text()))


def load_model_dict(model: dict) -> Settings:
    return SettingsCreator.from_path_or_dict(model).get_settings("spark")


def save_model(model: Settings, path: str) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(model.as_dict(), indent=2))
    return path


# ------------------------------------------------------------------------------------------------
# Records and pairs
# ------------------------------------------------------------------------------------------------


def register_records(records: DataFrame, model: Settings, rules: list[str], *, keep: tuple[str, ...] = (),
                     by_id: bool = False) -> DataFrame:
    """The columns the model and the rules read (plus `keep`), with Splink's term frequencies,
    cached and registered as the one view every pair-making join reads from both sides.

    `by_id` hash-partitions the cache by unique_id, so scoring's pairs fetch their columns by id
    without shuffling the records again."""
    needed = [c.unquote().name for c in model._columns_used_by_comparisons]
    needed += [c for rule in rules for c in get_columns_used_from_sql(rule, "spark") if c not in needed]
    needed += [c for c in keep if c not in needed]
    narrow = records.select(*needed)
    with_tf = narrow
    for column in (c.unquote().name for c in model._term_frequency_columns):
        counts = narrow.where(F.col(column).isNotNull()).groupBy(column).agg(F.count(F.lit(1)).alias("_n"))
        total = counts.agg(F.sum("_n").alias("_total"))
        frequencies = counts.crossJoin(F.broadcast(total)).select(
            column, (F.col("_n") / F.col("_total")).alias(f"tf_{column}")
        )
        # One row per distinct value: broadcast, so the records are not shuffled for it.
        with_tf = with_tf.join(F.broadcast(frequencies), on=column, how="left")
    return register_view(with_tf.repartition(UNIQUE_ID) if by_id else with_tf)


def register_view(records: DataFrame) -> DataFrame:
    """Cache `records` and make them the view the pair-making SQL reads."""
    registered = records.persist()
    registered.createOrReplaceTempView(RECORDS_VIEW)
    return registered


def _run_sql(spark: SparkSession, sql: str) -> DataFrame:
    """Run Splink-generated SQL on Spark, transpiled as Splink's own SparkAPI does (its SQL is
    written in a generic dialect: `float8` casts and the like)."""
    return spark.sql(sqlglot.transpile(sql, read="spark", write="customspark")[0])


def _pairs_sql(rules: list[str], columns: list[str], source: str = RECORDS_VIEW, *, hint: str = "",
               left: str | None = None, pair_condition: str | None = None) -> str:
    """Every pair any rule admits, once: rule i skips pairs an earlier rule made, as Splink does,
    and says which rule made it in match_key. `hint` is a Spark join hint such as
    `/*+ BROADCAST(r) */`; `left` and `pair_condition` replace the left side's source and the
    `l.unique_id < r.unique_id` that keeps one of each pair."""
    pair_condition = pair_condition or f"l.{UNIQUE_ID} < r.{UNIQUE_ID}"
    selects = []
    for i, rule in enumerate(rules):
        earlier = "".join(f"\n  and not coalesce(({prev}), false)" for prev in rules[:i])
        selected = ",\n  ".join([*columns, f"'{i}' as match_key"])
        selects.append(
            f"select {hint}{selected}\nfrom {left or source} as l\njoin {source} as r\n"
            f"  on ({rule})\nwhere {pair_condition}{earlier}"
        )
    return "\nunion all\n".join(selects)


def _blocked_sql(model: Settings, rules: list[str], source: str = RECORDS_VIEW, *, hint: str = "") -> str:
    """The pairs with the l/r columns Splink's comparison SQL reads."""
    return _pairs_sql(rules, model._columns_to_select_for_blocking, source, hint=hint)


def _fetched_pairs_sql(model: Settings, rules: list[str], undecided_if_null: str | None = None) -> str:
    """`_blocked_sql` made in two steps: each rule's join carries only the ids and the columns
    the rules read, then the pairs fetch the columns Splink's comparisons read, once, by id.

    The blocking joins shuffle every record once per rule, so keeping them narrow matters more
    than the extra join by id. Each rule's join hashes its left side rather than sorting both:
    the left is the smaller (the undecided records, or any side alike).

    `undecided_if_null` names a column null on undecided records, for rules that already admit
    only pairs with an undecided record. Each rule's join then takes its left side from the
    undecided records alone, so the pairs of two decided records, which the rules would only
    reject, are never made. The ids are put in order afterwards."""
    hint = "/*+ SHUFFLE_HASH(l) */ "
    if undecided_if_null is None:
        ids = _pairs_sql(rules, [f"l.{UNIQUE_ID} as __id_l", f"r.{UNIQUE_ID} as __id_r"], hint=hint)
    else:
        undecided = f"(select * from {RECORDS_VIEW} where {undecided_if_null} is null)"
        ordered = [f"least(l.{UNIQUE_ID}, r.{UNIQUE_ID}) as __id_l", f"greatest(l.{UNIQUE_ID}, r.{UNIQUE_ID}) as __id_r"]
        # Decided on the right: every such pair once. Undecided on both sides: ordered by id, as usual.
        ids = _pairs_sql(rules, ordered, hint=hint, left=undecided,
                         pair_condition=f"(r.{undecided_if_null} is not null or l.{UNIQUE_ID} < r.{UNIQUE_ID})")
    return (
        f"select {', '.join(model._columns_to_select_for_blocking)}, p.match_key\n"
        f"from ({ids}) as p\n"
        f"join {RECORDS_VIEW} as l on p.__id_l = l.{UNIQUE_ID}\n"
        f"join {RECORDS_VIEW} as r on p.__id_r = r.{UNIQUE_ID}"
    )


def _comparison_vectors_sql(model: Settings, blocked_sql: str) -> str:
    columns = ",\n  ".join(model._columns_to_select_for_comparison_vector_values)
    return f"select {columns}\nfrom ({blocked_sql}) as __splink__df_blocked"


def _gamma_columns(model: Settings) -> list[str]:
    return [c._gamma_column_name for c in model.comparisons]


def _pattern_counts(spark: SparkSession, model: Settings, blocked_sql: str) -> list[dict]:
    """How often each agreement pattern occurs among the blocked pairs: one Spark job, and
    only these aggregates come back to the driver."""
    gammas = ", ".join(_gamma_columns(model))
    sql = (
        f"select {gammas}, count(*) as agreement_pattern_count\n"
        f"from ({_comparison_vectors_sql(model, blocked_sql)}) as cv\ngroup by {gammas}"
    )
    return [row.asDict() for row in _run_sql(spark, sql).collect()]


def _record_sample(fraction: float, seed: int) -> str:
    """A deterministic sample of records by a hash of their id: the same on every run and
    on any partitioning."""
    if fraction >= 1.0:
        return RECORDS_VIEW
    buckets = 1_000_000
    return (
        f"(select * from {RECORDS_VIEW} where pmod(xxhash64({UNIQUE_ID}, {int(seed)}), {buckets}) "
        f"< {max(1, int(fraction * buckets))})"
    )


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


def count_pairs(spark: SparkSession, rules: list[str]) -> int:
    """Pairs the rules admit together, counted without materialising them.

    When every rule is a plain equi-join, the count comes from block sizes by inclusion-exclusion
    (the pairs several rules all admit are the blocks of all their keys at once), one
    aggregation per combination, in one Spark job; otherwise by joining."""
    keys = [pure_equi_join_keys(rule) for rule in rules]
    if not all(keys) or len(rules) > 4:
        return int(spark.sql(f"select count(*) as n from ({_pairs_sql(rules, [])})").first()["n"])
    records = spark.table(RECORDS_VIEW)
    terms = [
        pairs_in_blocks(records, list(dict.fromkeys(key for rule_keys in subset for key in rule_keys)))
        .select((F.col("pairs") * (-1) ** (size + 1)).alias("pairs"))
        for size in range(1, len(rules) + 1)
        for subset in combinations(keys, size)
    ]
    return int(reduce(DataFrame.unionByName, terms).agg(F.sum("pairs")).first()[0])


def estimate_prior(spark: SparkSession, model: Settings, record_count: int) -> None:
    """Splink's estimate of the probability two random records match: pairs found by near-certain
    rules, scaled up by their assumed recall, over all possible pairs."""
    observed = count_pairs(spark, PRIOR_RULES)
    total = record_count * (record_count - 1) / 2
    model.core_model_settings.probability_two_random_records_match = (observed / PRIOR_RECALL) / total
    log.info("prior match probability estimated from near-certain rules")


def estimate_u(spark: SparkSession, model: Settings, record_count: int, max_pairs: float, seed: int) -> None:
    """u for every level from all pairs among a hashed record sample sized to about max_pairs."""
    fraction = min(1.0, _rows_needed_for_n_pairs(max_pairs) / max(record_count, 1))
    sample = _record_sample(fraction, seed)
    # The sample is a few thousand records: broadcast, Spark pairs them in one pass, where its
    # size estimate (the whole cached table) would choose a cartesian product of partitions.
    counts = _pattern_counts(spark, model, _blocked_sql(model, ["1 = 1"], source=sample, hint="/*+ BROADCAST(r) */ "))
    records = []
    for comparison in model.comparisons:
        gamma = comparison._gamma_column_name
        by_level: dict[int, int] = {}
        for row in counts:
            by_level[row[gamma]] = by_level.get(row[gamma], 0) + row["agreement_pattern_count"]
        observed = sum(n for level, n in by_level.items() if level != -1)
        records += [
            {"output_column_name": comparison.output_column_name, "comparison_vector_value": level,
             "m_probability": None, "u_probability": n / observed}
            for level, n in by_level.items() if level != -1 and n > 0
        ]
    lookup = m_u_records_to_lookup_dict(records)
    for comparison in model.comparisons:
        for level in comparison._comparison_levels_excluding_null:
            append_u_probability_to_comparison_level_trained_probabilities(
                level, lookup, comparison.output_column_name, "estimate u by random sampling"
            )
    _use_trained_values(model)


def estimate_m(spark: SparkSession, model: Settings, rule: str, max_pairs: float | None, seed: int) -> None:
    """One Splink EM training session blocked on `rule`, run on the rule's agreement-pattern counts.

    Past max_pairs, records are sampled by hash, so the join itself shrinks rather than
    being filtered after it is made."""
    fraction = 1.0
    if max_pairs is not None and (pairs := _pairs_per_rule(spark, rule)) > max_pairs:
        fraction = math.sqrt(max_pairs / pairs)
    counts = _pattern_counts(spark, model, _blocked_sql(model, [rule], source=_record_sample(fraction, seed)))
    if not counts:
        raise ValueError(f"linkage.blocking_rules_training: rule {rule!r} admits no pairs to train on")
    session = EMTrainingSession(
        None,  # Splink needs the linker only to make comparison vectors, which are passed in
        db_api=(duckdb := DuckDBAPI()),
        blocking_rule_for_training=BlockingRule(rule, "duckdb"),
        core_model_settings=model.core_model_settings,
        training_settings=model.training_settings,
        unique_id_input_columns=model.column_info_settings.unique_id_input_columns,
        fix_u_probabilities=True,
        estimate_without_term_frequencies=True,
    )
    model.core_model_settings = session._train(cvv=_patterns_as_vectors(duckdb, counts, _gamma_columns(model)))
    _use_trained_values(model)


def _pairs_per_rule(spark: SparkSession, rule: str) -> int:
    """Pairs a rule makes: from block sizes alone for an equi-join rule, else by joining."""
    keys = equi_join_keys(rule)
    if not keys:
        return count_pairs(spark, [rule])
    return int(pairs_in_blocks(spark.table(RECORDS_VIEW), keys).first()["pairs"])


def _patterns_as_vectors(duckdb: DuckDBAPI, counts: list[dict], gammas: list[str]):
    """A DuckDB table repeating each agreement pattern by its count.

    Splink's EM counts the patterns of the comparison vectors it is given, so it gets a table
    whose counts are exactly those Spark computed (a few million narrow rows at most: DuckDB
    builds and counts it in well under a second)."""
    counts_table = duckdb.register(counts, table_name="__tre_link_pattern_counts")
    vectors = "__tre_link_pattern_vectors"
    duckdb._execute_sql_against_backend(
        f"create or replace table {vectors} as select {', '.join(gammas)} "
        f"from {counts_table.physical_name}, range(agreement_pattern_count)"
    )
    return duckdb.table_to_splink_dataframe("__splink__df_comparison_vectors", vectors)


def _use_trained_values(model: Settings) -> None:
    """Each level's m and u become the median of its trained estimates, as Splink's Linker does."""
    for comparison in model.comparisons:
        for level in comparison._comparison_levels_excluding_null:
            if level._has_estimated_u_values and not level._fix_u_probability:
                level.u_probability = level._trained_u_median
            if level._has_estimated_m_values and not level._fix_m_probability:
                level.m_probability = level._trained_m_median


def train(spark: SparkSession, records: DataFrame, linkage: LinkageConfig, seed: int) -> Settings:
    """A new model trained on the records: prior, then u by sampling, then m by EM per rule."""
    model = new_model(linkage)
    registered = register_records(records, model, PRIOR_RULES + list(linkage.blocking_rules_training))
    try:
        record_count = registered.count()
        estimate_prior(spark, model, record_count)
        estimate_u(spark, model, record_count, linkage.u_max_pairs, seed)
        rules = linkage.blocking_rules_training
        for number, rule in enumerate(rules, start=1):
            estimate_m(spark, model, rule, linkage.em_max_pairs, seed)
            log.info("EM done for training rule %d of %d", number, len(rules))
    finally:
        registered.unpersist()
    return model


# ------------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------------


def score(spark: SparkSession, model: Settings, rules: list[str], *, undecided_if_null: str | None = None) -> DataFrame:
    """Every pair the rules admit with its match weight and probability, in one Spark plan:
    blocking join, comparison vector and Splink's match-weight SQL. The records must have been
    registered with `register_records`. Pass `undecided_if_null` when every rule already admits
    only pairs holding a record where that column is null (see `_fetched_pairs_sql`)."""
    pairs = _fetched_pairs_sql(model, rules, undecided_if_null)
    ctes = [("__splink__df_comparison_vectors", _comparison_vectors_sql(model, pairs))]
    ctes += [(s["output_table_name"], s["sql"]) for s in predict_from_comparison_vectors_sqls_using_settings(model)]
    with_clause = ",\n".join(f"{name} as (\n{sql}\n)" for name, sql in ctes)
    return _run_sql(
        spark, f"with {with_clause}\nselect unique_id_l, unique_id_r, match_weight, match_probability from {ctes[-1][0]}"
    )


def match_weight_histogram(predictions: DataFrame, bin_width: float = 1.0) -> DataFrame:
    """Counts of scored pairs per match-weight bin (aggregates only; no record-level values)."""
    return (
        predictions.select((F.floor(F.col("match_weight") / bin_width) * bin_width).alias("bin_start"))
        .groupBy("bin_start")
        .count()
        .orderBy("bin_start")
    )
