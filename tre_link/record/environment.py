"""Which software produced a run: the lock file's hash and the installed versions of the packages
that decide the outputs, recorded with every MLflow run, and compared by `reproduce`."""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import sys
from pathlib import Path

# The packages whose versions decide a run's outputs (recorded as params `version.<name>`).
KEY_PACKAGES = ("tre-link", "pyspark", "delta-spark", "splink", "mlflow", "duckdb", "pandas", "numpy",
                "pyarrow", "pydantic", "nicknames")
# The lock files `make` installs from, in the repository root (see the Makefile and README).
LOCK_FILES = ("requirements.lock", "requirements-spark4.0.lock")
VERSION_PARAM = "version."


def installed_versions(names=KEY_PACKAGES) -> dict[str, str]:
    """Installed version of each named distribution ("not installed" for one that is absent)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def all_installed() -> dict[str, str]:
    """Every installed distribution and its version (the run's `environment/installed.json`)."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[_canonical(name)] = dist.version
    return dict(sorted(found.items()))


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path) -> dict[str, str]:
    """name → version pinned in a pip-compile style lock file."""
    pins = {}
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if m:
            pins[_canonical(m.group(1))] = m.group(2)
    return pins


def lock_file(root: Path | None = None) -> Path | None:
    """The lock file this environment was installed from: of the repository's lock files (or the
    one `make install-offline` copies into the virtual environment), the one whose pins the
    installed packages match; None when nothing matches (an install that did not come from a lock)."""
    root = root or Path(__file__).resolve().parents[2]
    installed = all_installed()
    candidates = [root / name for name in LOCK_FILES] + [Path(sys.prefix) / "requirements.lock"]
    for path in candidates:
        if path.is_file():
            pins = locked_versions(path)
            if all(installed.get(pkg) == ver for pkg, ver in pins.items() if pkg in {"pyspark", "delta-spark"}):
                return path
    return None


def run_params() -> dict[str, str]:
    """Params for a pipeline run: the lock file, its SHA-256, which installed packages differ from
    it, and the version of each key package."""
    lock = lock_file()
    params = {f"{VERSION_PARAM}{name}": version for name, version in installed_versions().items()}
    if lock is None:
        params.update(requirements_lock="none found", requirements_lock_sha256="none")
        return params
    installed = all_installed()
    drift = sorted(f"{pkg} {installed.get(pkg, 'missing')} (locked {ver})"
                   for pkg, ver in locked_versions(lock).items() if installed.get(pkg) != ver)
    params.update(requirements_lock=lock.name,
                  requirements_lock_sha256=hashlib.sha256(lock.read_bytes()).hexdigest(),
                  requirements_lock_differences="; ".join(drift) or "none")
    return params


def differences_from_run(params: dict[str, str]) -> list[str]:
    """Each key package whose installed version differs from the one a run recorded, in words."""
    recorded = {k[len(VERSION_PARAM):]: v for k, v in params.items() if k.startswith(VERSION_PARAM)}
    if not recorded:
        return ["the run recorded no package versions (it predates version recording)"]
    now = installed_versions(recorded)
    return [f"{name}: run used {version}, installed now {now[name]}"
            for name, version in sorted(recorded.items()) if now[name] != version]
