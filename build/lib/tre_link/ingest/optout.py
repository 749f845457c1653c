"""National data opt-out, applied to persons: every record of a person any of whose records carries
an opted-out NHS number is kept out of research outputs, including their records that arrived
without a number. So opted-out records take part in linkage, inside the linkage zone, and are
removed after clustering, when their persons are known.

The opt-out list is a table with column `nhs_number` (plain, as supplied). Records carry the
standardised `nhs_number`: a clean 10-digit string, or the 64-hex linkage token where the sources
were pseudonymised; with `linkage_key` the list matches both forms. Counts of removed persons and
records must be released through `tre_link.platform.disclosure`, never printed raw.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tre_link.ingest.nhs_number import clean_nhs_number
from tre_link.platform.errors import InputDataError
from tre_link.platform.hmac_sql import hmac_sha256_hex, with_keyed_columns

_KEY = "_opt_out_nhs_number"


def opt_out_keys(opt_outs: DataFrame, linkage_key: bytes | None = None) -> DataFrame:
    """The opted-out numbers as records carry them: plain, and with a key their tokens too."""
    if "nhs_number" not in opt_outs.columns:
        raise InputDataError(f"table opt_outs: missing column nhs_number; it has {opt_outs.columns}")
    cleaned = clean_nhs_number(F.col("nhs_number"))
    keys = opt_outs.select(cleaned.alias(_KEY))
    if linkage_key is not None:
        tokens = with_keyed_columns(opt_outs, linkage_key, {_KEY: hmac_sha256_hex(cleaned)}).select(_KEY)
        keys = keys.unionByName(tokens)
    return keys.where(F.col(_KEY).isNotNull()).distinct()


def records_carrying_opt_outs(records: DataFrame, opt_outs: DataFrame, *, linkage_key: bytes | None = None) -> DataFrame:
    """The records (all their columns) whose `nhs_number` is on the opt-out list."""
    if "nhs_number" not in records.columns:
        raise InputDataError(f"records: missing standardised column nhs_number; they have {records.columns}")
    keys = F.broadcast(opt_out_keys(opt_outs, linkage_key))
    return records.join(keys, records["nhs_number"] == keys[_KEY], "left_semi")


def opted_out_persons(person_index: DataFrame, standardised: DataFrame, opt_outs: DataFrame, *,
                      linkage_key: bytes | None = None) -> DataFrame:
    """`person_id` of every person any of whose records carries an opted-out number."""
    carriers = records_carrying_opt_outs(standardised.select("source", "record_id", "nhs_number"), opt_outs,
                                         linkage_key=linkage_key)
    return (
        person_index.select("source", "record_id", "person_id")
        .join(carriers.select("source", "record_id"), ["source", "record_id"], "left_semi")
        .select("person_id")
        .distinct()
    )
