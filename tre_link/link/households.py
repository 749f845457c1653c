"""Households: the household each person lives in, from UPRNs and addresses, for `household_index`.

One fixed rule, so every link gives the same answer on the same records:

- **A record's household** is its UPRN where it has one. Without one, it is the UPRN that the
  records with its address and postcode most often carry (ties: the smallest UPRN), so a source
  without UPRNs joins the households a source with them names. Else it is the address and postcode
  together; both are needed, since an address line without a postcode, or a postcode alone, names
  a street or a block rather than a home. A record with neither has no household.
- **A person's household** is the one most of the person's records give (ties: the smallest
  household id). It is the household at the extract date: the source versions this link read.
  Record dates are not used, since sources need not carry one.

Household ids live in the linkage zone only: `uprn:<UPRN>`, or `address:<SHA-256 of the address and
postcode>`. Publishing never shows one; a project may opt in to a household key, an HMAC of the
household id under the project's own key (`publish/projects.py`).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

HOUSEHOLD_INDEX_COLUMNS = ("person_id", "household_id", "household_basis", "records")


def record_households(standardised: DataFrame) -> DataFrame:
    """source, record_id, household_id for every standardised record that has a household."""
    address_key = F.when(F.col("address").isNotNull() & F.col("postcode").isNotNull(),
                         F.concat_ws("|", F.col("address"), F.col("postcode")))
    keyed = standardised.select("source", "record_id", F.col("uprn"), address_key.alias("_address"))
    # The UPRN records at each address carry most often (ties: the smallest).
    address_uprn = (
        keyed.where(F.col("uprn").isNotNull() & F.col("_address").isNotNull())
        .groupBy("_address", "uprn").count()
        .groupBy("_address")
        .agg(F.min_by("uprn", F.struct(-F.col("count"), F.col("uprn"))).alias("_address_uprn"))
    )
    household = (
        F.when(F.col("uprn").isNotNull(), F.concat(F.lit("uprn:"), F.col("uprn")))
        .when(F.col("_address_uprn").isNotNull(), F.concat(F.lit("uprn:"), F.col("_address_uprn")))
        .when(F.col("_address").isNotNull(), F.concat(F.lit("address:"), F.sha2(F.col("_address"), 256)))
    )
    return (keyed.join(address_uprn, "_address", "left")
            .select("source", "record_id", household.alias("household_id"))
            .where(F.col("household_id").isNotNull()))


def household_index(person_index: DataFrame, standardised: DataFrame) -> DataFrame:
    """person_id, household_id, household_basis (uprn or address), records (how many of the
    person's records give that household): one row per person with a household."""
    counts = (
        person_index.select("source", "record_id", "person_id")
        .join(record_households(standardised), ["source", "record_id"])
        .groupBy("person_id", "household_id").count()
    )
    chosen = counts.groupBy("person_id").agg(
        F.min_by(F.struct("household_id", "count"), F.struct(-F.col("count"), F.col("household_id"))).alias("_h"))
    household_id = F.col("_h.household_id")
    return chosen.select(
        "person_id",
        household_id.alias("household_id"),
        F.when(household_id.startswith("uprn:"), F.lit("uprn")).otherwise(F.lit("address")).alias("household_basis"),
        F.col("_h.count").cast("int").alias("records"),
    )
