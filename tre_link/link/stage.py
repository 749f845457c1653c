"""The link stages: train a model on the standardised records, and link them with a model into
`links` and `person_index` in the linkage zone."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pyspark.sql import SparkSession

from tre_link.ingest.stage import read_standardised
from tre_link.link.engine import link_records, prepare_records, train_model
from tre_link.link.probabilistic import match_weight_histogram
from tre_link.link.records import with_unique_id
from tre_link.platform.config import JobConfig
from tre_link.platform.delta_io import VersionedTable, commit_metadata, read_delta, write_table
from tre_link.platform.errors import InputDataError
from tre_link.platform.disclosure import release_count, release_counts


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
    threshold: float = 0.95  # the match probability links were made at (chosen when the config says auto)
    expected_curve: tuple[dict, ...] = ()  # expected precision/recall/F1 per threshold (model-based)


def train(spark: SparkSession, cfg: JobConfig) -> TrainResult:
    # Training reads no deterministic key: only the records with their unique_id.
    records = with_unique_id(read_standardised(spark, cfg))
    model_json, rails = train_model(records, cfg.linkage, cfg.seed, cfg.output.model_json)
    return TrainResult(model_json=model_json, untrained_levels=tuple(rails.untrained_levels),
                       floored_levels=tuple(rails.floored_levels))


def link(spark: SparkSession, cfg: JobConfig, model_json: str | None = None, *, run: str | None = None) -> LinkResult:
    """Link the standardised records with `model_json` (the trained model in the linkage zone by
    default). `run` (a new id by default) is recorded with the commits of links and person_index."""
    model_json = model_json or cfg.output.model_json
    run = run or uuid.uuid4().hex
    prepared = prepare_records(read_standardised(spark, cfg))
    with link_records(prepared, cfg.linkage, model_json) as outputs:
        links = write_table(outputs.links, cfg.output.links_table, metadata={"link_run": run})
        person_index = write_table(outputs.person_index, cfg.output.person_index_table, metadata={"link_run": run})
        # The scored pairs are materialised, so this aggregate does not score them again.
        histogram = tuple(
            (float(r["bin_start"]), int(r["count"])) for r in match_weight_histogram(outputs.scored_pairs).collect()
        )
        scored_pairs = outputs.scored_pairs.count()
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
    )
    return LinkResult(run=run, links=links, person_index=person_index, model_json=model_json, report=report,
                      threshold=outputs.threshold, expected_curve=tuple(outputs.expected_curve))


def linked_tables(spark: SparkSession, cfg: JobConfig) -> tuple[VersionedTable, VersionedTable]:
    """links and person_index as the last link wrote them, refused when they come from two
    different runs (one stopped between its two commits): publishing would mix them."""
    links = read_delta(spark, cfg.output.links_table, table="links")
    person_index = read_delta(spark, cfg.output.person_index_table, table="person_index")
    runs = [commit_metadata(spark, t.path, t.version).get("link_run") for t in (links, person_index)]
    if runs[0] != runs[1]:
        raise InputDataError(
            "links and person_index were written by different link runs (one stopped between its commits): "
            "run link again before publishing"
        )
    return links, person_index
