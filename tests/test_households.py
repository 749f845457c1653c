"""household_index: a record's household from its UPRN, else its address and postcode; a person's
household by the fixed rule (most of their records, ties to the smallest id)."""

from __future__ import annotations

import hashlib

from chispa import assert_df_equality

from tre_link.link.households import household_index, record_households

STD = "source string, record_id string, uprn string, address string, postcode string"


def _address_id(address: str, postcode: str) -> str:
    return "address:" + hashlib.sha256(f"{address}|{postcode}".encode()).hexdigest()


def test_record_household_is_its_uprn_else_the_uprn_of_its_address_else_its_address_and_postcode(spark):
    standardised = spark.createDataFrame([
        ("a", "1", "100000000001", "1 ASH ROAD", "LS1 1AA"),
        ("b", "2", None, "1 ASH ROAD", "LS1 1AA"),            # no UPRN: the UPRN its address carries
        ("b", "3", None, "2 ASH ROAD", "LS1 1AA"),            # no UPRN anywhere at it: address and postcode
        ("b", "4", None, "3 ASH ROAD", None),                 # an address without a postcode: none
        ("b", "5", None, None, "LS1 1AA"),                    # a postcode alone: none
        ("a", "6", "100000000009", "4 ASH ROAD", "LS1 1AA"),  # two UPRNs at one address, once each:
        ("a", "7", "100000000008", "4 ASH ROAD", "LS1 1AA"),
        ("b", "8", None, "4 ASH ROAD", "LS1 1AA"),            # the smaller one
        ("b", "9", "100000000005", None, None),               # a UPRN alone is enough
    ], STD)
    expected = spark.createDataFrame([
        ("a", "1", "uprn:100000000001"),
        ("b", "2", "uprn:100000000001"),
        ("b", "3", _address_id("2 ASH ROAD", "LS1 1AA")),
        ("a", "6", "uprn:100000000009"),
        ("a", "7", "uprn:100000000008"),
        ("b", "8", "uprn:100000000008"),
        ("b", "9", "uprn:100000000005"),
    ], "source string, record_id string, household_id string")
    assert_df_equality(record_households(standardised), expected, ignore_row_order=True, ignore_nullable=True)


def test_person_household_is_the_one_most_of_their_records_give_ties_to_the_smallest_id(spark):
    standardised = spark.createDataFrame([
        ("a", "1", "100000000002", None, None),  # P1: two records at ...02, one at ...01
        ("a", "2", "100000000002", None, None),
        ("b", "3", "100000000001", None, None),
        ("a", "4", "100000000004", None, None),  # P2: one each at ...04 and ...03: the smaller
        ("b", "5", "100000000003", None, None),
        ("a", "6", None, None, None),            # P3: no household on any record
        ("b", "7", None, "9 ELM ROAD", "M1 1AA"),  # P4: an address household
    ], STD)
    person_index = spark.createDataFrame(
        [("a", "1", "P1"), ("a", "2", "P1"), ("b", "3", "P1"), ("a", "4", "P2"), ("b", "5", "P2"),
         ("a", "6", "P3"), ("b", "7", "P4")],
        "source string, record_id string, person_id string")
    expected = spark.createDataFrame([
        ("P1", "uprn:100000000002", "uprn", 2),
        ("P2", "uprn:100000000003", "uprn", 1),
        ("P4", _address_id("9 ELM ROAD", "M1 1AA"), "address", 1),
    ], "person_id string, household_id string, household_basis string, records int")
    assert_df_equality(household_index(person_index, standardised), expected, ignore_row_order=True,
                       ignore_nullable=True)
