"""The probabilistic pass against an oracle: Splink's own Linker, driven the ordinary way.

tre-link drives Splink's model SQL as whole Spark jobs and runs EM on agreement-pattern counts;
these tests check that what comes out equals what Splink's Linker computes on the same records
through its own Spark backend (the same similarity functions, so levels agree exactly): u from
all pairs, m from EM, and every scored pair's match weight.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from splink import Linker, SparkAPI

from tre_link.ingest.stage import read_standardised
from tre_link.link import probabilistic
from tre_link.link.deterministic import DETERMINISTIC_KEY, exclude_decided_pairs
from tre_link.link.engine import prepare_records
from tre_link.link.model import MODEL_COLUMNS, build_settings
from tre_link.platform import splink_internals

RULE = "l.dob = r.dob"
PREDICT_RULES = ["l.dob = r.dob", "l.family_name = r.family_name and l.postcode_district = r.postcode_district"]


@pytest.fixture(scope="module")
def sample(spark, demo_run):
    """The shared demo run's synthetic records (a small population): small enough for all
    pairs, varied enough to reach most comparison levels."""
    records = prepare_records(read_standardised(spark, demo_run.cfg)).select(*MODEL_COLUMNS)
    records = records.localCheckpoint(eager=True)
    assert 150 < records.count() < 3000, "the sample should have room for all pairs"
    return records


def _splink_linker(spark, records, settings):
    return Linker(SparkAPI(spark_session=spark).register(records), settings)


def _levels(settings_dict: dict, probability: str) -> dict:
    return {
        (c["output_column_name"], i): level.get(probability)
        for c in settings_dict["comparisons"]
        for i, level in enumerate(c["comparison_levels"])
        if not level.get("is_null_level")
    }


def _close(ours: dict, theirs: dict, tolerance: float) -> list:
    assert ours.keys() == theirs.keys()
    return [k for k in ours if (ours[k] is None) != (theirs[k] is None)
            or (ours[k] is not None and abs(ours[k] - theirs[k]) > tolerance)]


def test_u_equals_splinks_estimate_from_all_pairs(spark, demo_run, sample):
    linkage = demo_run.cfg.linkage
    model = probabilistic.new_model(linkage)
    with probabilistic.register_records(sample, model, []) as registered:
        probabilistic.estimate_u(registered, model, sample.count(), max_pairs=1e9, seed=1)

    splink = _splink_linker(spark, sample, build_settings(linkage))
    splink.training.estimate_u_using_random_sampling(max_pairs=1e9, seed=1, min_count_per_level=None, num_chunks=1)

    ours, theirs = _levels(model.as_dict(), "u_probability"), _levels(splink.misc.save_model_to_json(), "u_probability")
    assert any(v is not None for v in ours.values())
    assert _close(ours, theirs, 1e-12) == []


def test_exact_match_u_counts_agreeing_pairs_among_records_holding_a_value(spark):
    records = spark.createDataFrame(
        [("A", "M"), ("A", "M"), ("B", "F"), (None, "M"), ("C", None)], "postcode string, sex string")
    u = probabilistic.exact_match_u(records, ["postcode", "sex"])
    # 4 records hold a postcode: 12 ordered pairs, 2 of which agree (the two As). 4 hold a sex:
    # 6 of their 12 ordered pairs agree (the three Ms).
    assert u == pytest.approx({"postcode": 2 / 12, "sex": 6 / 12})


def test_exact_match_u_equals_splinks_u_from_all_pairs(spark, demo_run, sample):
    model = probabilistic.new_model(demo_run.cfg.linkage)
    with probabilistic.register_records(sample, model, []) as registered:
        probabilistic.estimate_u(registered, model, sample.count(), max_pairs=1e9, seed=1)
    sampled = {(p.comparison, p.level): p.u for p in splink_internals.level_parameters(model)}
    exact_levels = splink_internals.exact_match_first_levels(model)
    assert {column for _, _, column in exact_levels} >= {"postcode", "sex"}
    for comparison, level, column in exact_levels:
        assert probabilistic.exact_match_u(sample, [column])[column] == pytest.approx(sampled[(comparison, level)], rel=1e-9)


def test_exact_level_u_comes_from_value_frequencies_only_when_the_sample_holds_few_agreements(spark, demo_run, sample):
    # About 60 sampled records: under 100 pairs agree on postcode, over 100 on sex.
    model = probabilistic.new_model(demo_run.cfg.linkage)
    with probabilistic.register_records(sample, model, []) as registered:
        probabilistic.estimate_u(registered, model, sample.count(), max_pairs=2000, seed=1)
    first = {comparison: level for comparison, level, _ in splink_internals.exact_match_first_levels(model)}
    u = {p.comparison: p.u for p in splink_internals.level_parameters(model) if first.get(p.comparison) == p.level}
    from_frequencies = probabilistic.exact_match_u(sample, ["postcode", "sex"])
    assert u["postcode"] == pytest.approx(from_frequencies["postcode"], rel=1e-12)
    assert u["sex"] != pytest.approx(from_frequencies["sex"], rel=1e-3)


def test_em_on_pattern_counts_equals_splinks_em(spark, demo_run, sample):
    linkage = demo_run.cfg.linkage
    splink = _splink_linker(spark, sample, build_settings(linkage))
    splink.training.estimate_probability_two_random_records_match(probabilistic.PRIOR_RULES, probabilistic.PRIOR_RECALL)
    splink.training.estimate_u_using_random_sampling(max_pairs=1e9, seed=1, min_count_per_level=None, num_chunks=1)
    # Both start from the same prior and u: Splink's, saved and loaded into tre-link's model.
    model = splink_internals.model_from_dict(splink.misc.save_model_to_json())
    with probabilistic.register_records(sample, model, [RULE]) as registered:
        probabilistic.estimate_m(registered, model, RULE, max_pairs=1e12, seed=1)
    splink.training.estimate_parameters_using_expectation_maximisation(RULE, estimate_without_term_frequencies=True)

    ours, theirs = _levels(model.as_dict(), "m_probability"), _levels(splink.misc.save_model_to_json(), "m_probability")
    assert sum(v is not None for v in ours.values()) > 10
    assert _close(ours, theirs, 1e-9) == []


def _assert_scores_equal_splinks_predict(spark, demo_run, records, rules, **score_options):
    settings = json.loads(Path(demo_run.summary["model_json"]).read_text())
    model = probabilistic.load_model(demo_run.summary["model_json"])
    with probabilistic.register_records(records, model, rules) as registered:
        scored = probabilistic.score(registered, model, rules, **score_options).collect()
    ours = {(r.unique_id_l, r.unique_id_r): r.match_weight for r in scored}

    settings["blocking_rules_to_generate_predictions"] = rules
    splink = _splink_linker(spark, records, settings)
    theirs = {
        (r.unique_id_l, r.unique_id_r): r.match_weight for r in splink.inference.predict().as_spark_dataframe().collect()
    }
    assert len(ours) > 100
    assert ours.keys() == theirs.keys()
    assert max(abs(ours[k] - theirs[k]) for k in ours) < 1e-9


def test_scores_equal_splinks_predict(spark, demo_run, sample):
    _assert_scores_equal_splinks_predict(spark, demo_run, sample, PREDICT_RULES)


def test_scores_of_undecided_pairs_equal_splinks_predict(spark, demo_run):
    """Pairs made from the undecided side only are exactly the pairs Splink makes with the
    deterministic exclusion in every rule."""
    records = prepare_records(read_standardised(spark, demo_run.cfg))
    records = records.select(*MODEL_COLUMNS, DETERMINISTIC_KEY).localCheckpoint(eager=True)
    undecided = records.where(f"{DETERMINISTIC_KEY} is null").count()
    assert 50 < undecided < records.count() - 50, "the sample needs decided and undecided records"
    rules = [exclude_decided_pairs(rule) for rule in PREDICT_RULES]
    _assert_scores_equal_splinks_predict(spark, demo_run, records, rules, undecided_if_null=DETERMINISTIC_KEY)
