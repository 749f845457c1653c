"""What changed in a source between two Delta versions: the records inserted, updated and deleted.

A refresh links only these. Where the table has Delta's change data feed on
(`delta.enableChangeDataFeed`) for every version in between, the feed gives them without reading
the whole table; otherwise the two versions are diffed by record id and a hash of the whole row.
Either way the result is net: a record inserted and then deleted between the versions is no
change, and one updated twice is one update.

Refused, before anything is read in bulk, with an error that names the source: a schema that
changed between the versions, a version older than the one the index was built from, and changes
that can no longer be read (the earlier version or its change feed vacuumed).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from tre_link.platform.delta_io import read_delta, table_properties
from tre_link.platform.disclosure import release_counts
from tre_link.platform.errors import ChangesUnavailable, SourceSchemaChanged, SourceVersionOlder

CHANGE_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")
# Before-state rows of a commit sort before its after-state rows.
_BEFORE_STATE = ("update_preimage", "delete")
# What Spark and Delta say when the files of an old version or its change feed are gone.
_GONE = ("FAILED_READ_FILE", "FILE_NOT_EXIST", "FileNotFoundException", "DELTA_FILE_NOT_FOUND",
         "DELTA_CHANGE_DATA_FILE_NOT_FOUND", "DELTA_VERSIONS_NOT_CONTIGUOUS", "VersionNotFound",
         "DELTA_CANNOT_TIME_TRAVEL", "DELTA_TIME_TRAVEL")
# What Delta says when the change feed was off for some version in the range.
_NO_FEED = ("DELTA_MISSING_CHANGE_DATA", "CHANGE_DATA_FEED", "change data was not recorded")


@dataclass(frozen=True)
class SourceChanges:
    """One source's net changes between two versions. `inserted` and `updated` are rows as the
    source holds them at the later version; `deleted` is their record ids (the id column only)."""

    inserted: DataFrame
    updated: DataFrame
    deleted: DataFrame
    method: str  # "change_feed", "diff" or "new_source" (no earlier version: every record inserted)
    from_version: int | None
    to_version: int
    added: int = 0
    changed: int = 0
    removed: int = 0

    def counts(self) -> dict[str, int]:
        return {"added": self.added, "updated": self.changed, "deleted": self.removed}

    def released(self) -> dict[str, int | None]:
        return release_counts(self.counts())

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def row_hash(columns: list[str]) -> Column:
    """A hash of a whole row (every column, null-aware, order as given): one Spark SQL expression."""
    return F.sha2(F.to_json(F.struct(*[F.col(f"`{c}`") for c in columns])), 256)


def changed_ids(before: DataFrame, after: DataFrame, id_column: str) -> DataFrame:
    """`_id` and `_kind` (inserted, updated or deleted) of every record that differs between two
    versions of one table (same columns): by record id, and by row hash for the records in both.
    Only ids and hashes are shuffled, never whole rows."""
    columns = after.columns
    old = before.select(F.col(id_column).alias("_id"), row_hash(columns).alias("_before_hash"))
    new = after.select(F.col(id_column).alias("_id"), row_hash(columns).alias("_after_hash"))
    kind = (F.when(F.col("_before_hash").isNull(), F.lit("inserted"))
            .when(F.col("_after_hash").isNull(), F.lit("deleted"))
            .when(F.col("_before_hash") != F.col("_after_hash"), F.lit("updated")))
    return new.join(old, "_id", "full_outer").select("_id", kind.alias("_kind")).where(F.col("_kind").isNotNull())


def changes_of(after: DataFrame, kinds: DataFrame, id_column: str) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(inserted, updated, deleted): the rows of `after` that `kinds` (from `changed_ids`) says were
    inserted or updated, and the ids it says were deleted."""
    present = after.join(kinds.where(F.col("_kind") != "deleted"), after[id_column] == kinds["_id"])
    inserted = present.where(F.col("_kind") == "inserted").select(*after.columns)
    updated = present.where(F.col("_kind") == "updated").select(*after.columns)
    deleted = kinds.where(F.col("_kind") == "deleted").select(F.col("_id").alias(id_column))
    return inserted, updated, deleted


def diff_versions(before: DataFrame, after: DataFrame, id_column: str) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(inserted, updated, deleted) from two versions of one table (same columns): by record id,
    and by row hash for the records in both."""
    return changes_of(after, changed_ids(before, after, id_column), id_column)


def net_change_feed(feed: DataFrame, id_column: str) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(inserted, updated, deleted) from a Delta change feed over a range of versions, net: per
    record, its state before the first change it had and after the last one. A record updated
    back to what it was is no change."""
    columns = [c for c in feed.columns if c not in CHANGE_COLUMNS]
    before_state = F.col("_change_type").isin(*_BEFORE_STATE)
    order = F.struct(F.col("_commit_version"), F.when(before_state, F.lit(0)).otherwise(F.lit(1)))
    per_record = (
        feed.withColumn("_hash", row_hash(columns)).withColumn("_order", order)
        .groupBy(F.col(id_column).alias("_id"))
        .agg(F.min_by("_change_type", "_order").alias("_first"), F.min_by("_hash", "_order").alias("_first_hash"),
             F.max_by("_change_type", "_order").alias("_last"), F.max_by("_hash", "_order").alias("_last_hash"),
             F.max_by(F.struct(*[F.col(f"`{c}`") for c in columns]), "_order").alias("_row"))
    )
    existed = F.col("_first").isin(*_BEFORE_STATE)
    exists = ~F.col("_last").isin(*_BEFORE_STATE)
    rows = [F.col("_row").getField(c).alias(c) for c in columns]
    inserted = per_record.where(~existed & exists).select(*rows)
    updated = per_record.where(existed & exists & (F.col("_first_hash") != F.col("_last_hash"))).select(*rows)
    deleted = per_record.where(existed & ~exists).select(F.col("_id").alias(id_column))
    return inserted, updated, deleted


def change_feed_on(spark: SparkSession, path: str) -> bool:
    return str(table_properties(spark, path).get("delta.enableChangeDataFeed", "false")).lower() == "true"


def check_refreshable(spark: SparkSession, name: str, path: str, from_version: int, to_version: int) -> None:
    """Refuse a version older than the index's, or a schema that changed since it."""
    if to_version < from_version:
        raise SourceVersionOlder(
            f"source {name}: version {to_version} is older than version {from_version}, which the person index was "
            "built from; refresh only moves forward (unpin sources[].version, or link the older data with "
            "`tre-link standardise` and `tre-link link`)")
    before = read_delta(spark, path, from_version, table=name).df.schema
    after = read_delta(spark, path, to_version, table=name).df.schema
    if [(f.name, f.dataType) for f in before.fields] != [(f.name, f.dataType) for f in after.fields]:
        old = {f.name: f.dataType.simpleString() for f in before.fields}
        new = {f.name: f.dataType.simpleString() for f in after.fields}
        differ = sorted(c for c in old.keys() | new.keys() if old.get(c) != new.get(c)) or ["column order"]
        raise SourceSchemaChanged(
            f"source {name}: its schema changed between version {from_version}, which the person index was built "
            f"from, and version {to_version} (columns {differ}); a refresh cannot tell changed records from a "
            "changed layout: check the mapping in sources[].columns, then `tre-link standardise` and `tre-link link`")


def source_changes(spark: SparkSession, name: str, path: str, id_column: str, from_version: int | None,
                   to_version: int) -> SourceChanges:
    """The net changes of one source from `from_version` (None: a source new to the index) to
    `to_version`, materialised (so they are read once, and any unreadable version is found here,
    before anything is written), with their counts."""
    after = read_delta(spark, path, to_version, table=name).df
    kinds = None  # diffing: the changed ids, before their rows are read
    if from_version is None:
        empty = after.limit(0)
        inserted, updated, deleted, method = after, empty, empty.select(id_column), "new_source"
    else:
        check_refreshable(spark, name, path, from_version, to_version)
        method = None
        if to_version == from_version:
            empty = after.limit(0)
            inserted, updated, deleted, method = empty, empty, empty.select(id_column), "diff"
        elif change_feed_on(spark, path):
            try:
                feed = (spark.read.format("delta").option("readChangeFeed", "true")
                        .option("startingVersion", from_version + 1).option("endingVersion", to_version).load(path))
                inserted, updated, deleted = [d.localCheckpoint(eager=True) for d in net_change_feed(feed, id_column)]
                method = "change_feed"
            except Exception as err:  # noqa: BLE001 - Delta raises several types
                if not any(marker in str(err) for marker in _NO_FEED + _GONE):
                    raise
                # The feed was off for part of the range, or its files are gone: diff the versions.
        if method is None:
            kinds = changed_ids(read_delta(spark, path, from_version, table=name).df, after, id_column)
            method = "diff"
    try:
        if kinds is not None:
            # The changed ids found once (both versions read and hashed once), then their rows.
            inserted, updated, deleted = changes_of(after, kinds.localCheckpoint(eager=True), id_column)
        inserted, updated, deleted = [d.localCheckpoint(eager=True) for d in (inserted, updated, deleted)]
    except Exception as err:  # noqa: BLE001
        if not any(marker in str(err) for marker in _GONE):
            raise
        raise ChangesUnavailable(
            f"source {name}: the changes since version {from_version}, which the person index was built from, cannot "
            "be read: that version's files (and any change feed) were vacuumed. Relink the source in full with "
            "`tre-link standardise` and `tre-link link` (person IDs are still carried forward), and keep "
            "delta.deletedFileRetentionDuration longer than the time between refreshes") from None
    return SourceChanges(inserted=inserted, updated=updated, deleted=deleted, method=method,
                         from_version=from_version, to_version=to_version,
                         added=inserted.count(), changed=updated.count(), removed=deleted.count())
