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
from dataclasses import dataclass, field
from functools import reduce
from itertools import combinations
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from tre_link.link.blocks import equi_join_keys, pairs_in_blocks, pure_equi_join_keys
from tre_link.link.model import build_settings
from tre_link.link.records import UNIQUE_ID, RegisteredRecords
from tre_link.platform import splink_internals as splink
from tre_link.platform.config import LinkageConfig
from tre_link.platform.errors import ConfigError, InputDataError
from tre_link.platform.splink_internals import Model

log = logging.getLogger(__name__)

# Rules that admit almost no false positives, used to estimate the prior match probability.
PRIOR_RULES = [
    "l.nhs_number_digits = r.nhs_number_digits",
    "l.given_name = r.given_name and l.family_name = r.family_name and l.dob = r.dob",
]
PRIOR_RECALL = 0.9

# Below this many sampled pairs agreeing exactly on a field, its exact level's u is computed from
# the field's value frequencies instead. A sample of millions of pairs holds almost none agreeing
# on a near-unique field (a postcode among millions of records), which would leave that level at
# Splink's default u and its agreement weighed many bits too low.
MIN_SAMPLED_AGREEMENTS = 100


# ------------------------------------------------------------------------------------------------
# The model: a Splink Settings object, new from the config or loaded from saved JSON
# ------------------------------------------------------------------------------------------------


def new_model(linkage: LinkageConfig) -> Model:
    return splink.model_from_creator(build_settings(linkage))


def load_model(path: str) -> Model:
    return splink.model_from_dict(json.loads(Path(path).read_text()))


def save_model(model: Model, path: str) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(splink.model_as_dict(model), indent=2))
    return path


def save_parameter_charts(model: Model, folder: str | Path) -> list[str]:
    """Splink's parameter charts of `model` as HTML files in `folder` (parameters only)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, page in splink.parameter_charts_html(model).items():
        (folder / f"{name}.html").write_text(page)
        paths.append(str(folder / f"{name}.html"))
    return paths


def model_chart_folder(model_path: str) -> Path:
    """Where the parameter charts of the model saved at `model_path` go (beside it)."""
    return Path(model_path).parent / "charts"


# ------------------------------------------------------------------------------------------------
# Records and pairs
# ------------------------------------------------------------------------------------------------


def columns_read(model: Model, rules: list[str], keep: tuple[str, ...] = ()) -> list[str]:
    """The columns the model and the rules read, then `keep`: each once, in order."""
    read = [*splink.columns_read_by_model(model), *(c for rule in rules for c in splink.columns_in_sql(rule)), *keep]
    return list(dict.fromkeys(read))


def register_records(records: DataFrame, model: Model, rules: list[str], *, keep: tuple[str, ...] = (),
                     by_id: bool = False, frequencies_from: DataFrame | None = None) -> RegisteredRecords:
    """The columns the model and the rules read (plus `keep`), with Splink's term frequencies,
    cached and registered as the records every pair-making join reads from both sides.

    `by_id` hash-partitions the cache by unique_id, so scoring's pairs fetch their columns by id
    without shuffling the records again. `frequencies_from` (default: `records`) is the population
    term frequencies are counted over, when `records` are only the ones a refresh scores."""
    narrow = records.select(*columns_read(model, rules, keep))
    with_tf, cached_inputs = narrow, ()
    tf_columns = splink.term_frequency_columns(model)
    if tf_columns:
        frequencies = _term_frequencies(narrow if frequencies_from is None else frequencies_from, tf_columns)
        cached_inputs = (frequencies,)
        for column in tf_columns:
            # One row per distinct value: broadcast, so the records are not shuffled for it.
            of_column = frequencies.where(F.col("_column") == column).select(
                F.col("_value"), F.col("_frequency").alias(f"tf_{column}"))
            with_tf = with_tf.join(F.broadcast(of_column), F.col(column).cast("string") == F.col("_value"),
                                   "left").drop("_value")
    return RegisteredRecords(with_tf.repartition(UNIQUE_ID) if by_id else with_tf, cached_inputs)


def _term_frequencies(records: DataFrame, columns: list[str]) -> DataFrame:
    """Each column's share of its non-null rows that hold each value (_column, _value, _frequency),
    in one pass over `records`, cached: the records' plan then holds their source once, not once
    more per column (planning each copy of a Delta read cost about 0.7 s). Cached, not checkpointed:
    SQL on a view whose plan held a checkpoint missed the view's cache (Spark 4.1)."""
    values = records.select(F.explode(F.array(*(
        F.struct(F.lit(c).alias("_column"), F.col(c).cast("string").alias("_value")) for c in columns
    ))).alias("_v")).select("_v._column", "_v._value").where(F.col("_value").isNotNull())
    counts = values.groupBy("_column", "_value").agg(F.count(F.lit(1)).alias("_n"))
    per_column = Window.partitionBy("_column")
    return counts.select("_column", "_value", (F.col("_n") / F.sum("_n").over(per_column)).alias("_frequency")) \
        .persist()


def _run_sql(spark: SparkSession, sql: str) -> DataFrame:
    """Run Splink-generated SQL on Spark."""
    return spark.sql(splink.to_spark_sql(sql))


def _pairs_sql(rules: list[str], columns: list[str], source: str, *, hint: str = "",
               left: str | None = None, pair_condition: str | None = None) -> str:
    """Every pair any rule admits among the records of view `source`, once: rule i skips pairs an
    earlier rule made, as Splink does, and says which rule made it in match_key. `hint` is a Spark
    join hint such as `/*+ BROADCAST(r) */`; `left` and `pair_condition` replace the left side's
    source and the `l.unique_id < r.unique_id` that keeps one of each pair."""
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


def _blocked_sql(model: Model, rules: list[str], source: str, *, hint: str = "") -> str:
    """The pairs with the l/r columns Splink's comparison SQL reads."""
    return _pairs_sql(rules, splink.blocking_select_columns(model), source, hint=hint)


def _fetched_pairs_sql(model: Model, records: RegisteredRecords, rules: list[str],
                       undecided_if_null: str | None = None, changed_if: str | None = None,
                       broadcast_changed: bool = False) -> str:
    """`_blocked_sql` made in two steps: each rule's join carries only the ids and the columns
    the rules read, then the pairs fetch the columns Splink's comparisons read, once, by id.

    The blocking joins shuffle every record once per rule, so keeping them narrow matters more
    than the extra join by id. Each rule's join hashes its left side rather than sorting both:
    the left is the smaller (the undecided records, or any side alike).

    `undecided_if_null` names a column null on undecided records, for rules that already admit
    only pairs with an undecided record. Each rule's join then takes its left side from the
    undecided records alone, so the pairs of two decided records, which the rules would only
    reject, are never made. The ids are put in order afterwards.

    `changed_if` names a boolean column true on changed records (a refresh): only pairs holding
    one are made, each rule's join taking its left side from the changed records alone; with
    `broadcast_changed` (they are few) that side is broadcast, and the records are not shuffled."""
    hint = "/*+ SHUFFLE_HASH(l) */ "
    view = records.view
    ordered = [f"least(l.{UNIQUE_ID}, r.{UNIQUE_ID}) as __id_l", f"greatest(l.{UNIQUE_ID}, r.{UNIQUE_ID}) as __id_r"]
    if changed_if is not None:
        changed = f"(select * from {view} where {changed_if})"
        # Unchanged on the right: every such pair once. Changed on both sides: ordered by id.
        ids = _pairs_sql(rules, ordered, view, hint="/*+ BROADCAST(l) */ " if broadcast_changed else hint, left=changed,
                         pair_condition=f"(not r.{changed_if} or l.{UNIQUE_ID} < r.{UNIQUE_ID})")
    elif undecided_if_null is None:
        ids = _pairs_sql(rules, [f"l.{UNIQUE_ID} as __id_l", f"r.{UNIQUE_ID} as __id_r"], view, hint=hint)
    else:
        undecided = f"(select * from {view} where {undecided_if_null} is null)"
        # Decided on the right: every such pair once. Undecided on both sides: ordered by id, as usual.
        ids = _pairs_sql(rules, ordered, view, hint=hint, left=undecided,
                         pair_condition=f"(r.{undecided_if_null} is not null or l.{UNIQUE_ID} < r.{UNIQUE_ID})")
    return (
        f"select {', '.join(splink.blocking_select_columns(model))}, p.match_key\n"
        f"from ({ids}) as p\n"
        f"join {view} as l on p.__id_l = l.{UNIQUE_ID}\n"
        f"join {view} as r on p.__id_r = r.{UNIQUE_ID}"
    )


def _comparison_vectors_sql(model: Model, blocked_sql: str) -> str:
    columns = ",\n  ".join(splink.comparison_vector_select_columns(model))
    return f"select {columns}\nfrom ({blocked_sql}) as __splink__df_blocked"


def _pattern_counts(spark: SparkSession, model: Model, blocked_sql: str) -> list[dict]:
    """How often each agreement pattern occurs among the blocked pairs: one Spark job, and
    only these aggregates come back to the driver."""
    gammas = ", ".join(splink.gamma_columns(model))
    sql = (
        f"select {gammas}, count(*) as agreement_pattern_count\n"
        f"from ({_comparison_vectors_sql(model, blocked_sql)}) as cv\ngroup by {gammas}"
    )
    return [row.asDict() for row in _run_sql(spark, sql).collect()]


def _record_sample(records: RegisteredRecords, fraction: float, seed: int) -> str:
    """A deterministic sample of records by a hash of their id: the same on every run and
    on any partitioning."""
    if fraction >= 1.0:
        return records.view
    buckets = 1_000_000
    return (
        f"(select * from {records.view} where pmod(xxhash64({UNIQUE_ID}, {int(seed)}), {buckets}) "
        f"< {max(1, int(fraction * buckets))})"
    )


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


def count_pairs(records: RegisteredRecords, rules: list[str]) -> int:
    """Pairs the rules admit together, counted without materialising them.

    When every rule is a plain equi-join, the count comes from block sizes by inclusion-exclusion
    (the pairs several rules all admit are the blocks of all their keys at once), one
    aggregation per combination, in one Spark job; otherwise by joining."""
    keys = [pure_equi_join_keys(rule) for rule in rules]
    if not all(keys) or len(rules) > 4:
        spark = records.df.sparkSession
        return int(spark.sql(f"select count(*) as n from ({_pairs_sql(rules, [], records.view)})").first()["n"])
    terms = [
        pairs_in_blocks(records.df, list(dict.fromkeys(key for rule_keys in subset for key in rule_keys)))
        .select((F.col("pairs") * (-1) ** (size + 1)).alias("pairs"))
        for size in range(1, len(rules) + 1)
        for subset in combinations(keys, size)
    ]
    return int(reduce(DataFrame.unionByName, terms).agg(F.sum("pairs")).first()[0])


def estimate_prior(records: RegisteredRecords, model: Model, record_count: int) -> None:
    """Splink's estimate of the probability two random records match: pairs found by near-certain
    rules, scaled up by their assumed recall, over all possible pairs."""
    observed = count_pairs(records, PRIOR_RULES)
    total = record_count * (record_count - 1) / 2
    splink.set_prior(model, (observed / PRIOR_RECALL) / total)
    log.info("prior match probability estimated from near-certain rules")


def estimate_u(records: RegisteredRecords, model: Model, record_count: int, max_pairs: float, seed: int) -> None:
    """u for every level from all pairs among a hashed record sample sized to about max_pairs;
    an exact level the sample holds too few agreements on takes u from value frequencies."""
    fraction = min(1.0, splink.rows_needed_for_n_pairs(max_pairs) / max(record_count, 1))
    sample = _record_sample(records, fraction, seed)
    # The sample is a few thousand records: broadcast, Spark pairs them in one pass, where its
    # size estimate (the whole cached table) would choose a cartesian product of partitions.
    blocked = _blocked_sql(model, ["1 = 1"], source=sample, hint="/*+ BROADCAST(r) */ ")
    counts = _pattern_counts(records.df.sparkSession, model, blocked)
    level_counts: dict[str, dict[int, int]] = {}
    for comparison, gamma in zip(model.comparisons, splink.gamma_columns(model)):
        by_level = level_counts.setdefault(comparison.output_column_name, {})
        for row in counts:
            by_level[row[gamma]] = by_level.get(row[gamma], 0) + row["agreement_pattern_count"]
    rare = [(comparison, level, column) for comparison, level, column in splink.exact_match_first_levels(model)
            if level_counts[comparison].get(level, 0) < MIN_SAMPLED_AGREEMENTS] if fraction < 1.0 else []
    u_by_column = exact_match_u(records.df, [column for _, _, column in rare]) if rare else {}
    from_frequencies = {comparison: {level: u_by_column[column]} for comparison, level, column in rare
                        if u_by_column.get(column, 0.0) > 0}
    if from_frequencies:
        log.info("u of exact %s from value frequencies: the sample held too few agreeing pairs",
                 ", ".join(from_frequencies))
    splink.set_u_from_level_counts(model, level_counts, from_frequencies)


def exact_match_u(records: DataFrame, columns: list[str]) -> dict[str, float]:
    """Per column, the chance two different records, both holding a value, hold the same one:
    sum n(n-1) over the values' counts n, over N(N-1) for N records with a value. One Spark job
    for all the columns: their values stacked, then counted."""
    stacked = records.select(F.explode(F.array(*[
        F.struct(F.lit(column).alias("field"), F.col(column).cast("string").alias("value")) for column in columns
    ])).alias("v")).select("v.*").where(F.col("value").isNotNull())
    n = F.col("count").cast("double")
    rows = (stacked.groupBy("field", "value").count()
            .groupBy("field").agg(F.sum(n * (n - 1)).alias("agreeing"), F.sum(n).alias("holding")).collect())
    return {row["field"]: row["agreeing"] / (row["holding"] * (row["holding"] - 1)) if row["holding"] > 1 else 0.0
            for row in rows}


def estimate_m(records: RegisteredRecords, model: Model, rule: str, max_pairs: float | None, seed: int) -> None:
    """One Splink EM training session blocked on `rule`, run on the rule's agreement-pattern counts.

    Past max_pairs, records are sampled by hash, so the join itself shrinks rather than
    being filtered after it is made."""
    fraction = 1.0
    if max_pairs is not None and (pairs := _pairs_per_rule(records, rule)) > max_pairs:
        fraction = math.sqrt(max_pairs / pairs)
    blocked = _blocked_sql(model, [rule], source=_record_sample(records, fraction, seed))
    counts = _pattern_counts(records.df.sparkSession, model, blocked)
    if not counts:
        raise ConfigError(f"linkage.blocking_rules_training: rule {rule!r} admits no pairs to train on")
    try:
        splink.train_m_by_em(model, rule, counts)
    except ValueError as err:
        if "below the minimum" not in str(err):
            raise
        # Splink refuses an m or u of (almost) 0: EM saw only one kind of pair, e.g. one block of
        # thousands of records with one name and date of birth dominating the training pairs.
        raise InputDataError(
            f"linkage.blocking_rules_training: EM on rule {rule!r} could not estimate the model: its pairs are "
            "almost all alike, as when one block (e.g. many records with one name and date of birth) dominates "
            "them. Check the sources' duplicates in the quality profile, add or change training rules, or lower "
            "linkage.em_max_pairs"
        ) from None


def _pairs_per_rule(records: RegisteredRecords, rule: str) -> int:
    """Pairs a rule makes: from block sizes alone for an equi-join rule, else by joining."""
    keys = equi_join_keys(rule)
    if not keys:
        return count_pairs(records, [rule])
    return int(pairs_in_blocks(records.df, keys).first()["pairs"])


@dataclass
class GuardRails:
    """What the checks after training found: comparison levels only, never records."""

    untrained_levels: list[str] = field(default_factory=list)  # "comparison: label (m not trained)"
    floored_levels: list[str] = field(default_factory=list)  # "comparison: label: weight -41.5 -> -10.0"


def apply_guard_rails(model: Model, linkage: LinkageConfig) -> GuardRails:
    """List the levels training could not estimate (logged as warnings), and raise every level's m
    so that its match weight log2(m/u) is at least `linkage.weight_floor`, except in comparisons
    marked decisive: one miscoded field may lower a pair's score, not veto it."""
    rails = GuardRails()
    decisive = {c.field for c in linkage.comparisons if c.decisive}
    for level in splink.level_parameters(model):
        missing = [name for name, trained in (("m", level.m_trained), ("u", level.u_trained)) if not trained]
        if missing:
            rails.untrained_levels.append(f"{level.comparison}: {level.label} ({' and '.join(missing)} not trained)")
            log.warning("comparison level not trained (EM or sampling never saw it): %s: %s (%s)",
                        level.comparison, level.label, ", ".join(missing))
        floor = linkage.weight_floor
        if floor is None or level.comparison in decisive or not level.m or not level.u:
            continue
        weight = math.log2(level.m / level.u)
        if weight < floor:
            splink.set_m_probability(model, level.comparison, level.level, min(1.0, level.u * 2.0 ** floor))
            rails.floored_levels.append(f"{level.comparison}: {level.label}: weight {weight:.1f} -> {floor:.1f}")
            log.info("match weight of %s: %s raised from %.1f to the floor %.1f",
                     level.comparison, level.label, weight, floor)
    return rails


def train(records: DataFrame, linkage: LinkageConfig, seed: int) -> tuple[Model, GuardRails]:
    """A new model trained on the records: prior, then u by sampling, then m by EM per rule, then
    the guard rails (`apply_guard_rails`)."""
    model = new_model(linkage)
    with register_records(records, model, PRIOR_RULES + list(linkage.blocking_rules_training)) as registered:
        record_count = registered.df.count()
        estimate_prior(registered, model, record_count)
        estimate_u(registered, model, record_count, linkage.u_max_pairs, seed)
        rules = linkage.blocking_rules_training
        for number, rule in enumerate(rules, start=1):
            estimate_m(registered, model, rule, linkage.em_max_pairs, seed)
            log.info("EM done for training rule %d of %d", number, len(rules))
    return model, apply_guard_rails(model, linkage)


# ------------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------------


def score(records: RegisteredRecords, model: Model, rules: list[str], *,
          undecided_if_null: str | None = None, changed_if: str | None = None,
          broadcast_changed: bool = False) -> DataFrame:
    """Every pair the rules admit among `records` (from `register_records`) with its match weight
    and probability, in one Spark plan: blocking join, comparison vector and Splink's
    match-weight SQL. Pass `undecided_if_null` when every rule already admits only pairs holding
    a record where that column is null, or `changed_if` to score only the pairs holding a record
    where that boolean column is true, and `broadcast_changed` when those records are few (see
    `_fetched_pairs_sql`)."""
    pairs = _fetched_pairs_sql(model, records, rules, undecided_if_null, changed_if, broadcast_changed)
    ctes = [("__splink__df_comparison_vectors", _comparison_vectors_sql(model, pairs)), *splink.prediction_sqls(model)]
    with_clause = ",\n".join(f"{name} as (\n{sql}\n)" for name, sql in ctes)
    return _run_sql(
        records.df.sparkSession,
        f"with {with_clause}\nselect unique_id_l, unique_id_r, match_weight, match_probability from {ctes[-1][0]}",
    )


# Thresholds `choose_threshold` considers.
THRESHOLD_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 0.999, 0.9999)


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    curve: list[dict]  # per grid threshold: expected precision, recall and F1 (model-based, no truth)


def expected_curve(scored: DataFrame, grid: tuple[float, ...] = THRESHOLD_GRID) -> list[dict]:
    """Expected precision, recall and F1 of linking the scored pairs at each threshold, taking each
    pair's match probability as the chance it is a true match: one aggregation, sums only."""
    p = F.col("match_probability")
    aggs = [F.coalesce(F.sum(p), F.lit(0.0)).alias("total")]
    for i, t in enumerate(grid):
        aggs += [F.coalesce(F.sum(F.when(p >= t, p)), F.lit(0.0)).alias(f"tp_{i}"),
                 F.count(F.when(p >= t, 1)).alias(f"n_{i}")]
    row = scored.agg(*aggs).first()
    curve = []
    for i, t in enumerate(grid):
        tp, n, total = row[f"tp_{i}"], row[f"n_{i}"], row["total"]
        precision = tp / n if n else 1.0
        recall = tp / total if total else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        curve.append({"threshold": t, "expected_precision": precision, "expected_recall": recall, "expected_f1": f1})
    return curve


def choose_threshold(scored: DataFrame, min_precision: float) -> ThresholdChoice:
    """The grid threshold with the best expected F1 among those whose expected precision reaches
    `min_precision` (the highest threshold when none does); ties go to the higher threshold."""
    curve = expected_curve(scored)
    eligible = [c for c in curve if c["expected_precision"] >= min_precision] or [curve[-1]]
    best = max(eligible, key=lambda c: (c["expected_f1"], c["threshold"]))
    return ThresholdChoice(threshold=best["threshold"], curve=curve)


def match_weight_histogram(predictions: DataFrame, bin_width: float = 1.0) -> DataFrame:
    """Counts of scored pairs per match-weight bin (aggregates only; no record-level values)."""
    return (
        predictions.select((F.floor(F.col("match_weight") / bin_width) * bin_width).alias("bin_start"))
        .groupBy("bin_start")
        .count()
        .orderBy("bin_start")
    )
