"""This host's processes: whether a run that left something behind (a lock, scratch files) is still alive."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return socket.gethostname()


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (one we may not signal still counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
