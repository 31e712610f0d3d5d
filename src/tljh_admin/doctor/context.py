"""What checks share: the layout, each environment inspected once, one walk of each
environment's files, and the seams for what cannot run here (systemd)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from functools import cached_property

from tljh_admin.envs import inspect_environment
from tljh_admin.envs.model import Environment
from tljh_admin.layout import Layout

SYSTEMD_RUNTIME = "/run/systemd/system"  # sd_booted(3): systemd is PID 1 when this exists


def systemctl_is_active(unit: str) -> str:
    proc = subprocess.run(
        ["systemctl", "is-active", unit], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    return proc.stdout.strip() or proc.stderr.strip()


def root_home() -> str:
    """Root's home: where `sudo pip install --user` (or pip's fallback) puts packages."""
    if os.geteuid() == 0:
        return os.path.expanduser("~")
    return pwd.getpwnam("root").pw_dir


@dataclass(frozen=True)
class FileEntry:
    path: str
    mode: int
    uid: int
    gid: int
    is_dir: bool


@dataclass
class Context:
    layout: Layout
    #: seams for the machine: replaced in tests, since systemd cannot run there
    systemd_running: bool = field(default_factory=lambda: os.path.isdir(SYSTEMD_RUNTIME))
    is_active: object = systemctl_is_active
    home_of_root: str = field(default_factory=root_home)
    _envs: dict[str, Environment] = field(default_factory=dict)
    _files: dict[str, list[FileEntry]] = field(default_factory=dict)
    _finds: dict[str, subprocess.Popen] = field(default_factory=dict)

    def prefetch(self, names) -> None:
        """Start walking these environments' files in the background (`find` runs while the
        Python checks work: two cores, half the wall time)."""
        if not shutil.which("find"):
            return
        for name in names:
            root = self.env(name).root
            if name not in self._files and name not in self._finds and root and os.path.isdir(root):
                self._finds[name] = self._start_find(root)

    def env(self, name: str) -> Environment:
        if name not in self._envs:
            self._envs[name] = inspect_environment(name, self.layout)
        return self._envs[name]

    @cached_property
    def prefix_owner(self) -> tuple[int, int]:
        st = os.stat(self.layout.prefix)
        return st.st_uid, st.st_gid

    def suspicious_files(self, name: str) -> list[FileEntry]:
        """Files and folders of an environment (symlinks skipped) that are world-writable or
        not owned by the prefix's owner. GNU find walks the tree: 4x faster than os.walk
        with a stat per entry on a full user env (40,000 entries)."""
        if name not in self._files:
            root = self.env(name).root
            if not root or not os.path.isdir(root):
                self._files[name] = []
            elif shutil.which("find"):
                proc = self._finds.pop(name, None) or self._start_find(root)
                self._files[name] = self._read_find(proc)
            else:
                self._files[name] = [e for e in self._walk(root) if self._is_suspicious(e)]
        return self._files[name]

    def _is_suspicious(self, entry: FileEntry) -> bool:
        return world_writable(entry) or (entry.uid, entry.gid) != self.prefix_owner

    def _start_find(self, root: str) -> subprocess.Popen:
        uid, gid = self.prefix_owner
        suspicious = ["(", "-perm", "-o+w", "-o", "!", "-uid", str(uid), "-o", "!", "-gid", str(gid), ")"]
        return subprocess.Popen(
            ["find", root, *suspicious, "!", "-type", "l", "-printf", "%m %U %G %y %p\\0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )

    @staticmethod
    def _read_find(proc: subprocess.Popen) -> list[FileEntry]:
        output, _ = proc.communicate()
        entries = []
        for record in output.split(b"\0"):
            if record:
                mode, file_uid, file_gid, kind, path = record.split(b" ", 4)
                entries.append(
                    FileEntry(os.fsdecode(path), int(mode, 8), int(file_uid), int(file_gid), kind == b"d")
                )
        return entries

    def _walk(self, root: str) -> list[FileEntry]:
        entries: list[FileEntry] = []
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                st = os.lstat(folder)
                entries.append(FileEntry(folder, st.st_mode, st.st_uid, st.st_gid, True))
                with os.scandir(folder) as it:
                    for entry in it:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif not entry.is_symlink():
                            est = entry.stat(follow_symlinks=False)
                            entries.append(FileEntry(entry.path, est.st_mode, est.st_uid, est.st_gid, False))
            except OSError:
                continue
        return entries

    def forget(self) -> None:
        """Drop what was read, after fixes changed the disk."""
        for proc in self._finds.values():
            proc.kill()
            proc.wait()
        self._finds.clear()
        self._envs.clear()
        self._files.clear()


def world_writable(entry: FileEntry) -> bool:
    return bool(entry.mode & stat.S_IWOTH) and not stat.S_ISLNK(entry.mode)
