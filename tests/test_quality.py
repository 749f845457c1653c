"""Quality and duplicate profiles on small standardised frames; expected counts written by hand."""

from __future__ import annotations

import datetime as dt

from chispa import assert_df_equality
from pyspark.sql import types as T

from tre_link.ingest.quality import duplicate_profile, profile_counts, profile_from_counts
from tre_link.ingest.standardise import union_sources

STD_SCHEMA = (
    "source string, record_id string, nhs_number string, nhs_number_status string, given_name string, "
    "family_name string, dob date, sex string, postcode string, "
    "dob_raw_present boolean, sex_raw_present boolean, postcode_raw_present boolean, "
    "address string, uprn string, uprn_raw_present boolean"
)
D = dt.date(1980, 1, 1)

ROWS = [
    # source, id, nhs, status, given, family, dob, sex, postcode, dob_raw, sex_raw, pc_raw, address, uprn, uprn_raw
    ("gp", "1", "4010232137", "valid", "ANN", "SMITH", D, "F", "LS1 4AB", True, True, True, "1 ELM RD", "000000012345", True),
    ("gp", "2", None, "bad_checksum", "ANN", "SMITH", None, None, None, True, True, True, None, None, True),  # bad UPRN
    ("gp", "3", None, "missing", None, "JONES", None, None, None, False, False, False, None, None, False),
    ("gp", "4", "4010232137", "valid", "ANN", "SMITH", D, "F", "LS1 4AB", True, True, True, "1 ELM RD", "000000012345", True),
    ("hes", "a", "ab" * 32, "token", "BOB", None, D, "M", None, True, True, True, None, None, False),
    ("hes", "a", None, "bad_format", "BOB", None, D, "M", None, True, True, True, None, None, False),
    ("hes", "b", None, "missing", None, None, None, None, None, False, False, False, None, None, False),
    ("hes", "c", None, "missing", None, None, None, None, None, False, False, False, None, None, False),
]

PROFILE_SCHEMA = T.StructType(
    [
        T.StructField("source", T.StringType()),
        T.StructField("field", T.StringType()),
        T.StructField("rows", T.LongType()),
        T.StructField("present", T.LongType()),
        T.StructField("valid", T.LongType()),
        T.StructField("completeness", T.DoubleType()),
        T.StructField("validity", T.DoubleType()),
    ]
)


def _aggregated_profile(spark, std):
    """The profile from one plain aggregation per source (the run observes the counts during its write)."""
    rows = std.groupBy("source").agg(*profile_counts()).collect()
    return union_sources([profile_from_counts(spark, row["source"], row.asDict()) for row in rows])


def test_quality_profile(spark):
    std = spark.createDataFrame(ROWS, STD_SCHEMA)
    got = _aggregated_profile(spark, std).orderBy("source", "field")
    expected = spark.createDataFrame(
        [
            ("gp", "address", 4, 2, 2, 0.5, 1.0),
            ("gp", "dob", 4, 3, 2, 0.75, 2 / 3),
            ("gp", "family_name", 4, 4, 4, 1.0, 1.0),
            ("gp", "given_name", 4, 3, 3, 0.75, 1.0),
            ("gp", "nhs_number", 4, 3, 2, 0.75, 2 / 3),
            ("gp", "postcode", 4, 3, 2, 0.75, 2 / 3),
            ("gp", "sex", 4, 3, 2, 0.75, 2 / 3),
            ("gp", "uprn", 4, 3, 2, 0.75, 2 / 3),  # the invalid UPRN is present, not valid
            ("hes", "address", 4, 0, 0, 0.0, None),
            ("hes", "dob", 4, 2, 2, 0.5, 1.0),
            ("hes", "family_name", 4, 0, 0, 0.0, None),
            ("hes", "given_name", 4, 2, 2, 0.5, 1.0),
            ("hes", "nhs_number", 4, 2, 1, 0.5, 0.5),
            ("hes", "postcode", 4, 2, 0, 0.5, 0.0),
            ("hes", "sex", 4, 2, 2, 0.5, 1.0),
            ("hes", "uprn", 4, 0, 0, 0.0, None),
        ],
        PROFILE_SCHEMA,
    )
    assert_df_equality(got, expected, ignore_nullable=True, allow_nan_equality=True)


def test_duplicate_profile(spark):
    std = spark.createDataFrame(ROWS, STD_SCHEMA)
    got = duplicate_profile(std).orderBy("source")
    expected = spark.createDataFrame(
        [
            # gp: ids unique; rows 1 and 4 share every identifier (one group of two rows).
            ("gp", 4, 0, 1, 2),
            # hes: id 'a' twice; rows differ in nhs_number; b and c are all-null tuples, ignored.
            ("hes", 4, 1, 0, 0),
        ],
        "source string, rows long, duplicate_record_ids long, duplicate_identifier_groups long, "
        "duplicate_identifier_rows long",
    )
    assert_df_equality(got, expected, ignore_nullable=True)


def test_profile_observed_during_a_write_equals_the_aggregated_profile(spark):
    from pyspark.sql import Observation

    gp = spark.createDataFrame(ROWS, STD_SCHEMA).where("source = 'gp'")
    observation = Observation("quality")
    gp.observe(observation, *profile_counts()).write.format("noop").mode("overwrite").save()
    got = profile_from_counts(spark, "gp", observation.get).orderBy("field")
    expected = _aggregated_profile(spark, gp).orderBy("field")
    assert_df_equality(got, expected, ignore_nullable=True, allow_nan_equality=True)
    assert {r.field: (r.rows, r.present, r.valid) for r in got.collect()}["nhs_number"] == (4, 3, 2)
