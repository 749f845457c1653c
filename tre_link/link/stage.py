"""The link stages: train a model on the standardised records, and link them with a model into
`links`, `person_index` and `person_events` in the linkage zone.

Person IDs are carried forward from the person index of the last finished link
(`person_ids.assign_person_ids`). One link commits, in this order: person_index (a Delta MERGE, and
only when a row changed), person_events (this generation's events replacing any it had, by Delta's
replaceWhere, and only when there are any), scored_pairs, household_index (where a source maps a
UPRN or an address with a postcode), then links, whose commit names the person_index and
person_events versions it finished with. So links marks a finished link: a link killed before it
is rerun against the same base index and generation, and ends as one clean link would
(`link_base`)."""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from functools import reduce
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from tre_link.ingest.stage import read_standardised, standardised_versions
from tre_link.link.engine import link_records, prepare_records, train_model
from tre_link.link.households import household_index
from tre_link.link.person_ids import EVENTS, PERSON_INDEX_COLUMNS, assign_person_ids, person_events
from tre_link.link.probabilistic import match_weight_histogram
from tre_link.link.records import unique_id, with_unique_id
from tre_link.platform import delta_io
from tre_link.platform.config import JobConfig
from tre_link.platform.delta_io import VersionedTable, commit_metadata, read_delta, version_or_none, write_table
from tre_link.platform.errors import InputDataError
from tre_link.platform.disclosure import release_count, release_counts
from tre_link.platform.secrets import load_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    model_json: str  # the trained model, Splink JSON in the linkage zone
    untrained_levels: tuple[str, ...] = ()  # comparison levels training never saw (labels only)
    floored_levels: tuple[str, ...] = ()  # levels whose weight was raised to linkage.weight_floor


@dataclass(frozen=True)
class LinkReport:
    """Raw counts of one linkage, for the linkage zone; `released()` is what may leave it."""

    estimated_comparisons: int
    scored_pairs: int
    links_deterministic: int
    links_probabilistic: int
    nhs_dob_conflicts: int
    oversized_blocks_dropped: int
    records_in_dropped_blocks: int
    records_indexed: int
    persons: int
    match_weight_histogram: tuple[tuple[float, int], ...]  # (bin start, scored pairs) per match-weight bin
    # person_events rows of this link, by event (`person_ids.EVENTS`)
    events_new: int = 0
    events_joined: int = 0
    events_merged: int = 0
    events_split: int = 0
    events_retired: int = 0
    events_record_removed: int = 0

    def counts(self) -> dict[str, int]:
        return {name: value for name, value in vars(self).items() if name != "match_weight_histogram"}

    def released(self) -> dict[str, int | None]:
        return release_counts(self.counts())

    def released_histogram(self) -> list[tuple[float, int | None]]:
        return [(start, release_count(count)) for start, count in self.match_weight_histogram]


@dataclass(frozen=True)
class LinkResult:
    run: str  # recorded with both tables' commits: publish checks they agree
    links: VersionedTable
    person_index: VersionedTable
    model_json: str  # the model the records were linked with
    report: LinkReport
    scored_pairs: VersionedTable | None = None  # every scored pair: what clerical review samples
    person_events: VersionedTable | None = None  # None until a link has had an event
    generation: int = 1  # of the person index: the number of finished links in this linkage zone
    household_index: VersionedTable | None = None  # each person's household, where a source maps a UPRN or address
    threshold: float = 0.95  # the match probability links were made at (chosen when the config says auto)
    expected_curve: tuple[dict, ...] = ()  # expected precision/recall/F1 per threshold (model-based)


@dataclass(frozen=True)
class LinkBase:
    """What a link carries person IDs forward from: the last finished link's person index."""

    person_index: VersionedTable | None  # None for the first link in a zone
    generation: int  # the last finished link's (0 before any)
    model_sha256: str | None = None  # of the model the last finished link used, where recorded
    run: str | None = None  # the last finished link's run
    # Per source, the source version and standardised-table version the last finished link read
    # (`ingest.stage.standardised_versions`); None where not recorded (a link before refresh).
    sources: dict[str, dict] | None = None


def train(spark: SparkSession, cfg: JobConfig) -> TrainResult:
    # Training reads no deterministic key: only the records with their unique_id.
    records = with_unique_id(read_standardised(spark, cfg))
    model_json, rails = train_model(records, cfg.linkage, cfg.seed, cfg.output.model_json)
    return TrainResult(model_json=model_json, untrained_levels=tuple(rails.untrained_levels),
                       floored_levels=tuple(rails.floored_levels))


def link(spark: SparkSession, cfg: JobConfig, model_json: str | None = None, *, run: str | None = None) -> LinkResult:
    """Link the standardised records with `model_json` (the trained model in the linkage zone by
    default), carrying person IDs forward from the last finished link. `run` (a new id by default)
    is recorded with every commit and in person_events."""
    model_json = model_json or cfg.output.model_json
    run = run or uuid.uuid4().hex
    base = link_base(spark, cfg)
    generation = base.generation + 1
    prepared = prepare_records(read_standardised(spark, cfg))
    metadata = {"link_run": run, "generation": generation, "model_sha256": model_sha256(model_json),
                "sources": standardised_versions(spark, cfg)}
    with link_records(prepared, cfg.linkage, model_json) as outputs:
        previous = base.person_index.df if base.person_index else None
        # Materialised once: the diff, the MERGE and the events all read it, and none may cluster again.
        assigned = assign_person_ids(outputs.clusters, previous, generation=generation,
                                     key=person_id_key(cfg)).localCheckpoint(eager=True)
        index = assigned.select(*PERSON_INDEX_COLUMNS)
        events = person_events(assigned, previous, generation).localCheckpoint(eager=True)
        person_index = _write_person_index(spark, cfg, index, metadata)
        events_table = _write_person_events(spark, cfg, events, run, generation, metadata)
        scored = write_table(outputs.scored_pairs, cfg.output.scored_pairs_table, metadata=metadata, merged=True)
        households = (write_table(household_index(index, read_standardised(spark, cfg)),
                                  cfg.output.household_index_table, metadata=metadata)
                      if cfg.maps_households else None)
        # Last: its commit marks the link finished, naming the index and events it finished with.
        links = write_table(outputs.links, cfg.output.links_table, merged=True, metadata={
            **metadata, "threshold": outputs.threshold, "person_index_version": person_index.version,
            "person_events_version": events_table.version if events_table else None})
        # The scored pairs are materialised, so this aggregate does not score them again.
        histogram = tuple(
            (float(r["bin_start"]), int(r["count"])) for r in match_weight_histogram(outputs.scored_pairs).collect()
        )
        scored_pairs = outputs.scored_pairs.count()
        by_event = {row["event"]: row["count"] for row in events.groupBy("event").count().collect()}
    by_method = {row["link_method"]: row["count"] for row in links.df.groupBy("link_method").count().collect()}
    report = LinkReport(
        estimated_comparisons=outputs.estimated_comparisons,
        scored_pairs=scored_pairs,
        links_deterministic=by_method.get("deterministic", 0),
        links_probabilistic=by_method.get("probabilistic", 0),
        nhs_dob_conflicts=outputs.nhs_dob_conflicts,
        oversized_blocks_dropped=sum(d.blocks for d in outputs.dropped_blocks),
        records_in_dropped_blocks=sum(d.records for d in outputs.dropped_blocks),
        records_indexed=person_index.df.count(),
        persons=person_index.df.select("person_id").distinct().count(),
        match_weight_histogram=histogram,
        **{f"events_{event}": by_event.get(event, 0) for event in EVENTS},
    )
    return LinkResult(run=run, links=links, person_index=person_index, model_json=model_json, report=report,
                      scored_pairs=scored, person_events=events_table, generation=generation,
                      household_index=households,
                      threshold=outputs.threshold, expected_curve=tuple(outputs.expected_curve))


def refresh_link(spark: SparkSession, cfg: JobConfig, model_json: str, *, changed: DataFrame, removed: DataFrame,
                 sources: dict[str, dict], run: str | None = None) -> LinkResult:
    """Link what changed into the last finished link (`link/refresh.py` says what is scored again,
    kept and clustered again), with `model_json` and the threshold that link made its links at.
    `changed` and `removed` are unique_ids: the records inserted or updated, and those deleted or
    updated (their old side). `sources` (per source: version and standardised_version) is recorded
    with the links commit, as the versions the new index was built from.

    Commits as `link` does, each table by one MERGE of its changes only (person_index only when a
    row changed): person_index, person_events, scored_pairs, then links, whose commit marks the
    refresh finished. Killed before that, a rerun starts from the same base and ends the same."""
    from tre_link.link import refresh as changes
    from tre_link.link.cluster import cluster_records
    from tre_link.link.deterministic import deterministic_edges, deterministic_groups_of
    from tre_link.link.engine import score_changed_records, with_record_keys
    from tre_link.link.records import UNIQUE_ID

    run = run or uuid.uuid4().hex
    base = link_base(spark, cfg)
    if base.person_index is None or not base.sources:
        raise InputDataError("refresh: the last finished link recorded no source versions; run link first")
    generation = base.generation + 1
    threshold = link_threshold(spark, cfg)
    metadata = {"link_run": run, "generation": generation, "model_sha256": model_sha256(model_json),
                "sources": sources}
    keys = ["source", "record_id"]
    old_records = [read_delta(spark, cfg.output.standardised_table(name), held["standardised_version"],
                              table=f"standardised/{name}").df.select("source", "record_id", "nhs_number",
                                                                      "nhs_number_status")
                   for name, held in base.sources.items() if held.get("standardised_version") is not None]
    removed_numbers = changes.linkable_numbers(
        reduce(DataFrame.unionByName, old_records).withColumn(UNIQUE_ID, unique_id(F.col("source"), F.col("record_id")))
        .join(removed, UNIQUE_ID, "left_semi")) if old_records else spark.createDataFrame([], "nhs_number string")
    prepared = changes.flag_changed(prepare_records(read_standardised(spark, cfg)), changed, removed_numbers)
    with score_changed_records(prepared, cfg.linkage, model_json) as scoring:
        flagged = scoring.changed
        touched = flagged.unionByName(removed.select(UNIQUE_ID)).distinct().localCheckpoint(eager=True)
        # Groups holding a changed record are changed whole: their star edges are made again.
        new_links = deterministic_edges(deterministic_groups_of(scoring.records, flagged)
                                        .join(flagged, UNIQUE_ID, "left_semi")).unionByName(
            scoring.scored_pairs.where(F.col("match_probability") >= threshold)
            .withColumn("link_method", F.lit("probabilistic"))).localCheckpoint(eager=True)
        old_links = changes.with_end_ids(read_delta(spark, cfg.output.links_table, table="links").df)
        previous = base.person_index.df.select(*PERSON_INDEX_COLUMNS)
        again = changes.touched_persons(previous, touched, new_links)
        if not cfg.linkage.bridge_nhs_numbers:
            again = changes.with_linked_persons(previous, again, old_links)
        again = again.localCheckpoint(eager=True)
        # The records clustered again: those of the persons clustered again (the removed ones drop
        # out here, having no group now), and the changed ones.
        members = (again.select(unique_id(F.col("source"), F.col("record_id")).alias(UNIQUE_ID))
                   .unionByName(flagged).distinct()).localCheckpoint(eager=True)
        # Materialised: clustering and the person IDs read the groups several times, and each
        # reading would group every record again.
        groups = deterministic_groups_of(scoring.records, members).join(members, UNIQUE_ID, "left_semi") \
            .localCheckpoint(eager=True)
        kept = (changes.without_an_end_in(old_links, touched)
                .join(F.broadcast(members.withColumnRenamed(UNIQUE_ID, "unique_id_l")), "unique_id_l", "left_semi")
                .join(F.broadcast(members.withColumnRenamed(UNIQUE_ID, "unique_id_r")), "unique_id_r", "left_semi"))
        links_again = kept.select(*new_links.columns).unionByName(new_links)
        clusters = cluster_records(groups, links_again, bridge_nhs_numbers=cfg.linkage.bridge_nhs_numbers)
        assigned = assign_person_ids(clusters, again, generation=generation,
                                     key=person_id_key(cfg)).localCheckpoint(eager=True)
        index = assigned.select(*PERSON_INDEX_COLUMNS)
        events = person_events(assigned, again, generation).localCheckpoint(eager=True)
        delta_io.merge_changes(index, again.select(*keys).join(index, keys, "left_anti"),
                               cfg.output.person_index_table, on=keys, metadata=metadata)
        person_index = read_delta(spark, cfg.output.person_index_table, table="person_index")
        events_table = _write_person_events(spark, cfg, events, run, generation, metadata)
        scored_path = cfg.output.scored_pairs_table
        delta_io.merge_changes(
            scoring.scored_pairs,
            changes.with_an_end_in(read_delta(spark, scored_path, table="scored_pairs").df, touched)
            .select("unique_id_l", "unique_id_r"),
            scored_path, on=["unique_id_l", "unique_id_r"], metadata=metadata)
        scored = read_delta(spark, scored_path, table="scored_pairs")
        # Rewritten whole (one commit): a changed record can move any person of its household.
        households = (write_table(household_index(person_index.df.select(*PERSON_INDEX_COLUMNS),
                                                  read_standardised(spark, cfg)),
                                  cfg.output.household_index_table, metadata=metadata)
                      if cfg.maps_households else None)
        link_keys = ["source_l", "record_id_l", "source_r", "record_id_r"]
        # Last, and always: its commit marks the refresh finished, naming the index and events it finished with.
        delta_io.merge_changes(
            with_record_keys(new_links), changes.with_an_end_in(old_links, touched).select(*link_keys),
            cfg.output.links_table, on=link_keys, force=True, metadata={
                **metadata, "threshold": threshold, "person_index_version": person_index.version,
                "person_events_version": events_table.version if events_table else None})
        links = read_delta(spark, cfg.output.links_table, table="links")
        histogram = tuple(
            (float(r["bin_start"]), int(r["count"])) for r in match_weight_histogram(scoring.scored_pairs).collect())
        scored_now = scoring.scored_pairs.count()
        by_event = {row["event"]: row["count"] for row in events.groupBy("event").count().collect()}
        conflicts, dropped = scoring.nhs_dob_conflicts, scoring.dropped_blocks
    by_method = {row["link_method"]: row["count"] for row in links.df.groupBy("link_method").count().collect()}
    report = LinkReport(
        estimated_comparisons=scored_now,
        scored_pairs=scored_now,
        links_deterministic=by_method.get("deterministic", 0),
        links_probabilistic=by_method.get("probabilistic", 0),
        nhs_dob_conflicts=conflicts,
        oversized_blocks_dropped=sum(d.blocks for d in dropped),
        records_in_dropped_blocks=sum(d.records for d in dropped),
        records_indexed=person_index.df.count(),
        persons=person_index.df.select("person_id").distinct().count(),
        match_weight_histogram=histogram,
        **{f"events_{event}": by_event.get(event, 0) for event in EVENTS},
    )
    return LinkResult(run=run, links=links, person_index=person_index, model_json=model_json, report=report,
                      scored_pairs=scored, person_events=events_table, generation=generation,
                      household_index=households, threshold=threshold)


def model_sha256(model_json: str) -> str | None:
    """The SHA-256 of a model's Splink JSON (recorded with a link's commits; None where unreadable)."""
    try:
        return hashlib.sha256(Path(model_json).read_bytes()).hexdigest()
    except OSError:
        return None


def person_id_key(cfg: JobConfig) -> bytes:
    """The key new person IDs are made under: `person_id_key`, else a random one for this link
    only (its new IDs are then random, and `reproduce` cannot issue them again)."""
    if cfg.person_id_key is not None:
        return load_key(cfg.person_id_key, purpose="person IDs")
    log.info("no person_id_key configured: this link's new person IDs are random")
    return os.urandom(32)


def link_base(spark: SparkSession, cfg: JobConfig) -> LinkBase:
    """The person index of the last finished link and its generation. A link's last commit is to
    links, naming the person_index version it finished with; a link killed before that commit is
    not finished, so its rerun starts from the same base. (A zone linked before stable IDs: its
    person_index if links and person_index came from one run, as generation 0.)"""
    links, index = cfg.output.links_table, cfg.output.person_index_table
    if version_or_none(spark, links) is None:
        return LinkBase(person_index=None, generation=0)
    finished = commit_metadata(spark, links)
    if "person_index_version" in finished:
        return LinkBase(person_index=read_delta(spark, index, finished["person_index_version"], table="person_index"),
                        generation=int(finished.get("generation") or 0), model_sha256=finished.get("model_sha256"),
                        run=finished.get("link_run"), sources=finished.get("sources"))
    if version_or_none(spark, index) is not None and \
            commit_metadata(spark, index).get("link_run") == finished.get("link_run"):
        return LinkBase(person_index=read_delta(spark, index, table="person_index"), generation=0,
                        run=finished.get("link_run"))
    return LinkBase(person_index=None, generation=0)


def _write_person_index(spark: SparkSession, cfg: JobConfig, index, metadata: dict) -> VersionedTable:
    """The index as the table holds it now (which a killed link may have written already), else
    brought to it by one MERGE; no commit at all when no row changed."""
    path = cfg.output.person_index_table
    if version_or_none(spark, path) is None:
        return write_table(index, path, metadata=metadata, merged=True)
    held = read_delta(spark, path, table="person_index")
    if sorted(held.df.columns) != sorted(PERSON_INDEX_COLUMNS):  # from before stable IDs
        return write_table(index, path, metadata=metadata, merged=True)
    keys = ["source", "record_id"]
    compare = [c for c in PERSON_INDEX_COLUMNS if c not in keys]
    differ = " or ".join(f"not (n.`{c}` <=> h.`{c}`)" for c in compare) + " or n.source is null or h.source is null"
    changed = index.alias("n").join(held.df.alias("h"), [index[k] == held.df[k] for k in keys], "full_outer") \
        .where(differ)
    if changed.isEmpty():
        return held
    version = delta_io.merge_delta(index, path, on=keys, compare=compare, metadata=metadata, delete_unmatched="true")
    return VersionedTable(df=spark.read.format("delta").option("versionAsOf", version).load(path), path=path,
                          version=version)


def _write_person_events(spark: SparkSession, cfg: JobConfig, events, run: str, generation: int,
                         metadata: dict) -> VersionedTable | None:
    """This generation's events, replacing any a killed link of the same generation wrote, in one
    commit; no commit when there are none to add or take away. None while the table does not exist."""
    path = cfg.output.person_events_table
    rows = events.select("generation", F.lit(run).alias("run"), "event", "person_before", "person_after",
                         "record_count")
    exists = version_or_none(spark, path) is not None
    stale = exists and not read_delta(spark, path, table="person_events").df.where(
        F.col("generation") == generation).isEmpty()
    if events.isEmpty() and not stale:
        return read_delta(spark, path, table="person_events") if exists else None
    if not exists:
        version = delta_io.write_delta(rows, path, metadata=metadata, merged=True)
    else:
        version = delta_io.replace_rows(rows, path, where=f"generation = {int(generation)}", metadata=metadata)
    return VersionedTable(df=spark.read.format("delta").option("versionAsOf", version).load(path), path=path,
                          version=version)


def link_threshold(spark: SparkSession, cfg: JobConfig) -> float:
    """The match probability the last finished link made its links at (the configured one, or the
    one `auto` chose, recorded with the links commit)."""
    configured = cfg.linkage.threshold_match_probability
    if configured != "auto":
        return configured
    recorded = commit_metadata(spark, cfg.output.links_table).get("threshold")
    if recorded is None:
        raise InputDataError("table links: no threshold recorded with its last commit; run link again")
    return float(recorded)


def linked_tables(spark: SparkSession, cfg: JobConfig) -> tuple[VersionedTable, VersionedTable]:
    """links and person_index as the last link wrote them, refused when they come from two
    different runs (one stopped between its two commits): publishing would mix them."""
    links = read_delta(spark, cfg.output.links_table, table="links")
    person_index = read_delta(spark, cfg.output.person_index_table, table="person_index")
    finished = commit_metadata(spark, links.path, links.version)
    if "person_index_version" in finished:
        apart = finished["person_index_version"] != person_index.version
    else:  # written before stable IDs
        apart = finished.get("link_run") != commit_metadata(spark, person_index.path, person_index.version).get("link_run")
    if apart:
        raise InputDataError(
            "links and person_index were written by different link runs (one stopped between its commits): "
            "run link again before publishing"
        )
    return links, person_index
