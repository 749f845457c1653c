"""tre-link blocking-report on tiny records: pairs each rule adds, its largest blocks, and the share
of true pairs reached with the deterministic pass (expected counts worked out by hand)."""

from __future__ import annotations

import datetime as dt

from tre_link.link.blocking_report import blocking_report
from tre_link.platform.config import ComparisonConfig, LinkageConfig

D1, D2, D3, D4 = (dt.date(1980, 1, d) for d in (1, 2, 3, 4))


def _records(spark):
    return spark.createDataFrame(
        [
            ("s", "1", "s:1", D1, "SMITH", "K1"),
            ("s", "2", "s:2", D1, "SMITH", "K1"),  # same usable NHS number as s:1: the deterministic pass links them
            ("s", "3", "s:3", D1, "JONES", None),
            ("s", "4", "s:4", D2, "JONES", None),
            ("s", "5", "s:5", D3, "JONES", None),
            ("s", "6", "s:6", D4, "BROWN", None),
        ],
        "source string, record_id string, unique_id string, dob date, family_name string, deterministic_nhs string",
    )


def _linkage():
    return LinkageConfig(blocking_rules_training=["l.dob = r.dob", "1 = 1"],
                         blocking_rules_predict=["l.dob = r.dob", "l.family_name = r.family_name"],
                         comparisons=[ComparisonConfig(field="dob", preset="exact")])


def test_blocking_report_counts_pairs_added_largest_blocks_and_true_pairs_reached(spark):
    truth = spark.createDataFrame(
        [("s", "1", "P1"), ("s", "2", "P1"), ("s", "3", "P1"), ("s", "4", "P2"), ("s", "5", "P2"), ("s", "6", "P3")],
        "source string, record_id string, person_id string",
    )
    report = blocking_report(_records(spark), _linkage(), truth)
    assert report.deterministic_pairs == 1
    assert report.true_pairs == 4 and report.true_pairs_deterministic == 1
    dob, family = report.rules
    # dob: (1,3) and (2,3); (1,2) is already decided. Both true: 1 + 2 of 4 true pairs reached.
    assert (dob.pairs_added, dob.cumulative_pairs, dob.true_pairs_reached) == (2, 2, 3)
    assert dob.largest_blocks == (3, 0, 0, 0)
    # family name: JONES makes (3,4), (3,5), (4,5), of which (4,5) is true; SMITH's pair is decided.
    assert (family.pairs_added, family.cumulative_pairs, family.true_pairs_reached) == (3, 5, 4)
    assert family.largest_blocks == (3, 1, 0)


def test_blocking_report_without_truth_has_no_recall(spark):
    report = blocking_report(_records(spark), _linkage())
    assert report.true_pairs is None
    assert [r.true_pairs_reached for r in report.rules] == [None, None]
    assert [r.pairs_added for r in report.rules] == [2, 3]
    released = report.released()
    assert released["rules"][0]["pairs_added"] is None  # under 10: suppressed
