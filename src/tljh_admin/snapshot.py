"""Snapshots of the parts of an environment an installer writes, and exact restores.

A snapshot is a hard-link farm: every file of the environment's install areas linked into
PREFIX/state/tljh-admin/snapshots/<id>/<env>/, plus a manifest of folders and symlinks with
their mode, owner and mtime. Linking costs no data, and it is enough because pip and uv never
rewrite a file in place: they unlink it and write a new one, so the farm keeps the old bytes.
Restoring puts the very same inodes back, so contents, modes and mtimes come back identical,
without the package index.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass

MANIFEST = "manifest.json"
FILES = "files"

# Top-level entries of an environment no installer writes into; skipped to keep snapshots
# fast (the standard library, conda's own records and package cache).
_NOT_INSTALL_AREAS = {"lib", "lib64", "conda-meta", "pkgs", "pyvenv.cfg", "ssl", "man", "compiler_compat"}


@dataclass(frozen=True)
class Areas:
    """Where an installer may write in one environment: whole folders under `root`, plus
    the site folders (which live under the skipped lib/)."""

    root: str
    folders: tuple[str, ...]
    #: top-level names present before the change; anything new at top level is the change's
    top_level: frozenset[str]


def install_areas(env_root: str, site_dirs: Iterable[str], system: bool = False) -> Areas:
    if system:
        # The OS interpreter: only what `pip install` as root writes (dist-packages, the
        # scheme's bin/), never /usr as a whole.
        folders = list(site_dirs)[:1]
        if folders:
            scheme_root = os.path.dirname(os.path.dirname(os.path.dirname(folders[0])))
            folders.append(os.path.join(scheme_root, "bin"))
        return Areas(root="", folders=tuple(folders), top_level=frozenset())
    names = set(os.listdir(env_root))
    folders = [os.path.join(env_root, n) for n in sorted(names - _NOT_INSTALL_AREAS)]
    folders = [f for f in folders if os.path.isdir(f) and not os.path.islink(f)]
    folders += [s for s in site_dirs if not any(s.startswith(f + os.sep) for f in folders)]
    return Areas(root=env_root, folders=tuple(folders), top_level=frozenset(names))


def _meta(st: os.stat_result) -> list[int]:
    return [stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns]


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, dst)  # another file system, or links refused: keep a real copy


def take(areas: Areas, dest: str) -> None:
    """Mirror every area into `dest`/files/<absolute path> as a hard-link farm whose folders
    and symlinks carry the originals' mode, owner and mtime (`cp -al`, in C: the farm is
    the manifest), and record the areas and the env root's own metadata."""
    files_root = os.path.join(dest, FILES)
    for area in areas.folders:
        if not os.path.isdir(area):
            continue
        mirror = files_root + area
        os.makedirs(os.path.dirname(mirror), exist_ok=True)
        if not _cp_al(area, mirror):
            _link_tree(area, mirror)
    manifest = {"areas": list(areas.folders), "root": areas.root, "top_level": sorted(areas.top_level)}
    if areas.root:
        manifest["root_meta"] = _meta(os.lstat(areas.root))
    with open(os.path.join(dest, MANIFEST), "w") as f:
        json.dump(manifest, f)
        f.flush()
        os.fsync(f.fileno())


def _cp_al(source: str, target: str) -> bool:
    import subprocess

    if not shutil.which("cp"):
        return False
    proc = subprocess.run(
        ["cp", "-a", "-l", "--no-target-directory", source, target],
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        return False
    return True


def _link_tree(source: str, target: str) -> None:
    """The same as `cp -al`, in Python, falling back to copies across file systems."""
    for folder, dirs, files in os.walk(source):
        mirror = target + folder[len(source) :]
        os.makedirs(mirror, exist_ok=True)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                os.symlink(os.readlink(path), os.path.join(mirror, name))
            else:
                _link_or_copy(path, os.path.join(mirror, name))
    for folder, _dirs, _files in os.walk(source, topdown=False):
        st = os.lstat(folder)
        mirror = target + folder[len(source) :]
        os.chown(mirror, st.st_uid, st.st_gid)
        os.chmod(mirror, stat.S_IMODE(st.st_mode))
        os.utime(mirror, ns=(st.st_atime_ns, st.st_mtime_ns))


def _recorded(files_root: str, areas: list[str]):
    """What the farm says: folders with their metadata, files with their inodes, symlinks."""
    folders: dict[str, list[int]] = {}
    files: dict[str, os.stat_result] = {}
    symlinks: dict[str, str] = {}
    for area in areas:
        mirror_area = files_root + area
        if not os.path.isdir(mirror_area):
            continue
        for mirror, dirs, names in os.walk(mirror_area):
            folder = mirror[len(files_root) :]
            folders[folder] = _meta(os.lstat(mirror))
            for name in names + dirs:
                path = os.path.join(mirror, name)
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    symlinks[os.path.join(folder, name)] = os.readlink(path)
                elif stat.S_ISREG(st.st_mode):
                    files[os.path.join(folder, name)] = st
    return folders, files, symlinks


def _current(areas_folders: Iterable[str]) -> tuple[dict[str, os.stat_result], set[str]]:
    entries: dict[str, os.stat_result] = {}
    folders: set[str] = set()
    for area in areas_folders:
        if not os.path.isdir(area):
            continue
        for folder, dirs, files in os.walk(area):
            folders.add(folder)
            for name in files + dirs:
                path = os.path.join(folder, name)
                st = os.lstat(path)
                if not stat.S_ISDIR(st.st_mode):
                    entries[path] = st
    return entries, folders


def restore(dest: str) -> None:
    """Make the install areas exactly what `dest` recorded: remove what the change added,
    put back every file it removed or replaced, and reset folders' mode, owner and mtime."""
    with open(os.path.join(dest, MANIFEST)) as f:
        manifest = json.load(f)
    if manifest.get("kind") == "whole-env":  # a rebuild kept the whole old env (rebuild.py)
        from tljh_admin.rebuild import restore_saved

        restore_saved(dest)
        return
    files_root = os.path.join(dest, FILES)
    recorded_folders, recorded_files, symlinks = _recorded(files_root, manifest["areas"])

    # New top-level entries of the environment (e.g. a share/ the change created).
    root = manifest["root"]
    if root:
        for name in set(os.listdir(root)) - set(manifest["top_level"]):
            _remove(os.path.join(root, name))

    entries, folders = _current(manifest["areas"])

    # 1. what the change added: entries and folders that were not there
    for path in entries.keys() - recorded_files.keys() - symlinks.keys():
        os.unlink(path)
    for folder in sorted(folders - recorded_folders.keys(), key=len, reverse=True):
        shutil.rmtree(folder, ignore_errors=True)
    # 2. folders that went missing
    for folder in sorted(recorded_folders, key=len):
        if not os.path.isdir(folder):
            if os.path.lexists(folder):
                os.unlink(folder)
            os.makedirs(folder, exist_ok=True)
    # 3. files removed or replaced: link the recorded inode back
    for path, recorded in recorded_files.items():
        now = entries.get(path)
        if now is not None and (now.st_ino, now.st_dev) == (recorded.st_ino, recorded.st_dev):
            continue
        if now is not None or os.path.lexists(path):
            os.unlink(path)
        _link_or_copy(files_root + path, path)
    # 4. symlinks
    for path, target in symlinks.items():
        if os.path.islink(path) and os.readlink(path) == target:
            continue
        if os.path.lexists(path):
            _remove(path)
        os.symlink(target, path)
    # 5. folders' metadata last, deepest first, since every change above touched mtimes
    for folder in sorted(recorded_folders, key=len, reverse=True):
        _reset_folder(folder, recorded_folders[folder])
    if root:  # the env root's own mtime changes when top-level entries come and go
        _reset_folder(root, manifest["root_meta"])


def _reset_folder(folder: str, meta: list[int]) -> None:
    mode, uid, gid, mtime_ns = meta
    st = os.lstat(folder)
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(folder, uid, gid)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(folder, mode)
    os.utime(folder, ns=(mtime_ns, mtime_ns))


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def discard(dest: str) -> None:
    shutil.rmtree(dest, ignore_errors=True)
