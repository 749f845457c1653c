"""Delta writes: tables a refresh MERGEs into take deletion vectors, and keep their run metadata;
versions and run metadata read from the table's log agree with Delta's own history."""

from __future__ import annotations

import json

import pytest
from pyspark.sql import functions as F

from tre_link.platform import delta_io
from tre_link.platform.delta_io import commit_metadata, merge_changes, replace_rows, write_delta
from tre_link.platform.errors import InputDataError


def _last_operation_metrics(spark, path) -> dict:
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, path).history(1).select("operationMetrics").first()[0]


@pytest.mark.parametrize("merged", [True, False])
def test_a_merge_into_a_merged_table_marks_rows_instead_of_rewriting_files(spark, tmp_path, merged):
    path = str(tmp_path / "t")
    rows = spark.range(4000).select(F.col("id").cast("string").alias("k"), F.lit("a").alias("v")).repartition(4)
    write_delta(rows, path, merged=merged)
    # one row in every file changes
    changes = spark.range(0, 4000, 100).select(F.col("id").cast("string").alias("k"), F.lit("b").alias("v"))
    merge_changes(changes, None, path, on=["k"])

    metrics = _last_operation_metrics(spark, path)
    assert int(metrics["numTargetRowsUpdated"]) == 40
    if merged:
        assert int(metrics["numTargetFilesRemoved"]) == 0 and int(metrics["numTargetDeletionVectorsAdded"]) > 0
    else:
        assert int(metrics["numTargetFilesRemoved"]) > 0 and int(metrics["numTargetDeletionVectorsAdded"]) == 0
    assert spark.read.format("delta").load(path).where("v = 'b'").count() == 40


def test_replace_rows_replaces_only_the_rows_its_condition_holds_for_in_one_commit(spark, tmp_path):
    path = str(tmp_path / "events")
    rows = "generation int, event string"
    write_delta(spark.createDataFrame([(1, "new"), (1, "new"), (2, "joined"), (2, "merged")], rows), path)
    again = spark.createDataFrame([(2, "split")], rows)

    first = replace_rows(again, path, where="generation = 2", metadata={"link_run": "r2"})
    second = replace_rows(again, path, where="generation = 2", metadata={"link_run": "r2"})  # a rerun

    held = sorted(tuple(r) for r in spark.read.format("delta").load(path).collect())
    assert held == [(1, "new"), (1, "new"), (2, "split")]
    assert (first, second) == (1, 2) and commit_metadata(spark, path, first) == {"link_run": "r2"}
    emptied = replace_rows(spark.createDataFrame([], rows), path, where="generation = 2")
    assert sorted(tuple(r) for r in spark.read.format("delta").option("versionAsOf", emptied).load(path).collect()) \
        == [(1, "new"), (1, "new")]


def test_an_older_table_gets_deletion_vectors_and_its_commits_keep_their_run_metadata(spark, tmp_path):
    from delta.tables import DeltaTable

    path = str(tmp_path / "t")
    write_delta(spark.range(3), path, metadata={"link_run": "r1"})
    write_delta(spark.range(5), path, metadata={"link_run": "r2"}, merged=True)

    properties = DeltaTable.forPath(spark, path).detail().select("properties").first()["properties"]
    assert properties.get("delta.enableDeletionVectors") == "true"
    # the property's own commit (version 1) says what the one before it said
    assert [commit_metadata(spark, path, v) for v in (0, 1, 2)] == [{"link_run": "r1"}] * 2 + [{"link_run": "r2"}]
    assert spark.read.format("delta").load(path).count() == 5


def test_versions_and_run_metadata_read_from_the_log_agree_with_delta_history(spark, tmp_path):
    from delta.tables import DeltaTable

    path = str(tmp_path / "t")
    assert delta_io.version_or_none(spark, path) is None
    with pytest.raises(InputDataError, match="no Delta table"):
        delta_io.latest_version(spark, path)
    write_delta(spark.range(3), path, metadata={"link_run": "r1"})
    merge_changes(spark.range(2, 4), None, path, on=["id"])  # a commit with no metadata of ours
    write_delta(spark.range(5), path, metadata={"link_run": "r2", "generation": 2})

    history = {r["version"]: r["userMetadata"] for r in DeltaTable.forPath(spark, path).history().collect()}
    assert delta_io.latest_version(spark, path) == delta_io.version_or_none(spark, path) == max(history) == 2
    assert [commit_metadata(spark, path, v) for v in sorted(history)] == [
        json.loads(history[v]) if history[v] else {} for v in sorted(history)]
    assert commit_metadata(spark, path) == {"link_run": "r2", "generation": 2}


def test_a_damaged_commit_is_refused_naming_the_table(spark, tmp_path):
    path = str(tmp_path / "t")
    write_delta(spark.range(3), path, metadata={"link_run": "r1"})
    (tmp_path / "t" / "_delta_log" / f"{0:020d}.json").write_text("{not json")
    with pytest.raises(InputDataError, match=r"table .*t: commit 0 of its Delta log is not JSON"):
        commit_metadata(spark, path)


@pytest.mark.parametrize("broadcast", [True, False])
def test_merge_changes_applies_upserts_and_deletes_once_whether_or_not_its_source_is_broadcast(
        spark, tmp_path, monkeypatch, broadcast):
    from tre_link.platform import delta_io

    monkeypatch.setattr(delta_io, "BROADCAST_SOURCE_ROWS", 1_000 if broadcast else 0)
    path = str(tmp_path / "t")
    write_delta(spark.createDataFrame([("1", "a"), ("2", "a"), ("3", "a")], "k string, v string"), path, merged=True)
    upserts = spark.createDataFrame([("2", "b"), ("3", "a"), ("4", "a")], "k string, v string")  # 3 is unchanged
    deleted = spark.createDataFrame([("1",), ("4",), ("9",)], "k string")  # 4 is upserted too; 9 was never there

    version = merge_changes(upserts, deleted, path, on=["k"])
    metrics = _last_operation_metrics(spark, path)
    assert (int(metrics["numTargetRowsUpdated"]), int(metrics["numTargetRowsInserted"]),
            int(metrics["numTargetRowsDeleted"])) == (1, 1, 1)
    assert sorted(map(tuple, spark.read.format("delta").load(path).collect())) == [("2", "b"), ("3", "a"), ("4", "a")]
    # The same changes again change nothing, and commit nothing.
    assert merge_changes(upserts, deleted, path, on=["k"]) is None
    assert delta_io.latest_version(spark, path) == version
