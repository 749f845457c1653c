"""The session helpers: settings that hold only for one stage's work."""

from __future__ import annotations

import pytest

from tre_link.platform.spark import sql_conf

KEY = "spark.sql.codegen.hugeMethodLimit"


def test_sql_conf_holds_only_inside_its_block(spark):
    before = spark.conf.get(KEY)
    with sql_conf(spark, {KEY: "8000"}):
        assert spark.conf.get(KEY) == "8000"
    assert spark.conf.get(KEY) == before


def test_sql_conf_is_restored_when_the_work_fails(spark):
    before = spark.conf.get(KEY)
    with pytest.raises(RuntimeError), sql_conf(spark, {KEY: "8000"}):
        raise RuntimeError("stage failed")
    assert spark.conf.get(KEY) == before


def test_sql_conf_unsets_what_the_session_did_not_have(spark):
    key = "spark.tre_link.test_only_setting"
    with sql_conf(spark, {key: "on"}):
        assert spark.conf.get(key) == "on"
    assert spark.conf.get(key, None) is None
