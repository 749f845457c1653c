"""One SparkSession for the whole test run, built by the project's own factory."""

from __future__ import annotations

import functools
import logging
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tre_link.platform.config import SparkSettings
from tre_link.platform.spark import build_session


DEMO_RUN_FIXTURES = ("demo_run", "tracked_run")


@functools.cache
def reads_demo_run(test_file: Path) -> bool:
    """Whether a test file names a fixture of the shared demo run (all xdist's controller can
    know of a file: it sees test ids, not fixtures)."""
    return re.search(r"\b(?:%s)\b" % "|".join(DEMO_RUN_FIXTURES), test_file.read_text()) is not None


# Starts and stops one Spark session with the project's own settings, so Spark's Ivy resolves
# Delta's jars into its cache.
RESOLVE_JARS = (
    "from tre_link.platform.config import SparkSettings\n"
    "from tre_link.platform.spark import build_session\n"
    "build_session(SparkSettings(master='local[1]', app_name='tre-link-tests-jars')).stop()\n"
)


def pytest_configure(config):
    """On a machine whose Spark Ivy cache lacks Delta's jar, resolve it once before xdist's workers
    start: two JVMs downloading one jar into one cache at once each read it back truncated, and their
    sessions fail to start (JAVA_GATEWAY_EXITED)."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller has done it
        return
    from tre_link.platform.spark import SPARK_IVY_HOMES, cached_delta_jar

    if cached_delta_jar(SPARK_IVY_HOMES[:1]) is None:  # the cache this Spark (4.x) itself reads
        done = subprocess.run([sys.executable, "-c", RESOLVE_JARS], capture_output=True, text=True)
        if done.returncode != 0:
            raise pytest.UsageError(f"could not resolve Delta's jars through Spark's Ivy:\n{done.stderr[-3000:]}")


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile`, except that every file reading the shared demo run goes to one worker: the
    run is built once, not once per worker, and test_key_leaks finds it in that worker's own event
    log. (`--dist loadgroup` would do this, but pytest-xdist 3.8 groups by renaming
    Item._nodeid, which pytest 9 no longer reads.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class DemoRunFilesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            test_file = super()._split_scope(nodeid)
            return "the shared demo run" if reads_demo_run(config.rootpath / test_file) else test_file

    return DemoRunFilesTogether(config, log)


def pytest_collection_modifyitems(items):
    """Every test that reads the shared demo run is an end-to-end test (`make test-fast` skips them).

    Files holding a minutes-long (slow) test run first, then those reading the demo run, then the
    rest, each file's tests in their own order: `make test` keeps this order on its two workers
    (--no-loadscope-reorder), so both end on short files instead of one waiting for the other's
    last long test."""
    for item in items:
        if set(DEMO_RUN_FIXTURES) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
            if not reads_demo_run(item.path):  # reached through a fixture named elsewhere
                raise pytest.UsageError(f"{item.nodeid} reads the demo run, but its file names none of "
                                        f"{DEMO_RUN_FIXTURES}: xdist would not keep it on the demo run's worker")
    holding = {marker: {item.path for item in items if item.get_closest_marker(marker)} for marker in ("slow", "e2e")}
    items.sort(key=lambda item: 0 if item.path in holding["slow"] else 1 if item.path in holding["e2e"] else 2)


def printed_key_forms(key: bytes) -> list[str]:
    """A key as Spark would print it in a query plan if it were a binary literal (upper-case hex):
    the key, and its zero-padded block xor-ed with HMAC's inner and outer pads, each of which
    gives the key back."""
    assert len(key) <= 64, "longer keys are hashed to 32 bytes before padding"
    block = key.ljust(64, b"\x00")
    return [key.hex().upper()] + [bytes(b ^ pad for b in block).hex().upper() for pad in (0x36, 0x5C)]


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    settings = SparkSettings(
        master="local[2]",
        app_name="tre-link-tests",
        driver_memory="2g",
        shuffle_partitions=1,
        checkpoint_dir=str(tmp_path_factory.mktemp("checkpoints")),
        local_dir=str(tmp_path_factory.mktemp("spark-local")),
        conf={
            "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("warehouse")),
            # what a TRE's history server would keep: test_key_leaks reads it for keys
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": str(tmp_path_factory.mktemp("eventlog")),
            "spark.eventLog.compress": "false",
        },
    )
    session = build_session(settings)
    yield session
    session.stop()


DEMO_CONFIG = Path(__file__).resolve().parents[1] / "conf" / "demo.yaml"


def small_demo_config(root: Path, *, people: int = 800, **synth) -> Path:
    """conf/demo.yaml with every path moved under `root` and a small population; `synth` overrides
    the synth section's other settings (e.g. a population of its own seed)."""
    text = DEMO_CONFIG.read_text().replace("out/demo", str(root))
    raw = yaml.safe_load(text)
    raw["synth"].update(people=people, **synth)
    raw["linkage"]["u_max_pairs"] = 200_000
    raw["spark"]["shuffle_partitions"] = 1
    path = root / "job.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def demo_run(spark, tmp_path_factory):
    """One small end-to-end demo run (synth, every stage, MLflow), shared by the tests that read its outputs."""
    from tre_link.platform.config import load_config
    from tre_link.demo import run_demo

    root = tmp_path_factory.mktemp("demo")
    config_path = small_demo_config(root)
    cfg = load_config(config_path)
    captured = _LogCapture()
    ours = logging.getLogger("tre_link")
    level = ours.level
    ours.setLevel(logging.DEBUG)  # every level of our own logging, as the CLI's --verbose would show
    logging.getLogger().addHandler(captured)
    try:
        summary = run_demo(spark, cfg, str(config_path)).summary
    finally:
        logging.getLogger().removeHandler(captured)
        ours.setLevel(level)
    return DemoRun(config_path=config_path, cfg=cfg, summary=summary, log_lines=captured.lines)


class _LogCapture(logging.Handler):
    """Every log line of the run, at every level, for the tests that scan logs for secrets."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass(frozen=True)
class DemoRun:
    config_path: Path
    cfg: object
    summary: dict
    log_lines: list[str]


@pytest.fixture(scope="session")
def tracked_run(spark, demo_run) -> dict:
    """The demo run, plus a second run that links with its registered model under alias `approved`
    (so trains nothing), as a reviewer would after approving the candidate."""
    from mlflow.tracking import MlflowClient

    from tre_link import TreLink
    from tre_link.record.registry import CANDIDATE_ALIAS

    cfg = demo_run.cfg
    client = MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)
    name = cfg.mlflow.registered_model
    candidate = client.get_model_version_by_alias(name, CANDIDATE_ALIAS)
    client.set_registered_model_alias(name, "approved", candidate.version)
    approved_cfg = cfg.model_copy(
        update={"linkage": cfg.linkage.model_copy(update={"model": f"models:/{name}@approved"})}
    )
    approved = TreLink(spark, approved_cfg, config_path=demo_run.config_path).run(run_name="approved-link").summary
    return {
        "config_path": demo_run.config_path,
        "cfg": cfg,
        "summary": demo_run.summary,
        "run_id": demo_run.summary["mlflow"]["run_id"],
        "approved_run_id": approved["mlflow"]["run_id"],
        "candidate_version": str(candidate.version),
    }


# --------------------------------------------------------------------------------------------
# Record-level values of the synthetic sources, for the tests that check none is released
# --------------------------------------------------------------------------------------------


def source_values(spark, cfg) -> dict[str, set[str]]:
    """Every identifying value in the synthetic inputs, in raw and normalised forms."""
    import re

    from pyspark.sql import functions as F

    values: dict[str, set[str]] = {"nhs": set(), "record_id": set(), "name": set(), "postcode": set(), "dob": set()}
    for source in cfg.sources:
        cols = source.columns
        df = spark.read.format("delta").load(source.path)
        picks = {"nhs": cols.nhs_number, "record_id": cols.record_id, "given": cols.given_name,
                 "family": cols.family_name, "postcode": cols.postcode, "dob": cols.dob}
        rows = df.select(*[F.col(c).cast("string").alias(k) for k, c in picks.items() if c]).collect()
        for r in rows:
            d = r.asDict()
            if d.get("nhs"):
                values["nhs"].update({d["nhs"], re.sub(r"\D", "", d["nhs"])})
            if d.get("record_id"):
                values["record_id"].add(d["record_id"])
            if d.get("postcode"):
                values["postcode"].update({d["postcode"].upper(), d["postcode"].upper().replace(" ", "")})
            if d.get("dob"):
                values["dob"].add(d["dob"])
            for part in ("given", "family"):
                if d.get(part):
                    values["name"].add(d[part].upper())
            if d.get("given") and d.get("family"):
                values["name"].add(f"{d['given']} {d['family']}".upper())
    values["nhs"].discard("")
    return values


def found_record_values(text: str, values: dict[str, set[str]]) -> set[str]:
    """The record-level values of `values` that `text` holds: identifiers as whole words (or as
    phrases), names of six letters or more as words, and long NHS numbers and ids anywhere."""
    import re

    text = text.upper()
    words = set(re.findall(r"[A-Z0-9'.\-/]+", text))
    identifiers = values["nhs"] | values["record_id"] | values["postcode"] | values["dob"]
    found = {v for v in identifiers if (v in text if " " in v else v in words)}
    found |= {n for n in values["name"] if len(n) >= 6} & words
    found |= {v for v in values["nhs"] | values["record_id"] if len(v) >= 8 and v.upper() in text}
    return found


class SimulatedCrash(BaseException):
    """The process dying right after a commit (BaseException: no `except Exception` catches it)."""


def _crash_after_commit(monkeypatch, n: int) -> None:
    """Die right after the n-th Delta commit (an overwrite, a MERGE or rows replaced; a merge of
    changes that had nothing to apply commits nothing, and is not counted)."""
    from tre_link.platform import delta_io

    commits = {"n": 0, "depth": 0}

    def crashing(real):
        def commit(*args, **kwargs):
            commits["depth"] += 1  # merge_changes creates a table by write_delta: one commit
            try:
                version = real(*args, **kwargs)
            finally:
                commits["depth"] -= 1
            if version is not None and commits["depth"] == 0:
                commits["n"] += 1
                if commits["n"] == n:
                    raise SimulatedCrash(f"after commit {n}")
            return version
        return commit

    for name in ("write_delta", "merge_delta", "merge_changes", "replace_rows"):
        monkeypatch.setattr(delta_io, name, crashing(getattr(delta_io, name)))
