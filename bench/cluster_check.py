"""Run the same link on a real Spark standalone cluster and in local mode, and compare.

    .venv/bin/python bench/cluster_check.py [--workdir DIR] [--people 500] [--keep]

Starts one master and two workers (1 core, 2g each) on 127.0.0.1 from the pyspark installation,
prepares one small synthetic input (synth, standardise, train) in this process with a local
session, copies the standardised tables into two linkage zones, then links one with

    spark-submit --master spark://127.0.0.1:P --packages io.delta:... --jars <splink jar> jobs/link.py

and, meanwhile, the other in this process's local[2] session through `TreLink.link`, which
jobs/link.py calls (a second spark-submit would only add a JVM's start-up to the check), both
with one saved model (linkage.model), so the comparison is about execution, not training. Both
runs' links and person_index must be equal as row sets (exceptAll both ways empty). Prints one
JSON verdict on stdout (last line); exit status 0 when equal, 1 when not, 2 on a setup failure.
The cluster is always stopped, even on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"


def log(msg: str) -> None:
    print(f"[cluster_check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def spark_env(workdir: Path) -> dict:
    env = dict(os.environ)
    env.update(
        SPARK_LOCAL_IP=HOST,
        SPARK_LOCAL_HOSTNAME="localhost",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_LOG_DIR=str(workdir / "spark-logs"),
        SPARK_PID_DIR=str(workdir / "spark-pids"),
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    env.pop("PYSPARK_GATEWAY_PORT", None)
    env.pop("PYSPARK_GATEWAY_SECRET", None)
    return env


class Cluster:
    """One standalone master and `workers` workers, each a background JVM in its own process group."""

    def __init__(self, workdir: Path, workers: int = 2, cores: int = 1, memory: str = "2g"):
        self.workdir = workdir
        self.workers, self.cores, self.memory = workers, cores, memory
        self.port, self.ui_port = free_port(), free_port()
        self.procs: list[subprocess.Popen] = []
        self.env = spark_env(workdir)
        (workdir / "spark-logs").mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"spark://{HOST}:{self.port}"

    def _spawn(self, name: str, args: list[str]) -> None:
        out = open(self.workdir / "spark-logs" / f"{name}.log", "wb")
        proc = subprocess.Popen(
            [str(VENV_BIN / "spark-class"), *args],
            env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.procs.append(proc)

    def start(self) -> None:
        self._spawn("master", ["org.apache.spark.deploy.master.Master",
                               "--host", HOST, "--port", str(self.port), "--webui-port", str(self.ui_port)])
        self._wait(lambda s: True, "master")
        for i in range(self.workers):
            work_dir = self.workdir / f"worker{i}"
            shutil.rmtree(work_dir, ignore_errors=True)  # so executors_per_worker counts this run only
            work_dir.mkdir()
            self._spawn(f"worker{i}", ["org.apache.spark.deploy.worker.Worker", self.url,
                                       "--host", HOST, "--port", str(free_port()), "--webui-port", str(free_port()),
                                       "--cores", str(self.cores), "--memory", self.memory,
                                       "--work-dir", str(work_dir)])

    def wait_for_workers(self, timeout: float = 90) -> dict:
        return self._wait(lambda s: sum(w["state"] == "ALIVE" for w in s.get("workers", [])) >= self.workers,
                          f"{self.workers} workers", timeout)

    def _wait(self, ready, what: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a cluster process exited with {proc.returncode} while waiting for {what}; "
                                       f"see {self.workdir / 'spark-logs'}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.ui_port}/json/", timeout=2) as resp:
                    state = json.load(resp)
                if ready(state):
                    return state
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}; see {self.workdir / 'spark-logs'}")

    def stop(self) -> None:
        # Workers first (they kill their executors on a clean TERM), then the master.
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        # Executors run in the workers' process groups' children; make sure none survived.
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def write_config(root: Path, name: str, people: int, *, linkage_zone: Path, model: str | None) -> Path:
    """conf/demo.yaml with every path under `root`, a small population and 2 shuffle partitions."""
    raw = yaml.safe_load((REPO / "conf" / "demo.yaml").read_text().replace("out/demo", str(root)))
    raw["synth"]["people"] = people
    raw["linkage"]["u_max_pairs"] = 200_000
    raw["spark"].update(master="local[2]", driver_memory="2g", shuffle_partitions=2,
                        checkpoint_dir=str(root / f"checkpoints-{name}"))
    raw["spark"]["conf"] = {"spark.sql.warehouse.dir": str(root / f"warehouse-{name}")}
    raw["output"]["linkage_zone"] = str(linkage_zone)
    if model:
        raw["linkage"]["model"] = model
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def prepare(spark, root: Path, people: int) -> str:
    """synth, standardise, train once; returns the saved model path."""
    from tre_link import TreLink
    from tre_link.platform.config import load_config
    from tre_link.synth import generate

    from tre_link.demo import ensure_demo_keys

    cfg = load_config(write_config(root, "prepare", people, linkage_zone=root / "linkage-prepare", model=None))
    generate(spark, cfg.synth)
    ensure_demo_keys(cfg)  # the person-ID key both links issue their IDs under
    tl = TreLink(spark, cfg)
    tl.standardise()
    model = tl.train().model_json
    shutil.copy(model, root / "model.json")
    return str(root / "model.json")


def submit(master: str, config: Path, env: dict, log_path: Path, extra: list[str]):
    """Start `spark-submit jobs/link.py`; returns (process, start time, log path)."""
    from splink.backends.spark import similarity_jar_location

    from tre_link.platform.spark import delta_packages

    cmd = [str(VENV_BIN / "spark-submit"), "--master", master,
           "--driver-memory", "2g", "--packages", delta_packages(), "--jars", similarity_jar_location(),
           *extra, str(REPO / "jobs" / "link.py"), "--config", str(config)]
    log(" ".join(cmd))
    out = open(log_path, "wb")
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()
    return proc, time.monotonic(), log_path


def finish_all(runs: dict, timeout: float = 900) -> dict:
    """Wait for the runs started by `submit`; returns each one's wall time, raises with a log tail on failure."""
    seconds: dict = {}
    deadline = time.monotonic() + timeout
    while len(seconds) < len(runs):
        for name, (proc, started, log_path) in runs.items():
            if name in seconds or proc.poll() is None:
                continue
            if proc.returncode != 0:
                tail = log_path.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{log_path.name}: spark-submit exited {proc.returncode}:\n{tail}")
            seconds[name] = round(time.monotonic() - started, 1)
        if time.monotonic() > deadline:
            raise RuntimeError(f"spark-submit timed out after {timeout:.0f}s")
        time.sleep(0.5)
    return seconds


def compare(spark, zone_a: Path, zone_b: Path) -> dict:
    from pyspark.sql import functions as F

    result = {}
    for table in ("links", "person_index"):
        a = spark.read.format("delta").load(str(zone_a / table))
        b = spark.read.format("delta").load(str(zone_b / table))
        only_a, only_b = a.exceptAll(b).count(), b.exceptAll(a).count()
        entry = {"rows_cluster": a.count(), "rows_local": b.count(), "only_cluster": only_a, "only_local": only_b,
                 "equal": only_a == 0 and only_b == 0 and a.schema == b.schema}
        if not entry["equal"]:
            # Tell execution-order float noise apart from a real difference.
            floats = [f.name for f in a.schema.fields if f.dataType.typeName() in ("double", "float")]
            ra = a.select([F.round(c, 9).alias(c) if c in floats else F.col(c) for c in a.columns])
            rb = b.select([F.round(c, 9).alias(c) if c in floats else F.col(c) for c in b.columns])
            entry["equal_rounded_1e-9"] = ra.exceptAll(rb).count() == 0 and rb.exceptAll(ra).count() == 0
        result[table] = entry
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", help="where inputs, outputs and logs go (default: a new temp dir)")
    parser.add_argument("--people", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="keep the workdir (always kept when --workdir is given)")
    parser.add_argument("--reuse-inputs", action="store_true",
                        help="reuse the synthetic inputs and model already in --workdir (for reruns)")
    args = parser.parse_args(argv)

    root = Path(args.workdir or tempfile.mkdtemp(prefix="tre-link-cluster-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    verdict: dict = {"workdir": str(root), "people": args.people}
    cluster = Cluster(root)
    spark = None
    status = 2
    try:
        log(f"starting master {cluster.url} (UI {cluster.ui_port}) and 2 workers")
        cluster.start()  # workers register while we prepare the inputs

        os.environ.update(SPARK_LOCAL_IP=HOST)
        from tre_link import TreLink
        from tre_link.platform.config import SparkSettings, load_config
        from tre_link.platform.spark import build_session

        spark = build_session(SparkSettings(master="local[2]", app_name="tre-link-cluster-check-prepare",
                                            driver_memory="2g", shuffle_partitions=2,
                                            checkpoint_dir=str(root / "checkpoints-prepare"),
                                            conf={"spark.sql.warehouse.dir": str(root / "warehouse-prepare")}))
        reusable = (root / "model.json").exists() and (root / "linkage-prepare" / "standardised").exists()
        model = str(root / "model.json") if args.reuse_inputs and reusable else prepare(spark, root, args.people)
        verdict["prepare_seconds"] = round(time.monotonic() - t0, 1)

        zones = {name: root / f"linkage-{name}" for name in ("cluster", "local")}
        configs = {}
        for name, zone in zones.items():
            shutil.rmtree(zone, ignore_errors=True)
            shutil.copytree(root / "linkage-prepare" / "standardised", zone / "standardised")
            configs[name] = write_config(root, name, args.people, linkage_zone=zone, model=model)

        state = cluster.wait_for_workers()
        verdict["workers"] = [{"id": w["id"], "cores": w["cores"], "memory_mb": w["memory"]} for w in state["workers"]]
        env = spark_env(root)
        runs = {"cluster": submit(cluster.url, configs["cluster"], env, root / "submit-cluster.log",
                                  ["--executor-memory", "1g", "--executor-cores", "1", "--total-executor-cores", "2"])}
        try:
            # The local run goes side by side with the cluster's: each is mostly job-scheduling latency.
            started = time.monotonic()
            TreLink(spark, load_config(configs["local"])).link()
            verdict["local_seconds"] = round(time.monotonic() - started, 1)
            verdict.update({f"{name}_seconds": t for name, t in finish_all(runs).items()})
        finally:
            for proc, _, _ in runs.values():
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        apps = cluster._wait(lambda s: True, "master state")
        verdict["cluster_apps"] = [{"name": a["name"], "state": a["state"]} for a in apps.get("completedapps", [])]
        # Each worker keeps a work dir per executor it ran (app-*/N): proof the job really ran on both workers.
        verdict["executors_per_worker"] = {f"worker{i}": len(list((root / f"worker{i}").glob("app-*/*")))
                                           for i in range(cluster.workers)}
        verdict["tables"] = compare(spark, zones["cluster"], zones["local"])
        verdict["equal"] = all(t["equal"] for t in verdict["tables"].values())
        status = 0 if verdict["equal"] else 1
    except Exception as err:  # noqa: BLE001 - reported in the verdict
        verdict["equal"] = False
        verdict["error"] = f"{type(err).__name__}: {err}"
    finally:
        if spark is not None:
            spark.stop()
        cluster.stop()
        verdict["total_seconds"] = round(time.monotonic() - t0, 1)
        if not (args.workdir or args.keep) and status == 0:
            shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        (root / "verdict.json").write_text(json.dumps(verdict, indent=2, sort_keys=True))
    print(json.dumps(verdict, sort_keys=True))
    return status


if __name__ == "__main__":
    sys.exit(main())
