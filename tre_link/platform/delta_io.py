"""Reading and writing Delta tables: inputs at a recorded version, outputs written atomically."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from tre_link.platform.errors import InputDataError


@dataclass(frozen=True)
class VersionedTable:
    df: DataFrame
    path: str
    version: int


def latest_version(spark: SparkSession, path: str) -> int:
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, path).history(1).select("version").first()[0]


def read_delta(spark: SparkSession, path: str, version: int | None = None, *, table: str | None = None) -> VersionedTable:
    """Read a Delta table at `version` (latest when None) and say which version was read."""
    from delta.tables import DeltaTable

    label = table or path
    if not DeltaTable.isDeltaTable(spark, path):
        raise InputDataError(f"table {label}: no Delta table at path {path}")
    resolved = latest_version(spark, path) if version is None else version
    try:
        df = spark.read.format("delta").option("versionAsOf", resolved).load(path)
    except Exception as err:  # noqa: BLE001 - Spark raises several types for a missing version
        raise InputDataError(f"table {label}: cannot read version {resolved} of {path}: {type(err).__name__}") from None
    return VersionedTable(df=df, path=path, version=resolved)


def write_delta(df: DataFrame, path: str, *, partition_by: list[str] | None = None) -> int:
    """Overwrite a Delta table in one atomic commit (readers see the old or the new, never half)."""
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(path)
    return latest_version(df.sparkSession, path)


def write_table(df: DataFrame, path: str) -> VersionedTable:
    """`write_delta`, then the table as written: the version committed and a frame reading it."""
    version = write_delta(df, path)
    written = df.sparkSession.read.format("delta").option("versionAsOf", version).load(path)
    return VersionedTable(df=written, path=path, version=version)
