"""household_index: a record's household from its UPRN, else its address and postcode; a person's
household by the fixed rule (most of their records, ties to the smallest id)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
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


@pytest.mark.slow
def test_refresh_writes_household_index_again_under_the_refresh_run(spark, tmp_path):
    """A refresh re-derives household_index from the refreshed person index, in its own run, so
    publish (which refuses a household_index from another link run) can key households after it."""
    import yaml
    from delta.tables import DeltaTable

    from tre_link import TreLink
    from tre_link.platform.config import load_config
    from tre_link.platform.delta_io import commit_metadata, write_delta

    from bench.external_sources import altsynth  # the independent generator: it gives UPRNs and addresses

    repo = Path(__file__).resolve().parents[1]

    sources, _ = altsynth(1_500, 11)
    for name, df in sources.items():
        write_delta(spark.createDataFrame(df.astype(object).where(df.notna(), None)), str(tmp_path / "sources" / name))
    raw = yaml.safe_load((repo / "conf" / "altsynth.yaml").read_text().replace("out/altsynth", str(tmp_path)))
    raw["linkage"]["u_max_pairs"] = 100_000
    raw.pop("truth_path", None)
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(config)
    assert cfg.maps_households

    linker = TreLink(spark, cfg)
    linker.standardise()
    linker.train()
    linked = linker.link()
    first = commit_metadata(spark, cfg.output.household_index_table)
    assert first["link_run"] == linked.run

    registry = next(s for s in cfg.sources if s.name == "registry")
    DeltaTable.forPath(spark, registry.path).delete(
        f"pmod(xxhash64(cast({registry.columns.record_id} as string)), 20) = 0")
    linker.refresh()

    links, households = (commit_metadata(spark, t) for t in (cfg.output.links_table, cfg.output.household_index_table))
    assert households["link_run"] == links["link_run"] != linked.run
    persons = {r.person_id for r in spark.read.format("delta").load(cfg.output.person_index_table)
               .select("person_id").distinct().collect()}
    held = {r.person_id for r in spark.read.format("delta").load(cfg.output.household_index_table)
            .select("person_id").collect()}
    assert held and held <= persons
