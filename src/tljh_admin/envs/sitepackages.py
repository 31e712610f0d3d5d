"""Read installed distributions from site folders, the way an interpreter would see them,
without starting one.

Two traps pip handles badly are reported here instead of hidden:
- `~name-1.0.dist-info` (and other `~` entries) left by an interrupted pip: not installed,
  not counted, reported as leftovers;
- two metadata folders for one project in one site folder: both kept and reported, where
  pip shows whichever the file system lists first.
"""

from __future__ import annotations

import os
import re
from operator import itemgetter, methodcaller

from tljh_admin.envs.model import (
    DUPLICATE,
    INVALID_METADATA,
    LEFTOVER,
    Distribution,
    SiteProblem,
)
from tljh_admin.files import READ_LIMIT, open_regular, read_bytes, too_large

_SEPARATORS = re.compile(r"[-_.]+")
_PARTITION = methodcaller("partition", ",")
_FIRST = itemgetter(0)
_HEADER_CHUNK = 4096


def canonical_name(name: str) -> str:
    """PEP 503 normalisation, the same as packaging.utils.canonicalize_name (tested)."""
    return _SEPARATORS.sub("-", name).lower()


def read_name_version(metadata_file: str) -> tuple[str | None, str | None]:
    """Name and Version from a METADATA / PKG-INFO header block; reads only the headers."""
    fd = open_regular(metadata_file)
    try:
        data = os.read(fd, _HEADER_CHUNK)
        if b"\n\n" not in data and len(data) == _HEADER_CHUNK:
            parts, total = [data], len(data)
            while chunk := os.read(fd, 1 << 16):
                ends = b"\n\n" in parts[-1][-1:] + chunk  # the header block's end, at last
                parts.append(chunk)
                total += len(chunk)
                if ends:
                    break
                if total > READ_LIMIT:  # no header block ends in it: damage, or a sparse file
                    raise too_large(metadata_file)
            data = b"".join(parts)
    finally:
        os.close(fd)
    name = version = None
    for raw in data.split(b"\n"):
        line = raw.rstrip(b"\r")
        if not line:
            break  # end of the header block
        key, sep, value = line.partition(b":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == b"name" and name is None:
            name = value.strip().decode("utf-8", "replace")
        elif key == b"version" and version is None:
            version = value.strip().decode("utf-8", "replace")
        if name is not None and version is not None:
            break
    return name, version


def _read_installer(dist_info: str) -> str:
    try:
        return (
            read_bytes(os.path.join(dist_info, "INSTALLER"))
            .split(b"\n", 1)[0][:200]
            .strip()
            .decode("utf-8", "replace")
        )
    except OSError:
        return ""


def scan_site_dir(
    site_dir: str, conda_owned: frozenset[str] = frozenset()
) -> tuple[list[Distribution], list[SiteProblem]]:
    """Every distribution in one site folder, plus the problems found on the way.

    `conda_owned` holds the metadata folder names that a conda-meta record installed.
    """
    dists: list[Distribution] = []
    problems: list[SiteProblem] = []
    try:
        entries = os.scandir(site_dir)
    except FileNotFoundError:
        return dists, problems
    with entries:
        for entry in entries:
            entry_name = entry.name
            if entry_name.startswith("~"):
                problems.append(_leftover(site_dir, entry_name))
                continue
            if entry_name.endswith(".dist-info"):
                metadata = os.path.join(entry.path, "METADATA")
            elif entry_name.endswith(".egg-info"):
                metadata = os.path.join(entry.path, "PKG-INFO") if entry.is_dir() else entry.path
            else:
                continue
            try:
                name, version = read_name_version(metadata)
            except OSError:
                name = version = None
            if not name or not version:
                problems.append(
                    SiteProblem(
                        kind=INVALID_METADATA,
                        project="",
                        paths=(entry.path,),
                        detail=f"{entry_name} has no readable Name and Version",
                    )
                )
                continue
            if entry_name in conda_owned:
                installer = "conda"
            elif entry_name.endswith(".dist-info"):
                installer = _read_installer(entry.path)
            else:
                installer = ""
            dists.append(Distribution(name, version, site_dir, entry_name, installer))
    if problems:
        problems = _name_leftovers(problems, dists)
    problems.extend(_duplicates(dists))
    return dists, problems


def _leftover(site_dir: str, entry_name: str) -> SiteProblem:
    return SiteProblem(
        kind=LEFTOVER,
        project="",
        paths=(os.path.join(site_dir, entry_name),),
        detail=f"{entry_name} was left by an interrupted pip; it is not an installed package",
    )


def _name_leftovers(problems: list[SiteProblem], dists: list[Distribution]) -> list[SiteProblem]:
    """Give a leftover dist-info its project when exactly one installed project fits.

    pip renames what it removes by replacing the first letters with `~`, so
    `~umpy-1.0.dist-info` was numpy: match the rest against installed names of equal length.
    """
    installed = {canonical_name(d.name) for d in dists}
    named = []
    for problem in problems:
        entry = os.path.basename(problem.paths[0])
        if problem.kind == LEFTOVER and entry.endswith(".dist-info"):
            stem = canonical_name(entry[: -len(".dist-info")].rsplit("-", 1)[0])
            tail = stem.lstrip("~")
            fits = [n for n in installed if len(n) == len(stem) and n.endswith(tail)]
            if len(fits) == 1:
                problem = SiteProblem(problem.kind, fits[0], problem.paths, problem.detail)
        named.append(problem)
    return named


def _duplicates(dists: list[Distribution]) -> list[SiteProblem]:
    """Report projects with more than one metadata folder; drop harmless echoes from `dists`.

    Debian ships some packages with both a dist-info and an egg-info of the same version
    (python3-cryptography does): one installation described twice, counted once, as pip does.
    Two dist-infos, or two versions, are a real duplicate: both stay and are reported.
    """
    by_project: dict[str, list[Distribution]] = {}
    for dist in dists:
        by_project.setdefault(canonical_name(dist.name), []).append(dist)
    problems = []
    for project, group in sorted(by_project.items()):
        if len(group) < 2:
            continue
        group.sort(key=lambda d: (not d.metadata_dir.endswith(".dist-info"), d.metadata_dir))
        dist_infos = sum(d.metadata_dir.endswith(".dist-info") for d in group)
        if dist_infos <= 1 and len({d.version for d in group}) == 1:
            for echo in group[1:]:
                dists.remove(echo)
            continue
        detail = f"{project} is installed {len(group)} times in one site folder: " + ", ".join(
            d.version for d in group
        )
        on_disk = [d.version for d in group if _files_match_record(d)]
        if len(on_disk) == 1:
            detail += f"; the files on disk are {on_disk[0]}'s"
        problems.append(
            SiteProblem(
                kind=DUPLICATE,
                project=project,
                paths=tuple(os.path.join(d.location, d.metadata_dir) for d in group),
                detail=detail,
            )
        )
    return problems


def sha256_of_regular_file(path: str) -> tuple[bytes | None, bytes]:
    """The SHA-256 of a regular file and its first bytes, read in chunks; (None, b"") for
    anything else: a symlink is not followed, a FIFO or device not opened for long."""
    import hashlib

    try:
        fd = open_regular(path, follow_symlinks=False)
    except OSError:
        return None, b""
    try:
        digest = hashlib.sha256()
        first = b""
        while chunk := os.read(fd, 1 << 20):
            first = first or chunk[:2]
            digest.update(chunk)
        return digest.digest(), first
    except OSError:
        return None, b""
    finally:
        os.close(fd)


def _files_match_record(dist: Distribution) -> bool:
    """Whether every hashed file in the dist's RECORD under its site folder is on disk with
    that hash (files elsewhere, scripts in bin/, are rewritten by installers anyway).

    Only asked for duplicates, to tell which version's files an import really gets. Read as
    --deep reads them: regular files only, never through a symlink, never a FIFO.
    """
    import base64
    import csv

    inside = os.path.realpath(dist.location) + "/"
    try:
        rows = read_record(dist) or ()
    except csv.Error:
        return False
    checked = 0
    for name, hashed in rows:
        if not hashed.startswith("sha256="):
            continue
        path = os.path.join(dist.location, name)
        if not os.path.realpath(path).startswith(inside):
            continue
        digest, _ = sha256_of_regular_file(path)
        if digest is None:
            return False
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != hashed[len("sha256=") :]:
            return False
        checked += 1
    return checked > 0


def stale_duplicates(problem: SiteProblem) -> list[str]:
    """Of a duplicate's metadata folders, those whose files are not on disk, when exactly
    one of them matches the files (otherwise nothing can be called stale)."""
    if problem.kind != DUPLICATE:
        return []
    dists = [Distribution("", "", os.path.dirname(p), os.path.basename(p), "") for p in problem.paths]
    matching = [d for d in dists if _files_match_record(d)]
    if len(matching) != 1:
        return []
    return [p for p, d in zip(problem.paths, dists, strict=True) if d is not matching[0]]


def _record_text(dist: Distribution) -> str | None:
    if not dist.metadata_dir.endswith(".dist-info"):
        return None
    try:
        return read_bytes(os.path.join(dist.location, dist.metadata_dir, "RECORD")).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def read_record(dist: Distribution) -> list[tuple[str, str]] | None:
    """(path, hash) of each row of a dist-info's RECORD, paths as written there (relative to
    the site folder, or absolute); None when there is no RECORD (egg-info; Debian's
    dist-infos) or it cannot be read."""
    import csv

    text = _record_text(dist)
    if text is None:
        return None
    return [(row[0], row[1] if len(row) > 1 else "") for row in csv.reader(text.splitlines()) if row]


def read_record_paths(dist: Distribution) -> list[str] | None:
    """Only the paths of read_record, split by hand when no row is quoted (a comma in a
    file name): twice as fast as the csv module or a regex, for 40,000 rows."""
    text = _record_text(dist)
    if text is None:
        return None
    if '"' not in text:
        # map/filter with operator's callables loop in C: 20% faster than a comprehension
        return list(filter(None, map(_FIRST, map(_PARTITION, text.splitlines()))))
    return [path for path, _ in read_record(dist) or ()]


def read_direct_url(dist_info: str) -> dict | None:
    """PEP 610's direct_url.json of a dist-info, in its specified shape: `url` a string,
    `subdirectory` one if given, and exactly one of `vcs_info` (`vcs` and `commit_id`
    strings), `archive_info` or `dir_info`, each an object. None when there is none (an
    index or --find-links install); ValueError when it is there but is not that shape
    (damage, a hand edit); OSError when it cannot be read."""
    import json

    try:
        data = json.loads(read_bytes(os.path.join(dist_info, "direct_url.json")))
    except FileNotFoundError:
        return None
    except RecursionError:
        raise ValueError("nested too deep") from None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        raise ValueError("no url")
    if not isinstance(data.get("subdirectory", ""), str):
        raise ValueError("subdirectory is not a string")
    kinds = [k for k in ("vcs_info", "archive_info", "dir_info") if k in data]
    if len(kinds) != 1 or not isinstance(data[kinds[0]], dict):
        raise ValueError("not exactly one of vcs_info, archive_info and dir_info")
    info = data[kinds[0]]
    strings = {"vcs_info": ("vcs", "commit_id", "requested_revision"), "archive_info": ("hash",)}
    if any(not isinstance(info.get(k, ""), str) for k in strings.get(kinds[0], ())):
        raise ValueError(f"a field of {kinds[0]} is not a string")
    if kinds[0] == "vcs_info" and not (info.get("vcs") and info.get("commit_id")):
        raise ValueError("vcs_info without vcs or commit_id")
    hashes = info.get("hashes", {})
    if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
        raise ValueError("archive_info.hashes is not an object of strings")
    if not isinstance(info.get("editable", False), bool):
        raise ValueError("dir_info.editable is not true or false")
    return data
