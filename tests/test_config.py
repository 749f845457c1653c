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


# ------------------------------------------------------------------ comparisons from config


def test_default_comparisons_are_the_uk_health_model():
    cfg = load_config(DEMO_CONFIG)
    assert [(c.field, c.preset, c.term_frequency) for c in cfg.linkage.comparisons] == [
        ("nhs_number", "nhs_number", False), ("given_name", "uk_given_name", True),
        ("family_name", "uk_family_name", True), ("dob", "uk_dob", False), ("postcode", "uk_postcode", False),
        ("sex", "sex", False),
    ]


def test_comparison_on_a_field_no_source_maps_names_the_field(tmp_path):
    path = _write(tmp_path, lambda raw: raw["linkage"].update(
        comparisons=[{"field": "given_name", "preset": "uk_given_name"}, {"field": "uprn", "preset": "id"}]))
    with pytest.raises(ConfigError, match=r"field\(s\) \['uprn'\] are compared but no source maps them"):
        load_config(path)


def test_custom_level_sql_that_does_not_parse_is_named(tmp_path):
    levels = [{"sql": "given_name_l = given_name_r", "label": "exact"},
              {"sql": "levenshtein(given_name_l, given_name_r) <=", "label": "close"}]
    path = _write(tmp_path, lambda raw: raw["linkage"].update(
        comparisons=[{"field": "given_name", "levels": levels}]))
    with pytest.raises(ConfigError, match=r"linkage\.comparisons\.0\.levels\.1\.sql: .*does not parse as Spark SQL"):
        load_config(path)


def test_custom_level_may_not_be_a_statement(tmp_path):
    path = _write(tmp_path, lambda raw: raw["linkage"].update(
        comparisons=[{"field": "dob", "levels": [{"sql": "select 1", "label": "x"}]}]))
    with pytest.raises(ConfigError, match=r"levels\.0\.sql: .*one condition"):
        load_config(path)


@pytest.mark.parametrize("field, preset", [("dob", "name"), ("given_name", "date"), ("sex", "address"),
                                           ("family_name", "uk_given_name"), ("postcode", "nhs_number")])
def test_preset_given_the_wrong_kind_of_field_is_refused(tmp_path, field, preset):
    path = _write(tmp_path, lambda raw: raw["linkage"].update(comparisons=[{"field": field, "preset": preset}]))
    with pytest.raises(ConfigError, match=rf"linkage\.comparisons\.0: .*preset {preset}"):
        load_config(path)


def test_preset_and_levels_together_are_refused(tmp_path):
    path = _write(tmp_path, lambda raw: raw["linkage"].update(comparisons=[
        {"field": "dob", "preset": "date", "levels": [{"sql": "dob_l = dob_r", "label": "same"}]}]))
    with pytest.raises(ConfigError, match="give either a preset or levels"):
        load_config(path)


def test_misspelt_comparison_key_is_named(tmp_path):
    path = _write(tmp_path, lambda raw: raw["linkage"].update(
        comparisons=[{"field": "dob", "preset": "date", "term_frequncy": True}]))
    with pytest.raises(ConfigError, match=r"linkage\.comparisons\.0\.term_frequncy"):
        load_config(path)


def test_a_source_may_leave_fields_out_and_map_address_uprn_and_identifiers(tmp_path):
    def mutate(raw):
        raw["sources"][2]["columns"] = {"record_id": "case_ref", "family_name": "family_name",
                                        "address": ["line_1", "line_2"], "uprn": "uprn",
                                        "identifiers": {"council_ref": "council_id"}}
        raw["linkage"]["comparisons"] = [{"field": "family_name", "preset": "uk_family_name"},
                                         {"field": "address", "preset": "address"},
                                         {"field": "uprn", "preset": "exact"},
                                         {"field": "council_ref", "preset": "id"}]
    cfg = load_config(_write(tmp_path, mutate))
    council = cfg.sources[2]
    assert council.columns.mapped_fields() == {"record_id", "family_name", "address", "uprn", "council_ref"}
    assert council.quality_floor("uprn") == 0.01 and council.quality_floor("sex") == 0.0


def test_identifier_named_like_a_standard_column_is_refused(tmp_path):
    path = _write(tmp_path, lambda raw: raw["sources"][0]["columns"].update(identifiers={"postcode_sector": "x"}))
    with pytest.raises(ConfigError, match=r"sources\.0: .*clash with standard field or column names"):
        load_config(path)


def test_a_project_may_not_publish_an_identifier_field(tmp_path):
    def mutate(raw):
        raw["sources"][0]["columns"]["identifiers"] = {"gp_ref": "practice_ref"}
        raw["projects"][0]["columns"].append("gp_ref")
    with pytest.raises(ConfigError, match=r"\['gp_ref'\] are identifiers and cannot be published"):
        load_config(_write(tmp_path, mutate))


@pytest.mark.parametrize("name", ["demo", "febrl3", "febrl4", "altsynth"])
def test_shipped_configs_load_with_a_weight_floor(name):
    cfg = load_config(DEMO_CONFIG.parent / f"{name}.yaml")
    assert cfg.linkage.weight_floor == -10
    assert not any(c.decisive for c in cfg.linkage.comparisons)


def test_febrl_configs_compare_address_suburb_and_social_security_id():
    cfg = load_config(DEMO_CONFIG.parent / "febrl4.yaml")
    assert {c.field: c.preset for c in cfg.linkage.comparisons} == {
        "given_name": "name", "family_name": "name", "dob": "date", "soc_sec_id": "id", "address": "address",
        "suburb": "name", "postcode": "postcode_plain"}
    assert all(s.postcode_form == "plain" and s.columns.nhs_number is None and s.columns.sex is None
               for s in cfg.sources)


def test_term_frequency_on_custom_levels_is_refused(tmp_path):
    path = _write(tmp_path, lambda raw: raw["linkage"].update(comparisons=[
        {"field": "dob", "term_frequency": True, "levels": [{"sql": "dob_l = dob_r", "label": "same"}]}]))
    with pytest.raises(ConfigError, match="term_frequency applies to a preset"):
        load_config(path)


def test_household_key_without_a_uprn_or_address_source_is_refused(tmp_path):
    path = _write(tmp_path, lambda raw: raw["projects"][0].update(household_key=True))
    with pytest.raises(ConfigError, match="household_key needs a source that maps a uprn"):
        load_config(path)
