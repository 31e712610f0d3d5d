"""The doctor's values: checks, findings and results. No I/O here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tljh_admin.doctor.context import Context

# Statuses, mildest first; a check's status is its worst finding's.
OK, SKIPPED, WARNING, FAILED, ERROR = "ok", "skipped", "warning", "failed", "error"
STATUSES = (OK, SKIPPED, WARNING, FAILED, ERROR)
_RANK = {s: i for i, s in enumerate(STATUSES)}

HOST = "host"  # the scope of checks about the machine rather than one environment


@dataclass(frozen=True)
class Fix:
    """A safe repair: what it does, in words, and the function that does it."""

    description: str
    apply: Callable[[], None] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Finding:
    status: str
    message: str
    #: the path or package the finding is about
    subject: str
    #: one line saying what to do
    hint: str
    fix: Fix | None = None


@dataclass(frozen=True)
class Check:
    """A check is a value: the registry lists them, the runner calls them."""

    id: str
    title: str
    #: which environments it looks at; (HOST,) for checks about the machine
    envs: tuple[str, ...]
    run: Callable[[Context, str], list[Finding]] = field(repr=False)
    #: why it matters, for `tljh doctor --list`
    why: str = ""
    fixable: bool = False


@dataclass(frozen=True)
class CheckResult:
    check: Check
    env: str
    status: str
    findings: tuple[Finding, ...]


def worst(statuses) -> str:
    return max(statuses, key=_RANK.__getitem__, default=OK)
