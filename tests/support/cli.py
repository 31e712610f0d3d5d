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


PROMPT = b"Go ahead? [y/N]: "


def _own_terminal() -> None:
    # in the child, after setsid: the pty becomes its controlling terminal, so a ^C typed
    # there is turned into SIGINT by the kernel's line discipline, as at a real terminal. A
    # shell starts background jobs (`pytest &`, as scripts/test does) with SIGINT ignored,
    # and an ignored signal stays ignored across exec: give the child a terminal's default.
    import fcntl
    import signal
    import termios

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def start_at_prompt(prefix, args, env: dict[str, str], controlling: bool = False):
    """The real `tljh --prefix PREFIX ARGS...` on a pseudo-terminal (stdin, stdout and stderr),
    read up to its "Go ahead?" prompt. `controlling`: the terminal is its controlling one
    (its own session), so that a ^C written to it is a SIGINT. Returns (process, the
    terminal's main side, what it printed up to the prompt)."""
    import pty
    import select
    import subprocess

    main, child = pty.openpty()
    terminal = {"start_new_session": True, "preexec_fn": _own_terminal} if controlling else {}
    proc = subprocess.Popen(
        tljh_argv("--prefix", prefix, *args), stdin=child, stdout=child, stderr=child, env=env, **terminal
    )
    os.close(child)
    seen = b""
    try:
        while PROMPT not in seen:
            assert select.select([main], [], [], 120)[0], seen  # never hang the suite
            seen += os.read(main, 4096)
    except BaseException:
        proc.kill()
        os.close(main)
        raise
    return proc, main, seen
