"""What checks share: the layout, each environment inspected once, one walk of each
environment's files, and the seams for what cannot run here (systemd)."""

from __future__ import annotations

import os
import pwd
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

    def env(self, name: str) -> Environment:
        if name not in self._envs:
            self._envs[name] = inspect_environment(name, self.layout)
        return self._envs[name]

    @cached_property
    def prefix_owner(self) -> tuple[int, int]:
        st = os.stat(self.layout.prefix)
        return st.st_uid, st.st_gid

    def files(self, name: str) -> list[FileEntry]:
        """Every file and folder of an environment (symlinks skipped), walked once."""
        if name not in self._files:
            entries: list[FileEntry] = []
            root = self.env(name).root
            stack = [root] if os.path.isdir(root) else []
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
                                entries.append(
                                    FileEntry(entry.path, est.st_mode, est.st_uid, est.st_gid, False)
                                )
                except OSError:
                    continue
            self._files[name] = entries
        return self._files[name]

    def forget(self) -> None:
        """Drop what was read, after fixes changed the disk."""
        self._envs.clear()
        self._files.clear()


def world_writable(entry: FileEntry) -> bool:
    return bool(entry.mode & stat.S_IWOTH) and not stat.S_ISLNK(entry.mode)
