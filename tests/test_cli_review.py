"""The review, evaluate and approve subcommands: each with a description, an example and help on
every argument; a bad labels file is refused as bad input, naming the label."""

from __future__ import annotations

import argparse

import pytest

from tre_link.cli import build_parser
from tre_link.platform.config import load_config
from tre_link.platform.errors import EXIT_BAD_INPUT, InputDataError

NEW_COMMANDS = ("review", "evaluate", "approve")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", NEW_COMMANDS)
def test_new_subcommands_have_a_description_an_example_and_help_on_every_argument(command):
    parser = _subparsers()[command]
    assert parser.description and parser.epilog.startswith(f"example: tre-link {command}")
    for action in parser._actions:
        if not isinstance(action, argparse._HelpAction):
            assert action.help, (command, action.dest)


def test_review_ingest_with_a_bad_label_is_refused_as_bad_input(tmp_path, monkeypatch):
    import tre_link.cli as cli

    labels = tmp_path / "labels.csv"
    labels.write_text("pair_id,label\nab12,maybe\n")
    config = tmp_path / "job.yaml"
    config.write_text(
        "sources: [{name: gp, path: gp, columns: {record_id: i, given_name: g, family_name: f, dob: d, sex: s, "
        "postcode: p}}]\nlinkage: {blocking_rules_training: ['l.dob = r.dob', 'l.sex = r.sex'], "
        "blocking_rules_predict: ['l.dob = r.dob']}\n")
    # the labels are checked before Spark is needed, so the session is never built
    monkeypatch.setattr(cli, "_session", lambda *a, **k: None)
    args = build_parser().parse_args(["review", "ingest", "--config", str(config), "--labels", str(labels)])
    with pytest.raises(InputDataError) as err:
        args.handler(args, load_config(config))
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert "line 2 (pair_id ab12): label 'maybe' is not one of match, non_match, unsure" in str(err.value)
