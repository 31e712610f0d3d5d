"""The error types and the exit codes every command shares.

Every error the user can act on is a `TljhError`: one line of message, one line of hint, and
an exit code that comes from its type. `__main__` maps them once. Exit codes are part of the
scripting contract (README, "Exit codes"); change them only with a new major version.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    #: a report found a problem: a broken or missing environment, a failed check
    PROBLEMS_FOUND = 1
    #: the admin gave no answer at a prompt (Ctrl-D, end of input): nothing was changed.
    #: The same 1 click gives an abort; an alias of PROBLEMS_FOUND, not a new code.
    ABORTED = 1
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
    #: the installer could not resolve the request (no such version, conflicts, index unreachable);
    #: nothing was changed
    RESOLUTION_FAILED = 7
    #: an input/output error outside the environments: stdout or stderr full (/dev/full), a
    #: failing disk (sysexits.h's EX_IOERR)
    IO_ERROR = 74
    #: stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)
    INTERRUPTED = 130
    #: stdout was closed by the reader (`tljh env list --json | head -c 10`): 128 + SIGPIPE,
    #: what the shell reports for any tool that SIGPIPE ends
    PIPE_CLOSED = 141


class TljhError(Exception):
    """An error the user can act on: one line of message, one line of hint.

    Raise a subclass: its class attribute `exit_code` says how the process ends. The
    `exit_code` argument remains for the rare error whose code is decided at run time.
    """

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, hint: str = "", exit_code: ExitCode | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(TljhError):
    """The command line or its input is wrong."""

    exit_code = ExitCode.USAGE


class PermissionDenied(TljhError):
    """This user may not read or change that: run with sudo."""

    exit_code = ExitCode.PERMISSION_DENIED


class Refused(TljhError):
    """An isolation rule refused the change before anything ran."""

    exit_code = ExitCode.REFUSED


class Locked(TljhError):
    """Another change holds an environment's lock."""

    exit_code = ExitCode.LOCKED


class ChangeFailed(TljhError):
    """The change failed and the environments were restored."""

    exit_code = ExitCode.CHANGE_FAILED


class ResolutionFailed(TljhError):
    """The installer could not work out what to install; nothing changed."""

    exit_code = ExitCode.RESOLUTION_FAILED


class IndexUnreachable(ResolutionFailed):
    """The package index (or conda channel) could not be reached; nothing changed."""


class Aborted(TljhError):
    """The admin ended the input at a prompt (Ctrl-D); nothing was changed."""

    exit_code = ExitCode.ABORTED


class Stopped(TljhError):
    """Ctrl-C or SIGTERM stopped the command; whatever was changed was restored.
    (Not "InterruptedError": that builtin means EINTR.)"""

    exit_code = ExitCode.INTERRUPTED


def refuse_empty(values: dict) -> None:
    """`--flag ""` (a script's unset variable) is refused, as an empty --prefix is, never
    read as "not given": `--index-url "$PRIVATE_INDEX"` with the variable unset would
    otherwise install from the default index. `values`: {flag: value or list of values}."""
    for flag, value in values.items():
        given = value if isinstance(value, (list, tuple)) else [value]
        if any(v is not None and not str(v).strip() for v in given):
            raise UsageError(f"{flag} is empty", hint=f"give {flag} a value, or leave it out")
