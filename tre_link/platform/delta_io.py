"""Reading and writing Delta tables: inputs at a recorded version, outputs written atomically, each
commit carrying which run wrote it, and storage failures turned into errors that name the table."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tre_link.platform import storage
from tre_link.platform.errors import ConfigError, InputDataError, ZoneBusy


@dataclass(frozen=True)
class VersionedTable:
    df: DataFrame
    path: str
    version: int


# The Delta protocol names commit N of a table `_delta_log/N.json`, N zero-padded to 20 digits, and
# never removes the newest. Reading the log's listing and commit files directly costs a few
# milliseconds; DeltaTable.history() runs a Spark job (about 0.1 s), and a run asks about a hundred
# times which version a table is at and which run wrote it.
_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")


def _log_dir(path: str) -> str:
    return f"{path.rstrip('/')}/_delta_log"


def version_or_none(spark: SparkSession, path: str) -> int | None:
    """The table's latest version, or None where there is no Delta table yet."""
    versions = [int(m.group(1)) for name in storage.names(spark, _log_dir(path))
                if (m := _COMMIT_FILE.match(name))]
    return max(versions, default=None)


def latest_version(spark: SparkSession, path: str) -> int:
    """The table's latest version; refused where there is no Delta table."""
    version = version_or_none(spark, path)
    if version is None:
        raise InputDataError(f"no Delta table at path {path}")
    return version


# What Spark and Delta say when a table's files are damaged, missing or vacuumed away.
_UNREADABLE = ("FAILED_READ_FILE", "FILE_NOT_EXIST", "DELTA_FILE_NOT_FOUND", "not a Parquet file",
               "ChecksumException", "FileNotFoundException", "DELTA_VERSIONS_NOT_CONTIGUOUS")


@contextmanager
def reading(table: str) -> Iterator[None]:
    """Spark work that reads `table`: a damaged or missing data file becomes an InputDataError
    naming the table and the file, not a Java stack trace."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - Spark wraps the cause in several exception types
        text = str(err)
        reason = next((marker for marker in _UNREADABLE if marker in text), None)
        if reason is None:
            raise
        file = re.search(r"file[: ]+\S*?([^/\s]+\.(?:parquet|json|crc))", text)
        where = f" ({file.group(1)})" if file else ""
        raise InputDataError(
            f"table {table}: a data file cannot be read{where}: {reason}. The extract is damaged or incomplete, "
            "or the version asked for was vacuumed; supply it again or read a version that still exists"
        ) from None


def read_delta(spark: SparkSession, path: str, version: int | None = None, *, table: str | None = None) -> VersionedTable:
    """Read a Delta table at `version` (latest when None) and say which version was read."""
    label = table or path
    latest = version_or_none(spark, path)
    if latest is None:
        raise InputDataError(f"table {label}: no Delta table at path {path}")
    resolved = latest if version is None else version
    try:
        df = spark.read.format("delta").option("versionAsOf", resolved).load(path)
    except Exception as err:  # noqa: BLE001 - Spark raises several types for a missing version
        raise InputDataError(f"table {label}: cannot read version {resolved} of {path}: {type(err).__name__}") from None
    return VersionedTable(df=df, path=path, version=resolved)


def enclosing_table(spark: SparkSession, path: str) -> str | None:
    """The Delta table a path lies inside, if any (a table written there would be read, and
    vacuumed, as part of that one)."""
    local = storage.local_path(path)
    if local is not None:
        parents = [str(p) for p in local.resolve().parents]
    else:
        parsed = urlparse(path)
        parents = [f"{parsed.scheme}://{parsed.netloc}{p}" for p in PurePosixPath(parsed.path or "/").parents]
    return next((p for p in parents if storage.exists(spark, f"{p.rstrip('/')}/_delta_log")), None)


def write_delta(df: DataFrame, path: str, *, metadata: dict | None = None,
                partition_by: list[str] | None = None, merged: bool = False) -> int:
    """Overwrite a Delta table in one atomic commit (readers see the old or the new, never half),
    recording `metadata` (e.g. which run wrote it) in the commit. Refused inside another table.

    `merged`: the table takes MERGEs of a few rows (a refresh's), so it gets deletion vectors: a
    MERGE then marks the rows it replaces instead of rewriting every file that holds one. Only
    linkage-zone tables: research datasets stay readable by Delta readers without them."""
    spark = df.sparkSession
    if (outer := enclosing_table(spark, path)) is not None:
        raise ConfigError(f"refusing to write the table {path} inside the Delta table {outer}")
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if merged:
        _enable_deletion_vectors(spark, path)
        writer = writer.option("delta.enableDeletionVectors", "true")  # a new table
    if metadata:
        writer = writer.option("userMetadata", json.dumps(metadata, sort_keys=True))
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    with _single_writer(path):
        writer.save(path)
    return latest_version(spark, path)


def table_properties(spark: SparkSession, path: str) -> dict[str, str]:
    """A Delta table's properties (delta.enableChangeDataFeed, delta.enableDeletionVectors, ...)."""
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, path).detail().select("properties").first()["properties"] or {}


def _enable_deletion_vectors(spark: SparkSession, path: str) -> None:
    """Deletion vectors on for a table written before they were (an overwrite keeps a table's
    properties, and does not take new ones from the writer): a commit of its own, before the data's.
    It repeats the metadata of the commit before it, so a run killed between the two still finds
    which run last wrote the table."""
    from delta.tables import DeltaTable

    from tre_link.platform.spark import sql_conf

    if not DeltaTable.isDeltaTable(spark, path):
        return
    if table_properties(spark, path).get("delta.enableDeletionVectors") != "true":
        escaped = path.replace("`", "``")
        settings = {"spark.databricks.delta.commitInfo.userMetadata": json.dumps(commit_metadata(spark, path),
                                                                                   sort_keys=True)}
        with sql_conf(spark, settings), _single_writer(path):
            spark.sql(f"ALTER TABLE delta.`{escaped}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")


def merge_delta(df: DataFrame, path: str, *, on: list[str], compare: list[str], metadata: dict | None = None,
                delete_unmatched: str | None = None) -> int:
    """Bring the Delta table at `path` to `df` in one commit with Delta MERGE: rows matching on `on`
    are updated where any `compare` column differs, rows of `df` not in the table are inserted,
    and rows of the table not in `df` are deleted where `delete_unmatched` (a SQL condition on the
    target, alias `t`; "true" for all) holds. `metadata` is recorded with the commit, as by
    `write_delta`, which creates the table when there is none. Returns the version committed."""
    from delta.tables import DeltaTable

    from tre_link.platform.spark import sql_conf

    spark = df.sparkSession
    if not DeltaTable.isDeltaTable(spark, path):
        return write_delta(df, path, metadata=metadata, merged=True)
    condition = " and ".join(f"t.`{c}` <=> s.`{c}`" for c in on)
    changed = " or ".join(f"not (t.`{c}` <=> s.`{c}`)" for c in compare)
    merge = (DeltaTable.forPath(spark, path).alias("t").merge(df.alias("s"), condition)
             .whenMatchedUpdateAll(condition=changed).whenNotMatchedInsertAll())
    if delete_unmatched:
        merge = merge.whenNotMatchedBySourceDelete(condition=delete_unmatched)
    settings = {"spark.databricks.delta.commitInfo.userMetadata": json.dumps(metadata or {}, sort_keys=True)}
    with sql_conf(spark, settings), _single_writer(path):
        merge.execute()
    return latest_version(spark, path)


def replace_rows(df: DataFrame, path: str, *, where: str, metadata: dict | None = None) -> int:
    """Replace the rows of the existing Delta table at `path` where `where` (a SQL condition that
    every row of `df` meets) holds with the rows of `df`, in one commit recording `metadata`:
    Delta's replaceWhere, which reads only the files that may hold such rows, where a MERGE would
    join the whole table. Returns the version committed."""
    writer = df.write.format("delta").mode("overwrite").option("replaceWhere", where)
    if metadata:
        writer = writer.option("userMetadata", json.dumps(metadata, sort_keys=True))
    with _single_writer(path):
        writer.save(path)
    return latest_version(df.sparkSession, path)


# Sources of merge_changes up to this many rows (a refresh's changes) are broadcast.
BROADCAST_SOURCE_ROWS = 500_000


def _changes_rows(target: DataFrame, source: DataFrame, condition: str, differ: str, *, upserts: int) -> bool:
    """Whether merging `source` (flagged `_delete`) would change any row of `target`: it deletes a
    row there, or upserts one that is not there as it is. Inner joins only, so a broadcast source
    is never shuffled against the table. Keys are unique in both."""
    matched = target.alias("t").join(source.alias("s"), F.expr(condition)).agg(
        F.count(F.when(F.col("s._delete"), 1)).alias("deleted"),
        F.count(F.when(~F.col("s._delete") & ~F.expr(f"({differ})"), 1)).alias("unchanged")).first()
    return matched["deleted"] > 0 or matched["unchanged"] < upserts


def merge_changes(upserts: DataFrame, deleted: DataFrame | None, path: str, *, on: list[str],
                  metadata: dict | None = None, force: bool = False) -> int | None:
    """Apply changes to the Delta table at `path` in one MERGE commit: rows of `upserts` replace
    the rows matching them on `on` (keys: never null; only where a column differs) or are
    inserted, and the rows matching a key of `deleted` (the `on` columns) are deleted. Creates the
    table from `upserts` when there is none. Returns the version committed, or None when there was
    nothing to apply (no commit, unless `force`: a commit that marks a run finished). A rerun with
    the same changes changes nothing more."""
    from delta.tables import DeltaTable

    from tre_link.platform.spark import sql_conf

    spark = upserts.sparkSession
    if not DeltaTable.isDeltaTable(spark, path):
        return write_delta(upserts, path, metadata=metadata, merged=True)
    flagged = upserts.withColumn("_delete", F.lit(False))
    if deleted is not None:
        # A key both upserted and deleted is upserted.
        gone = deleted.select(*on).distinct().join(upserts.select(*on), on, "left_anti")
        flagged = flagged.unionByName(gone.withColumn("_delete", F.lit(True)), allowMissingColumns=True)
    # Read once: counted, checked against the table and merged.
    flagged = flagged.localCheckpoint(eager=True)
    sizes = flagged.agg(F.count(F.lit(1)).alias("rows"), F.count(F.when(~F.col("_delete"), 1)).alias("upserts")).first()
    # A small source is broadcast to the joins below and to MERGE's own: the table is then only
    # scanned, not shuffled (about half a MERGE's time at 1.5M records).
    source = F.broadcast(flagged) if sizes["rows"] <= BROADCAST_SOURCE_ROWS else flagged
    columns = upserts.columns
    # Plain equality: keys are never null, and with `<=>` here Delta's MERGE takes twice as long.
    condition = " and ".join(f"t.`{c}` = s.`{c}`" for c in on)
    differ = " or ".join(f"not (t.`{c}` <=> s.`{c}`)" for c in columns if c not in on) or "false"
    if not force and not _changes_rows(spark.read.format("delta").load(path), source, condition, differ,
                                       upserts=sizes["upserts"]):
        return None
    merge = (DeltaTable.forPath(spark, path).alias("t").merge(source.alias("s"), condition)
             .whenMatchedDelete(condition="s._delete")
             .whenMatchedUpdate(condition=f"not s._delete and ({differ})", set={f"`{c}`": f"s.`{c}`" for c in columns})
             .whenNotMatchedInsert(condition="not s._delete", values={f"`{c}`": f"s.`{c}`" for c in columns}))
    settings = {"spark.databricks.delta.commitInfo.userMetadata": json.dumps(metadata or {}, sort_keys=True)}
    with sql_conf(spark, settings), _single_writer(path):
        merge.execute()
    return latest_version(spark, path)


def write_table(df: DataFrame, path: str, *, metadata: dict | None = None, merged: bool = False) -> VersionedTable:
    """`write_delta`, then the table as written: the version committed and a frame reading it."""
    version = write_delta(df, path, metadata=metadata, merged=merged)
    written = df.sparkSession.read.format("delta").option("versionAsOf", version).load(path)
    return VersionedTable(df=written, path=path, version=version)


def commit_metadata(spark: SparkSession, path: str, version: int | None = None) -> dict:
    """The metadata `write_delta` recorded with a commit (the latest by default): the commit's
    commitInfo.userMetadata. {} when there is none, or the commit file is gone (log clean-up)."""
    version = latest_version(spark, path) if version is None else int(version)
    text = storage.read_text(spark, f"{_log_dir(path)}/{version:020d}.json") or ""
    try:
        infos = [action["commitInfo"] for line in text.splitlines() if line.strip()
                 if "commitInfo" in (action := json.loads(line))]
    except json.JSONDecodeError:
        raise InputDataError(f"table {path}: commit {version} of its Delta log is not JSON; the log is damaged") from None
    user_metadata = infos[0].get("userMetadata") if infos else None
    try:
        return json.loads(user_metadata) if user_metadata else {}
    except json.JSONDecodeError:
        return {}


def restore(spark: SparkSession, path: str, version: int | None) -> None:
    """Put a table back as it was at `version`, or remove it where it did not exist (None). The
    restoring commit carries the restored version's metadata (which run wrote the data)."""
    from delta.tables import DeltaTable

    from tre_link.platform.spark import sql_conf

    if version is None:
        storage.delete(spark, path)
        return
    metadata = commit_metadata(spark, path, version)
    with sql_conf(spark, {"spark.databricks.delta.commitInfo.userMetadata": json.dumps(metadata, sort_keys=True)}):
        DeltaTable.forPath(spark, path).restoreToVersion(version)


@contextmanager
def _single_writer(path: str) -> Iterator[None]:
    """Delta's conflict with another writer becomes ZoneBusy, not a 300-line stack trace."""
    from delta.exceptions import DeltaConcurrentModificationException

    try:
        yield
    except DeltaConcurrentModificationException as err:
        raise ZoneBusy(
            f"another run wrote the table {path} at the same time ({type(err).__name__}); "
            "only one run may write a zone at once: run again when it has finished"
        ) from None
