"""One writer at a time in a linkage zone: a lock file taken atomically, held for a run, freed after.

Two runs writing one zone would interleave their commits (links from one, person_index from the
other) or fail deep inside Delta. The second run is refused at the start instead, naming the run
that holds the zone. A lock left by a run that died on this host (its process is gone) is taken
over; one held from another host is left for the operator, since its process cannot be checked.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from tre_link.platform.errors import ZoneBusy
from tre_link.platform.host import hostname, process_alive

log = logging.getLogger(__name__)

LOCK_NAME = "_tre_link.lock"


def _local_path(location: str) -> Path | None:
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme == "file" else location)
    return None


class _LocalLockFile:
    def __init__(self, path: Path):
        self.path = path

    def create(self, content: str) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(content)
        return True

    def read(self) -> str | None:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class _HadoopLockFile:
    """The same on any Hadoop file system (HDFS, ABFS...), whose create without overwrite is atomic."""

    def __init__(self, spark, location: str):
        jvm = spark.sparkContext._jvm
        self._path = jvm.org.apache.hadoop.fs.Path(location)
        self._fs = self._path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def create(self, content: str) -> bool:
        try:
            stream = self._fs.create(self._path, False)
        except Exception:  # noqa: BLE001 - py4j wraps FileAlreadyExistsException
            return False
        stream.write(bytearray(content.encode()))
        stream.close()
        return True

    def read(self) -> str | None:
        if not self._fs.exists(self._path):
            return None
        stream = self._fs.open(self._path)
        try:
            data = bytearray()
            while (b := stream.read()) != -1:
                data.append(b)
            return data.decode()
        finally:
            stream.close()

    def remove(self) -> None:
        self._fs.delete(self._path, False)


@contextmanager
def hold_zone(spark, zone: str, purpose: str) -> Iterator[None]:
    """Hold `zone` for the work inside; raise ZoneBusy if another live run holds it."""
    location = f"{zone.rstrip('/')}/{LOCK_NAME}"
    local = _local_path(location)
    lock = _LocalLockFile(local) if local is not None else _HadoopLockFile(spark, location)
    holder = {"pid": os.getpid(), "host": hostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "purpose": purpose}
    if not lock.create(json.dumps(holder)):
        other = _holder(lock.read())
        if other is None or _stale(other):
            log.warning("the linkage zone's lock was left by a run that has ended (%s); taking it over",
                        _describe(other))
            lock.remove()
            if not lock.create(json.dumps(holder)):
                raise ZoneBusy(f"another run took the linkage zone {zone} at the same moment; try again")
        else:
            raise ZoneBusy(
                f"another run holds the linkage zone {zone} ({_describe(other)}); wait for it to finish, "
                f"or, if that run is gone, remove {location}"
            )
    try:
        yield
    finally:
        lock.remove()


def _holder(text: str | None) -> dict | None:
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def _stale(holder: dict) -> bool:
    return holder.get("host") == hostname() and not process_alive(int(holder.get("pid", -1)))


def _describe(holder: dict | None) -> str:
    if not holder:
        return "holder unknown"
    return f"{holder.get('purpose', 'a run')}, pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
