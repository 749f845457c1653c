"""Secret keys: read from an environment variable, else a key file; never from config, never echoed.

A key is the stripped text of the variable or file. Text that is hex of even length is decoded
to bytes; any other text is taken as its UTF-8 bytes. Keys shorter than 32 bytes are refused.
Error messages name the variable and file, never the key or any part of it.
"""

from __future__ import annotations

import os
import re
import secrets as _secrets
from pathlib import Path

from tre_link.platform.config import KeySource
from tre_link.platform.errors import SecretKeyError

MIN_KEY_BYTES = 32
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
    return key


def write_random_key_file(path: str | os.PathLike) -> None:
    """Write a fresh random 32-byte key as 64 hex characters to `path`, readable by the owner only.

    For demo and test runs' throwaway keys; real keys are provisioned by the TRE.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (_secrets.token_hex(32) + "\n").encode("ascii"))
    finally:
        os.close(fd)
    os.chmod(path, 0o600)  # in case the file already existed with wider permissions
