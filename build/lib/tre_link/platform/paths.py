"""Locations compared as the storage sees them: one normal form for every zone check.

A local path and its `file://` URI, a path through `..` or a symlink, and the same path written
twice all name one place; comparing them as text would let a research zone slip inside the
linkage zone. Remote URIs (s3a://, abfss://, hdfs://, dbfs:) keep their scheme and authority and
have their path normalised; a local path is made absolute with symlinks resolved.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from urllib.parse import unquote, urlparse

# Schemes that name the same store under different connector names.
_SCHEME_ALIASES = {"s3a": "s3", "s3n": "s3"}


def normalise(location: str) -> str:
    """The canonical form of a path or URI, for comparing locations (never for opening them)."""
    parsed = urlparse(str(location))
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # a plain path (or a Windows drive)
        local = unquote(parsed.path) if parsed.scheme == "file" else str(location)
        return Path(local).expanduser().resolve().as_posix()
    scheme = _SCHEME_ALIASES.get(parsed.scheme.lower(), parsed.scheme.lower())
    return f"{scheme}://{parsed.netloc.lower()}{posixpath.normpath(parsed.path or '/')}"


def inside(child: str, parent: str) -> bool:
    """Whether `child` is `parent` or lies below it (both in any form `normalise` takes)."""
    child, parent = normalise(child), normalise(parent)
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def overlap(a: str, b: str) -> bool:
    """Whether either location lies inside the other."""
    return inside(a, b) or inside(b, a)
