"""Checks for a conda user env (TLJH's Miniforge installation).

Inspection reads records cheaply (names from the file name, one search each); these checks
read them whole, as `conda doctor` would, since a doctor run can afford it. A record's
paths are only ever tested with lstat, and a path that would leave the prefix is reported,
never followed: conda-meta/ is a place a user with write access could plant a record.
pip-over-conda and the minimum versions of conda and mamba are checked in checks.py.
"""

from __future__ import annotations

import json
import os
import re

from tljh_admin import conda_env as conda
from tljh_admin.doctor.context import Context
from tljh_admin.doctor.integrity import quoted
from tljh_admin.doctor.model import FAILED, SKIPPED, WARNING, Check, Finding
from tljh_admin.files import open_text
from tljh_admin.layout import USER

#: how many missing files one finding names before summing up the rest
MAX_NAMED_FILES = 3


def _skipped(why: str, subject: str = "") -> list[Finding]:
    return [Finding(SKIPPED, why, subject, "")]


def _skipped_unless_conda(ctx: Context) -> list[Finding] | None:
    if ctx.env(USER).kind != "conda":
        return _skipped("the user environment is not a conda environment")
    return None


def _reinstall_hint(env_root: str, name: str) -> str:
    tool = conda.find_tool(env_root) or os.path.join(env_root, "bin", "conda")
    return (
        f"sudo {quoted(tool)} install --yes --prefix {quoted(env_root)} --force-reinstall"
        f" -c {conda.DEFAULT_CHANNEL} {quoted(name)}"
    )


# a `..` path segment: at the start, the end, or between slashes of the joined paths
_PARENT_SEGMENT = re.compile(r"(?:^|[\0/])\.\.(?:$|[\0/])")


def _escaping(files) -> list[str]:
    """The record's paths that are not plain relative paths inside the env (absolute, with a
    `..` segment, or not strings). One C-speed search over the joined paths; the per-path
    loop only runs when that finds something."""
    try:
        joined = "\0".join(files)
    except TypeError:
        joined = "\0.."  # a path that is not a string: look at each
    if not joined.startswith("/") and "\0/" not in joined and not _PARENT_SEGMENT.search(joined):
        return []
    return [
        str(rel) for rel in files if not isinstance(rel, str) or os.path.isabs(rel) or ".." in rel.split("/")
    ]


def _missing(env_root: str, files: list[str], scan) -> list[str]:
    """The record's files that are not there, in the record's order: a set difference with
    the scan of the env; what the scan did not see gets one lstat."""
    gone = {rel for rel in scan.unseen(env_root, files) if not os.path.lexists(os.path.join(env_root, rel))}
    return [rel for rel in files if rel in gone] if gone else []


def conda_files(ctx: Context, name: str) -> list[Finding]:
    skipped = _skipped_unless_conda(ctx)
    if skipped is not None:
        return skipped
    env = ctx.env(USER)
    root = os.path.realpath(env.root)
    scan = ctx.scan(USER)
    found = []
    for record in env.conda_records:
        path = os.path.join(env.root, "conda-meta", record.meta_file)
        try:
            with open_text(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError, RecursionError):
            data = None
        why = conda.record_problem(data) if data is not None else "not readable JSON"
        if why:
            found.append(
                Finding(
                    FAILED,
                    f"{record.meta_file}: not a conda record ({why}); conda fails on it",
                    path,
                    # conda reads every record first, so it cannot reinstall over this one
                    f"sudo rm {quoted(path)} && {_reinstall_hint(root, record.name)}",
                )
            )
            continue
        files = data.get("files", [])
        escaping = _escaping(files)
        if escaping:
            named = set(escaping)
            files_inside = [rel for rel in files if isinstance(rel, str) and rel not in named]
        else:
            files_inside = files
        missing = _missing(env.root, files_inside, scan)
        if escaping:
            found.append(
                Finding(
                    FAILED,
                    f"{record.name} {record.version}: its record names paths outside the environment "
                    f"({', '.join(escaping[:MAX_NAMED_FILES])}); conda did not write this record",
                    path,
                    f"inspect and remove {path}",
                )
            )
        if missing:
            named = ", ".join(missing[:MAX_NAMED_FILES])
            more = f" and {len(missing) - MAX_NAMED_FILES} more" if len(missing) > MAX_NAMED_FILES else ""
            found.append(
                Finding(
                    FAILED,
                    f"{record.name} {record.version}: {len(missing)} of its {len(files)} files are missing "
                    f"({named}{more})",
                    record.name,
                    _reinstall_hint(env.root, record.name),
                )
            )
    return found


def conda_history(ctx: Context, name: str) -> list[Finding]:
    skipped = _skipped_unless_conda(ctx)
    if skipped is not None:
        return skipped
    env = ctx.env(USER)
    revisions = conda.read_history(env.root)
    if not revisions:
        return _skipped(
            "conda-meta/history records no revision", os.path.join(env.root, "conda-meta", "history")
        )
    said = conda.history_dists(revisions)
    on_disk = {r.meta_file[: -len(".json")] for r in env.conda_records}
    history = os.path.join(env.root, "conda-meta", "history")
    found = []
    unrecorded = sorted(on_disk - said)
    if unrecorded:
        found.append(
            Finding(
                WARNING,
                f"installed, but not in conda's history: {', '.join(unrecorded)} "
                "(changed by something other than conda or mamba?)",
                history,
                "conda's revisions (conda list --revisions, conda install --revision N) cannot restore "
                "these; reinstall them with conda to record them",
            )
        )
    vanished = sorted(said - on_disk)
    if vanished:
        found.append(
            Finding(
                WARNING,
                f"conda's history says installed, but no record is there: {', '.join(vanished)} "
                "(removed by hand?)",
                history,
                "reinstall or remove them with conda: "
                + _reinstall_hint(env.root, vanished[0].rsplit("-", 2)[0]),
            )
        )
    return found


def conda_tools(ctx: Context, name: str) -> list[Finding]:
    skipped = _skipped_unless_conda(ctx)
    if skipped is not None:
        return skipped
    env = ctx.env(USER)
    records = {r.name for r in env.conda_records}
    found = []
    if conda.find_tool(env.root) is None:
        found.append(
            Finding(
                FAILED,
                "the user environment has neither bin/mamba nor bin/conda, "
                "which TLJH's installer and upgrade run",
                os.path.join(env.root, "bin"),
                "reinstall Miniforge's conda into the user env (TLJH's installer does on a fresh install)",
            )
        )
    for tool in (conda.CONDA, conda.MAMBA):
        binary = os.path.join(env.root, "bin", tool)
        if tool in records and not os.path.lexists(binary):
            found.append(
                Finding(
                    FAILED,
                    f"{tool} is installed but bin/{tool} is gone",
                    binary,
                    _reinstall_hint(env.root, tool),
                )
            )
    for path, problem in _unreadable_conda_files(env.root, ctx.deep):
        found.append(
            Finding(
                FAILED,
                f"{problem}: conda and mamba read it at every command, and stop there (so does every"
                " `tljh env install --conda` and TLJH's upgrade)",
                path,
                f"sudo mv {quoted(path)} /root/ and write it again (conda config --file {quoted(path)})"
                if path.endswith(".condarc")
                else f"sudo mv {quoted(path)} /root/ (conda starts a new one; its revisions so far are lost)",
            )
        )
    return found


def _unreadable_conda_files(root: str, deep: bool):
    """(path, why) for the env's .condarc (conda reads PREFIX/.condarc) and
    conda-meta/history (read as UTF-8 for every solve: History.get_requested_specs_map)
    when conda cannot read them. The YAML of .condarc is parsed with --deep only: the
    parser's import alone costs doctor a sixth of its run."""
    from tljh_admin.files import utf8_text

    for path in (os.path.join(root, ".condarc"), os.path.join(root, "conda-meta", "history")):
        if not os.path.lexists(path):
            continue
        text, why = utf8_text(path)
        if why is None and text is not None and path.endswith(".condarc"):
            why = _condarc_problem(text, deep)
        if why:
            yield path, f"{path} {why}"


def _condarc_problem(text: str, deep: bool) -> str | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if line[: len(line) - len(line.lstrip())].count("\t"):
            return f"indents line {number} with a tab, which YAML forbids"
    if not deep:
        return None
    from ruamel.yaml import YAML, YAMLError

    try:
        config = YAML(typ="safe", pure=True).load(text)
    except (YAMLError, RecursionError) as error:
        return f"is not valid YAML ({str(error).splitlines()[0]})"
    if config is not None and not isinstance(config, dict):
        return "is YAML, but not a mapping of settings"
    return None


CONDA_CHECKS = (
    Check(
        "conda-files",
        "conda packages' files present",
        (USER,),
        conda_files,
        "a conda package with files missing breaks what links to it (a C library, a module)",
        scans=True,
    ),
    Check(
        "conda-history",
        "conda-meta/history agrees with the records",
        (USER,),
        conda_history,
        "conda's revisions and rollbacks trust the history; changes outside conda make it lie",
    ),
    Check(
        "conda-tools",
        "conda and mamba present in a conda user env",
        (USER,),
        conda_tools,
        "TLJH installs and upgrades the user env with them (tljh/conda.py); minimums: see minimum-versions",
    ),
)
