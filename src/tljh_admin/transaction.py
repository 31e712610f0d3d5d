"""Everything around a change to one or more environments: a lock per environment, a
snapshot before, a journal while it runs, permission normalisation and a history entry
after, and an exact restore when it fails, is interrupted, or was killed last time.

State lives in PREFIX/state/tljh-admin/ (root-only, like TLJH's own state/):
  locks/<env>.lock         flock'ed while a change runs
  journal/<id>.json        a change in flight; left behind only by a killed process
  snapshots/<id>/<env>/    the pre-change state (see snapshot.py)
  history.jsonl            one line per finished change
  logs/<id>.log            the installer's full output
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import pwd
import signal
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tljh_admin import snapshot
from tljh_admin.defaults import DEFAULT_LOCK_TIMEOUT  # noqa: F401 (re-exported)
from tljh_admin.envs.model import Environment
from tljh_admin.errors import ExitCode, TljhError
from tljh_admin.layout import ENV_NAMES, Layout

#: snapshots kept per environment for `tljh env rollback` (older ones are pruned)
KEEP_SNAPSHOTS = 10

OK, FAILED, INTERRUPTED, RESTORED = "ok", "failed", "interrupted", "restored-after-kill"

Notify = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Interrupted(Exception):
    """SIGTERM, turned into an exception so that the change can be undone."""


@dataclass
class StateDir:
    root: str

    @classmethod
    def of(cls, layout: Layout) -> StateDir:
        return cls(layout.admin_state)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def ensure(self) -> None:
        for sub in ("locks", "journal", "snapshots", "logs"):
            os.makedirs(self.path(sub), mode=0o700, exist_ok=True)
        os.chmod(self.root, 0o700)

    # -- history -----------------------------------------------------------------------
    def history(self) -> list[dict]:
        try:
            with open(self.path("history.jsonl"), encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def append_history(self, entry: dict) -> None:
        with open(self.path("history.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def next_id(self) -> int:
        used = [e["id"] for e in self.history()]
        used += [int(n.split(".")[0]) for n in _listdir(self.path("journal")) if n.split(".")[0].isdigit()]
        used += [int(n) for n in _listdir(self.path("snapshots")) if n.isdigit()]
        return max(used, default=0) + 1

    # -- journal -----------------------------------------------------------------------
    def journals(self) -> list[dict]:
        found = []
        for name in sorted(_listdir(self.path("journal"))):
            if name.endswith(".json"):
                with contextlib.suppress(OSError, ValueError), open(self.path("journal", name)) as f:
                    found.append(json.load(f))
        return found

    def write_journal(self, entry: dict) -> None:
        path = self.path("journal", f"{entry['id']}.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(entry, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.path("journal"))

    def in_progress(self, journal: dict) -> bool:
        """Whether a living process still holds a lock of the journal's environments (a
        change running right now, not one left unfinished). Reads only: no lock file is made."""
        for env in journal["envs"]:
            try:
                fd = os.open(self.path("locks", f"{env}.lock"), os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                return True
            finally:
                os.close(fd)
        return False

    def drop_journal(self, change_id: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path("journal", f"{change_id}.json"))

    def close(self, journal: dict, result: str, after: dict[str, dict[str, str]], detail: str) -> dict:
        """End a change: its history entry, no journal, and its snapshot kept only when there
        is something to roll back (a change that ended `ok`)."""
        entry = {**journal, "time": now_iso(), "target": ",".join(journal["envs"])}
        entry.update(after=after, result=result, detail=detail)
        entry.pop("pid", None)
        self.append_history(entry)
        self.drop_journal(journal["id"])
        if result != OK:
            snapshot.discard(self.path("snapshots", str(journal["id"])))
        return entry

    def snapshot_dir(self, change_id: int, env: str) -> str:
        return self.path("snapshots", str(change_id), env)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def who() -> str:
    """The admin behind the change: SUDO_USER when run through sudo, else this user."""
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user:
        return sudo_user
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# -- locks ------------------------------------------------------------------------------


@contextlib.contextmanager
def env_locks(state: StateDir, envs: list[str], timeout: float, notify: Notify = _quiet) -> Iterator[None]:
    """Hold each environment's lock (in a fixed order, so two changes cannot deadlock)."""
    handles = []
    try:
        for name in sorted(envs, key=ENV_NAMES.index):
            handles.append(_acquire(state.path("locks", f"{name}.lock"), name, timeout, notify))
        yield
    finally:
        for handle in reversed(handles):
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def _acquire(path: str, env: str, timeout: float, notify: Notify):
    handle = open(path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another tljh command"
        notify(f"waiting for {holder} to finish with the {env} environment (up to {timeout:.0f} s)")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise TljhError(
                        f"the {env} environment is still locked by {holder} after {timeout:.0f} s",
                        hint="wait for it to finish, or raise --lock-timeout",
                        exit_code=ExitCode.LOCKED,
                    ) from None
                time.sleep(0.1)
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} ({who()}, since {now_iso()})")
    handle.flush()
    return handle


# -- interruption -----------------------------------------------------------------------


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into Interrupted for the duration, so the change is rolled back."""

    def handler(signum, frame):
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- permissions ------------------------------------------------------------------------


@dataclass
class PermissionReport:
    world_writable_fixed: int = 0
    owner_fixed: int = 0


def normalize_permissions(areas: snapshot.Areas, owner: tuple[int, int]) -> PermissionReport:
    """TLJH's `chown -R root:root` + `chmod -R o-w`, limited to where installers write:
    nothing world-writable, everything owned by the environment's owner. Symlinks are left
    alone (their mode means nothing and chown would follow them). GNU find picks out the
    few paths to fix; walking in Python would stat every file."""
    report = PermissionReport()
    uid, gid = owner
    folders = [f for f in areas.folders if os.path.isdir(f)]
    if not folders:
        return report
    for path in _offending_paths(folders, uid, gid):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            continue
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid)
            report.owner_fixed += 1
        if st.st_mode & stat.S_IWOTH:
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~stat.S_IWOTH)
            report.world_writable_fixed += 1
    return report


def _offending_paths(folders: list[str], uid: int, gid: int) -> list[str]:
    import shutil
    import subprocess

    if shutil.which("find"):
        test = ["(", "-perm", "-o+w", "-o", "!", "-uid", str(uid), "-o", "!", "-gid", str(gid), ")"]
        proc = subprocess.run(
            ["find", *folders, *test, "!", "-type", "l", "-print0"],
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
        return [os.fsdecode(p) for p in proc.stdout.split(b"\0") if p]
    found = []
    for area in folders:
        for folder, _dirs, files in os.walk(area):
            for path in [folder, *(os.path.join(folder, n) for n in files)]:
                st = os.lstat(path)
                if st.st_mode & stat.S_IWOTH or (st.st_uid, st.st_gid) != (uid, gid):
                    found.append(path)
    return found


def env_owner(layout: Layout, env: Environment) -> tuple[int, int]:
    """Who new files belong to: the prefix's owner for hub and user (TLJH's `chown -R
    root:root` on the prefix), the site folder's owner for the system python."""
    from tljh_admin.layout import SYSTEM

    path = layout.prefix if env.name != SYSTEM else (env.site_dirs[0] if env.site_dirs else env.root)
    st = os.stat(path)
    return st.st_uid, st.st_gid


# -- the change itself ------------------------------------------------------------------


@dataclass
class EnvState:
    env: Environment
    areas: snapshot.Areas

    @property
    def packages(self) -> dict[str, str]:
        return {d.name: d.version for d in self.env.distributions}


@dataclass
class Change:
    """One change in flight: which envs, its id, and what was there before."""

    layout: Layout
    state: StateDir
    change_id: int
    command: str
    kind: str
    envs: dict[str, EnvState]
    installer: str
    started: str = field(default_factory=now_iso)

    def journal_entry(self) -> dict:
        return {
            "id": self.change_id,
            "pid": os.getpid(),
            "command": self.command,
            "kind": self.kind,
            "installer": self.installer,
            "who": who(),
            "started": self.started,
            "envs": {name: s.env.root for name, s in self.envs.items()},
            "before": {name: s.packages for name, s in self.envs.items()},
        }

    def take_snapshots(self) -> None:
        for name, env_state in self.envs.items():
            dest = self.state.snapshot_dir(self.change_id, name)
            os.makedirs(dest, mode=0o700)
            snapshot.take(env_state.areas, dest)
        self.state.write_journal(self.journal_entry())

    def restore(self) -> None:
        for name in self.envs:
            snapshot.restore(self.state.snapshot_dir(self.change_id, name))

    def finish(self, result: str, after: dict[str, dict[str, str]] | None, detail: str = "") -> dict:
        before = {n: s.packages for n, s in self.envs.items()}
        entry = self.state.close(self.journal_entry(), result, after if after is not None else before, detail)
        prune_snapshots(self.state)
        return entry


def prune_snapshots(state: StateDir, keep: int = KEEP_SNAPSHOTS) -> None:
    ids = sorted((int(n) for n in _listdir(state.path("snapshots")) if n.isdigit()), reverse=True)
    in_flight = {j["id"] for j in state.journals()}
    for old in ids[keep:]:
        if old not in in_flight:
            snapshot.discard(state.path("snapshots", str(old)))


def recover_unfinished(state: StateDir, envs: list[str], notify: Notify = _quiet) -> list[dict]:
    """Restore changes a killed process left half done. Call with the envs' locks held: a
    journal whose locks we hold has no living owner."""
    recovered = []
    for journal in state.journals():
        if not set(journal["envs"]) <= set(envs):
            continue  # another env's change, or one spanning more envs: whoever locks them all recovers it
        notify(f"restoring change {journal['id']} ({journal['command']}), which was interrupted")
        for name in journal["envs"]:
            dest = state.snapshot_dir(journal["id"], name)
            if os.path.exists(os.path.join(dest, snapshot.MANIFEST)):
                snapshot.restore(dest)
        entry = state.close(
            journal,
            RESTORED,
            journal["before"],
            "the process was killed during the change; restored by the next command",
        )
        recovered.append(entry)
    return recovered
