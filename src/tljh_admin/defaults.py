"""Names and defaults that the command line, the logic and the completion data share.

Import them from here (the environment names from `layout`); never repeat them. This module
imports nothing, so `tljh --help` and a TAB pay nothing for it.
"""

from __future__ import annotations

#: the programs that install into a PREFIX environment. pip is TLJH's own installer
#: (tljh/installer.py runs `python3 -m pip`); uv reads the same index settings.
PIP, UV = "pip", "uv"
INSTALLERS = (PIP, UV)
DEFAULT_INSTALLER = PIP

#: seconds a change waits for another change to the same environment to finish: TLJH's
#: own upgrade (bootstrap.py) runs for minutes, so a short wait would only fail needlessly.
DEFAULT_LOCK_TIMEOUT = 600.0


def is_wait(seconds: float) -> bool:
    """A --lock-timeout: 0 or more, and finite (nan and inf are floats too)."""
    return seconds >= 0 and seconds != float("inf")  # nan fails the first test


def not_a_wait(seconds: float, command: str):
    """The one error for a --lock-timeout that is_wait refuses, on the fast path and on
    Typer's alike."""
    from tljh_admin.errors import UsageError

    return UsageError(
        f"invalid value for --lock-timeout: {seconds} is not a number of seconds, 0 or more",
        hint=f"see `{command} --help`",
    )
