"""Secret keys: read from an environment variable, else a key file; never from config, never echoed.

A key is the stripped text of the variable or file. Text that is hex of even length is decoded
to bytes; any other text is taken as its UTF-8 bytes. Keys shorter than 32 bytes, or with fewer
than 16 distinct byte values (a repeated byte, a short phrase typed twice), are refused, and so is
one key value used for two purposes: keys are compared by an HMAC fingerprint, never as text.
Error messages name the variable and file, never the key or any part of it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets as _secrets
from collections.abc import Mapping
from pathlib import Path

from tre_link.platform.config import KeySource
from tre_link.platform.errors import SecretKeyError

MIN_KEY_BYTES = 32
MIN_DISTINCT_BYTES = 16  # 32 random bytes have about 30; '0' * 64 has 1
_HEX = re.compile(r"^[0-9a-fA-F]+$")


def _decode(text: str) -> bytes:
    if len(text) % 2 == 0 and _HEX.match(text):
        return bytes.fromhex(text)
    return text.encode("utf-8")


def load_key(source: KeySource, *, purpose: str) -> bytes:
    """Return the key bytes for `purpose` (e.g. 'linkage', 'project x') from `source`.

    Reads environment variable `source.env`; when it is unset or empty and `source.file` is set,
    reads that file. Raises SecretKeyError when neither yields a key or the key is too short.
    """
    where = f"environment variable {source.env}"
    text = os.environ.get(source.env, "").strip()
    if not text and source.file:
        where = f"key file {source.file}"
        path = Path(source.file)
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            text = ""
        except (OSError, UnicodeDecodeError) as err:
            raise SecretKeyError(
                f"{purpose} key: cannot read key file {source.file} ({type(err).__name__}); "
                f"set environment variable {source.env} or fix the file"
            ) from None
    if not text:
        also = f" or key file {source.file}" if source.file else ""
        raise SecretKeyError(
            f"{purpose} key: environment variable {source.env}{also} is not set or empty; "
            "the job refuses to run without it"
        )
    key = _decode(text)
    if len(key) < MIN_KEY_BYTES:
        raise SecretKeyError(
            f"{purpose} key from {where} is too short: {len(key)} bytes, need at least {MIN_KEY_BYTES}"
        )
    if len(set(key)) < MIN_DISTINCT_BYTES:
        raise SecretKeyError(
            f"{purpose} key from {where} is too weak: {len(set(key))} distinct byte values, need at least "
            f"{MIN_DISTINCT_BYTES}; make one with `tre-link keygen`"
        )
    return key


def fingerprint(key: bytes) -> str:
    """An HMAC of a fixed message under the key: equal for equal keys, and no help in finding the key."""
    return hmac.new(key, b"tre-link key fingerprint", hashlib.sha256).hexdigest()


def require_distinct(keys: Mapping[str, bytes]) -> None:
    """Refuse one key value used for two purposes (two projects, or a project and the linkage key):
    their pseudonyms would join. `keys` maps each purpose to its key."""
    by_print: dict[str, list[str]] = {}
    for purpose, key in keys.items():
        by_print.setdefault(fingerprint(key), []).append(purpose)
    shared = [sorted(purposes) for purposes in by_print.values() if len(purposes) > 1]
    if shared:
        raise SecretKeyError(
            "the same key value serves " + "; ".join(" and ".join(group) for group in shared)
            + ": every project needs a key of its own, distinct from the linkage key"
        )


def write_random_key_file(path: str | os.PathLike, *, overwrite: bool = True) -> None:
    """Write a fresh random 32-byte key as 64 hex characters to `path`, readable by the owner only
    (`tre-link keygen`, and the demo's throwaway keys). Without `overwrite`, an existing file is refused."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and path.exists():
        raise SecretKeyError(f"key file {path} exists already; remove it first, or pass --force to replace it")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (_secrets.token_hex(32) + "\n").encode("ascii"))
    finally:
        os.close(fd)
    os.chmod(path, 0o600)  # in case the file already existed with wider permissions
