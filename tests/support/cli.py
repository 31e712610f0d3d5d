"""Running the real `tljh` in a subprocess, the way admins and scripts do."""

from __future__ import annotations

import os
import sys


def tljh_argv(*args: str | os.PathLike[str], python: str | os.PathLike[str] = sys.executable) -> list[str]:
    """`python -m tljh_admin ARGS`: the console script's entry point, with this test run's Python."""
    return [os.fspath(python), "-m", "tljh_admin", *map(os.fspath, args)]


def read_until_closed(fd: int) -> bytes:
    """Everything a pseudo-terminal's other side writes until it closes (EIO on Linux)."""
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return out
        if not chunk:
            return out
        out += chunk
