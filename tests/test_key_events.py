"""Research keys that follow stable person IDs: after a merge, the merged person's records carry
the survivor's key, unchanged persons keep theirs, and key_events says so without any
linkage-zone ID (inline data, no linkage)."""

from __future__ import annotations

from datetime import date

from tre_link.platform.config import KeySource, ProjectConfig
from tre_link.publish.projects import build_key_events, build_research_records

KEY_A, KEY_B = bytes(range(32)), bytes(range(100, 132))
PROJECT = ProjectConfig(name="alpha", key=KeySource(env="ALPHA_KEY"), columns=["imd_quintile"], dob="drop",
                        postcode="drop", age_reference_date=date(2026, 1, 1))


def _keys(spark, index_rows, key=KEY_A) -> dict[str, str]:
    """person_key by record (records are told apart by their imd_quintile here, as a researcher could not)."""
    standardised = spark.createDataFrame(
        [("gp", "a", None, "F", 1), ("gp", "b", None, "M", 2), ("gp", "c", None, "F", 3)],
        "source string, record_id string, dob date, sex string, imd_quintile int")
    index = spark.createDataFrame(index_rows, "source string, record_id string, person_id string")
    records = build_research_records(person_index=index, standardised=standardised, project=PROJECT, project_key=key)
    return {r.imd_quintile: r.person_key for r in records.collect()}


def test_merged_person_gets_the_survivors_key_and_key_events_map_old_to_new(spark):
    before = _keys(spark, [("gp", "a", "P1"), ("gp", "b", "P2"), ("gp", "c", "P3")])
    # P1 merged into the older P2; P3 unchanged.
    after = _keys(spark, [("gp", "a", "P2"), ("gp", "b", "P2"), ("gp", "c", "P3")])
    assert after[1] == after[2] == before[2], "the merged person's records carry the survivor's key"
    assert after[3] == before[3], "an unchanged person keeps its key"

    events = spark.createDataFrame(
        [(2, "merged", "P1", "P2", 1), (2, "retired", "P1", "P2", 1), (2, "joined", "P3", "P3", 1),
         (3, "retired", "P9", None, 2), (3, "split", "P3", "P8", 1)],
        "generation int, event string, person_before string, person_after string, record_count long")
    left_out = spark.createDataFrame([("P8",)], "person_id string")  # opted out
    rows = build_key_events(events, project_key=KEY_A, left_out=left_out).collect()
    assert [r.asDict() for r in rows] == [
        {"generation": 2, "event": "merged", "old_key": before[1], "new_key": before[2]},
        {"generation": 2, "event": "retired", "old_key": before[1], "new_key": before[2]},
        {"generation": 3, "event": "retired",
         "old_key": rows[2].old_key, "new_key": None},
    ]
    assert rows[2].old_key not in {*before.values(), "P9"} and len(rows[2].old_key) == 64
    assert all("P" not in (r.old_key or "") + (r.new_key or "") for r in rows), "no linkage-zone ID"


def test_key_events_of_two_projects_share_no_key(spark):
    events = spark.createDataFrame([(2, "merged", "P1", "P2", 1)],
                                   "generation int, event string, person_before string, person_after string, "
                                   "record_count long")
    a = build_key_events(events, project_key=KEY_A).first()
    b = build_key_events(events, project_key=KEY_B).first()
    assert {a.old_key, a.new_key}.isdisjoint({b.old_key, b.new_key})
