"""The CLI's conventions: --version, -v/-q on either side of the subcommand, a description, an
example and help everywhere, documented exit codes, `doctor`, and model URIs checked before Spark."""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys

import pytest

from tre_link import cli
from tre_link.cli import build_parser, main

from conftest import small_demo_config

STRONG_KEY = bytes(range(32)).hex()  # 32 distinct bytes, only for these tests
OTHER_KEY = bytes(range(32, 64)).hex()


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_version_names_tre_link_and_the_spark_delta_splink_versions(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("tre-link 0.1.0 ")
    for package in ("pyspark", "delta-spark", "splink"):
        assert f"{package} {importlib.metadata.version(package)}" in out


@pytest.mark.parametrize("argv, verbosity", [
    (["link", "--config", "c.yaml"], 0),
    (["-v", "link", "--config", "c.yaml"], 1),
    (["link", "-v", "--config", "c.yaml"], 1),
    (["link", "--config", "c.yaml", "--verbose"], 1),
    (["-q", "link", "--config", "c.yaml"], -1),
    (["link", "-q", "--config", "c.yaml"], -1),
    (["-v", "link", "--config", "c.yaml", "-q"], -1),  # the later flag wins
])
def test_verbose_and_quiet_are_accepted_before_and_after_the_subcommand(argv, verbosity):
    assert build_parser().parse_args(argv).verbosity == verbosity


def test_link_verbose_help_shows_the_subcommands_help_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["link", "-v", "--help"])
    assert exit_.value.code == 0
    assert "--model" in capsys.readouterr().out


def test_every_subcommand_has_a_description_an_example_and_help_on_every_argument():
    subcommands = _subparsers()
    assert {"synth", "standardise", "train", "link", "publish", "run", "demo", "reproduce", "keygen",
            "reidentify", "pseudonymise", "doctor"} <= set(subcommands)
    for name, parser in subcommands.items():
        assert parser.description, name
        assert re.search(rf"example:\n  tre-link {name}\b|example:\n  .*tre-link {name}\b", parser.epilog), name
        for action in parser._actions:
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.dest}"


def test_usage_errors_exit_2(capsys):
    for argv in (["link", "--config", "c.yaml", "--bogus"], ["nosuchcommand"], ["publish", "--config", "c.yaml"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2, argv
    assert "usage: tre-link" in capsys.readouterr().err


def test_an_unexpected_error_exits_5_with_the_traceback_in_the_log_file_only(tmp_path, monkeypatch, capsys):
    def crash(args, cfg):
        raise RuntimeError("a bug deep inside")

    monkeypatch.setattr(cli, "_cmd_train", crash)
    config = small_demo_config(tmp_path)
    assert main(["train", "--config", str(config)]) == 5
    err = capsys.readouterr().err
    assert "unexpected error (RuntimeError)" in err and "Traceback" not in err
    log_files = list((tmp_path / "logs").glob("tre-link-*.log"))
    assert len(log_files) == 1
    logged = log_files[0].read_text()
    assert "Traceback" in logged and "a bug deep inside" in logged


def test_reproduce_not_identical_exits_1(tmp_path, monkeypatch):
    class Linker:
        def reproduce(self, run_id):
            return {"run_id": run_id, "identical": False, "tables": {}}

    monkeypatch.setattr(cli, "_linker", lambda args, cfg: Linker())
    config = small_demo_config(tmp_path)
    assert main(["reproduce", "0" * 32, "--config", str(config)]) == 1


def test_an_unknown_model_alias_exits_2_before_spark_starts(tmp_path, monkeypatch, capsys):
    def no_spark(*args, **kwargs):
        raise AssertionError("Spark was started before the model URI was checked")

    monkeypatch.setattr(cli, "_session", no_spark)
    config = small_demo_config(tmp_path)
    for command in ("run", "link"):
        assert main([command, "--config", str(config), "--model", "models:/no-such-model@approved"]) == 2
        assert "models:/no-such-model@approved: not found in the registry" in capsys.readouterr().err
    assert main(["link", "--config", str(config), "--model", str(tmp_path / "absent.json")]) == 2


def test_doctor_names_a_missing_key_without_any_value_and_exits_4(tmp_path, monkeypatch, capsys):
    config = small_demo_config(tmp_path)
    monkeypatch.setenv("TRE_LINK_KEY_CARDIO_OUTCOMES", STRONG_KEY)
    monkeypatch.delenv("TRE_LINK_KEY_SOCIAL_CARE_HOUSING", raising=False)
    assert main(["doctor", "--config", str(config)]) == 4
    out = capsys.readouterr().out
    assert re.search(r"^ok +java: Java \d+", out, re.M)
    assert re.search(r"^ok +project cardio_outcomes key: present", out, re.M)
    assert re.search(r"^FAIL project social_care_housing key: .*TRE_LINK_KEY_SOCIAL_CARE_HOUSING", out, re.M)
    assert "fix: set TRE_LINK_KEY_SOCIAL_CARE_HOUSING" in out
    assert STRONG_KEY not in out
    for zone in ("linkage zone", "research zone", "output.root"):
        assert re.search(rf"^ok +write access: {zone}:", out, re.M)


def test_doctor_passes_when_everything_is_in_place_and_flags_an_unwritable_zone(tmp_path, monkeypatch, capsys):
    import yaml

    config = small_demo_config(tmp_path)
    monkeypatch.setenv("TRE_LINK_KEY_CARDIO_OUTCOMES", STRONG_KEY)
    monkeypatch.setenv("TRE_LINK_KEY_SOCIAL_CARE_HOUSING", OTHER_KEY)
    assert main(["doctor", "--config", str(config)]) == 0, capsys.readouterr().out
    assert "everything tre-link needs is in place" in capsys.readouterr().out

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    raw = yaml.safe_load(config.read_text())
    raw["output"]["research_zone"] = str(blocker / "research")  # nothing can be made under a file
    config.write_text(yaml.safe_dump(raw))
    assert main(["doctor", "--config", str(config)]) == 4
    out = capsys.readouterr().out
    assert re.search(r"^FAIL write access: research zone: .*not-a-directory/research\n +fix: ", out, re.M)
    assert re.search(r"^ok +write access: linkage zone", out, re.M)


def test_tre_link_entry_point_prints_its_version():
    out = subprocess.run([sys.executable, "-m", "tre_link.cli", "--version"], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("tre-link 0.1.0 (pyspark ")
