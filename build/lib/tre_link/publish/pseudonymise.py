"""Provider-side pseudonymisation, run before data leave the provider.

NHS numbers are normalised (invalid, missing and test-range numbers become null) and replaced
by HMAC-SHA256 tokens under the shared linkage key, so the same person gets the same token in
every provider's extract while a dictionary of all NHS numbers cannot reverse it without the key.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tre_link.platform.delta_io import read_delta, write_delta
from tre_link.platform.errors import InputDataError
from tre_link.platform.hmac_sql import hmac_sha256_hex, with_keyed_columns
from tre_link.ingest.nhs_number import clean_nhs_number


def _normalise_exact(raw):
    text = F.upper(F.trim(raw.cast("string")))
    return F.when(text != "", text)


def pseudonymise_nhs_numbers(
    df: DataFrame, column: str, key: bytes, *, extra_columns: Sequence[str] = ()
) -> DataFrame:
    """Replace `column` (NHS number) with its lowercase-hex HMAC token; same for `extra_columns`.

    Extra exact-match columns are trimmed and uppercased (empty -> null) before hashing.
    Column order and all other columns are kept.
    """
    wanted = [column, *extra_columns]
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise InputDataError(f"cannot pseudonymise: missing column(s) {missing}; table has {df.columns}")
    replacements = {column: hmac_sha256_hex(clean_nhs_number(F.col(column)))}
    for extra in extra_columns:
        replacements[extra] = hmac_sha256_hex(_normalise_exact(F.col(extra)))
    return with_keyed_columns(df, key, replacements)


def pseudonymise_table(
    spark: SparkSession,
    in_path: str,
    out_path: str,
    column: str,
    key: bytes,
    extra_columns: Sequence[str] = (),
) -> int:
    """Read the Delta table at `in_path`, pseudonymise it and write it to `out_path`; returns the written version."""
    table = read_delta(spark, in_path)
    return write_delta(pseudonymise_nhs_numbers(table.df, column, key, extra_columns=extra_columns), out_path)
