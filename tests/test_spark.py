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


def test_delta_packages_name_the_delta_jars_built_for_the_installed_spark_line():
    import importlib.metadata

    import pyspark

    from tre_link.platform.spark import delta_packages

    group, artifact, version = delta_packages().split(":")
    assert group == "io.delta" and version == importlib.metadata.version("delta-spark")
    spark_line = ".".join(pyspark.__version__.split(".")[:2])
    # Delta 4.1 and later name the Spark line they were built for; 4.0.x built for Spark 4.0 only.
    assert artifact in (f"delta-spark_{spark_line}_2.13", "delta-spark_2.13")
    if artifact == "delta-spark_2.13":
        assert spark_line == "4.0" and version.startswith("4.0.")
