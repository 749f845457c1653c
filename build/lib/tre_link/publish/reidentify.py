"""Audited re-identification: research person keys mapped back to source record ids, for following
a research finding up in direct care (as the Kent Integrated Dataset does).

The linkage team runs it with the project's key. The mapping is written only into the linkage
zone, and every request appends who, when, why and how many to an append-only audit table there.
"""

from __future__ import annotations

import datetime as dt
import getpass
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from tre_link.link.stage import linked_tables
from tre_link.platform.config import JobConfig
from tre_link.platform.delta_io import VersionedTable, version_or_none, write_table
from tre_link.platform.disclosure import release_counts
from tre_link.platform.errors import ConfigError, InputDataError
from tre_link.platform.hmac_sql import hmac_sha256_hex, with_keyed_columns
from tre_link.publish.stage import project_key

_PERSON_KEY = re.compile(r"^[0-9a-f]{64}$")
AUDIT_SCHEMA = ("request string, requested_at timestamp, requested_by string, project string, reason string, "
                "keys_requested long, persons_found long, records_found long, output string")


@dataclass(frozen=True)
class ReidentifyResult:
    mapping: VersionedTable  # person_key, source, record_id: in the linkage zone only
    keys_requested: int
    persons_found: int
    records_found: int

    def released(self) -> dict:
        return {"mapping": self.mapping.path, **release_counts(
            {"keys_requested": self.keys_requested, "persons_found": self.persons_found,
             "records_found": self.records_found})}


def read_person_keys(path: str) -> list[str]:
    """One research person_key (64 lowercase hex) a line; blank lines skipped. A bad line is
    refused by its number, never by its content."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise InputDataError(f"keys file {path}: cannot be read ({type(err).__name__})") from None
    keys, bad = [], []
    for number, line in enumerate(lines, start=1):
        text = line.strip().lower()
        if _PERSON_KEY.match(text):
            keys.append(text)
        elif text:
            bad.append(number)
    if bad:
        raise InputDataError(f"keys file {path}: line(s) {bad[:10]} are not person keys (64 hex characters)")
    if not keys:
        raise InputDataError(f"keys file {path}: holds no person keys")
    return sorted(set(keys))


def reidentify(spark: SparkSession, cfg: JobConfig, project_name: str, keys_file: str, reason: str,
               requested_by: str | None = None) -> ReidentifyResult:
    """Map the project's person keys in `keys_file` to the records of those persons, and audit it."""
    if not reason or not reason.strip():
        raise ConfigError("reidentify: a reason is required (--reason), and is kept in the audit table")
    project = cfg.project(project_name)
    key = project_key(cfg, project)
    wanted = read_person_keys(keys_file)
    _, person_index = linked_tables(spark, cfg)
    keyed = with_keyed_columns(person_index.df.select("person_id", "source", "record_id"), key,
                               {"person_key": hmac_sha256_hex(F.col("person_id").cast("string"))})
    requested = spark.createDataFrame([(k,) for k in wanted], "person_key string")
    mapping = keyed.join(F.broadcast(requested), "person_key", "left_semi").select("person_key", "source", "record_id")
    request = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    written = write_table(mapping, cfg.output.reidentified_table(request), metadata={"request": request})
    stats = written.df.agg(F.countDistinct("person_key").alias("persons"), F.count(F.lit(1)).alias("records")).first()
    result = ReidentifyResult(mapping=written, keys_requested=len(wanted), persons_found=int(stats["persons"]),
                              records_found=int(stats["records"]))
    _audit(spark, cfg, request, requested_by or getpass.getuser(), project.name, reason.strip(), result)
    return result


def _audit(spark: SparkSession, cfg: JobConfig, request: str, requested_by: str, project: str, reason: str,
           result: ReidentifyResult) -> None:
    """Append the request to the audit table, which Delta keeps append-only (no update or delete)."""
    path = cfg.output.reidentification_audit_table
    row = spark.createDataFrame(
        [(request, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), requested_by, project, reason,
          result.keys_requested, result.persons_found, result.records_found, result.mapping.path)],
        AUDIT_SCHEMA,
    )
    writer = row.write.format("delta").mode("append")
    if version_or_none(spark, path) is None:
        writer = writer.option("delta.appendOnly", "true")
    writer.save(path)
