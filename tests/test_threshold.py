"""threshold_match_probability: auto picks the best expected F1 above a precision floor, from the
model's own match probabilities (expected counts worked out by hand)."""

from __future__ import annotations

import pytest

from tre_link.link.probabilistic import choose_threshold, expected_curve
from tre_link.platform.config import LinkageConfig


def _scored(spark, probabilities):
    return spark.createDataFrame([(p,) for p in probabilities], "match_probability double")


def test_expected_curve_counts_each_pair_as_its_probability(spark):
    curve = {c["threshold"]: c for c in expected_curve(_scored(spark, [0.99, 0.99, 0.9, 0.5, 0.1]), (0.5, 0.95))}
    total = 0.99 + 0.99 + 0.9 + 0.5 + 0.1
    assert curve[0.95]["expected_precision"] == pytest.approx(0.99)
    assert curve[0.95]["expected_recall"] == pytest.approx(1.98 / total)
    assert curve[0.5]["expected_precision"] == pytest.approx((1.98 + 0.9 + 0.5) / 4)
    assert curve[0.5]["expected_recall"] == pytest.approx(3.38 / total)


def test_auto_threshold_takes_the_best_f1_whose_precision_reaches_the_floor(spark):
    # Many sure pairs, a tail of doubtful ones: a low threshold gains recall but loses precision.
    scored = _scored(spark, [0.9999] * 50 + [0.97] * 20 + [0.6] * 10 + [0.05] * 100)
    loose = choose_threshold(scored, min_precision=0.5)
    strict = choose_threshold(scored, min_precision=0.99)
    assert loose.threshold <= 0.6
    assert 0.6 < strict.threshold <= 0.97
    chosen = next(c for c in strict.curve if c["threshold"] == strict.threshold)
    assert chosen["expected_precision"] >= 0.99


def test_auto_threshold_falls_back_to_the_top_of_the_grid_when_no_threshold_is_precise_enough(spark):
    assert choose_threshold(_scored(spark, [0.55, 0.6]), min_precision=0.999).threshold == 0.9999


def test_threshold_is_a_probability_or_auto():
    rules = {"blocking_rules_training": ["l.dob = r.dob", "1 = 1"], "blocking_rules_predict": ["l.dob = r.dob"]}
    assert LinkageConfig(**rules, threshold_match_probability="auto").threshold_match_probability == "auto"
    with pytest.raises(ValueError, match="between 0 and 1"):
        LinkageConfig(**rules, threshold_match_probability=1.5)
    with pytest.raises(ValueError):
        LinkageConfig(**rules, threshold_match_probability="best")
