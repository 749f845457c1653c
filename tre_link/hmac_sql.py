"""HMAC-SHA256 in pure Spark SQL (RFC 2104), so record values never pass through Python.

HMAC(K, m) = SHA256((K' xor opad) || SHA256((K' xor ipad) || m)), where K' is the key padded
with zeros to the 64-byte SHA-256 block size (keys longer than the block are hashed first).

The padded keys are embedded in the query plan as binary literals. They are not the key in
plain form, but they are trivially reversible, so plans of these expressions are as secret as
the key: do not log `explain()` output of pseudonymising queries.
"""

from __future__ import annotations

import hashlib

from pyspark.sql import Column
from pyspark.sql import functions as F

_BLOCK = 64


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


def hmac_sha256_hex(value: Column, key: bytes) -> Column:
    """Lowercase 64-hex HMAC-SHA256 of `value` (strings as UTF-8) under `key`; null in, null out."""
    inner, outer = _pads(key)
    inner_hash = F.unhex(F.sha2(F.concat(F.lit(bytearray(inner)), value.cast("binary")), 256))
    return F.sha2(F.concat(F.lit(bytearray(outer)), inner_hash), 256)
