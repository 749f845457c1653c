"""An incremental refresh ends where a full link would: a base population linked, then records
added (held back from the base: new records of existing people, in sources those people may have
had no record in yet, and new people), updated and deleted, one source with Delta's change data
feed and the others diffed; the refreshed person index partitions the records into persons exactly
as a full link of the final data with the same model and threshold does, and no person that no
changed record touched changes its ID."""

from __future__ import annotations

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from tre_link import TreLink
from tre_link.demo import ensure_demo_keys
from tre_link.link.refresh import partition_differences
from tre_link.platform.config import load_config
from tre_link.synth import generate

from conftest import small_demo_config

pytestmark = pytest.mark.slow  # every test reads a refresh of a population of its own

SEED = 7919
PEOPLE = 300


def _bucket(column: str, seed: int):
    """A stable 0-999 bucket per record id, so the test picks the same records every run."""
    return F.pmod(F.xxhash64(F.col(column).cast("string"), F.lit(seed)), F.lit(1000))


@pytest.fixture(scope="module")
def zones(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("equivalence")
    path = small_demo_config(root, people=PEOPLE, seed=SEED)
    cfg = load_config(path)
    generate(spark, cfg.synth)
    ensure_demo_keys(cfg)
    gp = next(s for s in cfg.sources if s.name == "gp")
    spark.sql(f"ALTER TABLE delta.`{gp.path}` SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")
    # The base: every source without 5% of its records, which arrive later.
    for source in cfg.sources:
        DeltaTable.forPath(spark, source.path).delete(_bucket(source.columns.record_id, 1) < 50)
    tl = TreLink(spark, cfg)
    tl.standardise()
    tl.train()
    base = tl.link()

    counts = {}
    for source in cfg.sources:
        rid = source.columns.record_id
        held_back = spark.read.format("delta").option("versionAsOf", 0).load(source.path).where(
            _bucket(rid, 1) < 50)
        counts[source.name] = {"added": held_back.count()}
        table = DeltaTable.forPath(spark, source.path)
        # 2% updated: the postcode gone (a compared field, so links may change), 1% deleted.
        updated = F.expr(f"pmod(xxhash64(cast({rid} as string), 2), 1000) < 20")
        table.update(updated, {source.columns.postcode: F.lit(None).cast("string")})
        table.delete(_bucket(rid, 3) < 10)
        held_back.write.format("delta").mode("append").save(source.path)

    refreshed = tl.refresh(model=cfg.output.model_json)

    # A full link of the final data, with the same model and threshold, in a zone of its own.
    full_root = tmp_path_factory.mktemp("full")
    full_cfg = cfg.model_copy(update={
        "output": cfg.output.model_copy(update={"root": str(full_root), "linkage_zone": str(full_root / "linkage"),
                                                "research_zone": str(full_root / "research")}),
        "linkage": cfg.linkage.model_copy(update={"threshold_match_probability": refreshed.link.threshold}),
    })
    full = TreLink(spark, full_cfg)
    full.standardise()
    full_linked = full.link(model=cfg.output.model_json)
    return {"cfg": cfg, "base": base, "refreshed": refreshed, "full": full_linked}


def test_refresh_is_incremental_and_counts_its_changes(zones):
    refreshed = zones["refreshed"]
    assert refreshed.incremental
    assert refreshed.changes["gp"].method == "change_feed"
    assert {refreshed.changes[s].method for s in ("hospital", "council")} == {"diff"}
    totals = {k: sum(c.counts()[k] for c in refreshed.changes.values()) for k in ("added", "updated", "deleted")}
    assert all(totals.values()), totals
    released = refreshed.released()["changes"]
    assert set(released) == {"gp", "hospital", "council"} and set(released["gp"]) >= {"added", "updated", "deleted"}
    # Scored only pairs holding a changed record: far fewer than the full link.
    assert refreshed.link.report.scored_pairs < zones["full"].report.scored_pairs / 2


def test_refreshed_partition_equals_a_full_link_of_the_final_data(spark, zones):
    refreshed, full = zones["refreshed"], zones["full"]
    assert refreshed.link.person_index.df.count() == full.person_index.df.count()
    assert partition_differences(refreshed.link.person_index.df, full.person_index.df) == 0
    # The links agree too (deterministic stars and probabilistic links above the threshold).
    keys = ["source_l", "record_id_l", "source_r", "record_id_r", "link_method"]
    ours, theirs = refreshed.link.links.df.select(*keys), full.links.df.select(*keys)
    assert ours.exceptAll(theirs).count() == 0 and theirs.exceptAll(ours).count() == 0


def test_no_person_untouched_by_a_change_changes_id(spark, zones):
    cfg, base, refreshed = zones["cfg"], zones["base"], zones["refreshed"]
    before = base.person_index.df.select("source", "record_id", F.col("person_id").alias("before"))
    after = refreshed.link.person_index.df
    moved = before.join(after, ["source", "record_id"]).where("before != person_id") \
        .select("before").distinct().count()
    events = spark.read.format("delta").load(cfg.output.person_events_table).where(
        F.col("generation") == refreshed.link.generation)
    # Every ID change is explained by an event of this refresh (merged or split), none silent.
    explained = events.where("event in ('merged', 'split')").select(F.col("person_before").alias("before")).distinct()
    assert moved <= explained.count()
    assert before.join(after, ["source", "record_id"]).where("before != person_id").select("before").distinct() \
        .join(explained, "before", "left_anti").count() == 0
