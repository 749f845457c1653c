"""Review charts are drawn once per set of figures: a run's MLflow artifacts and its report draw
the same charts, and the second copy is the first drawing's bytes."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest

from tre_link.record import charts

COMPLETENESS = [{"source": "gp", "field": "dob", "completeness": 0.9},
                {"source": "council", "field": "dob", "completeness": 0.6}]


@pytest.fixture
def drawings(monkeypatch) -> list[str]:
    """The paths matplotlib actually drew to, with an empty store of earlier drawings."""
    monkeypatch.setattr(charts, "_DRAWN", OrderedDict())
    drawn, save = [], charts._save

    def counted(fig, path):
        drawn.append(str(path))
        return save(fig, path)

    monkeypatch.setattr(charts, "_save", counted)
    return drawn


def test_a_chart_asked_for_again_from_the_same_figures_is_copied_not_drawn(drawings, tmp_path):
    first = charts.plot_completeness(COMPLETENESS, tmp_path / "mlflow" / "completeness.png")
    second = charts.plot_completeness(COMPLETENESS, tmp_path / "report" / "completeness.png")
    assert drawings == [first]
    assert Path(second).read_bytes() == Path(first).read_bytes()
    assert Path(first).read_bytes().startswith(b"\x89PNG")


def test_a_chart_from_other_figures_or_options_is_drawn_again(drawings, tmp_path):
    charts.plot_completeness(COMPLETENESS, tmp_path / "a.png")
    changed = [{**COMPLETENESS[0], "completeness": 0.5}, COMPLETENESS[1]]
    charts.plot_completeness(changed, tmp_path / "b.png")
    rates = [{"subgroup": "sex", "value": "F", "match_rate": 0.8, "records": 100}]
    charts.plot_match_rates(rates, tmp_path / "c.png")
    charts.plot_match_rates(rates, tmp_path / "d.png", overall=0.7)
    assert drawings == [str(tmp_path / name) for name in ("a.png", "b.png", "c.png", "d.png")]
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
