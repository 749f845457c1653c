"""The adapter to Splink's internals: each piece tre-link reads, checked for the shape it relies on.

When a Splink upgrade changes one of them, a test here fails and names it, and
`tre_link/platform/splink_internals.py` is the one file to mend."""

from __future__ import annotations

import importlib.metadata

import splink.comparison_library as cl
from splink import SettingsCreator, block_on

from tre_link.platform import splink_internals as si

PINNED_MINOR = "5.0"


def _model() -> si.Model:
    return si.model_from_creator(SettingsCreator(
        link_type="dedupe_only",
        comparisons=[cl.ExactMatch("given_name").configure(term_frequency_adjustments=True),
                     cl.JaroWinklerAtThresholds("family_name", [0.9])],
        blocking_rules_to_generate_predictions=[block_on("dob")],
    ))


def test_splink_is_the_pinned_minor_version():
    assert importlib.metadata.version("splink").startswith(PINNED_MINOR + ".")


def test_model_columns_and_sql_pieces_have_their_shape():
    model = _model()
    assert si.columns_read_by_model(model) == ["unique_id", "given_name", "family_name"]
    assert si.term_frequency_columns(model) == ["given_name"]
    assert si.gamma_columns(model) == ["gamma_given_name", "gamma_family_name"]
    blocking = si.blocking_select_columns(model)
    assert "l.given_name AS given_name_l" in [c.replace('"', "").replace("`", "") for c in blocking]
    vectors = " ".join(si.comparison_vector_select_columns(model))
    assert "gamma_given_name" in vectors and "jaro_winkler" in vectors
    steps = si.prediction_sqls(model)
    assert steps and all(isinstance(name, str) and "select" in sql.lower() for name, sql in steps)
    assert "match_probability" in steps[-1][1]


def test_model_round_trips_through_a_dict_and_takes_a_prior():
    model = _model()
    si.set_prior(model, 0.001)
    again = si.model_from_dict(si.model_as_dict(model))
    assert si.model_as_dict(again)["probability_two_random_records_match"] == 0.001


def test_blocking_rules_parse_into_equi_joins_and_filters():
    plain = si.parse_blocking_rule("l.dob = r.dob and l.postcode = r.postcode")
    assert plain.equi_joins == [("dob", "dob"), ("postcode", "postcode")] and plain.filters == ""
    mixed = si.parse_blocking_rule("l.dob = r.dob and l.given_name <> r.given_name")
    assert mixed.equi_joins == [("dob", "dob")] and "given_name" in mixed.filters
    assert si.parse_blocking_rule("1 = 1").equi_joins == []


def test_sql_helpers():
    assert set(si.columns_in_sql("l.dob = r.dob and substr(l.postcode, 1, 3) = substr(r.postcode, 1, 3)")) == {
        "dob", "postcode"}
    assert "DOUBLE" in si.to_spark_sql("select cast(x as float8) from t").upper()
    assert round(si.rows_needed_for_n_pairs(45)) == 10


def test_u_from_level_counts_and_m_from_em_on_pattern_counts():
    model = _model()
    si.set_prior(model, 0.01)
    si.set_u_from_level_counts(model, {"given_name": {1: 10, 0: 990}, "family_name": {2: 5, 1: 15, 0: 980}})
    levels = si.model_as_dict(model)["comparisons"]
    assert [lvl.get("u_probability") for lvl in levels[0]["comparison_levels"][1:]] == [0.01, 0.99]
    patterns = [
        {"gamma_given_name": 1, "gamma_family_name": 2, "agreement_pattern_count": 80},
        {"gamma_given_name": 0, "gamma_family_name": 0, "agreement_pattern_count": 900},
        {"gamma_given_name": 1, "gamma_family_name": 0, "agreement_pattern_count": 10},
        {"gamma_given_name": 0, "gamma_family_name": 2, "agreement_pattern_count": 10},
    ]
    si.train_m_by_em(model, "l.dob = r.dob", patterns)
    trained = si.model_as_dict(model)["comparisons"]
    m_given = [lvl.get("m_probability") for lvl in trained[0]["comparison_levels"][1:]]
    assert all(m is not None for m in m_given) and m_given[0] > 0.5


def test_scala_udfs_name_the_similarity_functions():
    names = {udf[0] for udf in si.scala_udfs()}
    assert {"jaro_winkler", "damerau_levenshtein", "Dmetaphone"} <= names
