"""Snapshots of an environment, and exact restores.

A snapshot is a hard-link farm: every entry of the environment's change areas linked into
PREFIX/state/tljh-admin/snapshots/<id>/<env>/files/<absolute path>, folders and symlinks
carrying the originals' mode, owner and mtime. Linking costs no data, and it is enough
because pip, uv and conda never rewrite a file in place: they unlink it and write a new one,
so the farm keeps the old bytes. Restoring puts the very same inodes back, so contents,
modes and mtimes come back identical, without the package index.

The change areas of a PREFIX environment are its whole folder, less the few top-level
folders its kind names as never written by a change (conda's package cache): a wheel's
`.data/data` and `.data/headers` and a conda package may write anywhere under the root,
lib/ included. `cp -al` of a whole CPython user env takes tens of milliseconds.

The manifest is written last, atomically, with the number of entries in the farm: a
snapshot without one, or whose farm does not hold that many entries, is incomplete and is
never restored from. Every path in a manifest must lie inside the environment it belongs to
(`allowed`, computed by the caller from the layout, not from the manifest).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from tljh_admin.errors import Refused
from tljh_admin.files import open_binary, read_bytes

MANIFEST = "manifest.json"
FILES = "files"
#: manifest format; 1 had no completeness record
MANIFEST_VERSION = 2


@dataclass(frozen=True)
class Areas:
    """Where a change may write in one environment: whole folders (for PREFIX envs, the
    root itself), less top-level names of the root that no change writes (`skip`)."""

    root: str
    folders: tuple[str, ...]
    #: top-level names present before the change; anything new at top level is the change's
    top_level: frozenset[str]
    skip: frozenset[str] = frozenset()
    #: files the kind's installer rewrites in place (conda appends to conda-meta/history):
    #: a hard link would share those writes, so the snapshot keeps, and restores, a copy
    copied: frozenset[str] = frozenset()


class SnapshotUnusable(Refused):
    """A snapshot that is incomplete, damaged, or points outside its environment."""


class SpecialFileInEnv(Refused):
    """A FIFO, socket or device in an environment: no package installs one, and pip,
    uv or conda opening it (as METADATA, RECORD, a .pth...) would wait on it forever."""


def _special_file(path: str, real: str) -> SpecialFileInEnv:
    import shlex

    mode = os.lstat(path).st_mode
    what = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return SpecialFileInEnv(
        f"{real} is {what}, which no package installs: an installer opening it would wait forever;"
        " nothing was changed",
        hint=f"move it aside (sudo mv {shlex.quote(real)} /root/), then run the command again",
    )


def install_areas(
    env_root: str,
    site_dirs: Iterable[str],
    system: bool = False,
    skip: Iterable[str] = (),
    copied: Iterable[str] = (),
) -> Areas:
    if system:
        # The OS interpreter: only what `pip install` as root writes (dist-packages, the
        # scheme's bin/), never /usr as a whole.
        folders = list(site_dirs)[:1]
        if folders:
            scheme_root = os.path.dirname(os.path.dirname(os.path.dirname(folders[0])))
            folders.append(os.path.join(scheme_root, "bin"))
        return Areas(root="", folders=tuple(folders), top_level=frozenset())
    names = frozenset(os.listdir(env_root))
    in_place = frozenset(os.path.join(env_root, rel) for rel in copied)
    return Areas(root=env_root, folders=(env_root,), top_level=names, skip=frozenset(skip), copied=in_place)


def _meta(st: os.stat_result) -> list[int]:
    return [stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns]


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, dst, follow_symlinks=False)  # another file system: keep a real copy


def _entries(folder: str, skip: frozenset[str]) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n not in skip)


def take(areas: Areas, dest: str, child_env: dict[str, str] | None = None) -> None:
    """Mirror every area into `dest`/files/<absolute path> (`cp -al`, in C), then write the
    manifest, last and atomically, with the farm's entry count. `child_env`: variables for
    cp (the change's marker, so that a cp outliving a kill -9 is found and ended)."""
    files_root = os.path.join(dest, FILES)
    for area in areas.folders:
        if not os.path.isdir(area) or os.path.islink(area):
            continue
        mirror = files_root + area
        skip = areas.skip if area == areas.root else frozenset()
        os.makedirs(os.path.dirname(mirror), mode=0o700, exist_ok=True)
        if not _cp_al(area, mirror, _entries(area, skip), child_env or {}):
            _link_tree(area, mirror, skip)
        _copy_folder_meta(area, mirror)
    for path in sorted(areas.copied):
        mirror = files_root + path
        if os.path.isfile(mirror) and not os.path.islink(mirror):
            parent = os.lstat(os.path.dirname(mirror))  # the mirror keeps the folder's mtime
            os.unlink(mirror)
            _copy_file(path, mirror)
            os.utime(os.path.dirname(mirror), ns=(parent.st_atime_ns, parent.st_mtime_ns))
    count = 0  # the completeness record
    for path, entry in _walk_farm(files_root, areas.folders):
        count += 1
        if not (
            entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False) or entry.is_symlink()
        ):
            raise _special_file(path, path[len(files_root) :])
    manifest = {
        "version": MANIFEST_VERSION,
        "areas": list(areas.folders),
        "root": areas.root,
        "top_level": sorted(areas.top_level),
        "skip": sorted(areas.skip),
        "copied": sorted(areas.copied),
        "entries": count,
        "complete": True,
    }
    if areas.root:
        manifest["root_meta"] = _meta(os.lstat(areas.root))
    write_json_atomic(os.path.join(dest, MANIFEST), manifest)


def write_json_atomic(path: str, data: dict, sync_dir: bool = True) -> None:
    """tmp (never following a symlink) + fsync + rename + fsync of the folder."""
    tmp = path + ".tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a stale one from a killed writer
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with_suppressed_unlink(tmp)
        raise
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(os.path.dirname(path))


def with_suppressed_unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cp_al(source: str, target: str, names: list[str], child_env: dict[str, str]) -> bool:
    import subprocess

    from tljh_admin.layout import system_program

    cp = system_program("cp")  # never PATH's: snapshots are taken as root
    if not cp:
        return False
    os.makedirs(target, mode=0o700, exist_ok=True)
    if not names:
        return True
    proc = subprocess.run(
        ["cp", "-a", "-l", "-t", target, "--", *(os.path.join(source, n) for n in names)],
        executable=cp,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **child_env},
    )
    if proc.returncode != 0:
        if b"No space left" in proc.stderr:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), target)
        shutil.rmtree(target, ignore_errors=True)
        return False
    return True


def _copy_file(source: str, target: str) -> None:
    """A real copy with the source's mode, owner and times (not a link: see Areas.copied)."""
    shutil.copy2(source, target, follow_symlinks=False)
    st = os.lstat(source)
    os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)


def _copy_folder_meta(source: str, mirror: str) -> None:
    st = os.lstat(source)
    os.chown(mirror, st.st_uid, st.st_gid)
    os.chmod(mirror, stat.S_IMODE(st.st_mode))
    os.utime(mirror, ns=(st.st_atime_ns, st.st_mtime_ns))


def _link_tree(source: str, target: str, skip: frozenset[str]) -> None:
    """The same as `cp -al`, in Python, falling back to copies across file systems."""
    for folder, dirs, files in os.walk(source):
        if folder == source:
            dirs[:] = [d for d in dirs if d not in skip]
            files = [f for f in files if f not in skip]
        mirror = target + folder[len(source) :]
        os.makedirs(mirror, exist_ok=True)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                os.symlink(os.readlink(path), os.path.join(mirror, name))
            else:
                _link_or_copy(path, os.path.join(mirror, name))
    for folder, _dirs, _files in os.walk(source, topdown=False):
        mirror = target + folder[len(source) :]
        if os.path.isdir(mirror) and not os.path.islink(mirror):
            _copy_folder_meta(folder, mirror)


def _scan(top: str, skip: frozenset[str] | set[str] = frozenset()):
    """(path, DirEntry) of everything under `top`, never following a symlink. The entry's
    type and inode come from the directory listing itself: no stat per file (a rollback of
    thousands of files is mostly this walk)."""
    stack = [top]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if folder == top and entry.name in skip:
                    continue
                yield entry.path, entry
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)


def _walk_farm(files_root: str, areas: Iterable[str]):
    """(farm path, DirEntry) of every entry under the mirrored areas, folders included."""
    for area in areas:
        mirror_area = files_root + area
        if os.path.isdir(mirror_area):
            yield from _scan(mirror_area)


walk_farm = _walk_farm  # rebuild.py counts the farm it makes by moving an env aside


def _recorded(files_root: str, areas: list[str]):
    """What the farm says: folders with their metadata, files with their inodes, symlinks,
    and how many entries it holds."""
    folders: dict[str, list[int]] = {}
    files: dict[str, int] = {}
    symlinks: dict[str, str] = {}
    count = 0
    for area in areas:
        mirror_area = files_root + area
        if os.path.isdir(mirror_area):
            folders[area] = _meta(os.lstat(mirror_area))
    for path, entry in _walk_farm(files_root, areas):
        count += 1
        real = path[len(files_root) :]
        if entry.is_symlink():
            symlinks[real] = os.readlink(path)
        elif entry.is_dir(follow_symlinks=False):
            folders[real] = _meta(os.lstat(path))
        elif entry.is_file(follow_symlinks=False):
            files[real] = entry.inode()
    return folders, files, symlinks, count


def _current(areas_folders: Iterable[str], root: str, skip: set[str]):
    """What is there now: non-folder entries with their inodes, and the folders."""
    entries: dict[str, int] = {}
    folders: set[str] = set()
    for area in areas_folders:
        if not os.path.isdir(area) or os.path.islink(area):
            continue
        folders.add(area)
        for path, entry in _scan(area, skip if area == root else frozenset()):
            if entry.is_dir(follow_symlinks=False):
                folders.add(path)
            else:
                entries[path] = entry.inode()
    return entries, folders


# -- reaching scanned paths without following symlinks ------------------------------------

_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_OBJECT_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


class Beneath:
    """Paths under one trusted folder (`anchor`, from the layout), reached one component at
    a time from it (openat with O_NOFOLLOW|O_DIRECTORY): a symlink anywhere below the
    anchor, in the middle of a path as well as at its end, is refused (ELOOP, ENOTDIR),
    never followed, so a folder others can write cannot redirect root's fixes. Only the
    folders leading to the last path are kept open: paths visited in sorted order cost about
    one open each, with a handful of descriptors."""

    def __init__(self, anchor: str):
        self.anchor = os.path.normpath(anchor)
        self._fds: dict[str, int] = {}

    def __enter__(self) -> Beneath:
        return self

    def __exit__(self, *exc) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def contains(self, path: str) -> bool:
        path = os.path.normpath(path)
        return path == self.anchor or path.startswith(self.anchor.rstrip("/") + "/")

    def folder(self, path: str) -> int:
        """A descriptor (owned by this object) on the folder `path`, the anchor or below it."""
        path = os.path.normpath(path)
        fd = self._fds.get(path)
        if fd is not None:
            return fd
        if not self.contains(path):
            raise OSError(errno.EXDEV, "not under " + self.anchor, path)
        for kept in [k for k in self._fds if not path.startswith(k.rstrip("/") + "/")]:
            os.close(self._fds.pop(kept))
        if path == self.anchor:
            fd = os.open(path, _FOLDER_FLAGS & ~os.O_NOFOLLOW)
        else:
            parent, name = os.path.split(path)
            fd = os.open(name, _FOLDER_FLAGS, dir_fd=self.folder(parent))
        self._fds[path] = fd
        return fd

    def parent(self, path: str) -> tuple[int, str]:
        """(descriptor on the folder holding `path`, its last name), for *at() calls."""
        path = os.path.normpath(path)
        if path == self.anchor or not self.contains(path):
            raise OSError(errno.EXDEV, "not below " + self.anchor, path)
        parent, name = os.path.split(path)
        return self.folder(parent), name

    def forget(self, path: str) -> None:
        """Close kept folders at or under `path` (after it was removed or replaced)."""
        path = os.path.normpath(path)
        for kept in [k for k in self._fds if k == path or k.startswith(path.rstrip("/") + "/")]:
            os.close(self._fds.pop(kept))

    def open_scanned(self, path: str, dev: int, ino: int) -> int:
        """A new descriptor (the caller closes it) on the object at `path`, only if it is
        still the very inode a scan saw (st_dev, st_ino); else OSError(ESTALE)."""
        path = os.path.normpath(path)
        if path == self.anchor:
            fd = os.open(path, _OBJECT_FLAGS)
        else:
            parent_fd, name = self.parent(path)
            fd = os.open(name, _OBJECT_FLAGS, dir_fd=parent_fd)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (dev, ino):
            os.close(fd)
            raise OSError(errno.ESTALE, "changed since it was scanned; not touched", path)
        return fd


def anchor_of(path: str, anchors: Iterable[str]) -> str | None:
    """The deepest of `anchors` that holds `path`."""
    path = os.path.normpath(path)
    best = None
    for anchor in anchors:
        anchor = os.path.normpath(anchor)
        if (path == anchor or path.startswith(anchor.rstrip("/") + "/")) and (
            best is None or len(anchor) > len(best)
        ):
            best = anchor
    return best


def _inside(path: str, allowed: Iterable[str]) -> bool:
    return any(path == a or path.startswith(a.rstrip(os.sep) + os.sep) for a in allowed)


def read_manifest(dest: str, allowed_root: str, allowed_areas: Iterable[str]) -> dict:
    """The manifest of a complete snapshot whose every path lies inside the environment:
    `allowed_root` (its folder, "" for the system interpreter) and `allowed_areas` (where
    a change may write in it). Paths must have no symlinked component. Anything else is
    refused before a single file is touched."""
    path = os.path.join(dest, MANIFEST)

    def unusable(why: str) -> SnapshotUnusable:
        return SnapshotUnusable(
            f"the snapshot in {dest} cannot be used: {why}; nothing was restored from it",
            hint="see `tljh doctor`; check the environment by hand before removing that folder",
        )

    try:
        manifest = json.loads(read_bytes(path, follow_symlinks=False).decode("utf-8"))
    except FileNotFoundError:
        if not os.path.isdir(dest):
            raise unusable("it is gone (removed by hand?)") from None
        raise unusable("it is incomplete (no manifest: the process was stopped while taking it)") from None
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as error:
        raise unusable(f"its manifest is unreadable ({type(error).__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("complete") is not True:
        raise unusable("its manifest does not say it is complete")
    areas, root = manifest.get("areas"), manifest.get("root")
    top, skip = manifest.get("top_level", []), manifest.get("skip", [])
    if not (isinstance(areas, list) and all(isinstance(a, str) for a in areas) and isinstance(root, str)):
        raise unusable("its manifest is malformed")
    if not (isinstance(top, list) and isinstance(skip, list) and isinstance(manifest.get("entries"), int)):
        raise unusable("its manifest is malformed")
    if any(not isinstance(n, str) or not n or "/" in n or n in (".", "..") for n in [*top, *skip]):
        raise unusable("its manifest names entries that are not plain file names")
    allowed = [allowed_root] if allowed_root else list(allowed_areas)
    if root != allowed_root:
        raise unusable(f"it belongs to {root or 'the system interpreter'}, not {allowed_root or 'it'}")
    for area in [*areas, *([root] if root else [])]:
        if not os.path.isabs(area) or os.path.normpath(area) != area or os.path.realpath(area) != area:
            raise unusable(f"{area} is not a plain absolute path (a symlink or '..' in it)")
        if not _inside(area, allowed):
            raise unusable(f"{area} lies outside the environment")
    return manifest


def restore(dest: str, allowed_root: str, allowed_areas: Iterable[str]) -> None:
    """Make the change areas exactly what `dest` recorded: remove what the change added,
    put back every file it removed or replaced, and reset folders' mode, owner and mtime.
    The snapshot is checked first (manifest, paths, entry count); nothing is touched when
    it fails."""
    manifest = read_manifest(dest, allowed_root, allowed_areas)
    files_root = os.path.join(dest, FILES)
    recorded_folders, recorded_files, symlinks, count = _recorded(files_root, manifest["areas"])
    if count != manifest["entries"]:
        raise SnapshotUnusable(
            f"the snapshot in {dest} is damaged: {count} entries where its manifest recorded "
            f"{manifest['entries']}; nothing was restored from it",
            hint="see `tljh doctor`; check the environment by hand before removing that folder",
        )
    root = manifest["root"]
    tree = _SafeTree([*manifest["areas"], *([root] if root else [])])
    try:
        _restore_into(tree, manifest, files_root, recorded_folders, recorded_files, symlinks)
    finally:
        tree.close()
    if tree.refused:
        shown = ", ".join(sorted(tree.refused)[:3])
        raise Refused(
            f"{len(tree.refused)} path(s) of the environment now lie under a symlink or a "
            f"swapped folder and were not restored: {shown}",
            hint="someone could write into the environment: see `tljh doctor`, then roll back again",
        )


def _restore_into(tree, manifest, files_root, recorded_folders, recorded_files, symlinks) -> None:
    root = manifest["root"]
    skip = set(manifest["skip"])
    if root:  # new top-level entries of the environment (e.g. a share/ the change created)
        for name in set(os.listdir(root)) - set(manifest["top_level"]) - skip:
            tree.remove(os.path.join(root, name))

    entries, folders = _current(manifest["areas"], root, skip)
    # an inode number means the same file only on the same file system (a farm copied
    # across file systems is compared by nothing: every file is put back)
    same_fs = all(
        os.lstat(area).st_dev == os.lstat(files_root + area).st_dev
        for area in manifest["areas"]
        if os.path.isdir(area) and os.path.isdir(files_root + area)
    )

    # 1. what the change added: entries and folders that were not there
    for path in sorted(entries.keys() - recorded_files.keys() - symlinks.keys()):
        tree.remove(path)
    for folder in sorted(folders - recorded_folders.keys(), key=len, reverse=True):
        tree.remove(folder)
    # 2. folders that went missing
    for folder in sorted(recorded_folders, key=len):
        tree.make_folder(folder)
    # 3. files removed or replaced: link the recorded inode back
    copied = {
        p for p in manifest.get("copied", []) if isinstance(p, str) and _inside(p, [root] if root else [])
    }
    for path in sorted(recorded_files):
        recorded, now = recorded_files[path], entries.get(path)
        if path in copied:  # rewritten in place by the installer: put a copy back, always
            tree.remove(path)
            tree.copy_in(files_root + path, path)
            continue
        if same_fs and now is not None and now == recorded:
            continue
        tree.remove(path)
        tree.link_in(files_root + path, path)
    # 4. symlinks
    for path in sorted(symlinks):
        tree.symlink(symlinks[path], path, files_root + path)
    # 5. folders' metadata last, deepest first, since every change above touched mtimes
    for folder in sorted(recorded_folders, key=len, reverse=True):
        tree.reset_folder(folder, recorded_folders[folder])
    if root and "root_meta" in manifest:  # the env root's own mtime changes with its entries
        tree.reset_folder(root, manifest["root_meta"])


class _SafeTree:
    """restore's file operations, each done relative to a folder reached from its area
    without following symlinks (Beneath): a path whose parent is now a symlink or another
    folder is refused (collected in `refused`), never followed. An area folder itself is a
    checked, symlink-free path (read_manifest), used as is."""

    _REFUSALS = (errno.ELOOP, errno.ENOTDIR, errno.EXDEV, errno.ESTALE)

    def __init__(self, anchors: list[str]):
        self.anchors = [os.path.normpath(a) for a in anchors]
        self.openers: dict[str, Beneath] = {}
        self.refused: set[str] = set()

    def close(self) -> None:
        for opener in self.openers.values():
            opener.__exit__(None, None, None)

    def _at(self, path: str) -> tuple[Beneath, int, str] | None:
        anchor = anchor_of(path, self.anchors)
        try:
            if anchor is None:
                raise OSError(errno.EXDEV, "outside the environment", path)
            opener = self.openers.setdefault(anchor, Beneath(anchor))
            parent_fd, name = opener.parent(path)
        except OSError as error:
            if error.errno not in self._REFUSALS:
                raise
            self.refused.add(path)
            return None
        return opener, parent_fd, name

    def _lstat(self, parent_fd: int, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def remove(self, path: str) -> None:
        at = self._at(path)
        if at is None:
            return
        opener, parent_fd, name = at
        st = self._lstat(parent_fd, name)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            opener.forget(path)
            if sys.version_info >= (3, 11):
                shutil.rmtree(name, dir_fd=parent_fd)  # fd-based: never follows a symlink inside
            else:  # the parent through its descriptor's /proc link, not through its path
                shutil.rmtree(f"/proc/self/fd/{parent_fd}/{name}")
        else:
            os.unlink(name, dir_fd=parent_fd)

    def make_folder(self, path: str) -> None:
        if os.path.normpath(path) in self.anchors:
            if not os.path.isdir(path) or os.path.islink(path):
                if os.path.lexists(path):
                    os.unlink(path)
                os.makedirs(path, exist_ok=True)
            return
        at = self._at(path)
        if at is None:
            return
        opener, parent_fd, name = at
        st = self._lstat(parent_fd, name)
        if st is not None and stat.S_ISDIR(st.st_mode):
            return
        if st is not None:
            os.unlink(name, dir_fd=parent_fd)
        opener.forget(path)
        os.mkdir(name, dir_fd=parent_fd)

    def link_in(self, source: str, path: str) -> None:
        at = self._at(path)
        if at is None:
            return
        _opener, parent_fd, name = at
        try:
            os.link(source, name, dst_dir_fd=parent_fd, follow_symlinks=False)
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            self._copy(source, parent_fd, name)  # another file system: keep a real copy

    def copy_in(self, source: str, path: str) -> None:
        at = self._at(path)
        if at is not None:
            self._copy(source, at[1], at[2])

    def _copy(self, source: str, parent_fd: int, name: str) -> None:
        """A real copy with the source's mode, owner and times, created through the parent's
        descriptor (O_EXCL|O_NOFOLLOW: nothing planted at the name is written through)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with open_binary(source) as src:
            st = os.fstat(src.fileno())
            fd = os.open(name, flags, 0o600, dir_fd=parent_fd)
            with os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst)
                dst.flush()
                os.fchown(fd, st.st_uid, st.st_gid)
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))

    def symlink(self, target: str, path: str, source: str | None = None) -> None:
        """The symlink back: the farm's own (`source`, the original's inode, hard-linked as
        cp -al made it: owner and times as they were), else a new one to `target`."""
        at = self._at(path)
        if at is None:
            return
        _opener, parent_fd, name = at
        st = self._lstat(parent_fd, name)
        farm = os.lstat(source) if source is not None else None
        if st is not None and farm is not None and (st.st_dev, st.st_ino) == (farm.st_dev, farm.st_ino):
            return  # the very symlink the snapshot holds
        unchanged = farm is None and st is not None and stat.S_ISLNK(st.st_mode)
        if unchanged and os.readlink(name, dir_fd=parent_fd) == target:
            return
        if st is not None:
            self.remove(path)
        if source is not None:
            try:
                os.link(source, name, dst_dir_fd=parent_fd, follow_symlinks=False)
                return
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
        os.symlink(target, name, dir_fd=parent_fd)

    def reset_folder(self, path: str, meta: list[int]) -> None:
        mode, uid, gid, mtime_ns = meta
        anchor = anchor_of(path, self.anchors)
        if anchor is None:
            self.refused.add(path)
            return
        opener = self.openers.setdefault(anchor, Beneath(anchor))
        try:
            fd = opener.folder(path)
        except OSError as error:
            if error.errno not in self._REFUSALS:
                raise
            self.refused.add(path)
            return
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
        os.utime(fd, ns=(mtime_ns, mtime_ns))


def discard(dest: str) -> None:
    shutil.rmtree(dest, ignore_errors=True)


def unique_bytes(snapshots_root: str) -> dict[str, int]:
    """Disk space each snapshot holds on its own: bytes of files whose every link lies in
    the snapshot folder (the rest are shared with the live environment or other snapshots,
    counted once, for the newest snapshot holding them). Keyed by snapshot folder name."""
    seen: dict[tuple[int, int], list] = {}
    try:
        names = sorted((n for n in os.listdir(snapshots_root) if n.isdigit()), key=int, reverse=True)
    except FileNotFoundError:
        return {}
    usage = dict.fromkeys(names, 0)
    for name in names:
        for folder, _dirs, files in os.walk(os.path.join(snapshots_root, name)):
            for file in files:
                st = os.lstat(os.path.join(folder, file))
                if not stat.S_ISREG(st.st_mode):
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    seen[key][1] += 1
                else:
                    seen[key] = [name, 1, st.st_nlink, st.st_blocks * 512]
    for owner, links, nlink, size in seen.values():
        if links >= nlink:
            usage[owner] += size
    return usage
