"""Change detection for refresh (`ingest/changes.py`): the net inserts, updates and deletes between
two versions of a source, by Delta's change data feed or by diffing the versions, and the refusals
of a changed schema, an older version and changes that were vacuumed away."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable

from tre_link.ingest.changes import diff_versions, net_change_feed, source_changes
from tre_link.platform.errors import ChangesUnavailable, InputDataError, SourceSchemaChanged, SourceVersionOlder
from tre_link.platform.spark import sql_conf

SCHEMA = "id string, name string, dob string"


def _sorted(df):
    return df.orderBy(*df.columns)


def test_diff_versions_finds_inserted_updated_and_deleted_by_id_and_row_hash(spark):
    before = spark.createDataFrame([("1", "ANN", "2000-01-01"), ("2", "BOB", None), ("3", "CY", "1990-05-05")], SCHEMA)
    after = spark.createDataFrame([("1", "ANN", "2000-01-01"), ("2", "BOB", "1980-02-02"), ("4", "DI", None)], SCHEMA)
    inserted, updated, deleted = diff_versions(before, after, "id")
    assert_df_equality(_sorted(inserted), spark.createDataFrame([("4", "DI", None)], SCHEMA))
    # A null that became a value is an update (the hash sees nulls).
    assert_df_equality(_sorted(updated), spark.createDataFrame([("2", "BOB", "1980-02-02")], SCHEMA))
    assert_df_equality(_sorted(deleted), spark.createDataFrame([("3",)], "id string"))


def test_net_change_feed_keeps_only_each_records_net_change(spark):
    feed_schema = SCHEMA + ", _change_type string, _commit_version long, _commit_timestamp timestamp"
    feed = spark.createDataFrame([
        ("5", "EVE", None, "insert", 2, None),                 # inserted, then deleted: no change
        ("5", "EVE", None, "delete", 3, None),
        ("1", "ANN", "2000-01-01", "update_preimage", 2, None),  # updated twice: one update, the last
        ("1", "ANNE", "2000-01-01", "update_postimage", 2, None),
        ("1", "ANNE", "2000-01-01", "update_preimage", 3, None),
        ("1", "ANNA", "2000-01-01", "update_postimage", 3, None),
        ("2", "BOB", None, "update_preimage", 2, None),        # updated back to what it was: no change
        ("2", "ROB", None, "update_postimage", 2, None),
        ("2", "ROB", None, "update_preimage", 3, None),
        ("2", "BOB", None, "update_postimage", 3, None),
        ("3", "CY", None, "delete", 2, None),                  # deleted and inserted again in one commit: updated
        ("3", "CYD", None, "insert", 2, None),
        ("4", "DI", None, "delete", 3, None),                  # deleted
        ("6", "FAY", None, "insert", 3, None),                 # inserted
    ], feed_schema)
    inserted, updated, deleted = net_change_feed(feed, "id")
    assert_df_equality(_sorted(inserted), spark.createDataFrame([("6", "FAY", None)], SCHEMA))
    assert_df_equality(_sorted(updated), spark.createDataFrame([("1", "ANNA", "2000-01-01"), ("3", "CYD", None)], SCHEMA))
    assert_df_equality(_sorted(deleted), spark.createDataFrame([("4",)], "id string"))


def _source(spark, path, *, change_feed: bool) -> None:
    rows = [(str(i), f"N{i}", "2000-01-01") for i in range(20)]
    writer = spark.createDataFrame(rows, SCHEMA).write.format("delta")
    if change_feed:
        writer = writer.option("delta.enableChangeDataFeed", "true")
    writer.save(path)


def _change(spark, path) -> None:
    """Version 1 inserts 2 records, version 2 updates one and deletes one, version 3 deletes one of
    the new records again."""
    spark.createDataFrame([("20", "N20", None), ("21", "N21", None)], SCHEMA).write.format("delta").mode("append").save(path)
    table = DeltaTable.forPath(spark, path)
    table.update("id = '3'", {"name": "'CHANGED'"})
    table.delete("id = '4'")
    table.delete("id = '21'")


@pytest.mark.parametrize("change_feed", [True, False], ids=["change_feed", "diff"])
def test_source_changes_by_either_method_agree(spark, tmp_path, change_feed):
    path = str(tmp_path / "src")
    _source(spark, path, change_feed=change_feed)
    _change(spark, path)
    changes = source_changes(spark, "src", path, "id", 0, 4)
    assert changes.method == ("change_feed" if change_feed else "diff")
    assert changes.counts() == {"added": 1, "updated": 1, "deleted": 1}
    assert [r.id for r in changes.inserted.collect()] == ["20"]
    assert [(r.id, r.name) for r in changes.updated.collect()] == [("3", "CHANGED")]
    assert [r.id for r in changes.deleted.collect()] == ["4"]
    assert changes.released() == {"added": None, "updated": None, "deleted": None}  # under 10: suppressed
    assert not source_changes(spark, "src", path, "id", 4, 4).any


def test_a_source_new_to_the_index_is_all_inserted(spark, tmp_path):
    path = str(tmp_path / "src")
    _source(spark, path, change_feed=False)
    changes = source_changes(spark, "src", path, "id", None, 0)
    assert (changes.method, changes.counts()) == ("new_source", {"added": 20, "updated": 0, "deleted": 0})


def test_refuses_a_changed_schema(spark, tmp_path):
    path = str(tmp_path / "src")
    _source(spark, path, change_feed=False)
    spark.createDataFrame([("30", "N30", None, "x")], SCHEMA + ", extra string").write.format("delta") \
        .mode("append").option("mergeSchema", "true").save(path)
    with pytest.raises(SourceSchemaChanged, match=r"source src: its schema changed .*\['extra'\]"):
        source_changes(spark, "src", path, "id", 0, 1)


def test_refuses_a_version_older_than_the_index_was_built_from(spark, tmp_path):
    path = str(tmp_path / "src")
    _source(spark, path, change_feed=False)
    _change(spark, path)
    with pytest.raises(SourceVersionOlder, match="version 1 is older than version 3"):
        source_changes(spark, "src", path, "id", 3, 1)
    assert issubclass(SourceVersionOlder, InputDataError) and SourceVersionOlder.exit_code == 3


@pytest.mark.parametrize("change_feed", [True, False], ids=["change_feed", "diff"])
def test_refuses_changes_whose_earlier_version_was_vacuumed(spark, tmp_path, change_feed):
    path = str(tmp_path / "src")
    _source(spark, path, change_feed=change_feed)
    # Rewritten whole (as an extract replaced in full is), then vacuumed: version 0's files are gone.
    spark.read.format("delta").load(path).where("id != '7'").localCheckpoint().write.format("delta") \
        .mode("overwrite").save(path)
    # VACUUM lists a table's files in as many tasks as this allows (10,000 by default; 35 s here).
    vacuum_settings = {"spark.databricks.delta.retentionDurationCheck.enabled": "false",
                       "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2"}
    with sql_conf(spark, vacuum_settings):
        DeltaTable.forPath(spark, path).vacuum(0)
    with pytest.raises(ChangesUnavailable, match=r"source src: the changes since version 0\b.* vacuumed"):
        source_changes(spark, "src", path, "id", 0, 1)
