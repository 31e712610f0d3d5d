"""Everything around a change to one or more environments: a lock per environment, a
snapshot before, a journal while it runs, permission normalisation and a history entry
after, and an exact restore when it fails, is interrupted, or was killed last time.

State lives in PREFIX/state/tljh-admin/ (root-only, like TLJH's own state/):
  locks/<env>.lock         flock'ed while a change runs
  journal/<id>.json        a change in flight; left behind only by a killed process. Its
                           creation (link(2), which fails if it exists) allocates the change
                           id, across all environments.
  snapshots/<id>/<env>/    the pre-change state (see snapshot.py)
  history.jsonl            one line per finished change (readers skip a torn last line)
  logs/<id>.log            the installer's full output
  scratch/                 the installers' work folders (plans, constraints)

The folder is checked before every use (root-owned, private, no symlink in it or in
PREFIX/state) and every file in it is opened without following symlinks: a state folder a
user could write to would let that user steer root's deletes and chmods.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import pwd
import shlex
import signal
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tljh_admin import files, permissions, snapshot
from tljh_admin.defaults import DEFAULT_LOCK_TIMEOUT  # noqa: F401 (re-exported)
from tljh_admin.envs.model import Environment
from tljh_admin.errors import ChangeFailed, Locked, PermissionDenied, Refused, TljhError
from tljh_admin.layout import ENV_NAMES, SYSTEM, Layout, system_program

if TYPE_CHECKING:
    import subprocess

#: snapshots kept for `tljh env rollback` when settings.json says nothing (older ones are pruned)
KEEP_SNAPSHOTS = 10
#: how long recovery waits for the processes of a killed change to go after SIGKILL
PROCESS_EXIT_TIMEOUT = 30.0

OK, FAILED, INTERRUPTED, RESTORED = "ok", "failed", "interrupted", "restored-after-kill"
#: killed while the snapshot was being taken: nothing had been changed yet
ABANDONED = "abandoned"
#: journal phases, in order
SNAPSHOTTING, RUNNING = "snapshotting", "running"
#: the variable every installer process of a change carries (its children inherit it), so
#: that recovery can find them even if they left the process group
CHANGE_MARKER = "TLJH_ADMIN_CHANGE"
SUBFOLDERS = ("locks", "journal", "snapshots", "logs", "scratch")

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC

Notify = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Interrupted(Exception):
    """SIGTERM, turned into an exception so that the change can be undone."""


def _state_hint(folder: str) -> str:
    import shlex

    quoted = shlex.quote(folder)
    return (
        f"check who changed it; if it is a symlink, remove it; else: sudo chown root:root {quoted} "
        f"&& sudo chmod 700 {quoted}"
    )


@dataclass(frozen=True)
class BadJournal:
    name: str
    reason: str


@dataclass
class StateDir:
    root: str
    layout: Layout | None = None

    @classmethod
    def of(cls, layout: Layout) -> StateDir:
        return cls(layout.admin_state, layout)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    # -- safety of the folder ------------------------------------------------------------
    def _chain(self) -> list[str]:
        """PREFIX/state, the tool's folder and its subfolders: every folder root relies on."""
        return [os.path.dirname(self.root), self.root, *(self.path(s) for s in SUBFOLDERS)]

    def problems(self, owner: int | None = None) -> list[str]:
        """Why this state folder must not be trusted (empty when it can be): a symlink, not a
        folder, another owner, or writable by group or others. Missing folders are fine."""
        return [why for _, why in self._problems(owner)]

    def _problems(self, owner: int | None) -> list[tuple[str, str]]:
        owner = os.geteuid() if owner is None else owner
        found = []
        for folder in self._chain():
            try:
                st = os.lstat(folder)
            except FileNotFoundError:
                continue
            except PermissionError:
                continue  # inside a folder closed to this user: that folder is what protects it
            except OSError as error:
                found.append((folder, f"{folder} cannot be checked: {error.strerror}"))
                continue
            if stat.S_ISLNK(st.st_mode):
                found.append((folder, f"{folder} is a symlink (to {os.readlink(folder)})"))
            elif not stat.S_ISDIR(st.st_mode):
                found.append((folder, f"{folder} is not a folder"))
            elif st.st_uid != owner:
                found.append((folder, f"{folder} belongs to uid {st.st_uid}, not {owner}"))
            elif st.st_mode & 0o022:
                who = "others" if st.st_mode & 0o002 else "its group"
                found.append((folder, f"{folder} is writable by {who}"))
        return found

    def check_safe(self) -> None:
        found = self._problems(None)
        if found:
            folder, why = found[0]
            raise Refused(f"tljh-admin's state folder is not safe to use: {why}", hint=_state_hint(folder))

    def ensure(self) -> None:
        """Create the folders root-owned and 0700 whatever the umask, then check them all."""
        self.check_safe()  # before creating anything inside a folder someone else controls
        for folder in self._chain():
            try:
                os.mkdir(folder, 0o700)
            except FileExistsError:
                continue
            except PermissionError:
                raise PermissionDenied(
                    f"this user cannot create {folder}", hint="run with sudo (TLJH's state belongs to root)"
                ) from None
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
            try:
                os.fchmod(fd, 0o700)  # mkdir's mode is masked by the umask
            finally:
                os.close(fd)
        self.check_safe()

    def _open(self, path: str, flags: int, mode: int = 0o600) -> int:
        """A state file, never through a symlink, and only a regular one (a FIFO put in its
        place is opened without blocking, then refused)."""
        return files.open_regular(path, flags, mode, follow_symlinks=False)

    # -- history -----------------------------------------------------------------------
    def history(self) -> list[dict]:
        """Every finished change; a torn or garbled line (a write cut short) is skipped."""
        return self._read_history()[0]

    def unreadable_history_lines(self) -> list[int]:
        """The numbers of the history lines that are no change record (a write cut short,
        an edit): env history and env rollback do not see those changes."""
        return self._read_history()[1]

    def _read_history(self) -> tuple[list[dict], list[int]]:
        path = self.path("history.jsonl")
        try:
            fd = self._open(path, os.O_RDONLY)
        except FileNotFoundError:
            return [], []
        except PermissionError:
            raise PermissionDenied(
                f"this user cannot read tljh-admin's history in {self.root}", hint="run with sudo"
            ) from None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise Refused(f"{path} is a symlink; it is not read", hint=_state_hint(self.root)) from None
            if error.errno in (errno.EINVAL, errno.EISDIR):
                raise Refused(
                    f"{path} is not a regular file; it is not read",
                    hint=f"move it aside (sudo mv {shlex.quote(path)} /root/), then run the command again",
                ) from None
            raise
        entries, unreadable = [], []
        # years of history may pass any size a single file should have; one line may not (a
        # sparse file of zeros is one endless line): the limit is per line
        with os.fdopen(fd, "rb") as f:
            for number, raw in enumerate(iter(lambda: f.readline(files.READ_LIMIT + 1), b""), start=1):
                if len(raw) > files.READ_LIMIT:
                    raise Refused(
                        f"{path}: line {number} is longer than {files.READ_LIMIT // 1024**2} MiB, which no"
                        " change record is; it is not read",
                        hint=f"move it aside (sudo mv {shlex.quote(path)} /root/), then run it again",
                    )
                try:
                    entry = json.loads(raw)
                except (ValueError, RecursionError):
                    entry = None
                if isinstance(entry, dict) and _well_formed_entry(entry):
                    entries.append(entry)
                elif raw.strip():
                    unreadable.append(number)
        return entries, unreadable

    def append_history(self, entry: dict) -> None:
        """Append one line; a torn last line left by a killed writer is ended first, so it
        stays one skipped line and never swallows this one."""
        fd = self._open(self.path("history.jsonl"), os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            size = os.fstat(fd).st_size
            torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
            os.write(fd, (b"\n" if torn else b"") + json.dumps(entry, sort_keys=True).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)

    def check_writable(self) -> None:
        """Before a change starts: the history can be appended to (not immutable, not a
        symlink). A change whose ending cannot be recorded is not started."""
        path = self.path("history.jsonl")
        try:
            os.close(self._open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT))
        except OSError as error:
            raise Refused(
                f"cannot write tljh-admin's history {path}: {error.strerror}; nothing was changed",
                hint="see `lsattr` (immutable?) and `df` (full?) for that file",
            ) from None

    # -- ids -----------------------------------------------------------------------------
    def _highest_id(self) -> int:
        used = [e["id"] for e in self.history()]
        for folder in ("journal", "snapshots"):
            for name in _listdir(self.path(folder)):
                stem = name.split(".")[0]
                if stem.isdigit():
                    used.append(int(stem))
        return max(used, default=0)

    def reserve_id(self, entry: Callable[[int], dict]) -> int:
        """A change id no other change has, across every environment: the journal
        `entry(id)` is written to a private temp file, then hard-linked to
        journal/<id>.json, which fails if that exists (O_EXCL semantics). A journal thus
        never exists empty: it appears whole, naming its environments, or not at all."""
        change_id = self._highest_id() + 1
        tmp = self.path("journal", f".reserve-{os.getpid()}")
        while True:
            snapshot.write_json_atomic(tmp, entry(change_id), sync_dir=False)
            try:
                os.link(tmp, self.path("journal", f"{change_id}.json"))
            except FileExistsError:
                change_id += 1
                continue
            finally:
                snapshot.with_suppressed_unlink(tmp)
            snapshot.fsync_dir(self.path("journal"))
            return change_id

    # -- journal -----------------------------------------------------------------------
    def scan_journals(self) -> tuple[list[dict], list[BadJournal]]:
        """Journals of unfinished changes, and the ones that cannot be trusted (garbage,
        symlinks, empty, paths that are not this prefix's environments)."""
        valid: list[dict] = []
        bad: list[BadJournal] = []
        try:
            names = sorted(os.listdir(self.path("journal")))
        except FileNotFoundError:
            return valid, bad
        except PermissionError:
            raise PermissionDenied(
                f"this user cannot read tljh-admin's journals in {self.root}", hint="run with sudo"
            ) from None
        for name in names:
            stem, _, ext = name.partition(".")
            if ext != "json":
                continue
            try:
                raw = files.read_bytes(self.path("journal", name), follow_symlinks=False)
            except FileNotFoundError:
                continue  # finished meanwhile
            except OSError as error:
                bad.append(BadJournal(name, "a symlink" if error.errno == errno.ELOOP else error.strerror))
                continue
            try:
                journal = json.loads(raw)
            except (ValueError, RecursionError):
                bad.append(BadJournal(name, "not valid JSON"))
                continue
            reason = self._journal_problem(journal, stem)
            if reason:
                bad.append(BadJournal(name, reason))
            else:
                valid.append(journal)
        return valid, bad

    def _journal_problem(self, journal, stem: str) -> str | None:
        if (
            not isinstance(journal, dict)
            or not isinstance(journal.get("id"), int)
            or str(journal["id"]) != stem
        ):
            return "its id does not match its name"
        envs = journal.get("envs")
        if not isinstance(envs, dict) or not envs or not set(envs) <= set(ENV_NAMES):
            return "it names no known environment"
        if not isinstance(journal.get("before"), dict) or journal.get("phase") not in (SNAPSHOTTING, RUNNING):
            return "it is incomplete"
        if not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(n, int) for n in p)
            for p in journal.get("processes", [])
        ):
            return "its process list is malformed"
        if self.layout is not None:
            for name, root in envs.items():
                expected = self.layout.env_root(name)
                if name != SYSTEM and (
                    not isinstance(root, str) or os.path.realpath(root) != os.path.realpath(expected)
                ):
                    return f"its {name} environment is {root!r}, not {expected}"
        return None

    def journals(self) -> list[dict]:
        """Journals of unfinished changes that can be acted on (see scan_journals)."""
        return self.scan_journals()[0]

    def quarantine(self, bad: BadJournal) -> str:
        """Move an untrusted journal aside (renaming never follows a symlink): it is
        reported, never acted on."""
        source = self.path("journal", bad.name)
        target = source + ".invalid"
        with contextlib.suppress(FileNotFoundError):
            os.rename(source, target)
        return target

    def quarantined(self) -> list[str]:
        return sorted(n for n in _listdir(self.path("journal")) if n.endswith(".invalid"))

    def write_journal(self, entry: dict) -> None:
        snapshot.write_json_atomic(self.path("journal", f"{entry['id']}.json"), entry)

    def in_progress(self, journal: dict) -> bool:
        """Whether a living process still holds a lock of the journal's environments (a
        change running right now, not one left unfinished). Reads only: no lock file is made."""
        for env in journal["envs"]:
            try:
                fd = self._open(self.path("locks", f"{env}.lock"), os.O_RDONLY)
            except OSError:
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
        with contextlib.suppress(FileNotFoundError):
            snapshot.fsync_dir(self.path("journal"))

    def close(self, journal: dict, result: str, after: dict[str, dict[str, str]], detail: str) -> dict:
        """End a change: its history entry, no journal, and its snapshot kept only when there
        is something to roll back (a change that ended `ok`)."""
        entry = {**journal, "time": now_iso(), "target": ",".join(journal["envs"])}
        entry.update(after=after, result=result, detail=detail)
        for private in ("pid", "processes", "phase", "marker"):
            entry.pop(private, None)
        self.append_history(entry)
        # the journal goes before the snapshot: killed in between, what is left is a
        # snapshot nothing refers to, never a journal whose snapshot is half removed
        self.drop_journal(journal["id"])
        if result != OK:
            snapshot.discard(self.path("snapshots", str(journal["id"])))
        return entry

    def snapshot_dir(self, change_id: int, env: str) -> str:
        return self.path("snapshots", str(change_id), env)

    # -- settings and space -------------------------------------------------------------
    def settings(self) -> dict:
        """settings.json: {"keep_snapshots": N}. Absent or unreadable: the defaults."""
        try:
            found = json.loads(files.read_bytes(self.path("settings.json"), follow_symlinks=False))
        except (OSError, ValueError, RecursionError):
            return {"keep_snapshots": KEEP_SNAPSHOTS}
        keep = found.get("keep_snapshots") if isinstance(found, dict) else None
        return {"keep_snapshots": keep if isinstance(keep, int) and keep >= 0 else KEEP_SNAPSHOTS}

    def snapshot_usage(self) -> dict[int, int]:
        """Bytes each kept snapshot holds on its own (not shared with the live envs)."""
        try:
            return {int(k): v for k, v in snapshot.unique_bytes(self.path("snapshots")).items()}
        except PermissionError:
            raise PermissionDenied(
                f"this user cannot read {self.path('snapshots')}", hint="run with sudo"
            ) from None


#: the text fields every history entry has (StateDir.close writes them), as the readers use them
_ENTRY_TEXT = ("time", "who", "target", "command", "result")


def _packages_by_env(value) -> bool:
    """{env: {name: version}}, every key and version a string."""
    return isinstance(value, dict) and all(
        isinstance(env, str)
        and isinstance(packages, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in packages.items())
        for env, packages in value.items()
    )


def _well_formed_entry(entry: dict) -> bool:
    """Whether a history line has every field, of the type, its readers use: a line edited
    by hand into another shape is skipped like a torn one, never a traceback later."""
    envs = entry.get("envs")
    return (
        type(entry.get("id")) is int
        and isinstance(envs, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in envs.items())
        and all(isinstance(entry.get(key), str) for key in _ENTRY_TEXT)
        and _packages_by_env(entry.get("before"))
        and _packages_by_env(entry.get("after"))
        and all(env in entry["before"] for env in envs)
    )


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


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


#: lock file path -> (descriptor, whether this process wrote its holder note), while held
_HELD: dict[str, list] = {}


@contextlib.contextmanager
def env_locks(state: StateDir, envs, timeout: float, notify: Notify = _quiet) -> Iterator[None]:
    """Hold each environment's lock (in a fixed order, so two changes cannot deadlock)."""
    paths = []
    try:
        for name in sorted(set(envs), key=ENV_NAMES.index):
            path = state.path("locks", f"{name}.lock")
            _HELD[path] = [_acquire(state, path, name, timeout, notify), False]
            paths.append(path)
        yield
    finally:
        for path in reversed(paths):
            fd, noted = _HELD.pop(path)
            if noted:
                os.ftruncate(fd, 0)  # the holder is gone: no stale note for the next waiter
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def note_lock_holder(state: StateDir, envs) -> None:
    """Write who holds these locks, for a command that waits on them. Only once a change
    begins: planning, dry runs and refusals write nothing, not even a lock's note."""
    note = f"pid {os.getpid()} ({who()}, since {now_iso()})".encode()
    for env in envs:
        held = _HELD.get(state.path("locks", f"{env}.lock"))
        if held:
            os.ftruncate(held[0], 0)
            os.pwrite(held[0], note, 0)
            held[1] = True


def _acquire(state: StateDir, path: str, env: str, timeout: float, notify: Notify) -> int:
    try:
        fd = state._open(path, os.O_RDWR | os.O_CREAT)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise Refused(f"{path} is a symlink; it is not followed", hint=_state_hint(state.root)) from None
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
        pid = holder.split()[1] if holder.startswith("pid ") and len(holder.split()) > 1 else ""
        if not (pid.isdigit() and os.path.exists(f"/proc/{pid}")):
            holder = "another tljh command"  # no note, or one a killed change left behind
        notify(f"waiting for {holder} to finish with the {env} environment (up to {timeout:.0f} s)")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise Locked(
                        f"the {env} environment is still locked by {holder} after {timeout:.0f} s",
                        hint="wait for it to finish, or raise --lock-timeout",
                    ) from None
                time.sleep(0.1)
    return fd


def envs_to_lock(state: StateDir, targets) -> set[str]:
    """The targets, plus every environment of an unfinished change touching them (a killed
    upgrade of hub and user must be recovered, whole, before a change to either)."""
    needed = set(targets)
    journals = state.journals()
    while True:
        more = {e for j in journals if set(j["envs"]) & needed for e in j["envs"]} - needed
        if not more:
            return needed
        needed |= more


@contextlib.contextmanager
def locked_and_recovered(
    layout: Layout, targets, timeout: float, notify: Notify = _quiet
) -> Iterator[tuple[StateDir, list[dict]]]:
    """Lock `targets` (and whatever an unfinished change touching them spans), recover
    every unfinished change on them, and yield the state folder and what was recovered."""
    state = StateDir.of(layout)
    state.ensure()
    while True:
        needed = envs_to_lock(state, targets)
        with env_locks(state, needed, timeout, notify):
            if envs_to_lock(state, needed) != needed:
                continue  # a change spanning more envs was left meanwhile: lock those too
            clean_stale_scratch(state)
            recovered = recover_unfinished(state, needed, notify)
            yield state, recovered
            return


# -- interruption -----------------------------------------------------------------------


#: what stops a change: Ctrl-C, a supervisor's SIGTERM, and the hangup of a dropped SSH
#: session (else tljh died at once, as from kill -9, while the installer, in its own
#: session, went on and finished unrecorded)
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def raise_deferred(arrived: list[int]) -> None:
    """After a signals_deferred() block: act on the first signal that arrived during it."""
    if arrived:
        raise KeyboardInterrupt() if arrived[0] == signal.SIGINT else Interrupted()


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn the first SIGTERM or SIGINT into Interrupted / KeyboardInterrupt, so that the
    change is undone; later ones are ignored until the context ends, so a second Ctrl-C
    (or a supervisor repeating SIGTERM) cannot cut the restore short."""
    raised = []

    def handler(signum, frame):
        if raised:
            return
        raised.append(signum)
        raise KeyboardInterrupt() if signum == signal.SIGINT else Interrupted()

    previous = {s: signal.signal(s, handler) for s in STOPPING_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """SIGINT and SIGTERM are noted, not acted on, while a restore runs: a second Ctrl-C
    must not leave a half-restored environment. Yields the signals that arrived."""
    arrived: list[int] = []

    def note(signum, frame):
        arrived.append(signum)

    previous = {s: signal.signal(s, note) for s in STOPPING_SIGNALS}
    try:
        yield arrived
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# -- processes of a change ----------------------------------------------------------------


def process_start(pid: int) -> int | None:
    """The start time of a process (clock ticks since boot), to tell it from a later
    process that reuses its number; None when it is gone or a zombie."""
    fields = _proc_stat(pid)
    return None if fields is None or fields[0] == "Z" else int(fields[19])


def _proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()  # fields from `state` on: the name may hold spaces


def _runs_as(pid: int, uid: int) -> bool:
    """Whether any of the process's uids (real, effective, saved, file system) is `uid`, as
    /proc/PID/status says (the owner of /proc/PID is no answer: a process that makes itself
    non-dumpable shows as root's there)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return str(uid).encode() in line.split()[1:]
    except OSError:
        pass
    return False


def change_processes(processes: list[list[int]], marker: str) -> list[int]:
    """Living processes of a change: members of the process groups it recorded (when the
    group's leader is the recorded one, or gone), or carrying its marker variable. Only
    processes running as this user count: a change's children run as it does, and anyone
    else may start a process with the marker in its environment (or one that takes a dead
    group's number), which would otherwise stop every change until it ended."""
    found = []
    groups = {pgid: start for pgid, start in processes}
    needle = f"{CHANGE_MARKER}={marker}\0".encode()
    me = os.geteuid()
    for name in _listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        fields = _proc_stat(int(name))
        if fields is None or fields[0] == "Z":
            continue
        pgid = int(fields[2])
        if pgid in groups:
            leader_start = process_start(pgid)
            if (leader_start is None or leader_start == groups[pgid]) and _runs_as(int(name), me):
                found.append(int(name))
                continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read() + b"\0" and _runs_as(int(name), me):
                    found.append(int(name))
        except OSError:
            continue
    return found


def end_processes(processes: list[list[int]], marker: str, timeout: float = PROCESS_EXIT_TIMEOUT) -> int:
    """SIGKILL every living process of a change and wait until /proc shows none. Returns
    how many there were."""
    deadline = time.monotonic() + timeout
    killed: set[int] = set()
    while True:
        alive = change_processes(processes, marker)
        if not alive:
            return len(killed)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        if time.monotonic() > deadline:
            raise ChangeFailed(
                f"processes {', '.join(map(str, alive))} of an unfinished change would not end",
                hint="end them (sudo kill -9 PID), then run the command again",
            )
        time.sleep(0.02)


def run_with_group_timeout(argv: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run(..., timeout=) for a child that may start children of its own: the
    child runs in its own session and a timeout kills that whole process group (run's own
    timeout kills only the direct child, and then waits for a grandchild holding the
    output pipes). Raises subprocess.TimeoutExpired after the group is killed."""
    import subprocess

    with subprocess.Popen(argv, start_new_session=True, **kwargs) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def scratch_folder(state: StateDir | None) -> str:
    """A private work folder for one command's installer runs: under the state folder
    when given one (changes._scratch_parent: a change that plans; cleaned by the next
    command if this one is killed), else in the temporary folder (a dry run)."""
    import tempfile

    if state is not None:
        # made if need be, and checked: an installer runs as root with its work folder as
        # working directory (`python -m pip` puts that first on sys.path), so never in a
        # state folder someone else controls
        state.ensure()
        return tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=state.path("scratch"))
    return tempfile.mkdtemp(prefix=f"tljh-admin-{os.getpid()}-")


def clean_stale_scratch(state: StateDir) -> None:
    """Remove work folders of commands that are gone (killed with -9), in the state folder
    and in /tmp (only our own, real folders; rmtree never follows symlinks)."""
    import shutil
    import tempfile

    for name in _listdir(state.path("journal")):  # a reservation's temp file (reserve_id)
        pid = name.removeprefix(".reserve-").split(".")[0]
        if name.startswith(".reserve-") and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            snapshot.with_suppressed_unlink(state.path("journal", name))
    for parent, prefix in ((state.path("scratch"), ""), (tempfile.gettempdir(), "tljh-admin-")):
        for name in _listdir(parent):
            if not name.startswith(prefix):
                continue
            pid = name[len(prefix) :].split("-")[0]
            if not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
                continue
            path = os.path.join(parent, name)
            try:
                st = os.lstat(path)
            except OSError:  # gone since listed: /tmp is anyone's to add to and remove from
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
                shutil.rmtree(path, ignore_errors=True)


# -- permissions ------------------------------------------------------------------------


@dataclass
class PermissionReport:
    world_writable_fixed: int = 0
    owner_fixed: int = 0
    readable_fixed: int = 0
    acl_removed: int = 0


def normalize_permissions(areas: snapshot.Areas, owner: tuple[int, int]) -> PermissionReport:
    """TLJH's `chown -R root:root` + `chmod -R o-w`, and what users' servers need to run:
    nothing world-writable, everything readable by all (a+r; a+x on folders and on files
    with any x bit), everything owned by the environment's owner. Symlinks are left alone.
    GNU find picks out the few paths to fix, with their inodes; each is reached one component
    at a time from its area folder without following symlinks (snapshot.Beneath) and fixed
    through its descriptor only if it is still the inode find saw, so a parent or the path
    itself swapped for a symlink (or another file) meanwhile is not touched."""
    report = PermissionReport()
    uid, gid = owner
    folders = [f for f in areas.folders if os.path.isdir(f)]
    if not folders:
        return report
    pruned = [os.path.join(areas.root, name) for name in sorted(areas.skip)] if areas.root else []
    openers: dict[str, snapshot.Beneath] = {}
    try:
        for path, dev, ino in sorted(_offending_paths(folders, uid, gid, pruned)):
            anchor = snapshot.anchor_of(path, folders)
            if anchor is None:
                continue
            opener = openers.setdefault(anchor, snapshot.Beneath(anchor))
            try:
                fd = opener.open_scanned(path, dev, ino)
            except OSError:
                continue  # gone, swapped, under a symlink now, or not openable (a socket)
            try:
                # an installer's config an admin kept private (index credentials) stays so
                _fix_one(fd, uid, gid, report, readable=not permissions.private_config(path, areas.root))
            finally:
                os.close(fd)
    finally:
        for opener in openers.values():
            opener.__exit__(None, None, None)
    return report


def _fix_one(fd: int, uid: int, gid: int, report: PermissionReport, readable: bool = True) -> None:
    st = os.fstat(fd)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return
    linked = stat.S_ISREG(st.st_mode) and st.st_nlink > 1
    if linked and st.st_uid != uid:
        # linked in from somewhere another uid owns (an installer's cache): that uid can
        # change it in place, and no chown through a second name is safe
        raise ChangeFailed(
            f"the installer linked in a file that uid {st.st_uid} owns and can change (inode"
            f" {st.st_ino}), and it cannot be made root's safely; the change is undone",
            hint="check the installer's cache and configuration: tljh-admin runs it with root's"
            " own HOME and a private TMPDIR",
        )
    if st.st_mode & stat.S_IWGRP and permissions.acl_writers(fd, (uid, gid), stat.S_ISDIR(st.st_mode)):
        # a folder's default ACL hands what an installer writes to others: take it back (safe
        # through any name: it only takes access away)
        permissions.drop_acls(fd)
        report.acl_removed += 1
    if linked:
        # another name may be a hard link planted to a file outside the env (possible where
        # fs.protected_hardlinks=0): only take o+w away, which can harm no file, never chown
        # or add a+r (snapshots link the env's older files; the files a change writes have one
        # link and get the full fix)
        if st.st_mode & stat.S_IWOTH:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~stat.S_IWOTH)
            report.world_writable_fixed += 1
        return
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.fchown(fd, uid, gid)
        report.owner_fixed += 1
    mode = stat.S_IMODE(st.st_mode)
    wanted = mode & ~stat.S_IWOTH
    if readable:
        wanted |= 0o444
        if stat.S_ISDIR(st.st_mode) or mode & 0o111:
            wanted |= 0o111
    if wanted != mode:
        os.fchmod(fd, wanted)
        if mode & stat.S_IWOTH:
            report.world_writable_fixed += 1
        else:
            report.readable_fixed += 1


def _offending_paths(
    folders: list[str], uid: int, gid: int, pruned: list[str] = ()
) -> list[tuple[str, int, int]]:
    """(path, st_dev, st_ino) of every file or folder whose mode or owner needs a fix."""
    import subprocess

    from tljh_admin.permissions import glob_escaped

    find = system_program("find")  # never PATH's: this runs as root
    if find:
        test = [
            "(", "-perm", "-o+w", "-o", "!", "-perm", "-a+r", "-o", "!", "-uid", str(uid),
            "-o", "!", "-gid", str(gid),
            "-o", "-type", "d", "!", "-perm", "-a+x",
            "-o", "-type", "f", "-perm", "/111", "!", "-perm", "-a+x",
            "-o", "-perm", "-g+w", ")",  # an ACL shows in the group bits
        ]  # fmt: skip
        # -path takes a glob: a PREFIX holding `[` or `*` must match only itself
        prune = [arg for path in pruned for arg in ("-path", glob_escaped(path), "-prune", "-o")]
        proc = subprocess.run(
            ["find", *folders, *prune, *test, "!", "-type", "l", "-printf", "%D %i %p\\0"],
            executable=find,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
        found = []
        for record in proc.stdout.split(b"\0"):
            dev, ino, path = record.split(b" ", 2) if record.count(b" ") >= 2 else (b"", b"", b"")
            if dev.isdigit() and ino.isdigit():
                found.append((os.fsdecode(path), int(dev), int(ino)))
        return found
    found = []
    for area in folders:
        for folder, dirs, names in os.walk(area):
            dirs[:] = [d for d in dirs if os.path.join(folder, d) not in pruned]
            for path in [folder, *(os.path.join(folder, n) for n in names)]:
                st = os.lstat(path)
                mode = stat.S_IMODE(st.st_mode)
                needs_x = stat.S_ISDIR(st.st_mode) or mode & 0o111
                if (
                    mode & stat.S_IWOTH
                    or mode & 0o444 != 0o444
                    or (needs_x and mode & 0o111 != 0o111)
                    or (st.st_uid, st.st_gid) != (uid, gid)
                ):
                    found.append((path, st.st_dev, st.st_ino))
    return found


def env_owner(layout: Layout, env: Environment) -> tuple[int, int]:
    """Who new files belong to: the code owner for hub and user (permissions.code_owner:
    root, as TLJH's installer leaves PREFIX), the site folder's owner for the system python."""
    if env.name != SYSTEM:
        return permissions.code_owner(layout.prefix)
    st = os.stat(env.site_dirs[0] if env.site_dirs else env.root)
    return st.st_uid, st.st_gid


def change_areas(layout: Layout, env: Environment) -> snapshot.Areas:
    """Where a change to `env` may write, as its kind says (envs/backends.py), with real
    paths: a restore checks every path of a snapshot against these."""
    from tljh_admin.envs.backends import backend_for

    backend = backend_for(env.name, layout)
    skip = backend.untouched if backend is not None else frozenset()
    in_place = backend.rewritten_in_place if backend is not None else frozenset()
    if env.name == SYSTEM:
        return snapshot.install_areas("", [os.path.realpath(s) for s in env.site_dirs], system=True)
    return snapshot.install_areas(os.path.realpath(env.root), (), skip=skip, copied=in_place)


def allowed_areas(layout: Layout, name: str) -> tuple[str, tuple[str, ...]]:
    """(root, areas) a snapshot of environment `name` may name: computed from the layout,
    never from the snapshot."""
    from tljh_admin.envs import inspect_environment

    if name == SYSTEM:
        areas = change_areas(layout, inspect_environment(SYSTEM, layout))
        return "", areas.folders
    root = os.path.realpath(layout.env_root(name))
    return root, (root,)


# -- the change itself ------------------------------------------------------------------


@dataclass
class EnvState:
    env: Environment
    areas: snapshot.Areas

    @property
    def packages(self) -> dict[str, str]:
        from tljh_admin.envs.backends import package_versions

        return package_versions(self.env)


@dataclass
class Change:
    """One change in flight: which envs, its id, and what was there before. The id is
    reserved (journal created, failing if it exists) when the change begins, under its locks."""

    layout: Layout
    state: StateDir
    change_id: int | None
    command: str
    kind: str
    envs: dict[str, EnvState]
    installer: str
    started: str = field(default_factory=now_iso)
    phase: str = SNAPSHOTTING
    processes: list[list[int]] = field(default_factory=list)

    @property
    def marker(self) -> str:
        return self._marker_of(self.change_id)

    def _marker_of(self, change_id: int) -> str:
        return f"{self.state.root}#{change_id}"

    def journal_entry(self, change_id: int | None = None) -> dict:
        """The journal's content; `change_id`: the id being tried (reserve_id), not yet ours."""
        change_id = self.change_id if change_id is None else change_id
        return {
            "id": change_id,
            "pid": os.getpid(),
            "command": self.command,
            "kind": self.kind,
            "installer": self.installer,
            "who": who(),
            "started": self.started,
            "envs": {name: s.env.root for name, s in self.envs.items()},
            "before": {name: s.packages for name, s in self.envs.items()},
            "phase": self.phase,
            "processes": self.processes,
            "marker": self._marker_of(change_id),
        }

    # what an installer run needs from the change (installers.Installer.run)
    def child_environment(self) -> dict[str, str]:
        return {CHANGE_MARKER: self.marker}

    def record_process(self, pid: int) -> None:
        """The installer started as its own process group `pid`: journal it, so that
        recovery after a kill -9 ends that group before restoring."""
        self.processes.append([pid, process_start(pid) or 0])
        self.state.write_journal(self.journal_entry())

    def begin(self) -> None:
        """Reserve an id, journal the change, then snapshot every env; the journal says
        `running` only once every snapshot is complete."""

        # the id is ours only once its journal is linked: an id tried and lost to another
        # change is never kept (a Ctrl-C there would then abandon that change's journal)
        self.change_id = self.state.reserve_id(self.journal_entry)
        note_lock_holder(self.state, self.envs)
        for name, env_state in self.envs.items():
            dest = self.state.snapshot_dir(self.change_id, name)
            os.makedirs(dest, mode=0o700)
            # cp carries the marker: killed with us, recovery ends it before removing its folder
            snapshot.take(env_state.areas, dest, self.child_environment())
        self.phase = RUNNING
        self.state.write_journal(self.journal_entry())

    # the old name: begin() does both now
    take_snapshots = begin

    def abandon(self, detail: str) -> dict:
        """The change never touched an environment (the snapshot could not be taken)."""
        return self.state.close(self.journal_entry(), ABANDONED, self._before(), detail)

    def restore(self) -> None:
        for name in self.envs:
            root, areas = allowed_areas(self.layout, name)
            snapshot.restore(self.state.snapshot_dir(self.change_id, name), root, areas)

    def _before(self) -> dict[str, dict[str, str]]:
        return {n: s.packages for n, s in self.envs.items()}

    def finish(self, result: str, after: dict[str, dict[str, str]] | None, detail: str = "") -> dict:
        entry = self.state.close(
            self.journal_entry(), result, after if after is not None else self._before(), detail
        )
        prune_snapshots(self.state)
        return entry


def prune_snapshots(state: StateDir, keep: int | None = None) -> list[int]:
    """Keep the newest `keep` snapshots (settings.json's keep_snapshots by default);
    returns the ids whose snapshots were removed."""
    keep = state.settings()["keep_snapshots"] if keep is None else keep
    ids = sorted((int(n) for n in _listdir(state.path("snapshots")) if n.isdigit()), reverse=True)
    in_flight = {j["id"] for j in state.scan_journals()[0]}
    removed = []
    for old in ids:
        if old in in_flight:
            continue
        if keep > 0:
            keep -= 1
            continue
        snapshot.discard(state.path("snapshots", str(old)))
        removed.append(old)
    return removed


def usable_snapshots(state: StateDir, journal: dict) -> list[tuple[str, str, tuple]]:
    """(snapshot, env root, areas) of each env of an unfinished change, all checked
    (snapshot.read_manifest) before any is used. An unusable one stops recovery, with the
    way out: look at the env, then set that change's journal aside."""
    targets = []
    for name in journal["envs"]:
        root, areas = allowed_areas(state.layout, name) if state.layout else ("", ())
        dest = state.snapshot_dir(journal["id"], name)
        try:
            snapshot.read_manifest(dest, root, areas)
        except snapshot.SnapshotUnusable as error:
            names = " and ".join(journal["envs"])
            raise snapshot.SnapshotUnusable(
                f"change {journal['id']} never finished, and {error.message}",
                hint=f"check the {names} environment by hand (tljh env packages, tljh doctor), then set the"
                f" change aside: sudo rm {shlex.quote(state.path('journal', str(journal['id']) + '.json'))}",
            ) from None
        targets.append((dest, root, areas))
    return targets


def recover_unfinished(state: StateDir, envs, notify: Notify = _quiet) -> list[dict]:
    """Restore changes a killed process left half done. Call with the envs' locks held: a
    journal whose locks we hold has no living owner. Untrusted journals are set aside and
    reported, never acted on; a snapshot that fails its checks stops the command."""
    valid, bad = state.scan_journals()
    for journal in bad:
        where = state.quarantine(journal)
        notify(f"ignored an untrusted journal ({journal.reason}); moved to {where}; check the envs by hand")
    recovered = []
    closed = {e["id"]: e for e in state.history()} if valid else {}
    for journal in valid:
        if not set(journal["envs"]) <= set(envs):
            continue  # another env's change: whoever locks all its envs recovers it
        if journal["id"] in closed:  # killed after its history line: finish closing it, no more
            state.drop_journal(journal["id"])
            if closed[journal["id"]].get("result") != OK:
                snapshot.discard(state.path("snapshots", str(journal["id"])))
            continue
        ended = end_processes(journal.get("processes", []), journal.get("marker", ""))
        if ended:
            notify(f"ended {ended} process(es) still running for change {journal['id']}")
        if journal.get("kind") == "rebuild" and state.layout is not None:
            from tljh_admin.rebuild import recover_killed  # it built a venv beside the env, then swapped

            entry = recover_killed(state, journal, notify)
            if entry is not None:
                recovered.append(entry)
                continue
        if journal["phase"] == SNAPSHOTTING:
            entry = state.close(
                journal, ABANDONED, journal["before"], "killed while taking the snapshot; nothing had changed"
            )
            recovered.append(entry)
            continue
        targets = usable_snapshots(state, journal)  # every env's snapshot checked before any restore
        notify(f"restoring change {journal['id']} ({journal['command']}), which was interrupted")
        with signals_deferred() as arrived:
            for dest, root, areas in targets:
                snapshot.restore(dest, root, areas)
            entry = state.close(
                journal,
                RESTORED,
                journal["before"],
                "the process was killed during the change; restored by the next command",
            )
        recovered.append(entry)
        raise_deferred(arrived)  # a Ctrl-C during the restore stops the command after it
    return recovered


def state_error(error: OSError, doing: str) -> TljhError:
    """An OS error while writing state (full disk, read-only), as one line."""
    return ChangeFailed(
        f"{doing}: {error.strerror or error}{f' ({error.filename})' if error.filename else ''}",
        hint="free disk space in the prefix (df -h), then run the command again",
    )
