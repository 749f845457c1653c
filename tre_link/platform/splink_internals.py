"""The one adapter to Splink's internals: every `splink.internals` import and private attribute
tre-link reads goes through here, under names of our own.

tre-link drives Splink's SQL itself on Spark (see `tre_link.link.probabilistic`): Splink writes the
model SQL, trains EM and keeps the model; tre-link decides how Spark runs it. That needs pieces of
Splink that are not public API. They are pinned to the Splink minor version in pyproject.toml, and
`tests/test_splink_internals.py` fails when any of them changes shape, so an upgrade shows exactly
what to mend here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlglot
from splink import DuckDBAPI, SettingsCreator
from splink.internals.blocking import BlockingRule
from splink.internals.blocking_analysis import _as_blocking_rule
from splink.internals.charts import ParameterEstimateComparisonsChart
from splink.internals.em_training_session import EMTrainingSession
from splink.internals.estimate_u import _rows_needed_for_n_pairs
from splink.internals.m_u_records_to_parameters import (
    append_u_probability_to_comparison_level_trained_probabilities,
    m_u_records_to_lookup_dict,
)
from splink.internals.parse_sql import get_columns_used_from_sql
from splink.internals.predict import predict_from_comparison_vectors_sqls_using_settings
from splink.internals.settings import Settings
from splink.internals.spark.jar_location import get_scala_udfs
from splink.internals.spark.spark_helpers import custom_spark_dialect  # noqa: F401  (registers "customspark" in sqlglot)

# A trained or untrained model: Splink's own settings object.
Model = Settings


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------


def model_from_creator(creator: SettingsCreator) -> Model:
    return creator.get_settings("spark")


def model_from_dict(settings: dict) -> Model:
    return SettingsCreator.from_path_or_dict(settings).get_settings("spark")


def model_as_dict(model: Model) -> dict:
    return model.as_dict()


def parameter_charts_html(model: Model) -> dict[str, str]:
    """Splink's own charts of a model's parameters, as self-contained HTML (its chart libraries
    inlined): match weights, m and u, and, for a model trained in this process, each level's
    estimates across the training sessions (u sampling, each EM rule). Parameters only, no record.
    (Splink's term-frequency chart is not here: it labels its bars with name values.)"""
    charts = {"match_weights": model.match_weights_chart(), "m_u_parameters": model.m_u_parameters_chart()}
    estimates = model._parameter_estimates_as_records
    if any(r.get("estimate_description") != "Splink's default" for r in estimates):
        charts["parameter_estimates"] = ParameterEstimateComparisonsChart(estimates)
    return {name: chart.to_html(inline=True) for name, chart in charts.items()}


def columns_read_by_model(model: Model) -> list[str]:
    """The record columns the model's comparisons read."""
    return [c.unquote().name for c in model._columns_used_by_comparisons]


def term_frequency_columns(model: Model) -> list[str]:
    return [c.unquote().name for c in model._term_frequency_columns]


def blocking_select_columns(model: Model) -> list[str]:
    """The `l.x as x_l, r.x as x_r` selections a blocked pair carries into the comparisons."""
    return list(model._columns_to_select_for_blocking)


def comparison_vector_select_columns(model: Model) -> list[str]:
    """The selections that turn a blocked pair into its comparison vector (the gamma columns)."""
    return list(model._columns_to_select_for_comparison_vector_values)


def gamma_columns(model: Model) -> list[str]:
    return [c._gamma_column_name for c in model.comparisons]


def prediction_sqls(model: Model) -> list[tuple[str, str]]:
    """(table name, SQL) steps from comparison vectors to match weight and probability."""
    return [(s["output_table_name"], s["sql"]) for s in predict_from_comparison_vectors_sqls_using_settings(model)]


def set_prior(model: Model, probability: float) -> None:
    model.core_model_settings.probability_two_random_records_match = probability


# ------------------------------------------------------------------------------------------------
# SQL
# ------------------------------------------------------------------------------------------------


def columns_in_sql(sql: str) -> list[str]:
    """The column names a Spark SQL expression reads, as Splink parses them."""
    return list(get_columns_used_from_sql(sql, "spark"))


def to_spark_sql(sql: str) -> str:
    """Splink's SQL, written in a generic dialect (`float8` casts and the like), as Spark runs it:
    transpiled as Splink's own SparkAPI does."""
    return sqlglot.transpile(sql, read="spark", write="customspark")[0]


@dataclass(frozen=True)
class ParsedRule:
    equi_joins: list[tuple[str, str]]  # (left key, right key) expressions, table prefixes removed
    filters: str  # what is left beside the equi-joins: '' when nothing


def parse_blocking_rule(rule: str) -> ParsedRule:
    """A blocking rule split as Splink's own blocking splits it."""
    parsed = _as_blocking_rule(rule, "spark")
    filters = parsed._filter_conditions
    return ParsedRule(
        equi_joins=list(parsed._equi_join_conditions),
        filters="" if filters.upper() in ("", "TRUE") else filters,
    )


def rows_needed_for_n_pairs(pairs: float) -> float:
    """Records whose all-pairs product is about `pairs`, as Splink's u estimation sizes its sample."""
    return _rows_needed_for_n_pairs(pairs)


# ------------------------------------------------------------------------------------------------
# Training from agreement-pattern counts
# ------------------------------------------------------------------------------------------------


def exact_match_first_levels(model: Model) -> list[tuple[str, int, str]]:
    """(comparison, level, column) for each comparison whose first non-null level is an exact
    match on one column: that level's u is the chance two random records share a value."""
    found = []
    for comparison in model.comparisons:
        levels = comparison._comparison_levels_excluding_null
        if not levels or not levels[0]._is_exact_match:
            continue
        columns = levels[0]._exact_match_colnames
        if len(columns) == 1:
            found.append((comparison.output_column_name, levels[0].comparison_vector_value, columns[0]))
    return found


def set_u_from_level_counts(model: Model, level_counts: dict[str, dict[int, int]],
                            from_frequencies: dict[str, dict[int, float]] | None = None) -> None:
    """u of every non-null level from counts of pairs per level among random pairs,
    {output column: {gamma level: pairs}}, recorded as Splink's own u estimation records them;
    `from_frequencies` ({output column: {gamma level: u}}) replaces some levels' estimates with u
    computed from the values' frequencies over every record."""
    records = []
    for comparison in model.comparisons:
        by_level = level_counts.get(comparison.output_column_name, {})
        observed = sum(n for level, n in by_level.items() if level != -1)
        records += [
            {"output_column_name": comparison.output_column_name, "comparison_vector_value": level,
             "m_probability": None, "u_probability": n / observed}
            for level, n in by_level.items() if level != -1 and n > 0
        ]
    sampled = m_u_records_to_lookup_dict(records)
    computed = from_frequencies or {}
    for comparison in model.comparisons:
        name = comparison.output_column_name
        for level in comparison._comparison_levels_excluding_null:
            value = level.comparison_vector_value
            if value in computed.get(name, {}):
                lookup = {name: {value: {"u_probability": computed[name][value]}}}
                description = "estimate u from value frequencies"
            else:
                lookup, description = sampled, "estimate u by random sampling"
            append_u_probability_to_comparison_level_trained_probabilities(level, lookup, name, description)
    use_trained_values(model)


def train_m_by_em(model: Model, rule: str, pattern_counts: Iterable[dict]) -> None:
    """One Splink EM training session blocked on `rule`, run on agreement-pattern counts
    (rows of the gamma columns and `agreement_pattern_count`) instead of the pairs themselves.

    Splink's EM counts the patterns of the comparison vectors it is given, so it gets a DuckDB
    table repeating each pattern by its count: exactly the counts Spark computed, built and
    counted in well under a second for a few million narrow rows.

    One thread, and the patterns in a fixed order: EM sums floating-point numbers, and a sum
    whose order changes from run to run changes the model in its last bits, and with it every
    match weight, so a retrained model would not reproduce a run's outputs exactly."""
    import duckdb as duckdb_module

    duckdb = DuckDBAPI(connection=duckdb_module.connect(config={"threads": 1}))
    gammas = gamma_columns(model)
    ordered = sorted(pattern_counts, key=lambda row: tuple(row[g] for g in gammas))
    counts_table = duckdb.register(ordered, table_name="__tre_link_pattern_counts")
    vectors = "__tre_link_pattern_vectors"
    duckdb._execute_sql_against_backend(
        f"create or replace table {vectors} as select {', '.join(gammas)} "
        f"from {counts_table.physical_name}, range(agreement_pattern_count) order by all"
    )
    session = EMTrainingSession(
        None,  # Splink needs the linker only to make comparison vectors, which are passed in
        db_api=duckdb,
        blocking_rule_for_training=BlockingRule(rule, "duckdb"),
        core_model_settings=model.core_model_settings,
        training_settings=model.training_settings,
        unique_id_input_columns=model.column_info_settings.unique_id_input_columns,
        fix_u_probabilities=True,
        estimate_without_term_frequencies=True,
    )
    cvv = duckdb.table_to_splink_dataframe("__splink__df_comparison_vectors", vectors)
    model.core_model_settings = session._train(cvv=cvv)
    use_trained_values(model)


@dataclass(frozen=True)
class LevelParameters:
    """One non-null comparison level of a model: where it is, its label and its parameters."""

    comparison: str  # the comparison's output column name
    level: int  # the comparison vector value
    label: str
    m: float | None
    u: float | None
    m_trained: bool  # some training session estimated m (EM saw the level)
    u_trained: bool  # u was estimated (random sampling saw the level)


def level_parameters(model: Model) -> list[LevelParameters]:
    """Every non-null level of every comparison with the m and u the model scores with."""
    return [
        LevelParameters(
            comparison=comparison.output_column_name, level=level.comparison_vector_value,
            label=level.label_for_charts, m=level.m_probability, u=level.u_probability,
            m_trained=level._has_estimated_m_values, u_trained=level._has_estimated_u_values,
        )
        for comparison in model.comparisons
        for level in comparison._comparison_levels_excluding_null
    ]


def set_m_probability(model: Model, comparison: str, level: int, m: float) -> None:
    """Replace one level's m (e.g. raised to a floor on its match weight)."""
    for candidate in model.comparisons:
        if candidate.output_column_name == comparison:
            candidate._get_comparison_level_by_comparison_vector_value(level).m_probability = m
            return
    raise KeyError(f"no comparison {comparison!r} in the model")


def use_trained_values(model: Model) -> None:
    """Each level's m and u become the median of its trained estimates, as Splink's Linker does
    (its own method for this is private to the Linker)."""
    for comparison in model.comparisons:
        for level in comparison._comparison_levels_excluding_null:
            if level._has_estimated_u_values and not level._fix_u_probability:
                level.u_probability = level._trained_u_median
            if level._has_estimated_m_values and not level._fix_m_probability:
                level.m_probability = level._trained_m_median


# ------------------------------------------------------------------------------------------------
# Spark functions
# ------------------------------------------------------------------------------------------------


def scala_udfs() -> list[tuple]:
    """(name, class, return type) of the Scala similarity and phonetic functions in Splink's jar,
    for `spark.udf.registerJavaFunction`."""
    return list(get_scala_udfs())
