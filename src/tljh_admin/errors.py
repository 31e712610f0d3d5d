"""The one error type and the exit codes every command shares.

Exit codes are part of the scripting contract (README, "Exit codes"); change them only
with a new major version.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    #: a report found a problem: a broken or missing environment, a failed check
    PROBLEMS_FOUND = 1
    #: the command line or its input is wrong (the same code click uses for usage errors)
    USAGE = 2
    #: the command needs rights the caller lacks (run with sudo)
    PERMISSION_DENIED = 3
    #: a change was refused by an isolation rule
    REFUSED = 4
    #: another change holds the environment's lock
    LOCKED = 5
    #: a change failed and was rolled back
    CHANGE_FAILED = 6
    #: stopped by Ctrl-C or SIGTERM
    INTERRUPTED = 130


class TljhError(Exception):
    """An error the user can act on: one line of message, one line of hint."""

    def __init__(self, message: str, hint: str = "", exit_code: ExitCode = ExitCode.USAGE):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
