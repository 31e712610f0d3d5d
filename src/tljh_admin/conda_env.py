"""What is read from a conda env's own files without conda.py's installer machinery: its
conda/mamba tools and conda-meta/history. `tljh doctor` imports this on every run; conda.py
(which plans and runs conda) re-exports it."""

from __future__ import annotations

import os
import re
from collections import namedtuple
from collections.abc import Sequence

from tljh_admin.files import open_text

CONDA, MAMBA = "conda", "mamba"
# tljh/conda.py: TLJH always asks conda-forge (Miniforge's default channel too).
DEFAULT_CHANNEL = "conda-forge"


def find_tool(env_root: str) -> str | None:
    """The env's own mamba, else its conda (TLJH's order), or None."""
    for tool in (MAMBA, CONDA):
        path = os.path.join(env_root, "bin", tool)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


# -- conda-meta records ----------------------------------------------------------------


def record_problem(data) -> str | None:
    """Why a parsed conda-meta/*.json is not a record conda could have written, or None:
    the fields tljh-admin and conda read, each of its type (conda's PrefixRecord: name,
    version and build strings; files and depends lists of strings)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    for key in ("name", "version", "build"):
        if not isinstance(data.get(key), str) or not data[key]:
            return f"its {key} is missing or not a string"
    for key in ("files", "depends"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return f"its {key} is not a list of strings"
    if not isinstance(data.get("channel", ""), str):
        return "its channel is not a string"
    return None


# -- conda-meta/history ----------------------------------------------------------------


class Revision(namedtuple("Revision", "number date command added removed")):
    """number: from 0; added, removed: the dists it linked and unlinked."""

    __slots__ = ()


_REVISION_HEADER = re.compile(r"^==> (.*) <==$")


def read_history(env_root: str) -> list[Revision]:
    """conda-meta/history as conda's History class reads it: revisions numbered from 0,
    each with the dists it linked (+channel/subdir::name-version-build) and unlinked (-)."""
    try:
        with open_text(
            os.path.join(env_root, "conda-meta", "history"), encoding="utf-8", errors="replace"
        ) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    revisions: list[Revision] = []
    date = command = ""
    added: list[str] = []
    removed: list[str] = []
    started = False

    def close() -> None:
        revisions.append(Revision(len(revisions), date, command, tuple(added), tuple(removed)))

    for line in lines:
        header = _REVISION_HEADER.match(line.strip())
        if header:
            if started:
                close()
            started, date, command, added, removed = True, header.group(1), "", [], []
        elif line.startswith("# cmd:"):
            command = line[len("# cmd:") :].strip()
        elif line[:1] in "+-" and line[1:].strip():
            (added if line[0] == "+" else removed).append(_dist_of(line[1:].strip()))
    if started:
        close()
    return revisions


def _dist_of(entry: str) -> str:
    """`conda-forge/linux-64::gdal-3.9.2-py313h0_0` (or an old bare `gdal-3.9.2-py313h0_0`) -> the dist."""
    return entry.rsplit("::", 1)[-1]


def current_revision(env_root: str) -> int | None:
    revisions = read_history(env_root)
    return revisions[-1].number if revisions else None


def history_dists(revisions: Sequence[Revision]) -> set[str]:
    """The dists the history says are installed, replaying every revision."""
    dists: set[str] = set()
    for revision in revisions:
        dists.difference_update(revision.removed)
        dists.update(revision.added)
    return dists
