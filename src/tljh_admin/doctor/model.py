"""The doctor's values: checks, findings and results. No I/O here.

namedtuples rather than dataclasses: `tljh doctor --json` is called in loops by scripts and
CI, and importing `dataclasses` (it pulls in `inspect`) costs more than a check.
"""

from __future__ import annotations

from collections import namedtuple

# Statuses, mildest first; a check's status is its worst finding's.
OK, SKIPPED, WARNING, FAILED, ERROR = "ok", "skipped", "warning", "failed", "error"
STATUSES = (OK, SKIPPED, WARNING, FAILED, ERROR)
_RANK = {s: i for i, s in enumerate(STATUSES)}

HOST = "host"  # the scope of checks about the machine rather than one environment

# What a finding breaks, and for whom (the `impact` of a finding):
HUB_FAILS = "hub-fails"  # the hub (root) fails to start or to serve; admins' hub commands fail
SPAWNS_FAIL = "spawns-fail"  # users' servers fail to start, or fail importing what they need
ROOT_CODE = "root-code"  # non-root users can run code as root
USER_CODE = "user-code"  # a user can change code that other users' servers run
CHANGES_FAIL = "changes-fail"  # installs and upgrades fail or stop half way
COSMETIC = "cosmetic"  # nothing breaks now: noise, or a trap for later
IMPACTS = (ROOT_CODE, HUB_FAILS, SPAWNS_FAIL, USER_CODE, CHANGES_FAIL, COSMETIC)

SKIPPED_NEEDS_ROOT = "skipped: run with sudo"


class Fix(namedtuple("Fix", "description apply")):
    """A safe repair: what it does, in words, and the function that does it."""

    __slots__ = ()

    def __eq__(self, other):
        return isinstance(other, Fix) and self.description == other.description

    def __hash__(self):
        return hash(self.description)


class Finding(namedtuple("Finding", "status message subject hint fix impact", defaults=(None, ""))):
    """status; message; subject: the path or package it is about; hint: one line saying
    what to do (a command when there is one); fix: a Fix or None; impact: one of IMPACTS
    ("" for ok and skipped findings; the runner fills in the check's own)."""

    __slots__ = ()


class Check(
    namedtuple(
        "Check",
        "id title envs run why fixable impact scans deep",
        defaults=("", False, COSMETIC, False, False),
    )
):
    """A check is a value: the registry lists them, the runner calls them.

    envs: which environments it looks at; (HOST,) for checks about the machine
    run: (context, env) -> [Finding]
    why: why it matters, for `tljh doctor --list`
    impact: what its findings break, one of IMPACTS, or {env: impact}
    scans: whether it reads the scan of the environment's files (started early, in parallel)
    deep: only with --deep (it spawns interpreters or reads every file)
    """

    __slots__ = ()

    def impact_in(self, env: str) -> str:
        return self.impact.get(env, COSMETIC) if isinstance(self.impact, dict) else self.impact


class CheckResult(namedtuple("CheckResult", "check env status findings")):
    __slots__ = ()


def worst(statuses) -> str:
    return max(statuses, key=_RANK.__getitem__, default=OK)
