"""What inspection returns: plain frozen values, no behaviour, no rendering."""

from __future__ import annotations

from dataclasses import dataclass

# Environment.status values
OK, MISSING, BROKEN = "ok", "missing", "broken"

# SiteProblem.kind values
LEFTOVER = "leftover"  # a `~`-prefixed folder pip left behind when it was interrupted
DUPLICATE = "duplicate"  # two metadata folders for one project in one site folder
INVALID_METADATA = "invalid-metadata"  # a metadata folder without a readable Name/Version


@dataclass(frozen=True, slots=True)
class Distribution:
    name: str
    version: str
    #: the site folder it was found in
    location: str
    #: the *.dist-info / *.egg-info entry's name inside `location`
    metadata_dir: str
    #: who installed it: INSTALLER's first line (pip, uv, conda...), "conda" when a
    #: conda-meta record owns it, "" when unknown (egg-info)
    installer: str


@dataclass(frozen=True, slots=True)
class SiteProblem:
    kind: str
    #: normalised project name ("" when it cannot be told)
    project: str
    paths: tuple[str, ...]
    detail: str


@dataclass(frozen=True, slots=True)
class CondaRecord:
    name: str
    version: str
    #: the dist-info folder the record installed, relative to the env root, if any
    dist_info: str | None


@dataclass(frozen=True, slots=True)
class InterpreterLink:
    """`bin/python3` and where its symlink chain ends."""

    path: str
    chain: tuple[str, ...]
    end: str
    runnable: bool


@dataclass(frozen=True, slots=True)
class Environment:
    name: str
    #: venv | conda | standalone | system, or None when nothing is there
    kind: str | None
    #: the environment's own folder (sys.prefix); for the system interpreter, its prefix (/usr)
    root: str
    interpreter: InterpreterLink
    python_version: str | None
    status: str
    reason: str | None
    externally_managed: bool
    #: for a venv: (home, version) from pyvenv.cfg, the base interpreter it was made from
    venv_base: tuple[str, str] | None
    site_dirs: tuple[str, ...]
    distributions: tuple[Distribution, ...]
    problems: tuple[SiteProblem, ...]
    conda_records: tuple[CondaRecord, ...]

    @property
    def ok(self) -> bool:
        return self.status == OK
