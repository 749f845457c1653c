"""Stable person IDs: each rule of `person_ids` on a few inline records (no linkage, a few small
Spark jobs each)."""

from __future__ import annotations

import hashlib
import re

import pytest

from tre_link.link.person_ids import link_persons

KEY = bytes(range(32))
GEN = 3  # this linkage's generation; the previous index was built by earlier ones


def clusters_of(spark, clusters: dict[str, list[str]]):
    """This linkage's clusters, from {label: ["source:record_id", ...]} (the label is its smallest id)."""
    rows = [(uid.split(":")[0], uid.split(":")[1], min(uids), len(uids), "probabilistic")
            for uids in clusters.values() for uid in uids]
    return spark.createDataFrame(
        rows, "source string, record_id string, cluster string, cluster_size int, link_method string")


def index_of(spark, persons: dict[str, tuple[list[str], int]]):
    """A previous person index, from {person_id: (["source:record_id", ...], issued_in)}."""
    rows = [(uid.split(":")[0], uid.split(":")[1], pid, len(uids), "probabilistic", issued)
            for pid, (uids, issued) in persons.items() for uid in uids]
    return spark.createDataFrame(rows, "source string, record_id string, person_id string, cluster_size int, "
                                       "link_method string, issued_in int")


def run(spark, clusters: dict, previous: dict | None, key: bytes = KEY):
    index, events = link_persons(clusters_of(spark, clusters), index_of(spark, previous) if previous else None,
                                 generation=GEN, key=key)
    ids = {f"{r.source}:{r.record_id}": (r.person_id, r.issued_in) for r in index.collect()}
    happened = sorted((r.event, r.person_before, r.person_after, r.record_count) for r in events.collect()
                      if r.generation == GEN)
    return ids, happened


def test_unchanged_relink_keeps_every_id_and_has_no_events(spark):
    previous = {"P1": (["gp:a", "hospital:b"], 1), "P2": (["gp:c"], 2)}
    ids, events = run(spark, {"gp:a": ["gp:a", "hospital:b"], "gp:c": ["gp:c"]}, previous)
    assert ids == {"gp:a": ("P1", 1), "hospital:b": ("P1", 1), "gp:c": ("P2", 2)}
    assert events == []


def test_new_record_joining_a_person_keeps_its_id_even_when_it_sorts_first(spark):
    previous = {"P1": (["gp:b", "hospital:c"], 1)}
    ids, events = run(spark, {"council:0": ["council:0", "gp:b", "hospital:c"]}, previous)
    assert {uid: pid for uid, (pid, _) in ids.items()} == {"council:0": "P1", "gp:b": "P1", "hospital:c": "P1"}
    assert events == [("joined", None, "P1", 1)]


def test_merge_keeps_the_older_id_not_the_smaller_one_and_retires_the_other(spark):
    # Z was issued first (generation 1), so it survives though "A" sorts before it.
    previous = {"A": (["gp:a", "gp:b"], 2), "Z": (["hospital:c"], 1)}
    ids, events = run(spark, {"gp:a": ["gp:a", "gp:b", "hospital:c"]}, previous)
    assert {pid for pid, _ in ids.values()} == {"Z"}
    assert events == [("merged", "A", "Z", 2), ("retired", "A", "Z", 2)]


def test_merge_of_ids_issued_together_keeps_the_smaller_id(spark):
    previous = {"B": (["gp:a"], 1), "A": (["gp:b"], 1)}
    ids, events = run(spark, {"gp:a": ["gp:a", "gp:b"]}, previous)
    assert {pid for pid, _ in ids.values()} == {"A"}
    assert events == [("merged", "B", "A", 1), ("retired", "B", "A", 1)]


def test_split_leaves_the_id_with_the_largest_part_and_issues_a_new_one(spark):
    previous = {"P1": (["gp:a", "gp:b", "gp:c"], 1)}
    ids, events = run(spark, {"gp:a": ["gp:a"], "gp:b": ["gp:b", "gp:c"]}, previous)
    assert ids["gp:b"] == ids["gp:c"] == ("P1", 1), "the larger part keeps P1, though gp:a sorts first"
    new_id, issued = ids["gp:a"]
    assert new_id != "P1" and issued == GEN
    assert events == [("new", None, new_id, 1), ("split", "P1", new_id, 1)]


def test_split_into_equal_parts_leaves_the_id_with_the_part_holding_the_smallest_record_id(spark):
    previous = {"P1": (["gp:a", "gp:b"], 1)}
    ids, _ = run(spark, {"gp:b": ["gp:b"], "gp:a": ["gp:a"]}, previous)
    assert ids["gp:a"] == ("P1", 1) and ids["gp:b"][0] != "P1"


def test_new_clusters_get_keyed_ids_not_derivable_from_record_ids(spark):
    clusters = {"gp:a": ["gp:a", "hospital:b"], "gp:c": ["gp:c"]}
    ids, events = run(spark, clusters, None)
    new = {pid for pid, _ in ids.values()}
    assert len(new) == 2 and all(re.fullmatch(r"[0-9a-f]{20}", pid) for pid in new)
    assert {issued for _, issued in ids.values()} == {GEN}
    assert sorted(e[0] for e in events) == ["new", "new"]
    assert sorted(e[3] for e in events) == [1, 2]
    # The old scheme (a hash of the smallest record id) is gone; the same key gives the same IDs,
    # another key others.
    assert not new & {hashlib.sha256(f"person:{uid}".encode()).hexdigest()[:20] for uid in ("gp:a", "gp:c")}
    assert run(spark, clusters, None)[0] == ids
    assert not new & {pid for pid, _ in run(spark, clusters, None, key=bytes(range(1, 33)))[0].values()}


def test_removed_records_are_events_and_a_person_left_without_records_is_retired(spark):
    previous = {"P1": (["gp:a", "gp:b"], 1), "P2": (["gp:c"], 1)}
    ids, events = run(spark, {"gp:a": ["gp:a"]}, previous)
    assert ids == {"gp:a": ("P1", 1)}
    assert events == [("record_removed", "P1", None, 1), ("record_removed", "P2", None, 1),
                      ("retired", "P2", None, 1)]


@pytest.mark.parametrize("previous", [None, {"P1": (["gp:x"], 1)}])
def test_every_record_appears_once_with_one_id_per_cluster(spark, previous):
    ids, _ = run(spark, {"gp:a": ["gp:a", "gp:b"], "gp:x": ["gp:x"]}, previous)
    assert set(ids) == {"gp:a", "gp:b", "gp:x"}
    assert ids["gp:a"] == ids["gp:b"] != ids["gp:x"]
