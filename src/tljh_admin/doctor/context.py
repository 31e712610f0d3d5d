"""What checks share: the layout, each environment inspected once, one scan of each
environment's files, and the seams for what cannot run here (systemd)."""

from __future__ import annotations

import os
import pwd
import stat

from tljh_admin import permissions
from tljh_admin.envs.model import Environment
from tljh_admin.layout import USER, Layout, systemctl

SYSTEMD_RUNTIME = "/run/systemd/system"  # sd_booted(3): systemd is PID 1 when this exists


def systemctl_is_active(unit: str) -> str:
    import subprocess

    proc = subprocess.run(
        [systemctl(), "is-active", unit], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    return proc.stdout.strip() or proc.stderr.strip()


def root_home() -> str:
    """Root's home: where `sudo pip install --user` (or pip's fallback) puts packages."""
    if os.geteuid() == 0:
        return os.path.expanduser("~")
    return pwd.getpwnam("root").pw_dir


class Context:
    """One doctor run's shared reads. `deep` allows the checks that spawn interpreters or
    hash every file."""

    def __init__(
        self,
        layout: Layout,
        systemd_running: bool | None = None,
        is_active=systemctl_is_active,
        home_of_root: str | None = None,
        deep: bool = False,
    ):
        self.layout = layout
        #: seams for the machine: replaced in tests, since systemd cannot run there
        self.systemd_running = os.path.isdir(SYSTEMD_RUNTIME) if systemd_running is None else systemd_running
        self.is_active = is_active
        self.home_of_root = root_home() if home_of_root is None else home_of_root
        self.deep = deep
        self._envs: dict[str, Environment] = {}
        self._scans: dict[str, permissions.Scan] = {}
        self._finds: dict = {}
        self._code_owner: tuple[int, int] | None = None

    def env(self, name: str) -> Environment:
        if name not in self._envs:
            from tljh_admin.envs import inspect_environment

            self._envs[name] = inspect_environment(name, self.layout)
        return self._envs[name]

    @property
    def code_owner(self) -> tuple[int, int]:
        """Who should own the environments' files (permissions.code_owner)."""
        if self._code_owner is None:
            self._code_owner = permissions.code_owner(self.layout.prefix)
        return self._code_owner

    def _root(self, name: str) -> str:
        root = self.layout.env_root(name)
        return root if root and os.path.isdir(root) else ""

    def prefetch(self, names) -> None:
        """Start scanning these environments' files in the background."""
        wanted = [n for n in names if n not in self._scans and n not in self._finds]
        if wanted:
            self._finds.update(permissions.start_env_scans(self.layout, wanted))

    def adopt(self, finds: dict) -> None:
        """Scans started before this context existed (permissions.start_env_scans)."""
        self._finds.update(finds)

    def scan(self, name: str) -> permissions.Scan:
        """Every path of a PREFIX environment (by folder walked), and the details of the
        entries that are world-writable, not the code owner's or (user env) not usable by
        users."""
        if name not in self._scans:
            root = self._root(name)
            if not root:
                self._scans[name] = permissions.Scan({}, [], ())
            else:
                proc = self._finds.pop(name, None)
                if proc is None:
                    proc = permissions.start_find(root, self.code_owner, unreadable=name == USER)
                if proc is not None:
                    self._scans[name] = permissions.read_find(proc)
                else:
                    self._scans[name] = permissions.walk(root, self._picker(name))
        return self._scans[name]

    def _picker(self, name: str):
        owner = self.code_owner

        def picks(mode: int, uid: int, gid: int, is_dir: bool) -> bool:
            if mode & (stat.S_IWOTH | stat.S_IWGRP) or (uid, gid) != owner:
                return True
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                return True  # a FIFO, socket or device (special-files)
            return name == USER and permissions.users_cannot_use(mode, is_dir)

        return picks

    def forget(self) -> None:
        """Drop what was read, after fixes changed the disk."""
        for proc in self._finds.values():
            proc.kill()
            permissions.read_find(proc)  # reaps it and closes its files
        self._finds.clear()
        self._envs.clear()
        self._scans.clear()
