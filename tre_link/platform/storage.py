"""Files and directories on the storage a location names: the local file system, or any Hadoop
file system (HDFS, ABFS, S3A...) through the session's own Hadoop configuration."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse


def local_path(location: str) -> Path | None:
    """The local path a location names (a plain path or a file: URI); None for any other scheme."""
    parsed = urlparse(str(location))
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:
        return Path(location)
    return None


def _hadoop(spark, location: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(location)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def exists(spark, location: str) -> bool:
    local = local_path(location)
    if local is not None:
        return local.exists()
    fs, path = _hadoop(spark, location)
    return bool(fs.exists(path))


def delete(spark, location: str) -> None:
    """Remove a file or a directory tree; nothing happens when it is not there."""
    local = local_path(location)
    if local is not None:
        if local.is_dir():
            shutil.rmtree(local, ignore_errors=True)
        else:
            local.unlink(missing_ok=True)
        return
    fs, path = _hadoop(spark, location)
    fs.delete(path, True)


def children(spark, location: str) -> list[str]:
    """The entries directly below a directory, as locations; none when it does not exist."""
    local = local_path(location)
    if local is not None:
        return [str(p) for p in local.iterdir()] if local.is_dir() else []
    fs, path = _hadoop(spark, location)
    if not fs.exists(path):
        return []
    return [status.getPath().toString() for status in fs.listStatus(path)]


def names(spark, location: str) -> list[str]:
    """The names of the entries directly below a directory; none when it does not exist."""
    return [entry.rstrip("/").rsplit("/", 1)[-1] for entry in children(spark, location)]


def read_text(spark, location: str) -> str | None:
    """A file's text (UTF-8); None when it is not there."""
    local = local_path(location)
    if local is not None:
        try:
            return local.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
    fs, path = _hadoop(spark, location)
    if not fs.exists(path):
        return None
    stream = fs.open(path)
    try:
        return spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()
