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


def start_tljh(prefix, args, env: dict[str, str], **kwargs):
    """The real `tljh --prefix PREFIX ARGS...` as a background process (text pipes), with the
    suite's hermetic environment plus `env`; kwargs go to Popen (e.g. start_new_session)."""
    import subprocess

    from tests.support import prefixes

    full_env = prefixes.hermetic_env(NO_COLOR="1", TLJH_SYSTEM_PYTHON="/usr/bin/python3", **env)
    return subprocess.Popen(
        tljh_argv("--prefix", prefix, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        **kwargs,
    )
