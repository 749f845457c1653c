"""Stable person IDs across links of one linkage zone, on a small population of its own: copies of
existing records under ids that sort first (the issue's measurement) join their persons without
changing any existing ID, a link killed between its commits and run again ends as a clean one
would, and an unchanged relink has no events and commits nothing to person_index."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pyspark.sql import functions as F

from tre_link import TreLink
from tre_link.demo import ensure_demo_keys
from tre_link.platform import delta_io
from tre_link.platform.config import JobConfig, load_config
from tre_link.synth import generate

from conftest import SimulatedCrash, _crash_after_commit, small_demo_config

pytestmark = pytest.mark.slow  # every test reads a refresh of a population of its own

SEED = 6151  # this population's own
PEOPLE = 150
COPIES = 20


@dataclass(frozen=True)
class Refreshed:
    cfg: JobConfig
    first_index_version: int  # person_index after the first link
    first_run: str
    first_research_versions: dict[str, int]
    refresh_run: str  # the refresh that finished (its MLflow run and link run)


def _council(cfg: JobConfig):
    return next(s for s in cfg.sources if s.name == "council")


@pytest.fixture(scope="module")
def refreshed(spark, tmp_path_factory) -> Refreshed:
    """Link and publish; append COPIES council records under ids that sort first; refresh (with the
    model train saved), killed after its person_events commit, and once more."""
    path = small_demo_config(tmp_path_factory.mktemp("refresh"), people=PEOPLE, seed=SEED)
    cfg = load_config(path)
    generate(spark, cfg.synth)
    ensure_demo_keys(cfg)
    tl = TreLink(spark, cfg)
    tl.standardise()
    tl.train()
    first = tl.link()
    research = {p.name: tl.publish(p.name).research.version for p in cfg.projects}

    council = _council(cfg)
    id_column = council.columns.record_id
    source = spark.read.format("delta").load(council.path)
    # Copies of records with every compared field present, so linkage surely puts each with its
    # original (a copy of a record no blocking rule reaches would be a new person: linkage, not IDs).
    valid = spark.read.format("delta").load(cfg.output.standardised_table("council")) \
        .where("given_name is not null and family_name is not null and dob is not null and postcode is not null") \
        .select(F.col("record_id").alias(id_column))
    copies = (source.join(valid, id_column, "left_semi").orderBy(id_column).limit(COPIES)
              .withColumn(id_column, F.concat(F.lit("0-"), F.col(id_column))))
    copies.write.format("delta").mode("append").save(council.path)

    with pytest.MonkeyPatch.context() as patched:
        # Killed after its person_events commit: council (the one source that changed), quality_profile,
        # person_index, person_events.
        _crash_after_commit(patched, 4)
        with pytest.raises(SimulatedCrash):
            tl.refresh()
    refreshed = tl.refresh()
    return Refreshed(cfg=cfg, first_index_version=first.person_index.version, first_run=first.run,
                     first_research_versions=research, refresh_run=refreshed.run_id)


def _index(spark, cfg: JobConfig, version: int | None = None):
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(cfg.output.person_index_table)


def test_copies_sorting_first_join_their_persons_and_no_existing_person_id_changes(spark, refreshed):
    cfg = refreshed.cfg
    before = _index(spark, cfg, refreshed.first_index_version).select("source", "record_id",
                                                                       F.col("person_id").alias("before"))
    after = _index(spark, cfg)
    assert after.count() == before.count() + COPIES
    changed = before.join(after, ["source", "record_id"]).where("before != person_id")
    assert changed.count() == 0, "an existing record's person_id changed"
    # Each copy is in its original's person.
    copies = after.where("record_id like '0-%'").select(F.expr("substring(record_id, 3)").alias("record_id"),
                                                        F.col("person_id").alias("copy_person"))
    originals = copies.join(after.where("source = 'council'"), "record_id")
    assert originals.count() == COPIES
    assert originals.where("copy_person != person_id").count() == 0


def test_killed_link_rerun_records_each_join_once_under_the_run_that_finished(spark, refreshed):
    events = spark.read.format("delta").load(refreshed.cfg.output.person_events_table)
    first = events.where("generation = 1")
    assert {r.event for r in first.select("event").distinct().collect()} == {"new"}
    second = events.where("generation = 2").collect()
    assert {r.event for r in second} == {"joined"}, "copies only join persons: no merge, split or new"
    assert sum(r.record_count for r in second) == COPIES
    assert all(r.person_before is None and r.person_after is not None for r in second), "a join names its person"
    assert {r.run for r in second} == {refreshed.refresh_run}, "the killed link's events were replaced"
    assert events.where("generation > 2").count() == 0


def test_unchanged_relink_has_no_events_and_commits_nothing_to_person_index(spark, refreshed):
    cfg = refreshed.cfg
    tl = TreLink(spark, cfg)
    index_version = delta_io.latest_version(spark, cfg.output.person_index_table)
    events_version = delta_io.latest_version(spark, cfg.output.person_events_table)
    relinked = tl.link()
    assert delta_io.latest_version(spark, cfg.output.person_index_table) == index_version
    assert delta_io.latest_version(spark, cfg.output.person_events_table) == events_version
    assert {k: v for k, v in relinked.report.counts().items() if k.startswith("events_")} == {
        f"events_{e}": 0 for e in ("new", "joined", "merged", "split", "retired", "record_removed")}
    tl.publish(cfg.projects[0].name)  # links and person_index still agree


def test_republish_after_refresh_keeps_every_person_key(spark, refreshed):
    cfg = refreshed.cfg
    for project in cfg.projects:
        path = cfg.output.research_table(project.name)
        before = spark.read.format("delta").option(
            "versionAsOf", refreshed.first_research_versions[project.name]).load(path).select("person_key").distinct()
        after = spark.read.format("delta").load(path).select("person_key").distinct()
        assert before.count() > 0
        assert before.exceptAll(after).count() == 0 and after.exceptAll(before).count() == 0


def test_refresh_is_one_mlflow_run_with_its_parent_and_released_event_counts(refreshed):
    from mlflow.tracking import MlflowClient

    cfg = refreshed.cfg
    run = MlflowClient(tracking_uri=cfg.tracking_uri).get_run(refreshed.refresh_run)
    assert run.info.status == "FINISHED" and run.info.run_name == "refresh"
    assert run.data.params["parent_run"] == refreshed.first_run
    assert run.data.metrics["events_joined"] == COPIES  # released: 20 is kept, rounded to 5
    assert run.data.tags["suppressed.events_merged"] == "under 10"
    assert f"source.{_council(cfg).name}.version" in run.data.params


def test_refresh_refuses_a_model_other_than_the_index_was_built_with_unless_named(spark, refreshed, tmp_path):
    import json

    from tre_link.platform.errors import ConfigError

    cfg = refreshed.cfg
    model = json.loads(open(cfg.output.model_json).read())
    model["probability_two_random_records_match"] /= 2
    other = tmp_path / "other_model.json"
    other.write_text(json.dumps(model))
    versions = {t: delta_io.latest_version(spark, t) for t in (cfg.output.person_index_table, cfg.output.links_table)}
    configured = cfg.model_copy(update={"linkage": cfg.linkage.model_copy(update={"model": str(other)})})
    with pytest.raises(ConfigError, match="built with another model"):
        TreLink(spark, configured).refresh()
    assert {t: delta_io.latest_version(spark, t) for t in versions} == versions, "nothing was written"


def test_reproduce_of_a_refresh_run_compares_its_partition_with_a_full_link(spark, refreshed):
    result = TreLink(spark, refreshed.cfg).reproduce(refreshed.refresh_run)
    assert result["refresh"] is True
    assert set(result["tables"]) == {"person_index_partition"}
    assert result["tables"]["person_index_partition"]["records_in_different_company"] is None  # 0: suppressed
    assert result["identical"], result["tables"]


def test_refresh_refuses_an_older_source_version_and_a_changed_schema_writing_nothing(spark, refreshed):
    """Last in this module: it changes the council source's schema (and puts it back)."""
    from delta.tables import DeltaTable
    from mlflow.tracking import MlflowClient

    from tre_link.platform.errors import SourceSchemaChanged, SourceVersionOlder

    cfg = refreshed.cfg
    council = _council(cfg)
    tables = [cfg.output.person_index_table, cfg.output.links_table, cfg.output.person_events_table,
              cfg.output.quality_profile_table, *[cfg.output.standardised_table(s.name) for s in cfg.sources]]
    versions = {t: delta_io.latest_version(spark, t) for t in tables}
    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    runs = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))

    older = cfg.model_copy(update={"sources": [s.model_copy(update={"version": 0}) if s.name == "council" else s
                                               for s in cfg.sources]})
    with pytest.raises(SourceVersionOlder, match="source council: version 0 is older than version 1"):
        TreLink(spark, older).refresh(model=cfg.output.model_json)

    before = delta_io.latest_version(spark, council.path)
    source = spark.read.format("delta").load(council.path)
    source.limit(1).withColumn("extra", F.lit("x")).write.format("delta").mode("append") \
        .option("mergeSchema", "true").save(council.path)
    try:
        with pytest.raises(SourceSchemaChanged, match=r"source council: its schema changed .*\['extra'\]"):
            TreLink(spark, cfg).refresh(model=cfg.output.model_json)
    finally:
        DeltaTable.forPath(spark, council.path).restoreToVersion(before)
    assert {t: delta_io.latest_version(spark, t) for t in tables} == versions, "nothing was written"
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == runs, \
        "no MLflow run was started"


def test_projects_published_from_the_same_tables_find_opted_out_persons_once_and_again_after_the_list_changes(
        spark, refreshed, monkeypatch):
    from delta.tables import DeltaTable

    from tre_link.publish import stage

    cfg = refreshed.cfg
    assert cfg.opt_outs and len(cfg.projects) == 2
    found = []
    real = stage.opted_out_persons
    monkeypatch.setattr(stage, "opted_out_persons", lambda *args, **kwargs: found.append(1) or real(*args, **kwargs))
    tl = TreLink(spark, cfg)
    first, second = (tl.publish(p.name) for p in cfg.projects)
    assert len(found) == 1 and first.report == second.report

    gp = next(s for s in cfg.sources if s.name == "gp")
    listed = delta_io.latest_version(spark, cfg.opt_outs)
    opt_outs = spark.read.format("delta").load(cfg.opt_outs)
    numbers = (spark.read.format("delta").load(gp.path).select(F.col(gp.columns.nhs_number).cast("string").alias("nhs_number"))
               .where("nhs_number is not null").join(opt_outs, "nhs_number", "left_anti").distinct().limit(5))
    numbers.select(*opt_outs.columns).write.format("delta").mode("append").save(cfg.opt_outs)
    try:
        again = tl.publish(cfg.projects[0].name)
        assert len(found) == 2
        assert again.report.persons_opted_out > first.report.persons_opted_out
    finally:
        # The list as it was; no test after this one reads the research datasets.
        DeltaTable.forPath(spark, cfg.opt_outs).restoreToVersion(listed)


def test_refresh_without_a_source_removes_its_records_as_events_and_matches_a_full_link(spark, refreshed):
    """Last in this module: it refreshes with the council source taken out of the config."""
    cfg = refreshed.cfg
    council = _index(spark, cfg).where("source = 'council'").count()
    assert council > 0
    # Its projects publish council columns too: this refresh publishes nothing.
    without = cfg.model_copy(update={"sources": [s for s in cfg.sources if s.name != "council"], "projects": []})
    result = TreLink(spark, without).refresh(model=cfg.output.model_json)

    assert _index(spark, cfg).where("source = 'council'").isEmpty()
    assert _index(spark, cfg).count() > 0
    events = spark.read.format("delta").load(cfg.output.person_events_table) \
        .where(F.col("generation") == result.link.generation)
    removed = events.where("event = 'record_removed'").agg(F.sum("record_count")).first()[0]
    assert removed == council
    reproduced = TreLink(spark, without).reproduce(result.run_id)
    assert reproduced["identical"], reproduced["tables"]
