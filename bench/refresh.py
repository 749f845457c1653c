"""Benchmark: incremental refresh against a full run, on the project's synthetic population.

    python bench/refresh.py --people 20000 --refreshes 3 [--add 0.01 --update 0.002 --delete 0.001
                            --opt-out 0.001] [--change-feed] [--no-equivalence] [--out DIR] [--shuffle-partitions N]
                            [--driver-memory 16g]

The generator makes the population; `--refreshes` x `--add` of every source's records are held back
from the base. The base is linked in full (standardise, train, link, publish every project: the full
run's wall time). Then each refresh appends the next `--add` share of held-back records (new records
of existing people, often in a source they had no record in yet, and new people), updates `--update`
of the records (the postcode blanked: a compared field), deletes `--delete`, opts out `--opt-out`
more NHS numbers, and runs `tre-link refresh` with the base's model.

Per refresh it reports the wall time and its ratio to the full run's; the records injected against
the changes found; person events by type; and churn: persons of the previous index that no changed
record touched (holds none, and is at no end of a link to one) whose ID changed, which must be 0.
At the end, a full link of the final data in a zone of its own, with the same model and threshold,
is compared with the refreshed index: the records the two partitions put in different company, and
the links one made and the other did not, by why (`--no-equivalence` skips it, and reports null, for
a scale run where it costs one full link more).

Prints ONE JSON object to stdout (aggregate numbers only, never a record value); progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.demo_config import demo_config_under  # noqa: E402

log = logging.getLogger("bench")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--people", type=int, default=20_000)
    p.add_argument("--refreshes", type=int, default=3)
    p.add_argument("--add", type=float, default=0.01, help="share of records each refresh adds")
    p.add_argument("--update", type=float, default=0.002, help="share of records each refresh updates")
    p.add_argument("--delete", type=float, default=0.001, help="share of records each refresh deletes")
    p.add_argument("--opt-out", type=float, default=0.001, help="share of records whose NHS number opts out")
    p.add_argument("--change-feed", action="store_true",
                   help="turn Delta's change data feed on for every source before the base (else refresh diffs versions)")
    p.add_argument("--out", default=str(REPO / "out" / "bench_refresh"))
    p.add_argument("--no-equivalence", action="store_true",
                   help="skip the full link of the final data (the equivalence check): for a scale run, where it costs a full run more")
    p.add_argument("--shuffle-partitions", type=int)
    p.add_argument("--driver-memory")
    return p.parse_args(argv)


def build_config(args):
    from tre_link.platform.config import JobConfig

    raw = demo_config_under(Path(args.out).resolve(), args.people, args.shuffle_partitions, args.driver_memory)
    return JobConfig.model_validate(raw)


def _bucket(column: str, salt: int):
    """A stable bucket 0..99999 per record id: which records each step picks."""
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64(F.col(column).cast("string"), F.lit(salt)), F.lit(100_000))


def _share(share: float) -> int:
    return int(round(share * 100_000))


class Clock:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)


def hold_back(spark, cfg, share: float) -> dict[str, int]:
    """Delete `share` of every source's records: they arrive in the refreshes. Returns the version
    of each source that still holds them (the generated one)."""
    from delta.tables import DeltaTable

    from tre_link.platform.delta_io import latest_version

    generated = {}
    for source in cfg.sources:
        generated[source.name] = latest_version(spark, source.path)
        DeltaTable.forPath(spark, source.path).delete(_bucket(source.columns.record_id, 1) < _share(share))
    return generated


def inject(spark, cfg, args, step: int, generated: dict[str, int]) -> dict[str, int]:
    """One refresh's changes to the sources and the opt-out list; returns what was injected."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    injected = {"added": 0, "updated": 0, "deleted": 0, "opt_outs": 0}
    numbers = []
    for source in cfg.sources:
        rid = source.columns.record_id
        table = DeltaTable.forPath(spark, source.path)
        current = spark.read.format("delta").load(source.path)
        low, high = _share(args.add) * step, _share(args.add) * (step + 1)
        arriving = (spark.read.format("delta").option("versionAsOf", generated[source.name]).load(source.path)
                    .where((_bucket(rid, 1) >= low) & (_bucket(rid, 1) < high))).localCheckpoint()
        updated = _bucket(rid, 100 + step) < _share(args.update)
        deleted = (_bucket(rid, 200 + step) < _share(args.delete)) & ~updated
        postcode = source.columns.postcode
        injected["updated"] += current.where(updated & F.col(postcode).isNotNull()).count()
        injected["deleted"] += current.where(deleted).count()
        injected["added"] += arriving.count()
        table.update(updated & F.col(postcode).isNotNull(), {postcode: F.lit(None).cast("string")})
        table.delete(deleted)
        arriving.write.format("delta").mode("append").save(source.path)
        if source.columns.nhs_number:
            numbers.append(current.where(_bucket(rid, 300 + step) < _share(args.opt_out))
                           .select(F.col(source.columns.nhs_number).cast("string").alias("nhs_number")))
    if cfg.opt_outs and numbers:
        new = numbers[0]
        for more in numbers[1:]:
            new = new.unionByName(more)
        new = new.where("nhs_number is not null").distinct().localCheckpoint()
        injected["opt_outs"] = new.count()
        new.write.format("delta").mode("append").save(cfg.opt_outs)
    return injected


def churn(spark, previous, now, links, changed, removed) -> int:
    """Persons of `previous` (an index) that no changed record touched whose ID changed in `now`.
    Touched: holding a changed or removed record, or at an end of a link to a changed record."""
    from pyspark.sql import functions as F

    from tre_link.link.records import unique_id

    def uid(df, side=""):
        return unique_id(F.col(f"source{side}"), F.col(f"record_id{side}"))

    prev = previous.select(uid(previous).alias("unique_id"), "person_id")
    touched = changed.unionByName(removed).distinct()
    ends = links.select(uid(links, "_l").alias("a"), uid(links, "_r").alias("b"))
    linked = (ends.join(touched.withColumnRenamed("unique_id", "a"), "a", "left_semi").select(F.col("b").alias("unique_id"))
              .unionByName(ends.join(touched.withColumnRenamed("unique_id", "b"), "b", "left_semi")
                           .select(F.col("a").alias("unique_id"))))
    touched_persons = prev.join(touched.unionByName(linked), "unique_id", "left_semi").select("person_id").distinct()
    untouched = prev.join(touched_persons, "person_id", "left_anti")
    after = now.select(uid(now).alias("unique_id"), F.col("person_id").alias("after"))
    return untouched.join(after, "unique_id").where("person_id != after").select("person_id").distinct().count()


def refresh_stage_seconds(cfg, run_id: str, seconds: float) -> dict[str, float]:
    """The refresh's stages, as its MLflow run timed them; `other` is the rest of `seconds`
    (finding the changes, MLflow, the checks before the run starts)."""
    from mlflow import MlflowClient

    metrics = MlflowClient(tracking_uri=cfg.tracking_uri).get_run(run_id).data.metrics
    stages = {k.removeprefix("wall_seconds_"): v for k, v in metrics.items() if k.startswith("wall_seconds_")}
    return {**stages, "other": round(seconds - sum(stages.values()), 3)}


def equivalence_with_full_link(spark, cfg, args, refreshed, model_json) -> dict:
    """The final data linked in full, same model and threshold, in a zone of its own, against the
    refreshed index: the records the two partitions put in different company, and the links that
    differ (`links_differing`)."""
    from tre_link import TreLink
    from tre_link.link.refresh import partition_differences

    root = Path(args.out).resolve() / "full_final"
    full_cfg = cfg.model_copy(update={
        "output": cfg.output.model_copy(update={"root": str(root), "linkage_zone": str(root / "linkage"),
                                                "research_zone": str(root / "research")}),
        "linkage": cfg.linkage.model_copy(update={"threshold_match_probability": refreshed.link.threshold}),
    })
    full = TreLink(spark, full_cfg)
    start = time.perf_counter()
    full.standardise()
    final = full.link(model_json)
    seconds = round(time.perf_counter() - start, 3)
    return {
        "records_in_different_company": partition_differences(refreshed.link.person_index.df, final.person_index.df),
        "links_differing": links_differing(refreshed.link, final, refreshed.link.threshold),
        "records": final.report.records_indexed,
        "persons_full": final.report.persons,
        "persons_refreshed": refreshed.link.report.persons,
        "full_link_of_final_data_seconds": seconds,
        "basis": "partition of records into persons: refreshed index vs a full link of the final data "
                 "with the same model and threshold",
    }


def links_differing(refreshed, full, threshold: float) -> dict:
    """The links one index made and the other did not, by why: the pair was scored by both but its
    match probability moved across the threshold (term frequencies changed after the refresh scored
    it, and a refresh does not score unchanged pairs again), or the other never scored it. Counts,
    and the largest move of a pair's probability, only."""
    from pyspark.sql import functions as F

    from tre_link.link.records import unique_id

    def pairs(table, left, right):
        return table.select(F.least(left, right).alias("_l"), F.greatest(left, right).alias("_r"),
                            F.col("match_probability").alias("_p"))

    def linked(result):
        df = result.links.df
        return pairs(df, unique_id(F.col("source_l"), F.col("record_id_l")),
                     unique_id(F.col("source_r"), F.col("record_id_r")))

    def scored(result):
        return pairs(result.scored_pairs.df, F.col("unique_id_l"), F.col("unique_id_r"))

    out = {"threshold": threshold}
    for name, mine, other in (("refreshed_only", refreshed, full), ("full_only", full, refreshed)):
        only = linked(mine).join(linked(other), ["_l", "_r"], "left_anti")
        why = only.join(scored(other).withColumnRenamed("_p", "_other_p"), ["_l", "_r"], "left")
        row = why.agg(F.count("*").alias("links"),
                      F.count(F.when(F.col("_other_p") < threshold, 1)).alias("scored_below_threshold_by_other"),
                      F.count(F.when(F.col("_other_p").isNull(), 1)).alias("not_scored_by_other"),
                      F.max(F.abs(F.col("_p") - F.col("_other_p"))).alias("largest_probability_move")).first()
        out[name] = {k: row[k] for k in ("links", "scored_below_threshold_by_other", "not_scored_by_other")}
        out[name]["largest_probability_move"] = None if row["largest_probability_move"] is None else \
            round(float(row["largest_probability_move"]), 6)
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with contextlib.redirect_stdout(sys.stderr):
        result = _run(args)
    print(json.dumps(result, indent=2))
    sys.stdout.flush()
    return result


def _run(args) -> dict:
    from tre_link import TreLink
    from tre_link.api import _changed_record_ids
    from tre_link.demo import ensure_demo_keys
    from tre_link.platform.spark import build_session
    from tre_link.synth import generate

    wall = time.perf_counter()
    cfg = build_config(args)
    spark = build_session(cfg.spark)
    try:
        ensure_demo_keys(cfg)
        log.info("synth: %s people", f"{args.people:,}")
        generate(spark, cfg.synth)
        if args.change_feed:
            for source in cfg.sources:
                spark.sql(f"ALTER TABLE delta.`{source.path}` SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")
        generated = hold_back(spark, cfg, args.add * args.refreshes)

        tl = TreLink(spark, cfg)
        clock = Clock()
        with clock("standardise"):
            tl.standardise()
        with clock("train"):
            model_json = tl.train().model_json
        with clock("link"):
            base = tl.link(model_json)
        for project in cfg.projects:
            with clock(f"publish_{project.name}"):
                tl.publish(project.name)
        full_seconds = round(sum(clock.seconds.values()), 3)
        full_without_train = round(full_seconds - clock.seconds["train"], 3)

        refreshes, previous = [], base.person_index.df
        for step in range(args.refreshes):
            injected = inject(spark, cfg, args, step, generated)
            start = time.perf_counter()
            refreshed = tl.refresh(model=model_json)
            seconds = round(time.perf_counter() - start, 3)
            found = {k: sum(c.counts()[k] for c in refreshed.changes.values())
                     for k in ("added", "updated", "deleted")}
            changed, removed = _changed_record_ids(cfg, refreshed.changes)
            now = refreshed.link.person_index.df
            counts = refreshed.link.report.counts()
            refreshes.append({
                "seconds": seconds,
                "stage_seconds": refresh_stage_seconds(cfg, refreshed.run_id, seconds),
                "ratio_to_full_run": round(seconds / full_seconds, 4),
                "ratio_to_full_run_without_training": round(seconds / full_without_train, 4),
                "injected": injected,
                "changes_found": found,
                "changes_method": {name: c.method for name, c in refreshed.changes.items()},
                "events": {k.removeprefix("events_"): v for k, v in counts.items() if k.startswith("events_")},
                "pairs_scored": counts["scored_pairs"],
                "records_indexed": counts["records_indexed"],
                "persons": counts["persons"],
                "churn_untouched_persons_with_new_id": churn(spark, previous, now, refreshed.link.links.df,
                                                             changed, removed),
                "opted_out_persons": {name: p.report.persons_opted_out for name, p in refreshed.published.items()},
            })
            previous = now.localCheckpoint()
            log.info("refresh %d of %d: %.1f s", step + 1, args.refreshes, seconds)

        equivalence = None if args.no_equivalence else equivalence_with_full_link(spark, cfg, args, refreshed, model_json)
        return {
            "people": args.people,
            "shares": {"add": args.add, "update": args.update, "delete": args.delete, "opt_out": args.opt_out},
            "base_records": base.report.records_indexed,
            "full_run": {"stage_seconds": clock.seconds, "total_seconds": full_seconds,
                         "total_without_train_seconds": full_without_train},
            "refreshes": refreshes,
            "equivalence": equivalence,
            "spark": {"master": cfg.spark.master, "driver_memory": cfg.spark.driver_memory,
                      "shuffle_partitions": cfg.spark.shuffle_partitions},
            "wall_seconds": round(time.perf_counter() - wall, 3),
        }
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
