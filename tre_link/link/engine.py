"""The linkage engine: a deterministic NHS-number pass, then Splink for the undecided pairs, then
clustering. `prepare_records`, `train_model` and `link_records` are its entry points; the modules
beside this one hold the pieces.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tre_link.link import probabilistic
from tre_link.link.blocks import DroppedBlocks, plan_blocking, records_in_blocks_holding
from tre_link.link.cluster import cluster_records
from tre_link.link.deterministic import (
    DETERMINISTIC_KEY,
    assign_deterministic_keys,
    deterministic_edges,
    deterministic_groups,
    exclude_decided_pairs,
)
from tre_link.link.records import UNIQUE_ID, RegisteredRecords, record_id_of, source_of, with_unique_id
from tre_link.platform.config import LinkageConfig
from tre_link.platform.disclosure import release_count
from tre_link.platform.errors import ConfigError
from tre_link.platform.spark import sql_conf

log = logging.getLogger(__name__)


def prepare_records(records: DataFrame) -> DataFrame:
    """Add the linkage keys: a source-qualified unique_id and the deterministic NHS key."""
    return assign_deterministic_keys(with_unique_id(records))


@dataclass
class LinkOutputs:
    links: DataFrame  # one row per link at or above threshold, with its provenance
    clusters: DataFrame  # source, record_id, cluster (internal label), cluster_size, link_method
    scored_pairs: DataFrame  # every scored undecided pair, materialised: for the match-weight histogram
    estimated_comparisons: int
    dropped_blocks: list[DroppedBlocks]
    nhs_dob_conflicts: int  # records whose valid NHS number came with a disagreeing DOB
    threshold: float  # the match probability links were made at (chosen when the config says auto)
    expected_curve: list[dict]  # expected precision/recall/F1 per threshold, from the model's probabilities


# Splink's comparison SQL (long CASE expressions over every level) fuses into whole-stage code
# past HotSpot's 8,000-byte limit; falling back to per-operator code, which the JIT compiles,
# made training and linking 1.5M records about 10% and 15% faster. (Standardisation is the
# other way round, so this holds only while training and linking.)
_LINKAGE_SQL_CONF = {"spark.sql.codegen.hugeMethodLimit": "8000"}
# Training's jobs are many and small (sampling, EM's rounds): adaptive execution re-plans each one
# stage by stage, which cost a 1,455-record demo run 4 of its 12 s of training, and a 1.5M one
# nothing (train 32 s without it, 38 s with it, within the run-to-run noise). Linking keeps it: at
# 1.5M its link stage took 110 s with and 121 s without.
_TRAINING_SQL_CONF = {**_LINKAGE_SQL_CONF, "spark.sql.adaptive.enabled": "false"}


def train_model(records: DataFrame, linkage: LinkageConfig, seed: int,
                model_path: str) -> tuple[str, probabilistic.GuardRails]:
    """Train the Fellegi-Sunter model on records with a unique_id and save it as Splink JSON;
    returns its path and what the guard rails after training found."""
    with sql_conf(records.sparkSession, _TRAINING_SQL_CONF):
        model, rails = probabilistic.train(records, linkage, seed)
    # While the trained model still holds its estimates from every training session.
    probabilistic.save_parameter_charts(model, probabilistic.model_chart_folder(model_path))
    return probabilistic.save_model(model, model_path), rails


# What linking reads of each prepared record beyond the model's and the rules' columns.
_LINK_COLUMNS = ("source", "record_id", DETERMINISTIC_KEY, "nhs_dob_conflict")


@contextmanager
def link_records(prepared: DataFrame, linkage: LinkageConfig, model_path: str) -> Iterator[LinkOutputs]:
    """Score undecided pairs with a trained model, add deterministic links, cluster.

    The prepared records are read once into one narrow cache that blocking, scoring, the
    deterministic links and clustering all share; the outputs are lazy frames over it, so
    write them inside the `with` block (the cache is released when it ends)."""
    spark = prepared.sparkSession
    model = probabilistic.load_model(model_path)
    rules = [exclude_decided_pairs(rule) for rule in linkage.blocking_rules_predict]
    with sql_conf(spark, _LINKAGE_SQL_CONF):
        registered = probabilistic.register_records(prepared, model, rules, keep=_LINK_COLUMNS, by_id=True)
        try:
            plan = plan_blocking(registered.df, rules, linkage.max_block_comparisons)
            for drop in plan.dropped:
                log.warning(
                    "oversized blocks dropped from rule %r: %s blocks holding %s records (disclosure-controlled)",
                    drop.rule, release_count(drop.blocks) or "<10", release_count(drop.records) or "<10",
                )
            if plan.dropped:  # the capped rules read the flags plan_blocking added
                flagged = RegisteredRecords(plan.records)
                registered.close()
                registered = flagged
            estimated = sum(
                pairs if pairs is not None else probabilistic.count_pairs(registered, [rule])
                for rule, pairs in zip(plan.rules, plan.pairs_per_rule)
            )
            _guard_comparison_count(estimated, linkage)
            log.info("blocking will score at most %s undecided pairs", f"{estimated:,}")
            # Materialised once, lineage cut: links, clustering and the histogram all read these pairs,
            # and none of them may score again. (A local checkpoint: a lost executor fails the job
            # rather than recomputing, which a rerun repeats exactly.)
            scored = probabilistic.score(
                registered, model, plan.rules, undecided_if_null=DETERMINISTIC_KEY
            ).localCheckpoint(eager=True)
            threshold = linkage.threshold_match_probability
            if threshold == "auto":
                choice = probabilistic.choose_threshold(scored, linkage.auto_threshold_min_precision)
                threshold, curve = choice.threshold, choice.curve
                log.info("threshold_match_probability auto: chose %s (best expected F1 with expected precision "
                         "at least %s)", threshold, linkage.auto_threshold_min_precision)
            else:
                curve = probabilistic.expected_curve(scored)
            probabilistic_links = scored.where(
                F.col("match_probability") >= threshold
            ).withColumn("link_method", F.lit("probabilistic"))
            # Materialised once: the deterministic edges and clustering both read the groups.
            groups = deterministic_groups(registered.df).localCheckpoint(eager=True)
            links = deterministic_edges(groups).unionByName(probabilistic_links)
            yield LinkOutputs(
                links=_with_record_keys(links),
                clusters=cluster_records(groups, links, bridge_nhs_numbers=linkage.bridge_nhs_numbers),
                scored_pairs=scored,
                estimated_comparisons=estimated,
                dropped_blocks=plan.dropped,
                nhs_dob_conflicts=registered.df.where("nhs_dob_conflict").count(),
                threshold=threshold,
                expected_curve=curve,
            )
        finally:
            registered.close()


# The flag a refresh sets on the records it links again (`score_changed_records`).
CHANGED = "refresh_changed"


@dataclass
class ChangedOutputs:
    scored_pairs: DataFrame  # the pairs holding a changed record, scored and materialised
    changed: DataFrame  # unique_id of every changed record, materialised
    records: DataFrame  # every record, keyed and cached while the `with` block runs (`deterministic_groups_of`)
    dropped_blocks: list[DroppedBlocks]  # among the blocks holding a changed record
    nhs_dob_conflicts: int


# Up to this many changed records, a refresh broadcasts them to the blocking joins and sizes only
# their blocks (a refresh of 1% of 1.5M records: 15,000). More (a new source in full), and it
# sizes every block of the records it registered, as a link does. The ids of the records sharing
# their blocks are broadcast up to this many too.
_FEW_CHANGED = 500_000


@contextmanager
def score_changed_records(prepared: DataFrame, linkage: LinkageConfig, model_path: str) -> Iterator[ChangedOutputs]:
    """What a refresh scores: `prepared` holds every record with the boolean column CHANGED, and
    only the pairs the predict rules admit that hold a changed record are scored (changed against
    unchanged, and changed against changed). Everything else is as `link_records`: the term
    frequencies, the deterministic keys and the oversized blocks come from every record, so each
    pair scores as a full link would score it. Write the outputs inside the `with` block.

    Every record is read once, into a narrow cache. When the changed records are few, only the
    records sharing a block with one (`records_in_blocks_holding`: every record of those blocks)
    are registered for blocking and scoring, so a small refresh sizes, joins and scores a small
    part of them."""
    model = probabilistic.load_model(model_path)
    rules = [exclude_decided_pairs(rule) for rule in linkage.blocking_rules_predict]
    with sql_conf(prepared.sparkSession, _LINKAGE_SQL_CONF):
        every = prepared.select(*probabilistic.columns_read(model, rules, keep=(*_LINK_COLUMNS, CHANGED))).persist()
        registered = None
        try:
            changed = every.where(CHANGED).select(UNIQUE_ID).localCheckpoint(eager=True)
            few = changed.count() <= _FEW_CHANGED
            scored_records = every
            in_blocks = records_in_blocks_holding(every, list(linkage.blocking_rules_predict), F.col(CHANGED)) \
                if few else None
            if in_blocks is not None:
                # Materialised, so plans over the registered records do not hold the pass that
                # found them. Few: broadcast.
                in_blocks = in_blocks.localCheckpoint(eager=True)
                if in_blocks.count() <= _FEW_CHANGED:
                    in_blocks = F.broadcast(in_blocks)
                scored_records = every.join(in_blocks, UNIQUE_ID, "left_semi")
            registered = probabilistic.register_records(scored_records, model, rules, keep=(*_LINK_COLUMNS, CHANGED),
                                                        by_id=True, frequencies_from=every)
            plan = plan_blocking(registered.df, rules, linkage.max_block_comparisons,
                                 holding=F.col(CHANGED) if few else None)
            if plan.dropped:
                flagged = RegisteredRecords(plan.records)
                registered.close()
                registered = flagged
            scored = probabilistic.score(registered, model, plan.rules, changed_if=CHANGED,
                                         broadcast_changed=few).localCheckpoint(eager=True)
            yield ChangedOutputs(
                scored_pairs=scored,
                changed=changed,
                records=every,
                dropped_blocks=plan.dropped,
                nhs_dob_conflicts=every.where("nhs_dob_conflict").count(),
            )
        finally:
            if registered is not None:
                registered.close()
            every.unpersist()


def with_record_keys(links: DataFrame) -> DataFrame:
    """Links by unique_id as the links table holds them: source and record_id of each end."""
    return _with_record_keys(links)


def _guard_comparison_count(estimated: int, linkage: LinkageConfig) -> None:
    """Refuse to score past linkage.max_comparisons; the estimate counts each rule's blocks on
    their own, so pairs two rules share are counted twice and it errs high."""
    if estimated > linkage.max_comparisons:
        raise ConfigError(
            f"linkage.blocking_rules_predict would score up to {estimated:,} pairs, over "
            f"linkage.max_comparisons={linkage.max_comparisons:,.0f}. Tighten the rules, lower "
            f"linkage.max_block_comparisons (now {linkage.max_block_comparisons:,}) to drop the largest blocks, "
            "or raise the limit."
        )


def _with_record_keys(links: DataFrame) -> DataFrame:
    def split(side: str):
        uid = F.col(f"unique_id_{side}")
        return [source_of(uid).alias(f"source_{side}"), record_id_of(uid).alias(f"record_id_{side}")]

    return links.select(*split("l"), *split("r"), "match_weight", "match_probability", "link_method")
