"""What inspection returns: immutable values, no behaviour, no rendering.

These are namedtuples rather than frozen dataclasses on purpose: they sit on the path of
`tljh env list --json` and of shell completion, and importing `dataclasses` (which pulls in
`inspect`) costs about 25 ms on Debian's python3, more than reading a whole environment.
Paths are plain strings for the same reason (no `pathlib`).
"""

from __future__ import annotations

from collections import namedtuple

# Environment.status values
OK, MISSING, BROKEN = "ok", "missing", "broken"

# SiteProblem.kind values
LEFTOVER = "leftover"  # a `~`-prefixed folder pip left behind when it was interrupted
DUPLICATE = "duplicate"  # two metadata folders for one project in one site folder
INVALID_METADATA = "invalid-metadata"  # a metadata folder without a readable Name/Version


class Distribution(namedtuple("Distribution", "name version location metadata_dir installer")):
    """An installed distribution.

    name, version: from its METADATA / PKG-INFO headers
    location: the site folder it was found in
    metadata_dir: the *.dist-info / *.egg-info entry's name inside `location`
    installer: INSTALLER's first line (pip, uv...), "conda" when a conda-meta record owns
        it, "" when unknown (egg-info)
    """

    __slots__ = ()


class SiteProblem(namedtuple("SiteProblem", "kind project paths detail")):
    """Something wrong in a site folder: kind (LEFTOVER...), the normalised project
    ("" when it cannot be told), the paths involved, and a sentence."""

    __slots__ = ()


class CondaRecord(
    namedtuple("CondaRecord", "name version dist_info build channel meta_file", defaults=("", "", ""))
):
    """A conda-meta record.

    dist_info: the dist-info folder it installed (relative to the env root), or None
    build: the build string (`py313h0_0`); channel: the channel's name as `conda list`
        shows it (`conda-forge`); meta_file: the record's file name in conda-meta/
    """

    __slots__ = ()


class Package(namedtuple("Package", "name version installer location metadata_dir channel build")):
    """One row of `tljh env packages`: what `pip list` shows in a pip env, what `conda list`
    shows in a conda env (conda packages, Python or not, and pip-installed distributions).

    installer: pip, uv..., "conda" for a conda package, "" when unknown
    location, metadata_dir: the site folder and dist-info; for a conda package without
        Python metadata, ROOT/conda-meta and the record's file name
    channel: a conda package's channel, "pypi" for other distributions in a conda env
        (as `conda list` says), "" elsewhere; build: a conda package's build string
    """

    __slots__ = ()


class InterpreterLink(namedtuple("InterpreterLink", "path chain end runnable")):
    """`bin/python3`, every hop of its symlink chain, where the chain ends, and whether that
    end is an executable file."""

    __slots__ = ()


class Environment(
    namedtuple(
        "Environment",
        "name kind root interpreter python_version status reason externally_managed "
        "venv_base site_dirs distributions problems conda_records",
    )
):
    """One environment as its files describe it.

    kind: venv | conda | standalone | system, or None when nothing is there
    root: the environment's own folder (sys.prefix); for the system interpreter, its prefix
    interpreter: an InterpreterLink
    python_version: "X.Y.Z" when the files say it, else "X.Y", else None
    status / reason: OK, or MISSING / BROKEN with a sentence saying why
    venv_base: for a venv, (home, version) from pyvenv.cfg: the interpreter it was made from
    site_dirs, distributions, problems, conda_records: tuples of the above
    """

    __slots__ = ()

    @property
    def ok(self) -> bool:
        return self.status == OK
