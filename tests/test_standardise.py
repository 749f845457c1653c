"""Standardisation transforms on tiny inline data; expected values are written by hand."""

from __future__ import annotations

import datetime as dt

import nhs_number as nhs_pkg
import pytest
from chispa import assert_column_equality, assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from tre_link.platform.config import ColumnMapping, SourceConfig
from tre_link.platform.errors import InputDataError
from tre_link.ingest.nhs_number import nhs_number_status
from tre_link.ingest.standardise import (
    OUTPUT_COLUMNS,
    address_lines,
    check_source_columns,
    check_standardised,
    clean_address,
    clean_identifier,
    clean_name,
    clean_sex,
    clean_uprn,
    first_token,
    parse_dob,
    postcode_columns,
    source_record_ids,
    standardise_source,
)

TODAY = dt.date(2024, 6, 30)

MAPPING = ColumnMapping(
    record_id="pid",
    nhs_number="nhs",
    given_name="forename",
    family_name="surname",
    dob="birth",
    sex="gender",
    postcode="pc",
)
GP = SourceConfig(name="gp", path="unused", columns=MAPPING, passthrough=["site"])
RAW_SCHEMA = "pid int, nhs string, forename string, surname string, birth string, gender string, pc string, site string"


def _one(spark, values, dtype="string"):
    return spark.createDataFrame([(v,) for v in values], f"raw {dtype}")


# ------------------------------------------------------------------ NHS number


def test_nhs_status_agrees_with_independent_package(spark):
    values = [
        "4010232137",  # valid
        "9434765919",  # valid
        "4505577104",  # valid
        "4010232138",  # bad checksum
        "9434765910",  # bad checksum
        "1000000010",  # first nine digits give check digit 10: never valid
        "9990000018",  # passes Modulus 11 but in the 999 test range
        "9999999999",  # passes Modulus 11, test range
    ]
    rows = _one(spark, values).select("raw", nhs_number_status(F.col("raw")).alias("s")).collect()
    got = {r.raw: r.s for r in rows}
    for value in values:
        package_valid = nhs_pkg.is_valid(value)
        ours_passes = got[value] in ("valid", "test_range")
        assert ours_passes == package_valid, value
    assert got == {
        "4010232137": "valid",
        "9434765919": "valid",
        "4505577104": "valid",
        "4010232138": "bad_checksum",
        "9434765910": "bad_checksum",
        "1000000010": "bad_checksum",
        "9990000018": "test_range",
        "9999999999": "test_range",
    }


def test_modulus_11_agrees_with_independent_package_on_many_numbers(spark):
    # Each stem is tried with every last digit, so exactly the numbers whose last digit is the
    # package's checksum must pass; stems whose checksum is 10 must give none. (The package's
    # is_valid also rejects Scottish CHI numbers that do not start with a date, which is not a
    # Modulus 11 rule, so its checksum is the oracle here.)
    import random

    stems = [f"{random.Random(seed).randrange(10**9):09d}" for seed in range(300)]
    values = [stem + str(last) for stem in stems for last in range(10)]
    rows = _one(spark, values).select("raw", nhs_number_status(F.col("raw")).alias("s")).collect()
    ours = {r.raw for r in rows if r.s in ("valid", "test_range")}
    checksums = {stem: nhs_pkg.calculate_checksum(stem) for stem in stems}
    assert sum(checksum == 10 for checksum in checksums.values()) > 10
    assert ours == {stem + str(checksum) for stem, checksum in checksums.items() if checksum != 10}
    assert {v for v in values if nhs_pkg.is_valid(v)} <= ours


def test_token_form_and_absent_nhs_mapping(spark):
    token = "ab" * 32
    df = spark.createDataFrame(
        [(1, f" {token.upper()} ", "A", "B", "2000-01-01", "1", "LS1 4AB"),
         (2, "4010232137", "A", "B", "2000-01-01", "1", "LS1 4AB"),
         (3, None, "A", "B", "2000-01-01", "1", "LS1 4AB")],
        "pid int, nhs string, forename string, surname string, birth string, gender string, pc string",
    )
    tok = SourceConfig(name="tok", path="x", nhs_number_form="token", columns=MAPPING)
    no_nhs = SourceConfig(name="nonhs", path="x", columns=MAPPING.model_copy(update={"nhs_number": None}))
    out = standardise_source(df, tok, today=TODAY).unionByName(
        standardise_source(df.drop("nhs"), no_nhs, today=TODAY)
    )
    got = sorted(tuple(r) for r in out.select("source", "record_id", "nhs_number", "nhs_number_status").collect())
    assert got == [
        ("nonhs", "1", None, "missing"),
        ("nonhs", "2", None, "missing"),
        ("nonhs", "3", None, "missing"),
        ("tok", "1", token, "token"),
        ("tok", "2", None, "bad_format"),
        ("tok", "3", None, "missing"),
    ]


# ------------------------------------------------------------------ postcode


def test_postcode_forms(spark):
    rows = [
        ("ls1 4ab", "LS1 4AB", "LS", "LS1", "LS1 4"),
        ("M1 1AE", "M1 1AE", "M", "M1", "M1 1"),
        ("b33 8th", "B33 8TH", "B", "B33", "B33 8"),
        ("W1A0AX", "W1A 0AX", "W", "W1A", "W1A 0"),
        ("cr2 6xh", "CR2 6XH", "CR", "CR2", "CR2 6"),
        ("DN55  1PT", "DN55 1PT", "DN", "DN55", "DN55 1"),
        (" ec1a 1bb ", "EC1A 1BB", "EC", "EC1A", "EC1A 1"),
        ("GIR 0AA", "GIR 0AA", "GIR", "GIR", "GIR 0"),
        ("LS1", None, None, None, None),
        ("1LS 4AB", None, None, None, None),
        ("LS1 4A", None, None, None, None),
        ("ABC1 1AA", None, None, None, None),
        ("", None, None, None, None),
        (None, None, None, None, None),
    ]
    schema = "raw string, postcode string, postcode_area string, postcode_district string, postcode_sector string"
    expected = spark.createDataFrame(rows, schema)
    got = expected.select("raw", *[c.alias(n) for n, c in postcode_columns(F.col("raw")).items()])
    assert_df_equality(got, expected, ignore_nullable=True)


# ------------------------------------------------------------------ names


def test_clean_name(spark):
    rows = [
        ("O'Brien", "OBRIEN"),
        ("o\u2019neill", "ONEILL"),
        ("Smith-Jones", "SMITH JONES"),
        ("  mr   john   smith ", "JOHN SMITH"),
        ("Dr. Ann", "ANN"),
        ("MRS", None),
        ("Missy", "MISSY"),  # titles only as whole words
        ("Drew", "DREW"),
        ("José", "JOSÉ"),
        ("Ann-Marie, Jr", "ANN MARIE JR"),
        ("   ", None),
        (None, None),
    ]
    df = spark.createDataFrame(rows, "raw string, expected string").withColumn("got", clean_name(F.col("raw")))
    assert_column_equality(df, "got", "expected")


def test_first_token_and_given_name_drops_middle_names(spark):
    df = spark.createDataFrame(
        [("JOHN PAUL", "JOHN"), ("SMITH JONES", "SMITH"), ("ANN", "ANN"), (None, None)], "raw string, expected string"
    ).withColumn("got", first_token(F.col("raw")))
    assert_column_equality(df, "got", "expected")


# ------------------------------------------------------------------ DOB and sex


def test_parse_dob(spark):
    formats = ["yyyy-MM-dd", "dd/MM/yyyy", "yyyyMMdd"]
    rows = [
        ("1980-05-17", dt.date(1980, 5, 17)),
        ("17/05/1980", dt.date(1980, 5, 17)),
        ("19800517", dt.date(1980, 5, 17)),
        (" 2024-06-30 ", dt.date(2024, 6, 30)),  # today is allowed
        ("2024-07-01", None),  # future
        ("31/02/1990", None),  # impossible
        ("29/02/2021", None),  # not a leap year
        ("29/02/2020", dt.date(2020, 2, 29)),
        ("1899-12-31", None),  # before 1900
        ("1900-01-01", dt.date(1900, 1, 1)),
        ("not a date", None),
        ("", None),
        (None, None),
    ]
    df = spark.createDataFrame(rows, "raw string, expected date")
    df = df.withColumn("got", parse_dob(F.col("raw"), T.StringType(), formats, TODAY))
    assert_column_equality(df, "got", "expected")


def test_parse_dob_from_date_column(spark):
    df = spark.createDataFrame(
        [(dt.date(1980, 1, 2), dt.date(1980, 1, 2)), (dt.date(2099, 1, 1), None), (dt.date(1800, 1, 1), None)],
        "raw date, expected date",
    ).withColumn("got", parse_dob(F.col("raw"), T.DateType(), [], TODAY))
    assert_column_equality(df, "got", "expected")


def test_clean_sex(spark):
    rows = [
        ("1", "M"), ("2", "F"), ("9", None), ("0", None),
        ("m", "M"), (" F ", "F"), ("U", None), ("I", None),
        ("Male", "M"), ("FEMALE", "F"), ("unknown", None), ("Indeterminate", None),
        ("x", None), (None, None),
    ]
    df = spark.createDataFrame(rows, "raw string, expected string").withColumn("got", clean_sex(F.col("raw")))
    assert_column_equality(df, "got", "expected")


# ------------------------------------------------------------------ top level


def test_standardise_source_full_output(spark):
    raw = spark.createDataFrame(
        [
            (1, "401 023 2137", "Dr Bill Henry", "O'Brien", "1980-05-17", "1", "ls1 4ab", "a"),
            (2, "4010232138", "  sarah-jane ", "Smith-Jones", "31/02/1990", "female", "SW1A1AA", "b"),
            (3, None, None, "  ", "2030-01-01", "9", "not a pc", None),
        ],
        RAW_SCHEMA,
    )
    got = standardise_source(raw, GP, today=TODAY).orderBy("record_id")
    assert tuple(got.columns) == OUTPUT_COLUMNS + ("site",)
    expected_schema = T.StructType(
        [
            T.StructField("source", T.StringType()),
            T.StructField("record_id", T.StringType()),
            T.StructField("nhs_number", T.StringType()),
            T.StructField("nhs_number_status", T.StringType()),
            T.StructField("nhs_number_digits", T.StringType()),
            T.StructField("given_name", T.StringType()),
            T.StructField("given_name_root", T.StringType()),
            T.StructField("given_name_phonetic", T.StringType()),
            T.StructField("family_name", T.StringType()),
            T.StructField("family_name_first", T.StringType()),
            T.StructField("family_name_phonetic", T.StringType()),
            T.StructField("dob", T.DateType()),
            T.StructField("dob_year", T.IntegerType()),
            T.StructField("dob_month", T.IntegerType()),
            T.StructField("dob_day", T.IntegerType()),
            T.StructField("sex", T.StringType()),
            T.StructField("postcode", T.StringType()),
            T.StructField("postcode_area", T.StringType()),
            T.StructField("postcode_district", T.StringType()),
            T.StructField("postcode_sector", T.StringType()),
            T.StructField("address", T.StringType()),
            T.StructField("uprn", T.StringType()),
            T.StructField("dob_raw_present", T.BooleanType()),
            T.StructField("sex_raw_present", T.BooleanType()),
            T.StructField("postcode_raw_present", T.BooleanType()),
            T.StructField("uprn_raw_present", T.BooleanType()),
            T.StructField("site", T.StringType()),
        ]
    )
    expected = spark.createDataFrame(
        [
            ("gp", "1", "4010232137", "valid", "4010232137", "BILL", "WILLIAM", "PL", "OBRIEN", "OBRIEN", "APRN",
             dt.date(1980, 5, 17), 1980, 5, 17, "M", "LS1 4AB", "LS", "LS1", "LS1 4", None, None,
             True, True, True, False, "a"),
            ("gp", "2", None, "bad_checksum", "4010232138", "SARAH", "SARAH", "SR", "SMITH JONES", "SMITH", "SM0J",  # Double Metaphone keeps 4 chars: SM0 + J
             None, None, None, None, "F", "SW1A 1AA", "SW", "SW1A", "SW1A 1", None, None, True, True, True, False, "b"),
            ("gp", "3", None, "missing", None, None, None, None, None, None, None,
             None, None, None, None, None, None, None, None, None, None, None, True, True, True, False, None),
        ],
        expected_schema,
    )
    assert_df_equality(got, expected, ignore_nullable=True)


def test_missing_columns_are_named(spark):
    raw = spark.createDataFrame([(1, "x")], "pid int, forename string")
    with pytest.raises(InputDataError) as err:
        check_source_columns(raw, GP)
    message = str(err.value)
    assert message.startswith("table gp: ")
    assert "missing column 'surname' (mapped to family_name)" in message
    assert "missing column 'nhs' (mapped to nhs_number)" in message
    assert "missing column 'site' (passthrough)" in message
    assert "forename" not in message and "'pid'" not in message
    with pytest.raises(InputDataError, match=r"^table gp: .*missing column 'surname'"):
        standardise_source(raw, GP)


def _std(spark, rows):
    return spark.createDataFrame(
        rows, "record_id string, nhs_number string, given_name string, family_name string, dob date, postcode string"
    )


def test_duplicate_and_null_record_ids(spark):
    df = _std(spark, [("a", None, "ANN", None, None, None), ("a", None, "ANN", None, None, None),
                      ("b", None, "BOB", None, None, None), ("b", None, "BOB", None, None, None),
                      ("c", None, "CAT", None, None, None), (None, None, "DAN", None, None, None)])
    with pytest.raises(InputDataError) as err:
        check_standardised(df, "hes")
    message = str(err.value)
    assert "table hes" in message and "record_id" in message
    assert "2 record_id value(s) occur more than once" in message
    assert "1 row(s) with a null record_id" in message
    assert "ANN" not in message and "'a'" not in message
    check_standardised(df.where("record_id = 'c'"), "hes")  # clean ids pass


def test_record_ids_counted_from_the_source_match_the_standardised_ones(spark):
    raw = spark.createDataFrame(
        [(7, None, "Ann", "Lee", None, None, None, None), (7, None, "Bob", "Lee", None, None, None, None),
         (None, None, "Cat", "Lee", None, None, None, None), (8, None, "Dan", "Lee", None, None, None, None)],
        RAW_SCHEMA,
    )
    standardised = standardise_source(raw, GP, today=TODAY)
    ids = source_record_ids(raw, GP)
    assert ids.columns == ["record_id"] and ids.schema == standardised.select("record_id").schema
    assert sorted(ids.collect(), key=str) == sorted(standardised.select("record_id").collect(), key=str)
    with pytest.raises(InputDataError, match=r"table gp: column 'record_id': 1 row\(s\) with a null record_id; "
                                             r"1 record_id value\(s\) occur more than once"):
        check_standardised(standardised, "gp", record_ids=ids)


def test_all_identifiers_null_and_empty_table(spark):
    all_null = _std(spark, [("1", None, None, None, None, None), ("2", None, None, None, None, None)])
    with pytest.raises(InputDataError, match="table ons: every identifier column"):
        check_standardised(all_null, "ons")
    with pytest.raises(InputDataError, match="table ons: has no rows"):
        check_standardised(all_null.limit(0), "ons")
    one_present = _std(spark, [("1", None, None, None, None, None), ("2", None, None, None, None, "LS1 4AB")])
    assert check_standardised(one_present, "ons") == {
        "rows": 2, "null_ids": 0, "duplicated_ids": 0, "has_identifier": 1
    }


# ------------------------------------------------------------------ optional fields, address, UPRN, identifiers


def test_clean_address_uppercases_strips_punctuation_and_collapses_spaces(spark):
    df = spark.createDataFrame(
        [("12, High St.", "12 HIGH ST"), ("  Flat 3b,\tO'Neill  House ", "FLAT 3B ONEILL HOUSE"),
         ("--", None), (None, None)],
        "raw string, expected string",
    ).withColumn("got", clean_address(F.col("raw")))
    assert_column_equality(df, "got", "expected")


def test_address_lines_join_in_order_and_skip_blank_lines(spark):
    df = spark.createDataFrame(
        [("1", "Kavanagh house", None, "1 KAVANAGH HOUSE"), (None, " ", "", None), ("7a", None, "Elm rd", "7A ELM RD")],
        "a string, b string, c string, expected string",
    ).withColumn("got", address_lines([F.col("a"), F.col("b"), F.col("c")]))
    assert_column_equality(df, "got", "expected")


def test_clean_uprn_keeps_up_to_12_digits_zero_padded_and_nulls_the_rest(spark):
    df = spark.createDataFrame(
        [("100023336956", "100023336956"), (" 10002 3336956 ", "100023336956"), ("23336956", "000023336956"),
         ("1000233369561", None), ("UPRN123", None), ("000000000000", None), ("", None), (None, None)],
        "raw string, expected string",
    ).withColumn("got", clean_uprn(F.col("raw")))
    assert_column_equality(df, "got", "expected")


def test_clean_identifier_trims_and_uppercases(spark):
    df = spark.createDataFrame([(" ab 12 ", "AB 12"), ("  ", None), (None, None)], "raw string, expected string")
    assert_column_equality(df.withColumn("got", clean_identifier(F.col("raw"))), "got", "expected")


def test_plain_postcode_keeps_any_postcode_without_uk_parts(spark):
    source = SourceConfig(name="au", path="unused", postcode_form="plain",
                          columns=ColumnMapping(record_id="id", postcode="pc"))
    raw = spark.createDataFrame([("1", " 2612 "), ("2", "sw1a 1aa"), ("3", "")], "id string, pc string")
    got = standardise_source(raw, source).select("record_id", "postcode", "postcode_district", "postcode_sector")
    expected = spark.createDataFrame(
        [("1", "2612", None, None), ("2", "SW1A1AA", None, None), ("3", None, None, None)],
        "record_id string, postcode string, postcode_district string, postcode_sector string",
    )
    assert_df_equality(got.orderBy("record_id"), expected, ignore_nullable=True)


def test_a_source_maps_only_the_fields_it_has(spark):
    """No NHS number, sex or DOB here: those come out null (the model's null level), while the
    address lines, UPRN and another identifier are standardised."""
    source = SourceConfig(
        name="housing", path="unused",
        columns=ColumnMapping(record_id="ref", family_name="surname", address=["line1", "line2"], uprn="uprn",
                              identifiers={"tenancy_ref": "tenancy"}),
    )
    raw = spark.createDataFrame(
        [("h1", "Smith", "4 Elm Rd.", "Leeds", "12345", " t-9 "), ("h2", None, None, None, "12x", None)],
        "ref string, surname string, line1 string, line2 string, uprn string, tenancy string",
    )
    got = standardise_source(raw, source, today=TODAY).select(
        "record_id", "nhs_number", "nhs_number_status", "family_name", "dob", "sex", "postcode", "address", "uprn",
        "uprn_raw_present", "tenancy_ref",
    )
    expected = spark.createDataFrame(
        [("h1", None, "missing", "SMITH", None, None, None, "4 ELM RD LEEDS", "000000012345", True, "T-9"),
         ("h2", None, "missing", None, None, None, None, None, None, True, None)],
        "record_id string, nhs_number string, nhs_number_status string, family_name string, dob date, sex string, "
        "postcode string, address string, uprn string, uprn_raw_present boolean, tenancy_ref string",
    )
    assert_df_equality(got.orderBy("record_id"), expected, ignore_nullable=True)


def test_unmapped_address_and_identifier_columns_are_named(spark):
    source = SourceConfig(name="housing", path="unused",
                          columns=ColumnMapping(record_id="ref", address=["line1", "line9"],
                                                identifiers={"tenancy_ref": "tenancy"}))
    raw = spark.createDataFrame([("h1", "x")], "ref string, line1 string")
    with pytest.raises(InputDataError) as err:
        check_source_columns(raw, source)
    assert "missing column 'line9' (mapped to address)" in str(err.value)
    assert "missing column 'tenancy' (mapped to tenancy_ref)" in str(err.value)
