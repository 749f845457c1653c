"""Bad input gets a clear error naming the table, column or path, and nothing already written is lost."""

from __future__ import annotations

import pytest
import yaml

from tre_link import TreLink
from tre_link.cli import main
from tre_link.platform.config import load_config
from tre_link.platform.delta_io import read_delta, write_delta
from tre_link.platform.errors import InputDataError

from conftest import small_demo_config


def _without_opt_outs(config_path):
    raw = yaml.safe_load(config_path.read_text())
    raw["opt_outs"] = None
    config_path.write_text(yaml.safe_dump(raw))
    return config_path


def test_missing_source_table_names_the_path_and_exits_3(spark, tmp_path, capsys):
    config_path = _without_opt_outs(small_demo_config(tmp_path))
    assert main(["standardise", "--config", str(config_path)]) == 3
    err = capsys.readouterr().err
    assert f"{tmp_path}/sources/gp" in err and "no Delta table" in err


def test_source_lacking_mapped_column_names_table_and_column(spark, tmp_path):
    cfg = load_config(_without_opt_outs(small_demo_config(tmp_path)))
    gp = cfg.sources[0]
    spark.createDataFrame(
        [("a1", "9434765919", "Ann", "1980-01-02", "F", "LS1 4AB")],
        "gp_patient_id string, nhs_no string, forename string, date_of_birth string, gender string, postcode string",
    ).write.format("delta").save(gp.path)
    with pytest.raises(InputDataError) as err:
        TreLink(spark, cfg).standardise()
    assert "table gp" in str(err.value) and "'surname'" in str(err.value)


def test_failed_rerun_keeps_previous_output(spark, tmp_path):
    """A write that fails half-way leaves the earlier version of the table readable and intact."""
    path = str(tmp_path / "table")
    write_delta(spark.createDataFrame([(1,), (2,)], "x int"), path)
    failing = spark.range(5).selectExpr("cast(id as int) as x").where("assert_true(x < 3) is null")
    with pytest.raises(Exception):
        write_delta(failing, path)
    assert sorted(r.x for r in read_delta(spark, path).df.collect()) == [1, 2]
    assert read_delta(spark, path).version == 0
