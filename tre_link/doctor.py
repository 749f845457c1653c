"""`tre-link doctor`: is this machine (and, with a config, this job) ready to run? Each check says
what it found and, when something is wrong, what to fix. Key values are never read out: only
whether each key is present and strong enough."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tre_link.platform.config import JobConfig, SparkSettings
from tre_link.platform.errors import TreLinkError

SUPPORTED_SPARK_LINES = ("4.0", "4.1")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    found: str
    fix: str = ""

    def line(self) -> str:
        text = f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.found}"
        return text + (f"\n       fix: {self.fix}" if self.fix and not self.ok else "")


def java_check() -> Check:
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        return Check("java", False, "not found", "install Java 17 (e.g. `apt-get install openjdk-17-jre-headless`) "
                     "or set JAVA_HOME")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        return Check("java", False, f"{java} did not run ({err})", "reinstall Java 17 or fix JAVA_HOME")
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = int(m.group(1)) if m else 0
    if major == 1 and m.group(2):
        major = int(m.group(2))
    ok = major >= 17
    return Check("java", ok, f"Java {major or 'unknown'} at {java}",
                 "Spark 4 needs Java 17 or later: install it and set JAVA_HOME")


def spark_check() -> Check:
    try:
        version = importlib.metadata.version("pyspark")
    except importlib.metadata.PackageNotFoundError:
        return Check("spark", False, "pyspark is not installed", "run `make` (or install from the bundle)")
    line = ".".join(version.split(".")[:2])
    return Check("spark", line in SUPPORTED_SPARK_LINES, f"pyspark {version}",
                 f"tre-link is tested on Spark {' and '.join(SUPPORTED_SPARK_LINES)}: install from requirements.lock")


def jar_checks(settings: SparkSettings) -> list[Check]:
    from splink.backends.spark import similarity_jar_location

    from tre_link.platform.spark import cached_delta_jar, delta_packages, session_jars

    checks = []
    splink_jar = Path(similarity_jar_location())
    checks.append(Check("splink jar", splink_jar.is_file(), str(splink_jar), "reinstall splink"))
    packages = delta_packages()
    if settings.jars_dir:
        try:
            jars = session_jars(settings)
            checks.append(Check("delta jars", True, f"{len(jars)} jars in spark.jars_dir {settings.jars_dir}"))
        except TreLinkError as err:
            checks.append(Check("delta jars", False, str(err), "copy the bundle's jars/ there (`make bundle`)"))
        return checks
    hit = cached_delta_jar()
    checks.append(Check("delta jars", True, f"{packages}: " + (
        f"in the Ivy cache ({hit})" if hit else "not cached; Spark downloads it from Maven Central at first start "
        "(offline: set spark.jars_dir to a bundle's jars)")))
    return checks


def mlflow_check(cfg: JobConfig) -> Check:
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    uri = cfg.tracking_uri
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        writable = _writable(db.parent)
        return Check("mlflow store", writable, f"{uri} ({'exists' if db.exists() else 'created at first run'})",
                     f"make {db.parent} writable, or set mlflow.tracking_uri")
    try:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        return Check("mlflow store", True, f"{uri} answers")
    except Exception as err:  # any failure to reach the store is the finding
        return Check("mlflow store", False, f"{uri} did not answer ({type(err).__name__})",
                     "start the tracking server or correct mlflow.tracking_uri")


def key_checks(cfg: JobConfig) -> list[Check]:
    from tre_link.platform.secrets import load_key

    sources = ([("linkage", cfg.linkage_key)] if cfg.linkage_key else []) + [
        (f"project {p.name}", p.key) for p in cfg.projects]
    checks = []
    for purpose, source in sources:
        name = f"{purpose} key"
        where = f"${source.env}" + (f" or {source.file}" if source.file else "")
        try:
            load_key(source, purpose=purpose)
            checks.append(Check(name, True, f"present ({where})"))
        except TreLinkError as err:
            checks.append(Check(name, False, str(err), f"set {source.env}, or write the key file with "
                                "`tre-link keygen --out FILE` (the demo writes throwaway ones itself)"))
    return checks


def _writable(path: Path) -> bool:
    """Whether `path` could be written: it, or the nearest directory above it that exists."""
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def zone_checks(cfg: JobConfig) -> list[Check]:
    places = {"output.root": cfg.output.root, "linkage zone": cfg.output.linkage_zone,
              "research zone": cfg.output.research_zone, "spark.local_dir": cfg.spark.local_dir,
              "spark.checkpoint_dir": cfg.spark.checkpoint_dir, "log dir": cfg.spark.log_dir}
    checks = []
    for name, location in places.items():
        if not location:
            continue
        if re.match(r"^[a-z][a-z0-9+.-]*://", location) and not location.startswith("file:"):
            checks.append(Check(f"write access: {name}", True, f"{location} (remote storage: not checked here)"))
            continue
        path = Path(location.removeprefix("file://").removeprefix("file:"))
        checks.append(Check(f"write access: {name}", _writable(path), str(path),
                            f"give this user write access to {path} (or its parent)"))
    return checks


def run_checks(cfg: JobConfig | None) -> list[Check]:
    settings = cfg.spark if cfg else SparkSettings()
    checks = [java_check(), spark_check(), *jar_checks(settings)]
    if cfg is not None:
        checks += [mlflow_check(cfg), *key_checks(cfg), *zone_checks(cfg)]
    return checks
