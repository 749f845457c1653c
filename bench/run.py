"""Benchmark: tre-link's pipeline against plain Splink on DuckDB and on Spark, on the same records.

    python bench/run.py --people 50000 [--skewed-surname-share 0.25] [--sources-config existing.yaml]
                        [--skip-spark-baseline] [--out DIR]

Engines, all on the same source extracts:
- tre_link: standardise, train, link, publish (evaluate timed apart).
- duckdb_plain_tutorial: plain Splink on DuckDB as its tutorial writes it, on the raw source columns
  (bench/baseline_splink.py's UK health model: ExactMatch NHS number and sex, NameComparison x2,
  DateOfBirthComparison, PostcodeComparison; blocking on NHS number, names, DOB, postcode + surname;
  EM on DOB then postcode; threshold 0.5). The baseline a user choosing a tool would run.
- duckdb: tre-link's standardised records and rules with Splink's stock comparison levels.
- duckdb_tre_link_model: tre-link's own model and rules executed on DuckDB: an engine-to-engine
  comparison, not a tool-to-tool one.
- spark: plain Splink on Spark (unless --skip-spark-baseline).

Prints ONE JSON object to stdout (aggregate numbers only, never record values); progress goes to stderr.
All engines run in one process on one SparkSession, so the ratios are measured under the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections import defaultdict
from functools import wraps
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.demo_config import demo_config_under  # noqa: E402

log = logging.getLogger("bench")

# ------------------------------------------------------------------------------------------------
# Timing and memory
# ------------------------------------------------------------------------------------------------


class Recorder:
    """Stage timings per engine, Splink step timings (via wrappers), and RSS sampled per phase."""

    def __init__(self) -> None:
        self.engine = "none"
        self.steps: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.jvm_pid: int | None = None
        self.phase = "startup"
        self.peak_rss: dict[str, dict[str, int]] = defaultdict(lambda: {"python_mb": 0, "jvm_mb": 0})
        self.spark = None  # set once the session exists: Spark jobs are then labelled for the profile
        self._labels: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def label(self, name: str):
        """Label the Spark jobs run inside with engine / stage / step, for `spark_profile`."""
        self._labels.append(name)
        self._describe()
        try:
            yield
        finally:
            self._labels.pop()
            self._describe()

    def _describe(self) -> None:
        if self.spark is not None:
            self.spark.sparkContext.setJobDescription(" / ".join([self.engine, *self._labels]) if self._labels else None)

    @contextlib.contextmanager
    def timed(self, seconds: dict, name: str, phase: str | None = None):
        if phase:
            self.phase = phase
        log.info("%s: %s ...", self.engine, name)
        start = time.perf_counter()
        try:
            with self.label(name):
                yield
        finally:
            seconds[name] = round(time.perf_counter() - start, 3)
            log.info("%s: %s took %.1fs", self.engine, name, seconds[name])

    def step(self, name: str, seconds: float) -> None:
        self.steps[self.engine][name].append(round(seconds, 3))

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            self.sample_now()

    def sample_now(self) -> None:
        peak = self.peak_rss[self.phase]
        peak["python_mb"] = max(peak["python_mb"], _status_kb(os.getpid(), "VmRSS") // 1024)
        if self.jvm_pid:
            peak["jvm_mb"] = max(peak["jvm_mb"], _status_kb(self.jvm_pid, "VmRSS") // 1024)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sample_now()


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def instrument_splink(rec: Recorder) -> None:
    """Wrap the Splink (and tre-link linkage) steps so each call's wall time is recorded against the
    engine running. Timing wrappers only: behaviour is unchanged."""
    from splink.internals.linker_components.clustering import LinkerClustering
    from splink.internals.linker_components.inference import LinkerInference
    from splink.internals.linker_components.training import LinkerTraining

    from tre_link.link import cluster as cluster_mod
    from tre_link.link import engine, probabilistic

    def wrap(owner, attr: str, label: str) -> None:
        original = getattr(owner, attr)

        @wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                with rec.label(label):
                    return original(*args, **kwargs)
            finally:
                rec.step(label, time.perf_counter() - start)

        setattr(owner, attr, timed)

    wrap(LinkerTraining, "estimate_probability_two_random_records_match", "prior (deterministic rules)")
    wrap(LinkerTraining, "estimate_u_using_random_sampling", "u (random sampling)")
    wrap(LinkerTraining, "estimate_parameters_using_expectation_maximisation", "EM (per training rule)")
    wrap(LinkerInference, "predict", "predict")
    wrap(LinkerClustering, "cluster_pairwise_predictions_at_threshold", "cluster")
    # tre-link's own pieces (module attributes, looked up at call time).
    wrap(probabilistic, "register_records", "register records (+ term frequencies)")
    wrap(probabilistic, "estimate_prior", "prior (deterministic rules)")
    wrap(probabilistic, "estimate_u", "u (random sampling)")
    wrap(probabilistic, "estimate_m", "EM (per training rule)")
    wrap(engine, "plan_blocking", "blocking plan (block sizes, guard)")
    wrap(cluster_mod, "cluster_pairwise_predictions_at_threshold", "cluster")
    wrap(engine, "cluster_records", "cluster_records (components + person_index plan)")


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------


def build_config(args) -> "JobConfig":  # noqa: F821
    from tre_link.platform.config import JobConfig, load_config

    out = Path(args.out).resolve()
    raw = demo_config_under(out, args.people, args.shuffle_partitions, args.driver_memory)
    raw["synth"]["skewed_surname_share"] = args.skewed_surname_share
    if args.max_block_comparisons:
        raw["linkage"]["max_block_comparisons"] = args.max_block_comparisons
    # Spark's own record of every job and task, summarised into `spark_profile` after the run.
    (out / "eventlog").mkdir(parents=True, exist_ok=True)
    raw["spark"]["conf"].update({"spark.eventLog.enabled": "true", "spark.eventLog.dir": str(out / "eventlog"),
                                 "spark.eventLog.compress": "false"})
    if args.sources_config:
        existing = load_config(args.sources_config)
        raw["sources"] = [s.model_dump() for s in existing.sources]
        raw["opt_outs"] = existing.opt_outs
        raw["truth_path"] = existing.truth_path
        # A project names the columns it publishes, so it belongs to the sources that carry them.
        raw["projects"] = [p.model_dump() for p in existing.projects]
        raw["linkage_key"] = existing.linkage_key.model_dump() if existing.linkage_key else None
        raw["synth"] = None
    return JobConfig.model_validate(raw)


# ------------------------------------------------------------------------------------------------
# Engines
# ------------------------------------------------------------------------------------------------


def run_tre_link(spark, cfg, rec: Recorder) -> dict:
    from tre_link import TreLink

    rec.engine = "tre_link"
    tl = TreLink(spark, cfg)
    seconds: dict[str, float] = {}
    with rec.timed(seconds, "standardise", "tre_link"):
        standardised = tl.standardise()
    with rec.timed(seconds, "train"):
        model_json = tl.train().model_json
    with rec.timed(seconds, "link"):
        link = tl.link(model_json).report
    for project in cfg.projects:
        with rec.timed(seconds, f"publish_{project.name}"):
            tl.publish(project.name)
    accuracy = None
    if cfg.truth_path:
        with rec.timed(seconds, "evaluate", f"{rec.engine}_evaluate"):
            accuracy = tl.evaluate()
    end_to_end = sum(v for k, v in seconds.items() if k != "evaluate")
    return {
        "standardised": standardised,
        "result": {
            "stage_seconds": seconds,
            "total_seconds": round(end_to_end, 3),
            "total_includes": "standardise + train + link + publish (evaluate reported separately)",
            "linkage_seconds": round(seconds["train"] + seconds["link"], 3),
            "comparisons_scored": link.scored_pairs,
            "comparisons_scored_basis": "undecided pairs scored (predict rules with deterministic exclusion)",
            "links": link.links_deterministic + link.links_probabilistic,
            "links_deterministic": link.links_deterministic,
            "links_probabilistic": link.links_probabilistic,
            "persons": link.persons,
            **_accuracy_fields(accuracy),
        },
    }


def _accuracy_fields(accuracy) -> dict:
    if accuracy is None:
        return {"pairwise_precision": None, "pairwise_recall": None, "pairwise_f1": None, "person_precision": None,
                "person_recall": None, "clusters": None}
    return {
        "pairwise_precision": round(accuracy.pairwise_precision, 6),
        "pairwise_recall": round(accuracy.pairwise_recall, 6),
        "pairwise_f1": round(accuracy.pairwise_f1, 6),
        "person_precision": round(accuracy.person_precision, 6),
        "person_recall": round(accuracy.person_recall, 6),
        "clusters": accuracy.clusters,
    }


def baseline_records(spark, cfg):
    """The linkage zone's standardised tables, unioned, with the model's columns and a unique_id."""
    from tre_link.ingest.stage import read_standardised
    from tre_link.link.model import MODEL_COLUMNS
    from tre_link.link.records import with_unique_id

    return with_unique_id(read_standardised(spark, cfg)).select(*MODEL_COLUMNS)


def plain_splink(db_api, records, cfg, seed: int, rec: Recorder, seconds: dict, *, plain_levels: bool = True):
    """The tutorial's steps, untuned: register, prior, u by random sampling, EM per training rule
    (all timed as "train"), then predict and cluster. Returns the registered input too."""
    from splink import Linker

    from tre_link.link.model import build_settings
    from tre_link.link.probabilistic import PRIOR_RECALL, PRIOR_RULES

    lk = cfg.linkage
    with rec.timed(seconds, "train"):
        registered = db_api.register(records)
        linker = Linker(registered, build_settings(lk, plain_splink_levels=plain_levels))
        linker.training.estimate_probability_two_random_records_match(PRIOR_RULES, recall=PRIOR_RECALL)
        linker.training.estimate_u_using_random_sampling(max_pairs=lk.u_max_pairs, seed=seed)
        for rule in lk.blocking_rules_training:
            linker.training.estimate_parameters_using_expectation_maximisation(rule)
    with rec.timed(seconds, "predict_and_cluster"):
        predictions = linker.inference.predict(threshold_match_probability=lk.threshold_match_probability)
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=lk.threshold_match_probability
        )
    return registered, predictions, clusters


def _person_index_from_clusters(spark_df):
    from pyspark.sql import functions as F

    uid = F.col("unique_id")
    return spark_df.select(
        F.regexp_extract(uid, r"^([^:]+):", 1).alias("source"),
        F.regexp_extract(uid, r"^[^:]+:(.*)$", 1).alias("record_id"),
        F.col("cluster_id").cast("string").alias("person_id"),
    )


def _baseline_result(seconds: dict, comparisons: int, links: int, accuracy) -> dict:
    return {
        "stage_seconds": seconds,
        "total_seconds": round(seconds["train"] + seconds["predict_and_cluster"], 3),
        "total_includes": "train + predict + cluster (loading records and evaluate reported separately)",
        "comparisons_scored": comparisons,
        "comparisons_scored_basis": "blocking-analysis count of pairs from the config's predict rules "
                                    "(no deterministic exclusion)",
        "links": links,
        **_accuracy_fields(accuracy),
    }


def run_duckdb(spark, cfg, truth, rec: Recorder, *, engine: str = "duckdb", plain_levels: bool = True) -> dict:
    import duckdb
    from splink import DuckDBAPI
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    from tre_link.record.evaluate import evaluate_person_index
    from tre_link.link.records import UNIQUE_ID

    rec.engine = engine
    seconds: dict[str, float] = {}
    with rec.timed(seconds, "load_records (Spark toArrow)", engine):
        records = baseline_records(spark, cfg).toArrow()
    con = duckdb.connect()
    df, predictions, clusters = plain_splink(DuckDBAPI(connection=con), records, cfg, cfg.seed, rec, seconds,
                                             plain_levels=plain_levels)
    # DuckDB 2: relations have no fetchone(), and execute(...).fetchone() leaves an unfinished result that
    # blocks the connection Splink shares ("Resource In Use Error"): fetch everything instead.
    links = int(con.sql(f"select count(*) from {predictions.physical_name}").fetchall()[0][0])
    comparisons = int(count_comparisons_from_blocking_rules(
        df, blocking_rules=list(cfg.linkage.blocking_rules_predict), link_type="dedupe_only",
        unique_id_column_name=UNIQUE_ID, record_sample_proportion=1.0,  # Splink 5 samples by default
    )[-1]["cumulative_comparison_count"])
    with rec.timed(seconds, "evaluate", f"{rec.engine}_evaluate"):
        arrow = con.sql(f"select unique_id, cast(cluster_id as varchar) as cluster_id "
                        f"from {clusters.physical_name}").to_arrow_table()
        accuracy = evaluate_person_index(_person_index_from_clusters(spark.createDataFrame(arrow)), truth)
    con.close()
    return {"records": records.num_rows, "result": _baseline_result(seconds, comparisons, links, accuracy)}


def plain_tutorial_tables(spark, cfg) -> tuple[list, list[str]]:
    """Each source's raw columns, conformed the way Splink's tutorial page "Data Prerequisites" asks
    (one name per field, dates as yyyy-mm-dd, one sex coding, one text case, trimmed, true nulls)
    and nothing more: no tre_link code. Spark reads the Delta sources; the model never sees Spark."""
    from pyspark.sql import functions as F

    def text(c):
        return F.nullif(F.trim(F.col(c).cast("string")), F.lit(""))

    def postcode(c):  # upper case, one space before the inward code
        squashed = F.upper(F.regexp_replace(text(c), r"\s", ""))
        return F.when(F.length(squashed).between(5, 7), F.concat(
            F.substring(squashed, F.lit(1), F.length(squashed) - 3), F.lit(" "), F.right(squashed, F.lit(3)),
        )).otherwise(squashed)

    tables, names = [], []
    for source in cfg.sources:
        c = source.columns
        sex = F.upper(text(c.sex))
        df = spark.read.format("delta").load(source.path).select(
            F.concat(F.lit(f"{source.name}:"), F.col(c.record_id).cast("string")).alias("unique_id"),
            F.nullif(F.regexp_replace(text(c.nhs_number), r"\s", ""), F.lit("")).alias("nhs_number"),
            F.upper(text(c.given_name)).alias("given_name"),
            F.upper(text(c.family_name)).alias("family_name"),
            F.date_format(F.coalesce(*[F.try_to_timestamp(text(c.dob), F.lit(f)) for f in source.dob_formats]),
                          "yyyy-MM-dd").alias("dob"),
            postcode(c.postcode).alias("postcode"),
            F.when(sex.isin("1", "M", "MALE"), "M").when(sex.isin("2", "F", "FEMALE"), "F")
            .when(sex.isNotNull(), "U").alias("sex"),
        )
        tables.append(df.toArrow())
        names.append(source.name)
    return tables, names


def run_plain_tutorial(spark, cfg, rec: Recorder) -> dict:
    """Plain Splink on DuckDB as its tutorial writes it (bench/baseline_splink.py's UK health model,
    threshold 0.5), on the raw sources: the baseline an analyst choosing a tool would run."""
    import baseline_splink as plain
    import pandas as pd

    rec.engine = "duckdb_plain_tutorial"
    seconds: dict[str, float] = {}
    with rec.timed(seconds, "load_records (Spark toArrow)", rec.engine):
        tables, names = plain_tutorial_tables(spark, cfg)
        truth = spark.read.format("delta").load(cfg.truth_path).selectExpr(
            "concat(source, ':', record_id) as unique_id", "person_id as entity_id").toPandas()
    spec = plain.uk_health_spec(plain.UK_COMMON, seed=cfg.seed, source_names=names)
    out = plain.run_plain_splink(tables, spec, pd.DataFrame(truth))
    steps = out["seconds"]
    at_half = out["accuracy"]["clusters"]["at_0.5"]
    return {
        "records": out["records"],
        "result": {
            "stage_seconds": {**seconds, **steps},
            "total_seconds": round(out["seconds_training_and_predict"] + steps["cluster_at_0.5"], 3),
            "total_includes": "register + prior + u + EM + predict + cluster at 0.5 (loading records, the "
                              "threshold sweep and evaluation reported separately)",
            "comparisons_scored": out["pairs_scored"],
            "links": out["accuracy"]["pairs"]["at_0.5"]["true_positive_pairs"]
            + out["accuracy"]["pairs"]["at_0.5"]["false_positive_pairs"],
            "pairwise_precision": at_half["precision"], "pairwise_recall": at_half["recall"],
            "pairwise_f1": at_half["f1"],
            "best_pairs_f1_over_thresholds": out["accuracy"]["best_pairs"]["f1"],
            "best_threshold": out["accuracy"]["best_threshold_by_pairs_f1"],
            "clusters_at_best_threshold": out["accuracy"]["clusters_at_best_threshold"],
            "peak_rss_mb": out["peak_rss_mb"],
            "model": out["model"],
        },
    }


def run_spark_baseline(spark, cfg, truth, comparisons: int | None, rec: Recorder, timeout: float | None) -> dict:
    from splink import SparkAPI

    from tre_link.record.evaluate import evaluate_person_index

    rec.engine = "spark"
    seconds: dict[str, float] = {}
    # Spark's default, which tre-link's session changes, so the baseline runs on Spark's own settings.
    spark.conf.unset("spark.sql.inMemoryColumnarStorage.compressed")
    with rec.timed(seconds, "load_records (Delta)", "spark"):
        records = baseline_records(spark, cfg)
    # Plain Splink on Spark can run for hours at scale: past the limit its jobs are cancelled and
    # the time reached is reported as a lower bound.
    limit = threading.Timer(timeout, spark.sparkContext.cancelAllJobs) if timeout else None
    start = time.perf_counter()
    try:
        if limit:
            limit.start()
        _, predictions, clusters = plain_splink(SparkAPI(spark_session=spark), records, cfg, cfg.seed, rec, seconds)
    except Exception:  # noqa: BLE001  (a cancelled job surfaces as whatever Splink was running)
        if not (limit and limit.finished.is_set()):
            raise
        elapsed = round(time.perf_counter() - start, 3)
        log.warning("spark: plain Splink did not finish within %ss; cancelled", timeout)
        return {"result": {"stage_seconds": seconds, "total_seconds": None, "did_not_finish_within_seconds": elapsed,
                           "total_includes": "train + predict + cluster (cancelled at the time limit)"}}
    finally:
        if limit:
            limit.cancel()
    with rec.timed(seconds, "evaluate", f"{rec.engine}_evaluate"):
        links = predictions.as_spark_dataframe().count()
        accuracy = evaluate_person_index(_person_index_from_clusters(clusters.as_spark_dataframe()), truth)
    return {"result": _baseline_result(seconds, comparisons, links, accuracy)}


# ------------------------------------------------------------------------------------------------
# Provenance
# ------------------------------------------------------------------------------------------------


def provenance(spark) -> dict:
    def git(*args):
        try:
            done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
            return done.stdout.strip() if done.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    versions = {"python": platform.python_version(), "spark_runtime": spark.version}
    for package in ("pyspark", "delta-spark", "splink", "duckdb", "pyarrow", "pandas", "tre-link"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        versions["java"] = spark.sparkContext._jvm.java.lang.System.getProperty("java.version")
    except Exception:  # noqa: BLE001
        versions["java"] = None
    status = git("status", "--porcelain")
    return {
        "git_commit": git("rev-parse", "HEAD") or None,
        "git_dirty": bool(status) if status is not None else None,
        "versions": versions,
        "machine": {"cpus": os.cpu_count(), "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                                              / 2**30, 1), "platform": platform.platform()},
    }


def spark_profile(event_log: Path) -> list[dict]:
    """Where Spark spent its time, from its event log: per label (engine / stage / step), the
    number of jobs, their summed wall seconds and the summed executor run time of their tasks."""
    # Spark 4 writes a directory of rolled files, eventlog_v2_<app id>/events_<n>_<app id>.
    rolled = event_log.with_name(f"eventlog_v2_{event_log.name}")
    files = sorted(rolled.glob("events_*"), key=lambda f: int(f.name.split("_")[1])) if rolled.is_dir() else []
    files += [p for p in (event_log, event_log.with_name(event_log.name + ".inprogress")) if p.exists()]
    label_of_job, label_of_stage, started = {}, {}, {}
    totals: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "wall_seconds": 0.0, "task_seconds": 0.0})
    for line in (line for f in files for line in f.open()):
        event = json.loads(line)
        kind = event.get("Event")
        if kind == "SparkListenerJobStart":
            label = (event.get("Properties") or {}).get("spark.job.description") or "(unlabelled)"
            label_of_job[event["Job ID"]] = label
            started[event["Job ID"]] = event["Submission Time"]
            for stage in event.get("Stage IDs", []):
                label_of_stage[stage] = label
            totals[label]["jobs"] += 1
        elif kind == "SparkListenerJobEnd" and event["Job ID"] in started:
            label = label_of_job[event["Job ID"]]
            totals[label]["wall_seconds"] += (event["Completion Time"] - started[event["Job ID"]]) / 1000
        elif kind == "SparkListenerTaskEnd":
            run_ms = (event.get("Task Metrics") or {}).get("Executor Run Time", 0)
            totals[label_of_stage.get(event.get("Stage ID"), "(unlabelled)")]["task_seconds"] += run_ms / 1000
    rows = [{"label": label, **{k: round(v, 1) if isinstance(v, float) else v for k, v in t.items()}}
            for label, t in totals.items()]
    return sorted(rows, key=lambda r: -r["wall_seconds"])


def _jvm_pid(spark) -> int | None:
    jvm = spark.sparkContext._jvm
    for handle in (lambda: jvm.ProcessHandle.current(), lambda: jvm.java.lang.ProcessHandle.current()):
        try:
            return int(handle().pid())
        except Exception:  # noqa: BLE001
            continue
    return None


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--people", type=int, default=20_000)
    p.add_argument("--skewed-surname-share", type=float, default=0.0)
    p.add_argument("--sources-config",
                   help="YAML whose sources, opt_outs, truth_path and projects to use instead of synth")
    p.add_argument("--skip-spark-baseline", action="store_true")
    p.add_argument("--spark-baseline-timeout", type=float,
                   help="cancel plain Splink on Spark after this many seconds and report that as a lower bound")
    p.add_argument("--tre-link-only", action="store_true",
                   help="no baselines (scaling runs, where plain Splink would not fit the machine)")
    p.add_argument("--driver-memory", help="override spark.driver_memory (e.g. 16g for 10M records)")
    p.add_argument("--out", default=str(REPO / "out" / "bench"))
    p.add_argument("--shuffle-partitions", type=int, help="override spark.shuffle_partitions (smoke tests: 1)")
    p.add_argument("--max-block-comparisons", type=int,
                   help="override linkage.max_block_comparisons (skewed populations: drop their largest blocks)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Anything a library prints goes to stderr: stdout carries only the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        result = _run(args)
    print(json.dumps(result, indent=2, sort_keys=False))
    sys.stdout.flush()
    return result


def _run(args) -> dict:
    from tre_link.platform.delta_io import read_delta
    from tre_link.demo import ensure_demo_keys
    from tre_link.platform.spark import build_session
    from tre_link.synth import generate

    wall_start = time.perf_counter()
    result = None
    cfg = build_config(args)
    rec = Recorder()
    instrument_splink(rec)
    spark = build_session(cfg.spark)
    rec.jvm_pid = _jvm_pid(spark)
    rec.spark = spark
    event_log = Path(cfg.spark.conf["spark.eventLog.dir"]) / spark.sparkContext.applicationId
    try:
        ensure_demo_keys(cfg)
        synth_seconds = None
        if cfg.synth is not None:
            rec.engine, rec.phase = "synth", "synth"
            start = time.perf_counter()
            log.info("synth: generating %s people", f"{cfg.synth.people:,}")
            generate(spark, cfg.synth)
            synth_seconds = round(time.perf_counter() - start, 3)

        tre = run_tre_link(spark, cfg, rec)
        truth = read_delta(spark, cfg.truth_path, table="truth").df if cfg.truth_path else None
        engines = {"tre_link": tre["result"]}
        plain = None
        if cfg.truth_path and not args.tre_link_only:
            plain = run_plain_tutorial(spark, cfg, rec)
            engines["duckdb_plain_tutorial"] = plain["result"]
        duck = None if args.tre_link_only else run_duckdb(spark, cfg, truth, rec)
        if duck:
            engines["duckdb"] = duck["result"]
            # The same on tre-link's own model: its guarded NHS-number level speeds Splink up too.
            engines["duckdb_tre_link_model"] = run_duckdb(spark, cfg, truth, rec, engine="duckdb_tre_link_model",
                                                          plain_levels=False)["result"]
        if duck and not args.skip_spark_baseline:
            engines["spark"] = run_spark_baseline(spark, cfg, truth, duck["result"]["comparisons_scored"],
                                                  rec, args.spark_baseline_timeout)["result"]
        for name, engine in engines.items():
            engine["splink_step_seconds"] = {k: v if len(v) > 1 else v[0] for k, v in rec.steps[name].items()}
        rec.close()

        sources = tre["standardised"].report.sources
        per_source = {name: info.records for name, info in sources.items()}  # opt-outs take part in linkage (issue 16)
        tre_total = engines["tre_link"]["total_seconds"]
        duck_total = engines["duckdb"]["total_seconds"] if duck else None
        spark_result = engines.get("spark", {})
        spark_cancelled = "did_not_finish_within_seconds" in spark_result
        spark_total = spark_result.get("did_not_finish_within_seconds") or spark_result.get("total_seconds")
        plain_total = plain["result"]["total_seconds"] if plain else None
        ratios = {
            # Against the baseline an analyst choosing a tool would run: Splink's tutorial on raw columns.
            "tre_link_over_plain_duckdb": round(tre_total / plain_total, 3) if plain else None,
            "tre_link_f1_minus_plain_duckdb_best_f1": (
                round(engines["tre_link"]["pairwise_f1"] - plain["result"]["best_pairs_f1_over_thresholds"], 4)
                if plain and engines["tre_link"]["pairwise_f1"] is not None else None),
            "tre_link_over_duckdb": round(tre_total / duck_total, 3) if duck else None,
            "tre_link_linkage_over_duckdb": (round(engines["tre_link"]["linkage_seconds"] / duck_total, 3)
                                             if duck else None),
            "tre_link_over_duckdb_tre_link_model": (
                round(tre_total / engines["duckdb_tre_link_model"]["total_seconds"], 3) if duck else None),
            "spark_over_tre_link": round(spark_total / tre_total, 3) if spark_total else None,
            "spark_over_duckdb": round(spark_total / duck_total, 3) if spark_total else None,
            "spark_ratios_are_lower_bounds": spark_cancelled,
        }
        result = {
            "people": cfg.synth.people if cfg.synth else None,
            "skewed_surname_share": cfg.synth.skewed_surname_share if cfg.synth else None,
            "records": {"per_source": per_source, "total": sum(per_source.values()),
                        "raw_per_source": {n: i.records for n, i in sources.items()},
                        "baseline_input": duck["records"] if duck else None},
            "synth_seconds": synth_seconds,
            "engines": engines,
            "ratios": ratios,
            "peak_memory_mb": {
                "python_ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                "jvm_vmhwm": _status_kb(rec.jvm_pid, "VmHWM") // 1024 if rec.jvm_pid else None,
                "sampled_rss_by_phase": dict(rec.peak_rss),
                "note": "one process, one JVM: DuckDB runs in the Python process; the Spark baseline runs after "
                        "tre-link in the same JVM, whose heap does not shrink, so per-phase JVM peaks are cumulative",
            },
            "spark": {"master": cfg.spark.master, "driver_memory": cfg.spark.driver_memory,
                      "shuffle_partitions": cfg.spark.shuffle_partitions},
            "linkage": {"threshold_match_probability": cfg.linkage.threshold_match_probability,
                        "u_max_pairs": cfg.linkage.u_max_pairs, "seed": cfg.seed,
                        "max_block_comparisons": cfg.linkage.max_block_comparisons,
                        "bridge_nhs_numbers": cfg.linkage.bridge_nhs_numbers},
            "wall_seconds": round(time.perf_counter() - wall_start, 3),
            **provenance(spark),
        }
    finally:
        rec.close()
        spark.stop()
        if result is not None:
            result["spark_profile"] = spark_profile(event_log)
    return result


if __name__ == "__main__":
    main()
