"""Oversized blocks are found from the records alone and dropped from their rule, with counts."""

from __future__ import annotations

from tre_link.link.blocks import equi_join_keys, plan_blocking, records_in_blocks_holding


def test_equi_join_keys_come_from_splinks_parser():
    rule = "l.family_name_phonetic = r.family_name_phonetic and l.dob_year = r.dob_year and l.x > 1"
    assert equi_join_keys(rule) == ["family_name_phonetic", "dob_year"]


def test_oversized_block_is_dropped_from_its_rule_only(spark):
    smiths = [(f"s{i}", "SMITH", 1980, None) for i in range(6)]  # 6 undecided records: 15 pairs
    others = [("j1", "JONES", 1980, None), ("j2", "JONES", 1980, None), ("n1", None, 1980, None)]
    decided = [(f"d{i}", "BROWN", 1990, f"nhs{i}") for i in range(8)]  # all decided: no pairs to score
    records = spark.createDataFrame(
        smiths + others + decided, "unique_id string, family_name string, dob_year int, deterministic_nhs string"
    )
    rules = ["l.family_name = r.family_name", "l.dob_year = r.dob_year and l.family_name = r.family_name"]
    plan = plan_blocking(records, rules, max_block_comparisons=10)
    flagged, capped, dropped = plan.records, plan.rules, plan.dropped

    # what each rule still scores: JONES's one undecided pair; the decided BROWNs make none
    assert plan.pairs_per_rule == [1, 1]
    assert capped == [f"({rule}) and not l._oversized_block_{i}" for i, rule in enumerate(rules)]
    assert [(d.rule, d.blocks, d.records) for d in dropped] == [(rules[0], 1, 6), (rules[1], 1, 6)]
    flags = {r.unique_id: r._oversized_block_0 for r in flagged.collect()}
    assert {uid for uid, big in flags.items() if big} == {f"s{i}" for i in range(6)}
    assert flagged.count() == records.count()


def test_blocks_holding_a_flagged_record_are_sized_as_over_every_record_and_the_others_not(spark):
    from pyspark.sql import functions as F

    smiths = [(f"s{i}", "SMITH", i == 0) for i in range(6)]  # 6 undecided, one flagged: oversized at 10
    joneses = [(f"j{i}", "JONES", False) for i in range(6)]  # as large, but no flagged record
    records = spark.createDataFrame(smiths + joneses, "unique_id string, family_name string, changed boolean") \
        .withColumn("deterministic_nhs", F.lit(None).cast("string"))
    rules = ["l.family_name = r.family_name"]
    everything = plan_blocking(records, rules, max_block_comparisons=10)
    holding = plan_blocking(records, rules, max_block_comparisons=10, holding=F.col("changed"))

    assert [(d.blocks, d.records) for d in everything.dropped] == [(2, 12)]
    assert [(d.blocks, d.records) for d in holding.dropped] == [(1, 6)]
    flags = {r.unique_id: r._oversized_block_0 for r in holding.records.collect()}
    assert {uid for uid, big in flags.items() if big} == {f"s{i}" for i in range(6)}


def test_records_in_blocks_holding_a_flagged_record_are_those_of_every_rules_blocks_and_the_flagged(spark):
    from chispa import assert_df_equality
    from pyspark.sql import functions as F

    records = spark.createDataFrame([
        ("c1", "SMITH", "1980", True),   # flagged
        ("s1", "SMITH", "1975", False),  # shares the surname block with c1
        ("d1", "JONES", "1980", False),  # shares the year block with c1
        ("o1", "JONES", "1975", False),  # shares no block with c1
        ("c2", None, None, True),        # flagged, in no block
        ("n1", None, "1990", False),     # null surname: never in a surname block
    ], "unique_id string, family_name string, dob_year string, changed boolean")
    rules = ["l.family_name = r.family_name", "l.dob_year = r.dob_year and l.unique_id != r.unique_id"]
    found = records_in_blocks_holding(records, rules, F.col("changed"))
    expected = spark.createDataFrame([("c1",), ("c2",), ("d1",), ("s1",)], "unique_id string")
    assert_df_equality(found, expected, ignore_row_order=True)


def test_records_in_blocks_holding_is_none_for_a_rule_joining_different_columns(spark):
    from pyspark.sql import functions as F

    records = spark.createDataFrame([("a", "X", "X", True)], "unique_id string, x string, y string, changed boolean")
    assert records_in_blocks_holding(records, ["l.x = r.y"], F.col("changed")) is None
    assert records_in_blocks_holding(records, ["l.x = r.x", "l.x > r.x"], F.col("changed")) is None
    assert records_in_blocks_holding(records, ["l.x = r.x"], F.col("changed")) is not None


def test_no_oversized_blocks_leaves_rules_alone(spark):
    records = spark.createDataFrame(
        [("a", "SMITH", None), ("b", "SMITH", None)], "unique_id string, family_name string, deterministic_nhs string"
    )
    plan = plan_blocking(records, ["l.family_name = r.family_name"], 10)
    flagged, capped, dropped = plan.records, plan.rules, plan.dropped
    assert plan.pairs_per_rule == [1]
    assert capped == ["l.family_name = r.family_name"] and dropped == []
    assert flagged.columns == records.columns


def test_pairs_of_equi_join_rules_from_block_sizes_equal_a_pairwise_count(spark):
    from itertools import combinations

    from tre_link.link import probabilistic
    from tre_link.link.records import RegisteredRecords

    rows = [
        ("a", "111", "ANN", "LEE", "1980-01-01"), ("b", "111", "ANN", "LEE", "1980-01-01"),
        ("c", None, "ANN", "LEE", "1980-01-01"), ("d", "222", "ANN", "LEE", "1980-01-01"),
        ("e", "222", "BOB", "RAY", None), ("f", "222", "BOB", "RAY", None), ("g", None, None, "RAY", "1990-02-02"),
        ("h", None, "CAT", "DOE", "1970-03-03"), ("i", "333", "CAT", "DOE", "1970-03-03"),
    ]
    records = spark.createDataFrame(
        rows, "unique_id string, nhs_number_digits string, given_name string, family_name string, dob string"
    )
    registered = RegisteredRecords(records)

    def same(l, r, fields):  # an equi-join: every key present and equal
        return all(l[f] is not None and l[f] == r[f] for f in fields)

    by_rule = [(1,), (2, 3, 4)]
    expected = sum(any(same(l, r, fields) for fields in by_rule) for l, r in combinations(rows, 2))
    assert expected == 10  # 4 by NHS number, 7 by name and DOB, a-b by both
    with registered:
        assert probabilistic.count_pairs(registered, probabilistic.PRIOR_RULES) == expected
        assert probabilistic.count_pairs(registered, probabilistic.PRIOR_RULES[:1]) == 4
