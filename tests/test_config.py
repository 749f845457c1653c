"""Config errors fail before Spark starts and name the file and the field."""

from __future__ import annotations

import pytest
import yaml

from tre_link.cli import main
from tre_link.platform.config import load_config
from tre_link.platform.errors import ConfigError, EnvironmentProblem
from tre_link.platform.spark import require_java

from conftest import DEMO_CONFIG


def _write(tmp_path, mutate) -> str:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    mutate(raw)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_demo_config_loads():
    cfg = load_config(DEMO_CONFIG)
    assert [s.name for s in cfg.sources] == ["gp", "hospital", "council"]
    assert cfg.tracking_uri.startswith("sqlite:///") and cfg.tracking_uri.endswith("out/demo/mlflow.db")


def test_misspelt_key_names_field_and_file(tmp_path):
    path = _write(tmp_path, lambda raw: raw["linkage"].update(threshold_match_probabilty=0.9))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert path in str(err.value)
    assert "linkage.threshold_match_probabilty" in str(err.value)
    assert "Extra inputs are not permitted" in str(err.value)


def test_wrong_type_names_nested_field(tmp_path):
    path = _write(tmp_path, lambda raw: raw["sources"][1].update(version="latest"))
    with pytest.raises(ConfigError, match=r"sources\.1\.version"):
        load_config(path)


def test_unknown_column_mapping_field(tmp_path):
    path = _write(tmp_path, lambda raw: raw["sources"][0]["columns"].update(surname="surname"))
    with pytest.raises(ConfigError, match=r"sources\.0\.columns\.surname"):
        load_config(path)


def test_research_zone_inside_linkage_zone_refused(tmp_path):
    path = _write(tmp_path, lambda raw: raw["output"].update(research_zone="out/demo/linkage/research"))
    with pytest.raises(ConfigError, match="research_zone overlaps output.linkage_zone"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_cli_reports_config_error_and_exits_2_before_spark(tmp_path, capsys):
    path = _write(tmp_path, lambda raw: raw["spark"].update(shuffle_partition=4))
    assert main(["standardise", "--config", path]) == 2
    err = capsys.readouterr().err
    assert "spark.shuffle_partition" in err and path in err
    assert "Traceback" not in err


def test_missing_java_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no java on it
    with pytest.raises(EnvironmentProblem, match="Java was not found"):
        require_java()
