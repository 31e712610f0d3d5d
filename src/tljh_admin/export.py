"""`tljh env export`: an environment as a file someone else can rebuild it from.

Everything here reads files (dist-info `direct_url.json` and `REQUESTED`, `conda-meta/`,
`share/jupyter`, `etc/jupyter`); nothing starts the environment's interpreter. The formats:

- lock: every package, exact version and where it came from, plus the Python version
  (versioned JSON, docs/json.md). Deterministic: no time or path of this server in it, so one
  lock file can be compared and applied across a fleet;
- requirements / environment.yml: what a person hands on; pinned, or only what was asked for
  (`requested`); a package that came from an index is never written as `@ file://`;
- repo2docker: a folder repo2docker builds into an image equivalent to the env, with
  jupyterhub at the version the target z2jh chart's hub runs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from collections import namedtuple

from tljh_admin.envs.model import Environment
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.errors import ExitCode, PermissionDenied, Refused, TljhError, UsageError
from tljh_admin.files import open_text

LOCK_SCHEMA = "tljh-admin/env-lock"
LOCK_VERSION = 1

LOCK, REQUIREMENTS, ENVIRONMENT_YML, REPO2DOCKER, Z2JH_CONFIG = (
    "lock",
    "requirements",
    "environment.yml",
    "repo2docker",
    "z2jh-config",
)
FORMATS = (LOCK, REQUIREMENTS, ENVIRONMENT_YML, REPO2DOCKER, Z2JH_CONFIG)

# Package.manager values
PIP_MANAGED, CONDA_MANAGED = "pip", "conda"
# source["type"] values
INDEX, VCS, URL, LOCAL_FILE, DIRECTORY, CONDA_CHANNEL, UNKNOWN = (
    "index",
    "vcs",
    "url",
    "file",
    "directory",
    "conda",
    "unknown",
)

# conda's own default channel host: a record's `channel` is `https://conda.anaconda.org/NAME[/SUBDIR]`
# for channels hosted there (conda/models/channel.py, DEFAULT_CHANNEL_ALIAS).
CONDA_CHANNEL_ALIAS = "https://conda.anaconda.org/"
# TLJH keeps these in the user env as its own installers (tljh/installer.py pins conda and
# mamba there); an image gets its own from repo2docker's base environment.
CONDA_INSTALLERS = frozenset({"conda", "mamba"})
# repo2docker's environment variable for the env that runs the servers and kernels
# (repo2docker/buildpacks/conda/__init__.py, NB_PYTHON_PREFIX); postBuild writes there.
PREFIX_PLACEHOLDER = "@TLJH_USER_PREFIX@"
EXPORT_DATA_DIR = "tljh-user-env"


class Package(namedtuple("Package", "name version manager installer requested source")):
    """One locked package: manager is pip or conda; source a dict (docs/json.md, SOURCE)."""

    __slots__ = ()


class Lock(namedtuple("Lock", "environment kind python platform packages")):
    __slots__ = ()


# -- reading where each package came from ----------------------------------------------------


def pip_source(dist_info: str) -> dict:
    """PEP 610 `direct_url.json`: absent for an index (or --find-links) install."""
    from tljh_admin.envs.sitepackages import read_direct_url

    try:
        direct = read_direct_url(dist_info)
    except (OSError, ValueError):
        return {"type": UNKNOWN}
    if direct is None:
        return {"type": INDEX}
    url = direct["url"]
    if "vcs_info" in direct:
        vcs = direct["vcs_info"]
        return {
            "type": VCS,
            "vcs": vcs["vcs"],
            "url": url,
            "commit": vcs.get("commit_id"),
            "requested_revision": vcs.get("requested_revision"),
            "subdirectory": direct.get("subdirectory"),
        }
    if url.startswith("file://"):
        path = _file_url_path(url)
        if "dir_info" in direct:
            return {"type": DIRECTORY, "path": path, "editable": bool(direct["dir_info"].get("editable"))}
        return {"type": LOCAL_FILE, "path": path, "hash": _archive_hash(direct)}
    return {"type": URL, "url": url, "hash": _archive_hash(direct)}


def _archive_hash(direct: dict) -> str | None:
    info = direct.get("archive_info") or {}
    hashes = info.get("hashes") or {}
    if "sha256" in hashes:
        return f"sha256={hashes['sha256']}"
    return info.get("hash")


def _file_url_path(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).path)


def conda_channel_name(channel: str, subdir: str | None = None, known: dict[str, str] | None = None) -> str:
    """A record's channel URL as the name conda shows: `https://conda.anaconda.org/conda-forge/
    linux-64` -> `conda-forge`, and a `custom_channels` URL of the env's .condarc -> its name.
    Other URLs are kept, without their subdir."""
    raw = channel.rstrip("/")
    if subdir:
        raw = raw.removesuffix("/" + subdir)
    raw = raw.removesuffix("/noarch")
    if known and raw in known:
        return known[raw]
    return raw.removeprefix(CONDA_CHANNEL_ALIAS) if raw.startswith(CONDA_CHANNEL_ALIAS) else raw


def custom_channels(root: str) -> dict[str, str]:
    """URL -> name for the env's `.condarc` custom_channels (conda reads PREFIX/.condarc)."""
    try:
        with open_text(os.path.join(root, ".condarc"), encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):  # none, or not text: no channel is named by it
        return {}
    from ruamel.yaml import YAML, YAMLError

    try:
        config = YAML(typ="safe", pure=True).load(text)
    except (YAMLError, RecursionError):
        return {}
    custom = config.get("custom_channels") if isinstance(config, dict) else None
    if not isinstance(custom, dict):
        return {}
    return {f"{str(base).rstrip('/')}/{name}": str(name) for name, base in custom.items()}


def conda_meta_records(root: str) -> list[dict]:
    """The conda-meta records with what a lock needs (inspection keeps only name/version)."""
    folder = os.path.join(root, "conda-meta")
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    except PermissionError:
        # not an empty list: a lock without the conda packages would install another env
        raise PermissionDenied(f"this user cannot read {folder}", hint="run with sudo") from None
    except OSError as error:
        raise Refused(
            f"{folder} cannot be read ({error.strerror}); the lock would be wrong", hint="see tljh doctor"
        ) from None
    from tljh_admin.conda_env import record_problem

    records = []
    for file_name in names:
        try:
            with open_text(os.path.join(folder, file_name), encoding="utf-8") as f:
                data = json.load(f)
        except PermissionError:
            raise PermissionDenied(
                f"this user cannot read {os.path.join(folder, file_name)}", hint="run with sudo"
            ) from None
        except (OSError, ValueError, RecursionError):
            data = None
        why = record_problem(data) if data is not None else "not readable JSON"
        if why:  # a lock without that package would install another env than this one
            raise Refused(
                f"conda-meta/{file_name} in {root} is not a conda record ({why}); the lock would be wrong",
                hint="see tljh doctor (conda-files)",
            )
        records.append(data)
    return records


def _conda_requested(root: str, records: list[dict]) -> set[str]:
    """Names asked for explicitly: `requested_spec` in the record, else conda's history
    (`# update specs: [...]` lines in conda-meta/history)."""
    requested = {r["name"] for r in records if r.get("requested_spec")}
    if requested:
        return requested
    import ast
    import re

    try:
        with open_text(os.path.join(root, "conda-meta", "history"), encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return set()
    for line in lines:
        if line.startswith("# update specs:"):
            try:
                specs = ast.literal_eval(line.split(":", 1)[1].strip())
            except (ValueError, SyntaxError):
                continue
            requested |= {re.split(r"[\s=<>!\[]", str(s), maxsplit=1)[0] for s in specs}
    return requested


def lock_of(env: Environment) -> Lock:
    """The lock of an inspected environment."""
    if not env.ok:
        raise UsageError(
            f"the {env.name} environment is {env.status}: {env.reason}",
            hint="see tljh doctor; export needs a working environment",
        )
    packages: list[Package] = []
    conda_owned: set[str] = set()
    if env.kind == "conda":
        records = conda_meta_records(env.root)
        requested = _conda_requested(env.root, records)
        known_channels = custom_channels(env.root)
        for record in records:
            dist_info = next(
                (
                    p.split(".dist-info/")[0] + ".dist-info"
                    for p in record.get("files", ())
                    if ".dist-info/" in p
                ),
                None,
            )
            if dist_info:
                conda_owned.add(os.path.basename(dist_info))
            packages.append(
                Package(
                    record["name"],
                    record["version"],
                    CONDA_MANAGED,
                    "conda",
                    record["name"] in requested,
                    {
                        "type": CONDA_CHANNEL,
                        "channel": conda_channel_name(
                            str(record.get("channel") or ""), record.get("subdir"), known_channels
                        ),
                        "build": record.get("build"),
                        "subdir": record.get("subdir"),
                    },
                )
            )
    for dist in env.distributions:
        if dist.metadata_dir in conda_owned or dist.installer == "conda":
            continue
        folder = os.path.join(dist.location, dist.metadata_dir)
        if dist.metadata_dir.endswith(".dist-info"):
            source = pip_source(folder) if dist.installer else {"type": UNKNOWN}
            requested = os.path.exists(os.path.join(folder, "REQUESTED"))
        else:  # egg-info: setup.py install or a distro package; nobody recorded where from
            source, requested = {"type": UNKNOWN}, False
        packages.append(Package(dist.name, dist.version, PIP_MANAGED, dist.installer, requested, source))
    packages.sort(key=lambda p: (p.manager != CONDA_MANAGED, canonical_name(p.name)))
    machine = os.uname().machine
    return Lock(
        env.name, env.kind, env.python_version, {"sys_platform": "linux", "machine": machine}, packages
    )


def lock_document(lock: Lock) -> dict:
    return {
        "schema": LOCK_SCHEMA,
        "version": LOCK_VERSION,
        "environment": lock.environment,
        "kind": lock.kind,
        "python": lock.python,
        "platform": lock.platform,
        "packages": [
            {
                "name": p.name,
                "version": p.version,
                "manager": p.manager,
                "installer": p.installer,
                "requested": p.requested,
                "source": p.source,
            }
            for p in lock.packages
        ],
    }


def lock_from_document(document: dict, origin: str) -> Lock:
    """A lock read back from its JSON; refuses other schemas and newer versions."""
    bad = UsageError(
        f"{origin} is not a tljh-admin lock file",
        hint="make one with: tljh env export --target user --format lock > FILE",
    )
    if not isinstance(document, dict) or document.get("schema") != LOCK_SCHEMA:
        raise bad
    version = document.get("version")
    if type(version) is not int or version < 1:  # `type`: JSON's true is no version
        raise bad
    if version > LOCK_VERSION:
        raise UsageError(
            f"{origin} is a lock of version {version}; this tljh-admin reads up to {LOCK_VERSION}",
            hint="upgrade tljh-admin on this server",
        )
    fields = [document.get(k) for k in ("environment", "kind", "python")]
    platform = document.get("platform")
    entries = document.get("packages")
    if any(f is not None and not isinstance(f, str) for f in fields) or not isinstance(entries, list):
        raise bad
    if platform is not None and not isinstance(platform, dict):
        raise bad
    packages = []
    for p in entries:
        # each field as export writes it: a string, a boolean, an object (never coerced)
        texts = [p.get(k) for k in ("name", "version", "manager")] if isinstance(p, dict) else [None]
        if not all(isinstance(t, str) for t in texts):
            raise bad
        installer, requested, source = p.get("installer", ""), p.get("requested", False), p.get("source")
        if not isinstance(installer, str) or not isinstance(requested, bool):
            raise bad
        if source is not None and not (isinstance(source, dict) and isinstance(source.get("type"), str)):
            raise bad
        packages.append(Package(*texts, installer, requested, dict(source or {"type": UNKNOWN})))
    for package in packages:
        check_locked_package(package, origin)
    return Lock(*fields, platform, packages)


# -- what a lock may say ----------------------------------------------------------------------
# A lock is read as root and its fields become installer arguments, so each field is held to
# the forms this tool writes; anything else (an option, a path, a stray space) is refused.

# PEP 508 names (packaging.utils, the `NAME` rule of the spec)
_PIP_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$", re.ASCII)
# conda package names, versions and build strings (conda/models/version.py and
# conda-build's metadata checks: versions have no spaces or operators; builds [A-Za-z0-9_.+])
_CONDA_NAME = re.compile(r"^[a-z0-9_][a-z0-9_.+-]*$", re.ASCII | re.IGNORECASE)
_CONDA_VERSION = re.compile(r"^[A-Za-z0-9_.+!]+$", re.ASCII)
_CONDA_BUILD = re.compile(r"^[A-Za-z0-9_.+]+$", re.ASCII)
# a named channel, or an http(s) URL without spaces or quoting characters
_CONDA_CHANNEL = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_.-]+)*|https?://[^\s\"'`$;|&#]+)$")
# pip's VCS schemes (pip/_internal/vcs) and the URL schemes export writes for them
VCS_NAMES = frozenset({"git", "hg", "svn", "bzr"})
_VCS_URL = re.compile(r"^(?:https?|ssh|git|file)://[^\s\"'`$;|&#]+(?:#subdirectory=([^\s#&]+))?$")
_COMMIT = re.compile(r"^[A-Za-z0-9._-]+$", re.ASCII)
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$", re.ASCII)
# no fragment: pip reads `#subdirectory=` there too, and joins it unchecked onto what it unpacks
_ARCHIVE_URL = re.compile(r"^https?://[^\s\"'`$;|&@#]+$")
SOURCE_TYPES = frozenset({INDEX, VCS, URL, LOCAL_FILE, DIRECTORY, CONDA_CHANNEL, UNKNOWN})


def safe_subdirectory(path: str) -> bool:
    """A subdirectory pip may join onto a source it unpacks: relative, and never climbing out
    of it (pip runs the build backend it finds there, as root, even for a dry run's plan)."""
    return all(_PATH_SEGMENT.match(part) and part not in (".", "..") for part in path.split("/"))


def _vcs_url_ok(url: str) -> bool:
    match = _VCS_URL.match(url)
    return bool(match) and (match.group(1) is None or safe_subdirectory(match.group(1)))


def travelling_url(url: str) -> bool:
    """A direct URL apply may hand to pip: VCS over http(s)/ssh/git, or an http(s) archive.
    file: URLs and paths are refused: what lies on this disk may belong to anyone, and pip
    runs a source tree's build backend even to resolve it."""
    scheme = url.split("://", 1)[0]
    vcs, _, transport = scheme.partition("+")
    if transport:
        remote = transport in ("https", "http", "ssh", "git")
        return vcs in VCS_NAMES and remote and _vcs_url_ok(url[len(vcs) + 1 :])
    return bool(_ARCHIVE_URL.match(url))


def _bad_entry(origin: str, package: Package, what: str) -> UsageError:
    # the entry is named by position-free repr, cut short: never echo a long attacker string
    shown = repr(package.name)[:60]
    return UsageError(
        f"{origin}: package {shown} has {what}",
        hint="a lock is applied as written by tljh env export; export it again on the source server",
    )


def check_locked_package(package: Package, origin: str) -> None:
    """Refuse a lock entry whose fields are not of the forms export writes (UsageError)."""
    from packaging.version import InvalidVersion, Version

    source = package.source
    if package.manager == CONDA_MANAGED:
        if not _CONDA_NAME.match(package.name):
            raise _bad_entry(origin, package, "a name that is not a conda package name")
        if not _CONDA_VERSION.match(package.version):
            raise _bad_entry(origin, package, "a version that is not a conda version")
        build = source.get("build")
        if build is not None and not (isinstance(build, str) and _CONDA_BUILD.match(build)):
            raise _bad_entry(origin, package, "a build that is not a conda build string")
        channel = source.get("channel")
        if channel is not None and not (isinstance(channel, str) and _CONDA_CHANNEL.match(channel)):
            raise _bad_entry(
                origin, package, "a channel that is neither a conda channel name nor an http(s) URL"
            )
        return
    if package.manager != PIP_MANAGED:
        raise _bad_entry(origin, package, f"manager {package.manager[:20]!r} (pip or conda)")
    if not _PIP_NAME.match(package.name):
        raise _bad_entry(origin, package, "a name that is not a Python project name (PEP 508)")
    try:
        Version(package.version)
    except InvalidVersion:
        raise _bad_entry(origin, package, "a version that is not a Python version (PEP 440)") from None
    kind = source.get("type")
    if kind not in SOURCE_TYPES:
        raise _bad_entry(origin, package, "a source type export never writes")
    if kind == VCS:
        fields = (source.get("vcs"), source.get("url"), source.get("commit"))
        if not all(isinstance(f, str) for f in fields):
            raise _bad_entry(origin, package, "a vcs source without vcs, url and commit")
        vcs, url, commit = fields
        subdirectory = source.get("subdirectory")
        if (
            vcs not in VCS_NAMES
            or not _vcs_url_ok(url)
            or not _COMMIT.match(commit)
            or not (subdirectory is None or safe_subdirectory(str(subdirectory)))
        ):
            raise _bad_entry(origin, package, "a vcs source that is not VCS+URL@COMMIT")
    elif kind == URL and not (isinstance(source.get("url"), str) and _ARCHIVE_URL.match(source["url"])):
        raise _bad_entry(origin, package, "a url source that is not an http(s) URL")


# -- hand-on formats ------------------------------------------------------------------------


class Text(namedtuple("Text", "text notes")):
    """A rendered file and the notes the CLI prints on stderr."""

    __slots__ = ()


def _python_packages(lock: Lock) -> list[Package]:
    return [p for p in lock.packages if p.manager == PIP_MANAGED]


def requirement_line(package: Package) -> tuple[str, str | None]:
    """A pip requirement for one package, and a note when its source cannot travel."""
    source = package.source
    kind = source.get("type")
    if kind == VCS and source.get("url") and source.get("commit"):
        subdirectory = f"#subdirectory={source['subdirectory']}" if source.get("subdirectory") else ""
        line = f"{package.name} @ {source['vcs']}+{source['url']}@{source['commit']}{subdirectory}"
        if source["url"].startswith("file://"):
            where = f"a {source['vcs']} repository on this server ({source['url']})"
            return line, f"{package.name} comes from {where}"
        return line, None
    if kind == URL and source.get("url"):
        return f"{package.name} @ {source['url']}", None
    line = f"{package.name}=={package.version}"
    if kind in (LOCAL_FILE, DIRECTORY):
        return line, (
            f"{package.name} {package.version} was installed from {source.get('path')} on this server; "
            "written as a version pin: put it on an index or a --find-links folder where it is rebuilt"
        )
    return line, None


def _selected(lock: Lock, requested_only: bool) -> tuple[list[Package], list[str]]:
    notes = []
    if not requested_only:
        return list(lock.packages), notes
    chosen = [p for p in lock.packages if p.requested]
    if not chosen:
        raise UsageError(
            f"no package in the {lock.environment} environment is marked as asked for (pip's REQUESTED"
            " file, conda's history)",
            hint="export everything pinned instead: drop --requested",
        )
    return chosen, notes


def _header(lock: Lock) -> str:
    return f"# tljh env export: the {lock.environment} environment, Python {lock.python}\n"


def requirements_text(
    lock: Lock, requested_only: bool = False, replace: dict[str, str] | None = None
) -> Text:
    """requirements.txt: pip packages (conda-owned Python packages by their pip name when the
    env is conda; conda-only packages are not pip's and are left out, with a note)."""
    chosen, notes = _selected(lock, requested_only)
    left_out = [p.name for p in chosen if p.manager == CONDA_MANAGED]
    lines = _pip_lines([p for p in chosen if p.manager != CONDA_MANAGED], dict(replace or {}), notes)
    if left_out:
        notes.append(
            f"{len(left_out)} conda packages are not in requirements.txt (use --format environment.yml): "
            + ", ".join(left_out[:8])
            + (" ..." if len(left_out) > 8 else "")
        )
    return Text(_header(lock) + "".join(line + "\n" for line in lines), tuple(notes))


def _pip_lines(packages: list, replace: dict[str, str], notes: list[str]) -> list[str]:
    """pip requirement lines for `packages`, a version from `replace` (by normalised name,
    consumed) instead of the locked one, and what is left in `replace` added at the end;
    requirement_line's notes go to `notes`."""
    lines = []
    for package in packages:
        key = canonical_name(package.name)
        if key in replace:
            lines.append(f"{package.name}=={replace.pop(key)}")
            continue
        line, note = requirement_line(package)
        lines.append(line)
        if note:
            notes.append(note)
    lines.extend(f"{name}=={version}" for name, version in sorted(replace.items()))
    return lines


def environment_yml_text(
    lock: Lock,
    requested_only: bool = False,
    replace: dict[str, str] | None = None,
    skip: frozenset[str] = frozenset(),
) -> Text:
    """conda's environment.yml: conda packages pinned `name=version`, pip-only ones under
    `pip:`; for an env that is not conda, Python itself and pip from conda-forge."""
    chosen, notes = _selected(lock, requested_only)
    replace = dict(replace or {})
    conda = [p for p in chosen if p.manager == CONDA_MANAGED and p.name not in skip]
    channels: list[str] = []
    for package in conda:
        channel = package.source.get("channel")
        if channel and channel not in channels:
            channels.append(channel)
    dependencies: list = []
    conda_names = {p.name for p in conda}
    if "python" not in conda_names:
        dependencies.append(f"python={'.'.join((lock.python or '3').split('.')[:2])}")
    for package in conda:
        version = replace.pop(canonical_name(package.name), package.version)
        dependencies.append(f"{package.name}={version}")
    pip_lines = _pip_lines([p for p in chosen if p.manager == PIP_MANAGED], replace, notes)
    if pip_lines:
        if "pip" not in conda_names:
            dependencies.append("pip")
        dependencies.append({"pip": pip_lines})
    document = {"channels": channels or ["conda-forge"], "dependencies": dependencies}
    if skip & {p.name for p in chosen}:
        notes.append(f"left out TLJH's own installers ({', '.join(sorted(skip))}): an image brings its own")
    return Text(_header(lock) + dump_yaml(document), tuple(notes))


def dump_yaml(document: dict) -> str:
    import io

    # ruamel.yaml: the YAML library TLJH itself uses (tljh/yaml.py); block style for people.
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


# -- repo2docker -----------------------------------------------------------------------------


class ExportedFile(namedtuple("ExportedFile", "path content mode")):
    """A file of an exported folder: relative path, bytes, permission bits."""

    __slots__ = ()


class Repo2DockerExport(namedtuple("Repo2DockerExport", "files buildpack jupyterhub image_tag notes")):
    """buildpack: `conda` (environment.yml) or `python` (requirements.txt + runtime.txt)."""

    __slots__ = ()


def _owned_jupyter_files(env: Environment, lock_kind: str) -> set[str]:
    """Absolute paths under share/jupyter and etc/jupyter that some package installed (its
    RECORD, or conda-meta's file list): those come back when the package is installed."""
    from tljh_admin.envs.sitepackages import read_record_paths

    owned: set[str] = set()
    wanted = (
        os.path.join(env.root, "share", "jupyter") + os.sep,
        os.path.join(env.root, "etc", "jupyter") + os.sep,
    )
    for dist in env.distributions:
        for row_path in read_record_paths(dist) or ():
            if "jupyter" in row_path:
                path = os.path.normpath(os.path.join(dist.location, row_path))
                if path.startswith(wanted):
                    owned.add(path)
    if lock_kind == "conda":
        for record in conda_meta_records(env.root):
            for rel in record.get("files", ()):
                if rel.startswith(("share/jupyter/", "etc/jupyter/")):
                    owned.add(os.path.join(env.root, rel))
    return owned


def jupyter_extras(env: Environment) -> list[tuple[str, str]]:
    """(relative path, absolute path) of kernelspecs and Jupyter config files in the env that
    no package installed: an admin's own kernels and settings."""
    owned = _owned_jupyter_files(env, env.kind or "")
    found = []
    for top in (os.path.join("share", "jupyter", "kernels"), os.path.join("etc", "jupyter")):
        base = os.path.join(env.root, top)
        for folder, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(folder, d)))
            for name in sorted(files):
                path = os.path.join(folder, name)
                if path not in owned and not os.path.islink(path) and "__pycache__" not in path:
                    found.append((os.path.relpath(path, env.root), path))
    return found


_NOT_PLAIN = "not a plain file root alone can have put there"
_PRIVATE = "users' servers cannot read it (kept private on the server, it may hold a secret)"


def _read_env_files(root: str, paths: list[str]) -> list[bytes | str]:
    """The content of each of `paths`, files under the environment `root`, reached one
    folder at a time without following a symlink; or why it is left out: not a regular
    file, more names than one in a folder others may write (a hard link planted to a
    root-only file), or not readable by others (users' servers never saw it; an image
    would make it public). A kernel folder may belong to a user: what is swapped in after
    the walk is not read."""
    from tljh_admin import permissions
    from tljh_admin.snapshot import Beneath

    owner = permissions.code_owner(os.path.dirname(root.rstrip("/")))
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    contents: list[bytes | str] = []
    with Beneath(root) as beneath:  # one walk for all: folders kept open between files
        for path in paths:
            try:
                folder, name = beneath.parent(path)
                fd = os.open(name, flags, dir_fd=folder)
            except OSError:
                contents.append(_NOT_PLAIN)
                continue
            try:
                st = os.fstat(fd)
                planted = st.st_nlink > 1 and permissions.other_writer(os.fstat(folder), owner, folder)
                if not stat.S_ISREG(st.st_mode) or planted:
                    contents.append(_NOT_PLAIN)
                elif not st.st_mode & stat.S_IROTH:
                    contents.append(_PRIVATE)
                else:
                    contents.append(_read_to_end(fd))
            except OSError:
                contents.append(_NOT_PLAIN)
            finally:
                os.close(fd)
    return contents


def _read_to_end(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


_POST_BUILD = """#!/bin/bash
# Written by `tljh env export --format repo2docker`: the kernelspecs and Jupyter configuration
# the TLJH user environment carries that no package installs. repo2docker runs this after
# installing the packages; NB_PYTHON_PREFIX is the image's environment.
set -eu
cp -r {data}/. "${{NB_PYTHON_PREFIX}}/"
grep -rlF '{placeholder}' "${{NB_PYTHON_PREFIX}}/share/jupyter" "${{NB_PYTHON_PREFIX}}/etc/jupyter" \\
  2>/dev/null | xargs -r sed -i "s#{placeholder}#${{NB_PYTHON_PREFIX}}#g"
"""


def repo2docker_export(env: Environment, lock: Lock, jupyterhub: str, source_note: str) -> Repo2DockerExport:
    """The files of a repo2docker folder for `env`, jupyterhub pinned to `jupyterhub`."""
    import hashlib

    notes = [source_note]
    current = [p.version for p in lock.packages if canonical_name(p.name) == "jupyterhub"]
    if current and current[0] != jupyterhub:
        notes.append(f"jupyterhub {current[0]} in the environment is written as {jupyterhub}")
    replace = {"jupyterhub": jupyterhub}
    files: list[ExportedFile] = []
    if lock.kind == "conda":
        buildpack = "conda"
        text = environment_yml_text(lock, replace=replace, skip=CONDA_INSTALLERS)
        files.append(ExportedFile("environment.yml", text.text.encode(), 0o644))
    else:
        buildpack = "python"
        text = requirements_text(lock, replace=replace)
        short = ".".join((lock.python or "").split(".")[:2])
        # repo2docker's runtime.txt: `python-X.Y` (repo2docker/buildpacks/base.py, runtime)
        files.append(ExportedFile("runtime.txt", f"python-{short}\n".encode(), 0o644))
        files.append(ExportedFile("requirements.txt", text.text.encode(), 0o644))
    notes.extend(text.notes)
    extras = []
    found = jupyter_extras(env)
    for (rel, _), content in zip(found, _read_env_files(env.root, [path for _, path in found]), strict=True):
        if isinstance(content, str):
            notes.append(f"{rel} left out: {content}")
            continue
        extras.append(rel)
        content = content.replace(env.root.encode(), PREFIX_PLACEHOLDER.encode())
        files.append(ExportedFile(os.path.join(EXPORT_DATA_DIR, rel), content, 0o644))
    if extras:
        script = _POST_BUILD.format(data=EXPORT_DATA_DIR, placeholder=PREFIX_PLACEHOLDER)
        files.append(ExportedFile("postBuild", script.encode(), 0o755))
        notes.append(f"postBuild copies {len(extras)} kernelspec/config files no package installs")
    digest = hashlib.sha256()
    for exported in sorted(files):
        digest.update(exported.path.encode() + b"\0" + exported.content + b"\0")
    return Repo2DockerExport(tuple(files), buildpack, jupyterhub, digest.hexdigest()[:12], tuple(notes))


def write_error(path: str, error: OSError) -> TljhError:
    """One line for an OSError met while writing an export."""

    reason = error.strerror or str(error)
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(
            f"cannot write {path}: {reason}", hint="run with sudo, or choose another place"
        )
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG):
        # the disk, not the command line: ExitCode.IO_ERROR, as for a full stdout
        return TljhError(
            f"cannot write {path}: {reason}",
            hint="free some space (or choose another disk) and export again",
            exit_code=ExitCode.IO_ERROR,
        )
    return UsageError(f"cannot write {path}: {reason}", hint="choose a folder that exists and takes files")


_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# repo2docker's folder and its subfolders: readable by the image build, writable by us only
FOLDER_MODE = 0o755


def _open_subfolder(parent_fd: int, name: str) -> int:
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, FOLDER_MODE, dir_fd=parent_fd)
    return os.open(name, _OPEN_FOLDER, dir_fd=parent_fd)


def write_folder(folder: str, files: tuple[ExportedFile, ...]) -> None:
    """Write an export as `folder`, which must be new, or empty and ours alone (owned by
    this user, writable by nobody else). It is built in a private folder beside it and
    renamed into place when complete, so a failure (a full disk) leaves nothing behind;
    every step works by descriptor, never following a symlink, so nobody can redirect a
    write or a chmod elsewhere."""
    import shutil
    import tempfile

    _check_destination_folder(folder)
    parent = os.path.dirname(os.path.abspath(folder))
    try:
        building = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.", suffix=".partial", dir=parent)
    except OSError as error:
        raise write_error(folder, error) from None
    try:
        folder_fd = os.open(building, _OPEN_FOLDER)
        try:
            for exported in files:
                *parents, name = exported.path.split("/")
                opened = [folder_fd]
                try:
                    for part in parents:
                        opened.append(_open_subfolder(opened[-1], part))
                    fd = os.open(name, _CREATE_FILE, exported.mode, dir_fd=opened[-1])
                    with os.fdopen(fd, "wb") as f:
                        f.write(exported.content)
                        os.fchmod(f.fileno(), exported.mode)
                        os.fsync(f.fileno())
                finally:
                    for fd in opened[1:]:
                        os.close(fd)
            os.fchmod(folder_fd, FOLDER_MODE)  # mkdtemp made it 0700
        finally:
            os.close(folder_fd)
        os.rename(building, folder)  # replaces only an empty folder; never follows a symlink
    except OSError as error:
        shutil.rmtree(building, ignore_errors=True)
        if isinstance(error, (IsADirectoryError, NotADirectoryError)) or error.errno == errno.ENOTEMPTY:
            raise UsageError(
                f"{folder} exists and is not an empty folder", hint="choose a new folder"
            ) from None
        raise write_error(folder, error) from None
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def _check_destination_folder(folder: str) -> None:
    """An existing destination must be an empty folder only this user owns and writes."""
    try:
        status = os.lstat(folder)
    except FileNotFoundError:
        return
    except OSError as error:
        raise write_error(folder, error) from None
    if not stat.S_ISDIR(status.st_mode):
        raise UsageError(f"{folder} exists and is not an empty folder", hint="choose a new folder")
    if status.st_uid != os.geteuid() or status.st_mode & 0o022:
        raise UsageError(
            f"{folder} belongs to another user or others may write to it",
            hint="choose a new folder (it is created for you), or one only you own and write",
        )
    try:
        if os.listdir(folder):
            raise UsageError(f"{folder} exists and is not an empty folder", hint="choose a new folder")
    except OSError as error:
        raise write_error(folder, error) from None


# -- what the CLI calls ----------------------------------------------------------------------


def _inspected(layout, target: str) -> Environment:
    from tljh_admin.envs import inspect_environment
    from tljh_admin.layout import ENV_NAMES, unknown_target

    if target not in ENV_NAMES:
        raise unknown_target(target)
    from tljh_admin.queries import unfinished_changes

    why = unfinished_changes(layout).get(target)
    if why:  # a lock of a half-done change would copy a state nobody chose to every server
        raise Refused(f"the {target} environment cannot be exported now: {why}", hint="export it afterwards")
    return inspect_environment(target, layout)


def lock_of_target(layout, target: str) -> Lock:
    return lock_of(_inspected(layout, target))


def export_lock(layout, target: str) -> dict:
    return lock_document(lock_of_target(layout, target))


def export_text(layout, target: str, fmt: str, requested_only: bool) -> Text:
    lock = lock_of(_inspected(layout, target))
    if fmt == REQUIREMENTS:
        return requirements_text(lock, requested_only)
    if fmt == ENVIRONMENT_YML:
        return environment_yml_text(lock, requested_only)
    raise UsageError(f"unknown export format {fmt!r}", hint=f"choose one of: {', '.join(FORMATS)}")


def target_jupyterhub(layout, chart: str | None) -> tuple[str, str]:
    """The jupyterhub version an image must carry, and a sentence saying why."""
    from tljh_admin.z2jh import jupyterhub_for_chart

    if chart:
        version = jupyterhub_for_chart(chart)
        return version, f"jupyterhub {version}: the hub version of z2jh chart {chart}"
    hub = _inspected(layout, "hub")
    found = [d.version for d in hub.distributions if canonical_name(d.name) == "jupyterhub"]
    if not found:
        raise UsageError(
            "the hub environment has no jupyterhub to match",
            hint="name the target chart: --z2jh-chart VERSION",
        )
    from tljh_admin.z2jh import CHART_JUPYTERHUB

    charts = [chart for chart, hub_version in CHART_JUPYTERHUB.items() if hub_version == found[0]]
    if charts:
        return found[0], f"jupyterhub {found[0]}: the hub's own, as z2jh chart {charts[-1]} runs it"
    newest = list(CHART_JUPYTERHUB)[-1]
    return found[0], (
        f"jupyterhub {found[0]}: the hub's own, which no z2jh chart known here runs; for a z2jh hub"
        f" pass --z2jh-chart (the newest known: {newest}, jupyterhub {CHART_JUPYTERHUB[newest]})"
    )


def _require_user(target: str, fmt: str) -> None:
    from tljh_admin.layout import USER

    if target != USER:
        raise UsageError(f"--format {fmt} exports the user environment", hint="use --target user")


def plan_repo2docker(layout, target: str, chart: str | None) -> Repo2DockerExport:
    _require_user(target, REPO2DOCKER)
    env = _inspected(layout, target)
    lock = lock_of(env)
    jupyterhub, why = target_jupyterhub(layout, chart)
    return repo2docker_export(env, lock, jupyterhub, why)


def export_repo2docker(layout, target: str, folder: str, chart: str | None) -> Repo2DockerExport:
    exported = plan_repo2docker(layout, target, chart)
    write_folder(folder, exported.files)
    return exported


DEFAULT_IMAGE_NAME = "tljh-user-env"


# An image reference as the OCI distribution spec's grammar (distribution/reference) has it:
# [registry[:port]/]path[:tag], path components lowercase with . _ __ - between, a tag of at
# most 128 word characters, dots and dashes.
_IMAGE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$",
    re.ASCII,
)


def parse_image(image: str | None, default_tag: str) -> tuple[str, str]:
    if image is not None and not _IMAGE.match(image):
        raise UsageError(
            f"--image {image[:80]!r} is not an image name",
            hint="e.g. --image registry.example.org/course/env:v1",
        )
    if not image:
        return DEFAULT_IMAGE_NAME, default_tag
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag or not name:  # no tag, or the colon was a registry port
        return image, default_tag
    return name, tag


def export_z2jh_config(
    layout, target: str, chart: str | None, image: str | None, include_secrets: bool
) -> tuple[str, object]:
    """z2jh's config.yaml text and the translation (its `unmapped` settings for stderr).
    The image defaults to `tljh-user-env:<tag>`, the tag being the content hash of what
    `--format repo2docker` writes for the same chart: build that folder with this name."""
    from tljh_admin import z2jh

    exported = plan_repo2docker(layout, target, chart)
    written, path = z2jh.read_tljh_config(layout.prefix)
    translation = z2jh.translate(
        written,
        parse_image(image, exported.image_tag),
        include_secrets,
        z2jh.extra_config_files(layout.prefix),
    )
    header = (
        f"# z2jh config.yaml translated by tljh env export from {path}\n"
        f"# the user image must carry {exported.jupyterhub.join(['jupyterhub ', ''])}"
        f" (build it from `tljh env export --format repo2docker`)\n"
        f"# {exported.notes[0]}\n"
    )
    header += "".join(f"# not carried to z2jh: {u.key} ({u.reason})\n" for u in translation.unmapped)
    return header + dump_yaml(translation.values), translation
