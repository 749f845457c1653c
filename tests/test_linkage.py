"""The linkage engine: deterministic pass, clustering invariants and accuracy against truth."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from tre_link.ingest.stage import read_standardised
from tre_link.link.cluster import cluster_records, links_to_one_number, links_with_nodes
from tre_link.link.engine import link_records, prepare_records
from tre_link.platform.errors import ConfigError
from tre_link.record.evaluate import evaluate_person_index
from tre_link.record.report import table_checksum
from tre_link.link.deterministic import (
    assign_deterministic_keys,
    deterministic_edges,
    deterministic_groups,
    deterministic_groups_of,
    exclude_decided_pairs,
)

D1, D2 = dt.date(1980, 1, 2), dt.date(1980, 2, 1)
RECORDS_SCHEMA = "unique_id string, nhs_number string, nhs_number_status string, dob date"


def test_deterministic_keys_hold_back_a_disagreeing_dob(spark):
    records = spark.createDataFrame(
        [
            ("gp:1", "9434765919", "valid", D1),
            ("hospital:1", "9434765919", "valid", D1),
            ("hospital:2", "9434765919", "valid", D2),  # same number, different DOB: reported, not linked
            ("council:1", "9434765919", "valid", None),  # no DOB to contradict: linked
            ("council:2", None, "bad_checksum", D1),
            ("gp:3", "4010232137", "valid", D2),  # a tie between two DOBs: the earlier one wins
            ("gp:4", "4010232137", "valid", D1),
        ],
        RECORDS_SCHEMA,
    )
    got = assign_deterministic_keys(records).select("unique_id", "deterministic_nhs", "nhs_dob_conflict")
    expected = spark.createDataFrame(
        [
            ("gp:1", "9434765919", False),
            ("hospital:1", "9434765919", False),
            ("hospital:2", None, True),
            ("council:1", "9434765919", False),
            ("council:2", None, False),
            ("gp:3", None, True),
            ("gp:4", "4010232137", False),
        ],
        "unique_id string, deterministic_nhs string, nhs_dob_conflict boolean",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_reading_only_record_columns_skips_the_modal_dob_join(spark):
    """The term-frequency counts read only the records' own columns: Spark must prune the modal
    DOB join from their plans rather than run it once per count."""
    records = spark.createDataFrame([("gp:1", "9434765919", "valid", D1)], RECORDS_SCHEMA)
    keyed = assign_deterministic_keys(records)

    def optimised_plan(df):  # explain() output is redacted; the plan's own text is not
        return df._jdf.queryExecution().optimizedPlan().toString()

    assert "Join" in optimised_plan(keyed)
    assert "Join" not in optimised_plan(keyed.groupBy("dob").count())


def test_deterministic_groups_and_their_edges_are_a_star_per_number(spark):
    keyed = spark.createDataFrame(
        [("b:1", "111"), ("a:1", "111"), ("c:1", "111"), ("d:1", "222"), ("e:1", None)],
        "unique_id string, deterministic_nhs string",
    ).withColumns({"source": F.lit("s"), "record_id": F.col("unique_id")})
    groups = deterministic_groups(keyed)
    expected_groups = spark.createDataFrame(
        [("a:1", "a:1", 3), ("b:1", "a:1", 3), ("c:1", "a:1", 3), ("d:1", "d:1", 1), ("e:1", "e:1", 1)],
        "unique_id string, node string, node_size int",
    )
    assert_df_equality(groups.select("unique_id", "node", "node_size"), expected_groups,
                       ignore_row_order=True, ignore_nullable=True)
    got = deterministic_edges(groups).select("unique_id_l", "unique_id_r", "link_method")
    expected = spark.createDataFrame(
        [("a:1", "b:1", "deterministic"), ("a:1", "c:1", "deterministic")],
        "unique_id_l string, unique_id_r string, link_method string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_deterministic_groups_of_some_records_are_their_whole_groups_and_nothing_else(spark):
    keyed = spark.createDataFrame(
        [("b:1", "111"), ("a:1", "111"), ("c:1", "111"), ("d:1", "222"), ("f:1", "222"), ("e:1", None),
         ("g:1", None)],
        "unique_id string, deterministic_nhs string",
    ).withColumns({"source": F.lit("s"), "record_id": F.col("unique_id")})
    ids = spark.createDataFrame([("c:1",), ("e:1",), ("gone:1",)], "unique_id string")
    got = deterministic_groups_of(keyed, ids)
    # c:1's group whole (anchored on a:1, as over every record), e:1 alone; not 222's group nor g:1
    expected = deterministic_groups(keyed).where(F.col("unique_id").isin("a:1", "b:1", "c:1", "e:1"))
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True, ignore_column_order=True)


def test_probabilistic_rules_skip_pairs_the_deterministic_pass_decided():
    rule = exclude_decided_pairs("l.dob = r.dob")
    assert rule == "(l.dob = r.dob) and (l.deterministic_nhs is null or r.deterministic_nhs is null)"


def test_clusters_from_deterministic_groups_and_probabilistic_links(spark):
    # a1 and a2 share an NHS number; b1 links to a2 probabilistically; c1 has a number no one
    # else holds and links to d1; e1 links to nothing.
    nodes = spark.createDataFrame(
        [("gp:a1", "gp", "a1", "X"), ("gp:a2", "gp", "a2", "X"), ("hospital:b1", "hospital", "b1", None),
         ("gp:c1", "gp", "c1", "Y"), ("council:d1", "council", "d1", None), ("council:e1", "council", "e1", None)],
        "unique_id string, source string, record_id string, deterministic_nhs string",
    )
    links = spark.createDataFrame(
        [("gp:a1", "gp:a2", "deterministic", 1.0), ("gp:a2", "hospital:b1", "probabilistic", 0.99),
         ("council:d1", "gp:c1", "probabilistic", 0.97)],
        "unique_id_l string, unique_id_r string, link_method string, match_probability double",
    )
    got = cluster_records(deterministic_groups(nodes), links, bridge_nhs_numbers=False)

    # Each cluster is labelled by its smallest unique_id (person IDs are given by person_ids).
    expected = spark.createDataFrame(
        [("gp", "a1", "gp:a1", 3, "deterministic"), ("gp", "a2", "gp:a1", 3, "both"),
         ("hospital", "b1", "gp:a1", 3, "probabilistic"),
         ("gp", "c1", "council:d1", 2, "probabilistic"), ("council", "d1", "council:d1", 2, "probabilistic"),
         ("council", "e1", "council:e1", 1, "singleton")],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


# Numbers X (a1, a2) and Y (c1); u1 and u2 have none. u1 links to both numbers' records, u2 to
# u1 and to Y's record: without bridges, u1 keeps X (its strongest link) and u2 keeps Y.
BRIDGE_RECORDS = [("gp:a1", "gp", "a1", "X"), ("gp:a2", "gp", "a2", "X"), ("gp:c1", "gp", "c1", "Y"),
                  ("council:u1", "council", "u1", None), ("council:u2", "council", "u2", None)]
BRIDGE_LINKS = [("gp:a1", "gp:a2", "deterministic", 1.0), ("council:u1", "gp:a2", "probabilistic", 0.99),
                ("gp:c1", "council:u1", "probabilistic", 0.98), ("council:u1", "gp:a1", "probabilistic", 0.96),
                ("council:u2", "council:u1", "probabilistic", 0.97), ("council:u2", "gp:c1", "probabilistic", 0.96)]
BRIDGE_SCHEMA = "unique_id_l string, unique_id_r string, link_method string, match_probability double"


def test_a_record_without_a_number_keeps_its_links_to_its_strongest_number_only(spark):
    groups = deterministic_groups(spark.createDataFrame(
        BRIDGE_RECORDS, "unique_id string, source string, record_id string, deterministic_nhs string"))
    links = links_with_nodes(spark.createDataFrame(BRIDGE_LINKS, BRIDGE_SCHEMA).where("link_method = 'probabilistic'"),
                             groups)
    got = links_to_one_number(links)
    # u1's link to c1 (Y) goes; its two links to X's records and the link between u1 and u2 stay
    expected = links.where("not (unique_id_l = 'gp:c1' and unique_id_r = 'council:u1')")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_an_equally_strong_link_to_two_numbers_keeps_the_smaller_numbers_group(spark):
    groups = deterministic_groups(spark.createDataFrame(
        BRIDGE_RECORDS, "unique_id string, source string, record_id string, deterministic_nhs string"))
    links = spark.createDataFrame([("council:u1", "gp:c1", "probabilistic", 0.98),
                                   ("council:u1", "gp:a2", "probabilistic", 0.98)], BRIDGE_SCHEMA)
    got = links_to_one_number(links_with_nodes(links, groups)).select("unique_id_r").collect()
    assert [row.unique_id_r for row in got] == ["gp:a2"]  # X's group is anchored on gp:a1 < gp:c1


@pytest.mark.parametrize("bridge", [False, True])
def test_clusters_bridge_nhs_numbers_only_when_configured(spark, bridge):
    groups = deterministic_groups(spark.createDataFrame(
        BRIDGE_RECORDS, "unique_id string, source string, record_id string, deterministic_nhs string"))
    # Without the link between u1 and u2: a chain of records without numbers still bridges.
    links = spark.createDataFrame(BRIDGE_LINKS, BRIDGE_SCHEMA).where("unique_id_l != 'council:u2' "
                                                                     "or unique_id_r != 'council:u1'")
    got = cluster_records(groups, links, bridge_nhs_numbers=bridge)
    clusters = {(row.source, row.record_id): row.cluster for row in got.collect()}
    if bridge:  # one person through u1
        assert len(set(clusters.values())) == 1
    else:  # X with u1, whose link to Y went; Y with u2
        assert clusters[("council", "u1")] == clusters[("gp", "a1")] == clusters[("gp", "a2")]
        assert clusters[("council", "u2")] == clusters[("gp", "c1")] != clusters[("gp", "a1")]


def test_a_refresh_also_clusters_again_the_persons_a_link_reaches(spark):
    """Without bridges a link can join two persons: clustering P1 again brings in P2, which holds
    the other end of one of its links (a record may move there), but not P3, which no link of
    P1's records reaches."""
    from tre_link.link.refresh import with_linked_persons

    previous = spark.createDataFrame(
        [("gp", "a1", "P1"), ("council", "u1", "P1"), ("gp", "c1", "P2"), ("gp", "c2", "P2"), ("gp", "e1", "P3")],
        "source string, record_id string, person_id string")
    links = spark.createDataFrame([("council:u1", "gp:c1"), ("gp:c2", "gp:e1")], "unique_id_l string, unique_id_r string")
    got = with_linked_persons(previous, previous.where("person_id = 'P1'"), links)
    assert_df_equality(got, previous.where("person_id in ('P1', 'P2')"), ignore_row_order=True, ignore_column_order=True)


def test_accuracy_counts_pairs_and_clusters(spark):
    # Truth: persons P (a, b, c) and Q (d, e). Predicted: {a, b}, {c, d}, {e}.
    truth = spark.createDataFrame(
        [("s", "a", 1), ("s", "b", 1), ("s", "c", 1), ("s", "d", 2), ("s", "e", 2)],
        "source string, record_id string, person_id int",
    )
    index = spark.createDataFrame(
        [("s", "a", "x"), ("s", "b", "x"), ("s", "c", "y"), ("s", "d", "y"), ("s", "e", "z")],
        "source string, record_id string, person_id string",
    )
    acc = evaluate_person_index(index, truth)
    assert (acc.true_pairs, acc.predicted_pairs, acc.true_positive_pairs) == (4, 2, 1)
    assert acc.pairwise_precision == pytest.approx(0.5)
    assert acc.pairwise_recall == pytest.approx(0.25)
    assert acc.pairwise_f1 == pytest.approx(1 / 3)
    assert (acc.clusters, acc.pure_clusters, acc.true_persons, acc.complete_persons) == (3, 2, 2, 0)


def test_every_record_appears_exactly_once_in_person_index(spark, demo_run):
    records = read_standardised(spark, demo_run.cfg).select("source", "record_id")
    index = spark.read.format("delta").load(demo_run.summary["tables"]["person_index"])
    assert index.count() == records.count()
    assert index.select("source", "record_id").distinct().count() == index.count()
    assert records.join(index, ["source", "record_id"], "left_anti").count() == 0
    sizes = index.groupBy("person_id").count().withColumnRenamed("count", "n")
    assert index.join(sizes, "person_id").where("n != cluster_size").count() == 0
    methods = {r.link_method for r in index.select("link_method").distinct().collect()}
    assert methods <= {"deterministic", "probabilistic", "both", "singleton"}
    assert {"deterministic", "singleton"} <= methods


def test_accuracy_targets_on_generated_data(demo_run):
    accuracy = demo_run.summary["accuracy"]
    assert accuracy["pairwise_f1"] >= 0.99
    assert accuracy["person_precision"] >= 0.995


def test_links_carry_provenance(spark, demo_run):
    links = spark.read.format("delta").load(demo_run.summary["tables"]["links"])
    by_method = {r.link_method: r for r in links.groupBy("link_method").agg({"match_probability": "min"}).collect()}
    assert set(by_method) == {"deterministic", "probabilistic"}
    threshold = demo_run.cfg.linkage.threshold_match_probability
    assert by_method["probabilistic"]["min(match_probability)"] >= threshold
    assert links.where("link_method = 'probabilistic' and match_weight is null").count() == 0


def test_outputs_are_delta_tables_with_history(spark, demo_run):
    from delta.tables import DeltaTable

    for name in ("links", "person_index", "quality_profile"):
        path = demo_run.summary["tables"][name]
        assert DeltaTable.forPath(spark, path).history().count() >= 1


def test_saved_model_predicts_without_retraining(spark, demo_run):
    """Linking again with only the saved model JSON gives the demo run's links and its partition of
    records into persons."""
    model = json.loads(Path(demo_run.summary["model_json"]).read_text())
    assert model["probability_two_random_records_match"] > 0
    trained = [level for c in model["comparisons"] for level in c["comparison_levels"] if "m_probability" in level]
    assert trained, "the saved model carries its m probabilities"

    cfg = demo_run.cfg
    prepared = prepare_records(read_standardised(spark, cfg))
    with link_records(prepared, cfg.linkage, demo_run.summary["model_json"]) as again:
        assert again.scored_pairs.count() > 100, "the saved model scored pairs"
        links = table_checksum(again.links)
        index = spark.read.format("delta").load(demo_run.summary["tables"]["person_index"])
        both = again.clusters.join(index, ["source", "record_id"], "full_outer")
        assert both.where("cluster is null or person_id is null").count() == 0
        pairs = both.select("cluster", "person_id").distinct()
        assert pairs.count() == pairs.select("cluster").distinct().count() == pairs.select("person_id").distinct().count()
    assert links == table_checksum(spark.read.format("delta").load(demo_run.summary["tables"]["links"]))


def test_blocking_over_the_limit_stops_before_scoring(spark, demo_run):
    cfg = demo_run.cfg
    tight = cfg.linkage.model_copy(update={"max_comparisons": 10})
    prepared = prepare_records(read_standardised(spark, cfg))
    with pytest.raises(ConfigError, match=r"would score up to [\d,]+ pairs, over linkage.max_comparisons=10"):
        with link_records(prepared, tight, demo_run.summary["model_json"]):
            pass
