"""The records every pair-making join reads (`probabilistic.register_records`): Splink's term
frequencies beside each record, and one cache that SQL on the registered view reads from both
sides, whatever adaptive execution's setting."""

from __future__ import annotations

import pytest
import splink.comparison_library as cl
from chispa import assert_df_equality
from splink import SettingsCreator, block_on

from tre_link.link.probabilistic import register_records
from tre_link.platform import splink_internals as si
from tre_link.platform.spark import sql_conf

RECORDS = [("a", "ANN", "SMITH", "1990-01-01"), ("b", "ANN", "JONES", "1990-01-01"),
           ("c", "BOB", "SMITH", "1980-05-05"), ("d", None, "SMITH", "1980-05-05")]


def _model() -> si.Model:
    return si.model_from_creator(SettingsCreator(
        link_type="dedupe_only",
        comparisons=[cl.ExactMatch("given_name").configure(term_frequency_adjustments=True),
                     cl.ExactMatch("family_name").configure(term_frequency_adjustments=True)],
        blocking_rules_to_generate_predictions=[block_on("dob")],
    ))


@pytest.fixture
def delta_records(spark, tmp_path):
    path = str(tmp_path / "records")
    spark.createDataFrame(RECORDS, "unique_id string, given_name string, family_name string, dob string") \
        .write.format("delta").save(path)
    return spark.read.format("delta").load(path)


def test_each_record_carries_its_values_share_of_the_columns_non_null_rows(spark, delta_records):
    with register_records(delta_records, _model(), ["l.dob = r.dob"]) as registered:
        actual = registered.df.select("unique_id", "tf_given_name", "tf_family_name")
        expected = spark.createDataFrame(
            [("a", 2 / 3, 3 / 4), ("b", 2 / 3, 1 / 4), ("c", 1 / 3, 3 / 4), ("d", None, 3 / 4)],
            "unique_id string, tf_given_name double, tf_family_name double")
        assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize("adaptive", ["true", "false"])
def test_sql_joining_the_view_to_itself_reads_the_cache_on_both_sides(spark, delta_records, adaptive):
    with sql_conf(spark, {"spark.sql.adaptive.enabled": adaptive}), \
            register_records(delta_records, _model(), ["l.dob = r.dob"]) as registered:
        registered.df.count()
        pairs = spark.sql(f"select l.unique_id, r.unique_id from {registered.view} l "
                          f"join {registered.view} r on l.dob = r.dob")
        leaves = pairs._jdf.queryExecution().withCachedData().collectLeaves()
        assert [leaves.apply(i).nodeName() for i in range(leaves.size())] == ["InMemoryRelation"] * 2
        assert pairs.count() == 8  # each of the two dates' two records with itself and the other
