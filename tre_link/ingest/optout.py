"""National data opt-out: drop the records of people who opted out, before linkage.

The opt-out list is a table with column `nhs_number` (plain, as supplied). Records carry the
standardised `nhs_number`: a clean 10-digit string, or, when the sources were pseudonymised by
the providers, the 64-hex linkage token; pass `linkage_key` in that case so the list is
tokenised the same way before the join. Counts of removed records must be released through
`tre_link.platform.disclosure`, never printed raw.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tre_link.platform.errors import InputDataError
from tre_link.platform.hmac_sql import hmac_sha256_hex, with_keyed_columns
from tre_link.ingest.nhs_number import clean_nhs_number


def _opt_out_keys(opt_outs: DataFrame, linkage_key: bytes | None) -> DataFrame:
    if "nhs_number" not in opt_outs.columns:
        raise InputDataError(f"opt-out table: missing column nhs_number; it has {opt_outs.columns}")
    cleaned = clean_nhs_number(F.col("nhs_number"))
    if linkage_key is None:
        keys = opt_outs.select(cleaned.alias("_opt_out_nhs_number"))
    else:
        keys = with_keyed_columns(opt_outs, linkage_key, {"_opt_out_nhs_number": hmac_sha256_hex(cleaned)})
    return keys.select("_opt_out_nhs_number").where(F.col("_opt_out_nhs_number").isNotNull()).distinct()


def remove_opt_outs(records: DataFrame, opt_outs: DataFrame, *, linkage_key: bytes | None = None) -> DataFrame:
    """Records whose `nhs_number` is not on the opt-out list (records without a number are kept)."""
    if "nhs_number" not in records.columns:
        raise InputDataError(f"records: missing standardised column nhs_number; they have {records.columns}")
    keys = F.broadcast(_opt_out_keys(opt_outs, linkage_key))
    return records.join(keys, records["nhs_number"] == keys["_opt_out_nhs_number"], "left_anti")
