"""HMAC-SHA256 in pure Spark SQL (RFC 2104), so record values never pass through Python.

HMAC(K, m) = SHA256((K' xor opad) || SHA256((K' xor ipad) || m)), where K' is the key padded
with zeros to the 64-byte SHA-256 block size (keys longer than the block are hashed first).

The padded keys give the key back by one xor, so they must not appear in a query plan: Spark
prints literals in the plans it sends to the UI and the event log (its redaction setting covers
only explain()). They reach the job as a one-row broadcast table instead, whose values no plan
shows: use `with_keyed_columns`, inside which `hmac_sha256_hex` reads them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

_BLOCK = 64
_INNER_PAD, _OUTER_PAD = "_hmac_inner_pad", "_hmac_outer_pad"


def _pads(key: bytes) -> tuple[bytes, bytes]:
    if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
        raise ValueError("HMAC key must be non-empty bytes")
    key = bytes(key)
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\x00")
    inner = bytes(b ^ 0x36 for b in key)
    outer = bytes(b ^ 0x5C for b in key)
    return inner, outer


def hmac_sha256_hex(value: Column) -> Column:
    """Lowercase 64-hex HMAC-SHA256 of `value` (strings as UTF-8); null in, null out. Valid only
    in the columns given to `with_keyed_columns`, which supplies the key."""
    inner_hash = F.unhex(F.sha2(F.concat(F.col(_INNER_PAD), value.cast("binary")), 256))
    return F.sha2(F.concat(F.col(_OUTER_PAD), inner_hash), 256)


def with_keyed_columns(df: DataFrame, key: bytes, columns: Mapping[str, Column]) -> DataFrame:
    """`df.withColumns(columns)`, where the columns may use `hmac_sha256_hex` under `key`."""
    inner, outer = _pads(key)
    pads = df.sparkSession.createDataFrame(
        [(bytearray(inner), bytearray(outer))], f"{_INNER_PAD} binary, {_OUTER_PAD} binary"
    )
    return df.crossJoin(F.broadcast(pads)).withColumns(dict(columns)).drop(_INNER_PAD, _OUTER_PAD)
