"""The one place a SparkSession is built. Library code receives a session; it never creates one."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tre_link.platform import logs
from tre_link.platform.config import SparkSettings
from tre_link.platform.errors import EnvironmentProblem
from tre_link.platform.host import hostname, process_alive


def require_java() -> None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.path.exists(os.path.join(java_home, "bin", "java")):
        return
    if shutil.which("java") is None:
        raise EnvironmentProblem(
            "Java was not found: Spark needs Java 17. Install it (e.g. `apt-get install openjdk-17-jre-headless`) "
            "or set JAVA_HOME."
        )


def delta_packages() -> str:
    """The Maven coordinate(s) of the Delta jars that match the installed delta-spark and pyspark,
    as Delta's own pip helper names them (e.g. io.delta:delta-spark_4.1_2.13:4.4.0): the one
    place tre-link gets them from, for sessions, spark-submit (bench/cluster_check.py) and bundles."""
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    return configure_spark_with_delta_pip(SparkSession.Builder())._options["spark.jars.packages"]


# Spark's default Ivy homes (Spark 4's, then Spark 3's): --packages jars are cached under <home>/jars.
SPARK_IVY_HOMES = ("~/.ivy2.5.2", "~/.ivy2")


def cached_delta_jar(homes: tuple[str, ...] = SPARK_IVY_HOMES) -> Path | None:
    """Delta's jar in Spark's default Ivy cache, where an earlier session resolved it; else None."""
    group, artifact, version = delta_packages().split(",")[0].split(":")
    cached = (Path(home).expanduser() / "jars" / f"{group}_{artifact}-{version}.jar" for home in homes)
    return next((jar for jar in cached if jar.is_file()), None)


def session_jars(settings: SparkSettings) -> list[str]:
    """The jars a session started here loads through spark.jars: Splink's similarity jar, and with
    `jars_dir` (an offline install) every jar in that directory, Delta's among them, so nothing is
    resolved through Ivy. A jars_dir without Delta's jar is refused before the JVM starts."""
    from splink.backends.spark import similarity_jar_location

    splink_jar = similarity_jar_location()
    if not settings.jars_dir:
        return [splink_jar]
    jars = sorted(str(p.resolve()) for p in Path(settings.jars_dir).glob("*.jar"))
    artifact = delta_packages().split(",")[0].split(":")[1]
    if not any(Path(j).name.startswith((f"io.delta_{artifact}-", f"{artifact}-")) for j in jars):
        raise EnvironmentProblem(
            f"spark.jars_dir {settings.jars_dir}: no Delta jar ({artifact}) in it. Build one with "
            "`make bundle` where the internet is reachable, or unset spark.jars_dir to download it."
        )
    if not any(Path(j).name == Path(splink_jar).name for j in jars):
        jars.append(splink_jar)  # Splink ships its jar inside its wheel
    return jars


def launched_by_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands Python its gateway port; on Databricks the
    cluster's JVM and session exist before any job (its runtime sets DATABRICKS_RUNTIME_VERSION)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or "DATABRICKS_RUNTIME_VERSION" in os.environ


def build_session(settings: SparkSettings):
    """Build (or attach to) a SparkSession with Delta Lake and Splink's Scala UDFs wired in."""
    require_java()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(settings.app_name)
    if not launched_by_spark_submit():
        if settings.master.startswith("local"):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # local mode needs no network interface
        # Under spark-submit the master, driver memory and packages come from its command line.
        builder = builder.master(settings.master).config("spark.driver.memory", settings.driver_memory)
        # Let the JIT compile Spark's generated code however long it is: standardisation fuses
        # into one method past HotSpot's 8,000-byte limit, which otherwise stays interpreted
        # (standardising 1.5M records: 69 s instead of 79 s in a fresh JVM).
        java_options = "-XX:-DontCompileHugeMethods"
        if settings.local_dir:
            # Shuffle, spill and cached blocks hold records: they go to the linkage zone's scratch
            # space, and so do the JVM's own temporary files.
            local = session_scratch_dir(settings.local_dir)
            builder = builder.config("spark.local.dir", local)
            java_options += f" -Djava.io.tmpdir={local}"
        builder = builder.config("spark.driver.extraJavaOptions", java_options)
        # Under spark-submit, spark.jars already lists --jars and the --packages jars; overwriting it
        # would leave executors on a cluster without Delta (only local mode would still work).
        builder = builder.config("spark.jars", ",".join(session_jars(settings)))
    builder = (
        builder
        .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        .config("spark.default.parallelism", str(settings.shuffle_partitions))
        .config("spark.ui.enabled", str(settings.ui_enabled).lower())
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.databricks.delta.snapshotPartitions", "2")
        # Per-file min/max statistics only for each new table's first columns (its keys: source,
        # record_id, person_key...). With Delta's default of 32 columns, writing a standardised
        # source of 800k rows took 8.0 s against 2.9 s without statistics; these tables are read
        # whole, not filtered. spark.conf in the config can set it back.
        .config("spark.databricks.delta.properties.defaults.dataSkippingNumIndexedCols", "4")
        # Cached records are built once and read a few times within a stage: compressing the
        # columnar cache cost more than it saved (1.5M prepared records cached in 13.0 s
        # compressed, 7.3 s not). spark.conf in the config can set it back.
        .config("spark.sql.inMemoryColumnarStorage.compressed", "false")
        .config("spark.sql.session.timeZone", "UTC")
        # Record values must not reach logs through query plans: redact string literals in explain output.
        .config("spark.sql.redaction.string.regex", ".*")
    )
    for key, value in settings.conf.items():
        builder = builder.config(key, value)
    if not launched_by_spark_submit() and not settings.jars_dir:
        # Resolved by Ivy at start (as delta's configure_spark_with_delta_pip does), after any in spark.conf.
        packages = [p for p in (settings.conf.get("spark.jars.packages"), delta_packages()) if p]
        builder = builder.config("spark.jars.packages", ",".join(packages))
    # The JVM inherits the log file as its stdout and stderr: Ivy and Spark's start-up lines go there.
    jvm_log = logs.log_file(settings.log_dir) if settings.log_dir and not launched_by_spark_submit() else None
    with logs.jvm_output_to(jvm_log):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(settings.log_level)
    if settings.checkpoint_dir:
        spark.sparkContext.setCheckpointDir(owner_only_dir(settings.checkpoint_dir))
    register_splink_udfs(spark)
    return spark


def owner_only_dir(path: str) -> str:
    """`path` made (if need be) readable by its owner only; returned absolute. Local paths only."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return os.path.abspath(path)


def session_scratch_dir(base: str) -> str:
    """A directory of this process's own under `base` (owner-only, named host-pid), for spark.local.dir.

    Spark removes its shuffle files when it stops, but a killed job leaves them behind: the
    directories of earlier processes on this host that are no longer running are removed here,
    so record-level leftovers do not outlive the next run."""
    owner_only_dir(base)
    remove_abandoned_scratch(base)
    return owner_only_dir(str(Path(base) / f"{hostname()}-{os.getpid()}"))


def remove_abandoned_scratch(base: str) -> None:
    """Remove the scratch directories under `base` of processes on this host that are gone."""
    for entry in Path(base).glob(f"{hostname()}-*"):
        pid = entry.name.rsplit("-", 1)[1]
        if entry.is_dir() and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


@contextmanager
def run_checkpoint_dir(spark, base: str) -> Iterator[str]:
    """A fresh checkpoint directory under `base` for one run, removed when the run ends however it
    ends. Earlier runs' directories left by a crash are removed first: call it only while holding
    the zone (`zone_lock.hold_zone`), so no other run is using them."""
    from tre_link.platform import storage

    for stale in storage.children(spark, base):
        storage.delete(spark, stale)
    directory = f"{base.rstrip('/')}/{uuid.uuid4().hex}"
    if storage.local_path(directory) is not None:
        directory = owner_only_dir(directory)
    spark.sparkContext.setCheckpointDir(directory)
    try:
        yield directory
    finally:
        storage.delete(spark, directory)  # (setCheckpointDir makes a new directory, so none is set back)


def register_splink_udfs(spark) -> None:
    """Splink's Scala similarity and phonetic functions (jaro_winkler, damerau_levenshtein,
    Dmetaphone, ...), registered as Splink's SparkAPI registers them, so the model SQL we run
    ourselves and standardisation's phonetic keys use them; no Python UDF sits on a hot path."""
    from tre_link.platform.splink_internals import scala_udfs

    for udf in scala_udfs():
        spark.udf.registerJavaFunction(*udf)


@contextmanager
def sql_conf(spark, settings: dict[str, str]) -> Iterator[None]:
    """Runtime SQL settings for the work inside the block only; the session's own come back after."""
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
