"""The review subcommand refuses a bad labels file as bad input, naming the label (every
subcommand's description, example and argument help: tests/test_cli.py)."""

from __future__ import annotations


import pytest

from tre_link.cli import build_parser
from tre_link.platform.config import load_config
from tre_link.platform.errors import EXIT_BAD_INPUT, InputDataError


def test_review_ingest_with_a_bad_label_is_refused_as_bad_input(tmp_path, monkeypatch):
    import tre_link.cli as cli

    labels = tmp_path / "labels.csv"
    labels.write_text("pair_id,label\nab12,maybe\n")
    config = tmp_path / "job.yaml"
    config.write_text(
        "sources: [{name: gp, path: gp, columns: {record_id: i, nhs_number: n, given_name: g, family_name: f, dob: d, sex: s, "
        "postcode: p}}]\nlinkage: {blocking_rules_training: ['l.dob = r.dob', 'l.sex = r.sex'], "
        "blocking_rules_predict: ['l.dob = r.dob']}\n")
    # the labels are checked before Spark is needed, so the session is never built
    monkeypatch.setattr(cli, "_session", lambda *a, **k: None)
    args = build_parser().parse_args(["review", "ingest", "--config", str(config), "--labels", str(labels)])
    with pytest.raises(InputDataError) as err:
        args.handler(args, load_config(config))
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert "line 2 (pair_id ab12): label 'maybe' is not one of match, non_match, unsure" in str(err.value)
