"""The probabilistic pass: Splink on Spark, trained by u-sampling and EM, scoring only the pairs
the deterministic pass left undecided."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from splink import Linker, SparkAPI
from splink.blocking_analysis import count_comparisons_from_blocking_rules
from splink.internals.splink_dataframe import SplinkDataFrame

from tre_link.config import LinkageConfig
from tre_link.errors import ConfigError
from tre_link.linkage.deterministic import exclude_decided_pairs
from tre_link.linkage.model import UNIQUE_ID, build_settings

log = logging.getLogger(__name__)

# Rules that admit almost no false positives, used to estimate the prior match probability.
_PRIOR_RULES = [
    "l.nhs_number_digits = r.nhs_number_digits",
    "l.given_name = r.given_name and l.family_name = r.family_name and l.dob = r.dob",
]
_PRIOR_RECALL = 0.9
_RECORDS_VIEW = "tre_link_records"


@dataclass
class SplinkRun:
    linker: Linker
    records: SplinkDataFrame
    predict_rules: list[str]


def make_linker(
    spark: SparkSession, records: DataFrame, linkage: LinkageConfig, model_json: str | None,
    predict_rules: list[str] | None = None,
) -> SplinkRun:
    """A Linker over the unioned records, from a trained model file or a fresh specification.
    Predict rules default to the config's, restricted to pairs the deterministic pass left undecided."""
    db_api = SparkAPI(spark_session=spark)
    spark.catalog.dropTempView(_RECORDS_VIEW)  # left by an earlier linker in this session
    registered = db_api.register(records, table_name=_RECORDS_VIEW)
    if predict_rules is None:
        predict_rules = [exclude_decided_pairs(rule) for rule in linkage.blocking_rules_predict]
    if model_json:
        settings = json.loads(Path(model_json).read_text())
    else:
        settings = build_settings(linkage).get_settings("spark").as_dict()
    settings["blocking_rules_to_generate_predictions"] = predict_rules
    linker = Linker(registered, settings, log_level=logging.WARNING)
    return SplinkRun(linker=linker, records=registered, predict_rules=predict_rules)


def guard_comparison_count(run: SplinkRun, linkage: LinkageConfig, record_count: int) -> int:
    """Estimate the comparisons the predict rules generate and refuse to go on past the limit."""
    sample = 1.0 if record_count <= 200_000 else max(0.02, (200_000 / record_count))
    counts = count_comparisons_from_blocking_rules(
        run.records,
        blocking_rules=run.predict_rules,
        link_type="dedupe_only",
        unique_id_column_name=UNIQUE_ID,
        record_sample_proportion=sample,
    )
    estimated = int(counts[-1]["cumulative_comparison_count"])
    if estimated > linkage.max_comparisons:
        worst = max(counts, key=lambda c: c["marginal_comparison_count"])
        raise ConfigError(
            f"linkage.blocking_rules_predict would generate about {estimated:,} comparisons, over "
            f"linkage.max_comparisons={linkage.max_comparisons:,.0f}; the largest contributor is "
            f"rule {worst['blocking_rule']!r} ({worst['marginal_comparison_count']:,}). Tighten the rules or raise the limit."
        )
    return estimated


def train(run: SplinkRun, linkage: LinkageConfig, seed: int) -> None:
    training = run.linker.training
    training.estimate_probability_two_random_records_match(_PRIOR_RULES, recall=_PRIOR_RECALL)
    # One chunk: on Spark every chunk is a round of jobs, and a fixed sample needs no early stop.
    training.estimate_u_using_random_sampling(max_pairs=linkage.u_max_pairs, seed=seed, num_chunks=1)
    for rule in linkage.blocking_rules_training:
        training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=True, max_pairs=linkage.em_max_pairs
        )


def predict(run: SplinkRun) -> DataFrame:
    """Every undecided blocked pair with its match weight and probability (a Spark DataFrame)."""
    predictions = run.linker.inference.predict()
    return predictions.as_spark_dataframe().select(
        "unique_id_l", "unique_id_r", "match_weight", "match_probability"
    )


def save_model(run: SplinkRun, path: str) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    run.linker.misc.save_model_to_json(path, overwrite=True)
    return path


def match_weight_histogram(predictions: DataFrame, bin_width: float = 1.0) -> DataFrame:
    """Counts of scored pairs per match-weight bin (aggregates only; no record-level values)."""
    return (
        predictions.select((F.floor(F.col("match_weight") / bin_width) * bin_width).alias("bin_start"))
        .groupBy("bin_start")
        .count()
        .orderBy("bin_start")
    )
