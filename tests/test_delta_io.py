"""Delta writes: tables a refresh MERGEs into take deletion vectors, and keep their run metadata."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from tre_link.platform.delta_io import commit_metadata, merge_changes, write_delta


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
