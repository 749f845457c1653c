"""The records linkage reads: one frame of every source, a record id unique across sources, and
the handle under which the pair-making SQL reads them."""

from __future__ import annotations

import uuid

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from splink import SparkAPI

UNIQUE_ID = "unique_id"
# Source names hold no separator (config allows [a-z0-9_]), record ids may: split at the first one.
_ID_SEPARATOR = ":"


def unique_id(source: Column, record_id: Column) -> Column:
    """`source:record_id`, the record's id across every source."""
    return F.concat_ws(_ID_SEPARATOR, source, record_id)


def source_of(uid: Column) -> Column:
    return F.substring_index(uid, _ID_SEPARATOR, 1)


def record_id_of(uid: Column) -> Column:
    return uid.substr(F.instr(uid, _ID_SEPARATOR) + 1, F.length(uid))


def with_unique_id(records: DataFrame) -> DataFrame:
    return records.withColumn(UNIQUE_ID, unique_id(F.col("source"), F.col("record_id")))


class RegisteredRecords:
    """Records cached and registered with Splink's Spark API under a view name of their own, so
    the SQL that makes pairs reads them by name, and two linkages can share one session.

    Use as a context manager, or call `close()`: the cache is released and the view dropped, and
    so are `cached_inputs`, frames cached for building the records."""

    def __init__(self, records: DataFrame, cached_inputs: tuple[DataFrame, ...] = ()):
        self.df = records.persist()
        self._cached_inputs = cached_inputs
        self.view = f"__tre_link_records_{uuid.uuid4().hex[:12]}"
        db_api = SparkAPI(spark_session=records.sparkSession, register_udfs_automatically=False)
        db_api.register(self.df, table_name=self.view)

    def close(self) -> None:
        self.df.sparkSession.catalog.dropTempView(self.view)
        self.df.unpersist()
        for frame in self._cached_inputs:
            frame.unpersist()

    def __enter__(self) -> RegisteredRecords:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
