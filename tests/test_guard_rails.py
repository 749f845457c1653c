"""Guard rails after training: no level's match weight under linkage.weight_floor unless its
comparison is decisive, and levels training never saw are listed."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tre_link.link import probabilistic
from tre_link.platform import splink_internals as si
from tre_link.platform.config import ComparisonConfig, LinkageConfig


def _linkage(**changes) -> LinkageConfig:
    return LinkageConfig(
        blocking_rules_training=["l.dob = r.dob", "l.sex = r.sex"], blocking_rules_predict=["l.dob = r.dob"],
        comparisons=[ComparisonConfig(field="sex", preset="sex", decisive=changes.pop("sex_decisive", False)),
                     ComparisonConfig(field="dob", preset="uk_dob")],
        **changes,
    )


def _model_with(linkage: LinkageConfig, m_u: dict):
    """A model whose levels have the given (m, u), keyed by (comparison, comparison vector value)."""
    settings = si.model_as_dict(probabilistic.new_model(linkage))
    for comparison in settings["comparisons"]:
        levels = [lvl for lvl in comparison["comparison_levels"] if not lvl.get("is_null_level")]
        for value, level in zip(range(len(levels) - 1, -1, -1), levels):
            m, u = m_u.get((comparison["output_column_name"], value), (0.5, 0.5))
            level.update(m_probability=m, u_probability=u)
    return si.model_from_dict(settings)


def _weights(model) -> dict:
    return {(p.comparison, p.level): math.log2(p.m / p.u) for p in si.level_parameters(model)}


def test_a_disagreement_weight_under_the_floor_is_raised_to_it():
    linkage = _linkage(weight_floor=-10)
    model = _model_with(linkage, {("sex", 0): (1.6e-13, 0.5), ("dob", 0): (0.01, 0.9)})
    rails = probabilistic.apply_guard_rails(model, linkage)
    weights = _weights(model)
    assert math.isclose(weights[("sex", 0)], -10.0)
    assert math.isclose(weights[("dob", 0)], math.log2(0.01 / 0.9))  # -6.5: above the floor, untouched
    assert rails.floored_levels == ["sex: All other comparisons: weight -41.5 -> -10.0"]


def test_a_decisive_comparison_keeps_its_weight():
    linkage = _linkage(weight_floor=-10, sex_decisive=True)
    model = _model_with(linkage, {("sex", 0): (1.6e-13, 0.5)})
    rails = probabilistic.apply_guard_rails(model, linkage)
    assert _weights(model)[("sex", 0)] < -41
    assert rails.floored_levels == []


def test_no_floor_when_it_is_turned_off():
    linkage = _linkage(weight_floor=None)
    model = _model_with(linkage, {("sex", 0): (1.6e-13, 0.5)})
    assert probabilistic.apply_guard_rails(model, linkage).floored_levels == []
    assert _weights(model)[("sex", 0)] < -41


def test_levels_training_never_saw_are_listed_and_logged(caplog):
    linkage = _linkage()
    model = _model_with(linkage, {})  # parameters given, none estimated
    with caplog.at_level("WARNING", logger="tre_link.link.probabilistic"):
        rails = probabilistic.apply_guard_rails(model, linkage)
    assert "sex: Exact match on sex (m and u not trained)" in rails.untrained_levels
    assert len(rails.untrained_levels) == len(si.level_parameters(model))
    assert any("not trained" in r.getMessage() for r in caplog.records)


def test_trained_demo_model_has_no_weight_under_the_floor(demo_run):
    settings = json.loads(Path(demo_run.summary["model_json"]).read_text())
    model = si.model_from_dict(settings)
    floor = demo_run.cfg.linkage.weight_floor
    assert floor is not None
    low = {k: w for k, w in _weights(model).items() if w < floor - 1e-9}
    assert low == {}
