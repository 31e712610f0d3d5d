"""The programs that do the installing: pip (TLJH's own) and uv.

Both run against the environment's own interpreter (rule 1): `ENV/bin/python3 -m pip`, or
`uv pip --python ENV/bin/python3`, never a pip or uv environment found on PATH. Both plan
first (a dry run that resolves for real) and then run with the same inputs.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tljh_admin.defaults import DEFAULT_INSTALLER, INSTALLERS, PIP, UV  # noqa: F401 (one list, shared)
from tljh_admin.envs.model import Environment
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.errors import ExitCode, IndexUnreachable, ResolutionFailed, TljhError

# `pip install --dry-run --report` appeared in pip 22.2.
PIP_REPORT_MIN = (22, 2)
# `--root-user-action` appeared in pip 22.1 (pip's changelog); it silences the "Running pip as
# the 'root' user" warning, which is noise when tljh runs pip as root on purpose.
PIP_ROOT_USER_ACTION_MIN = (22, 1)
# Ours, for the plan's dry run only: one retry with a 5 s timeout, so that an unreachable
# index is told in seconds (pip's defaults, 5 retries of 15 s, took 17 s and more). The real
# run keeps pip's defaults (or the admin's pip.conf).
DRY_RUN_RETRIES, DRY_RUN_TIMEOUT = "1", "5"
# pip's index when none is configured (pip's PyPI.simple_url)
DEFAULT_INDEX_URL = "https://pypi.org/simple"
# What pip (urllib3, via requests) and uv (reqwest) print when the index cannot be reached at all
_UNREACHABLE = re.compile(
    r"NewConnectionError|Could not fetch URL|ConnectTimeoutError|Failed to establish a new connection"
    r"|ProxyError|SSLError|error sending request for url|tcp connect error|dns error"
)

# PlannedChange.action values
INSTALL, UPGRADE, DOWNGRADE, REINSTALL, REMOVE = "install", "upgrade", "downgrade", "reinstall", "remove"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PlannedChange:
    name: str
    before: str | None
    after: str | None
    action: str
    requested: bool
    #: where a conda package comes from (`conda-forge`); "" for pip and uv
    channel: str = ""


@dataclass(frozen=True)
class Resolution:
    """What an installer says it would do: (name, version) to install and to remove."""

    install: tuple[tuple[str, str], ...]
    remove: tuple[tuple[str, str], ...]
    requires: dict[str, tuple[str, ...]]


class InstallerFailed(Exception):
    def __init__(self, message: str, output: str, unreachable: str = ""):
        super().__init__(message)
        self.output = output
        #: the index URL that could not be reached ("" when the index answered)
        self.unreachable = unreachable


@dataclass(frozen=True)
class PipOptions:
    """The pip options an admin may pass on (`tljh env install --index-url ...`): where
    packages come from and how they are chosen, never where they go."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    pre: bool = False
    no_deps: bool = False
    force_reinstall: bool = False
    no_cache_dir: bool = False

    def pip_args(self) -> list[str]:
        args = ["--index-url", self.index_url] if self.index_url else []
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        flags = {"--pre": self.pre, "--no-deps": self.no_deps, "--force-reinstall": self.force_reinstall,
                 "--no-cache-dir": self.no_cache_dir}  # fmt: skip
        return [*args, *(flag for flag, on in flags.items() if on)]

    def uv_args(self) -> list[str]:
        """uv's names for the same (uv pip install --help)."""
        args = ["--index-url", self.index_url] if self.index_url else []
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        flags = {"--no-deps": self.no_deps, "--reinstall": self.force_reinstall,
                 "--no-cache": self.no_cache_dir}  # fmt: skip
        args += ["--prerelease", "allow"] if self.pre else []
        return [*args, *(flag for flag, on in flags.items() if on)]


NO_OPTIONS = PipOptions()


def resolution_error(failure: InstallerFailed, doing: str = "") -> ResolutionFailed:
    """The typed error for a failed resolve: IndexUnreachable when the index never answered,
    else ResolutionFailed (no such version, conflicts), both with the installer's words."""
    if failure.unreachable.startswith(_ELSEWHERE):
        return IndexUnreachable(
            f"cannot reach {failure.unreachable[len(_ELSEWHERE) :]}, which a requirement's URL names",
            hint="check that URL in the requirements, and the network and proxy (HTTPS_PROXY)",
        )
    if failure.unreachable:
        return IndexUnreachable(
            f"cannot reach the package index at {failure.unreachable}",
            hint="check the network and proxy (HTTPS_PROXY), or the index URL (--index-url, pip.conf)",
        )
    last = failure.output.splitlines()[-1] if failure.output else "no output"
    return ResolutionFailed(
        f"{doing or failure}: {last}", hint=f"the installer said:\n{failure.output}" if failure.output else ""
    )


def redact_url(url: str) -> str:
    """An index URL without its password (tokens live there), as pip prints it."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:****@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def _unreachable_index(output: str, urls: Sequence[str]) -> str:
    """The index URL (redacted) that the installer's output says it could not reach, "" if none."""
    if not _UNREACHABLE.search(output):
        return ""
    from urllib.parse import urlsplit

    # pip names the host only in some of these messages (urllib3 2 leaves it out of
    # NewConnectionError): when none is named, every index the request reads is a suspect
    # (a file:// index is a folder: never a connection error)
    remote = [url for url in urls if urlsplit(url).scheme != "file"] or list(urls)
    named = [url for url in remote if urlsplit(url).netloc and urlsplit(url).netloc in output]
    if not named:
        # urllib3 names the host it failed on: not an index's, then a direct URL's
        host = _FAILED_HOST.search(output)
        if host and not any(host.group(1) == urlsplit(url).hostname for url in remote):
            port = f":{host.group(2)}" if host.group(2) else ""
            return f"{_ELSEWHERE}{host.group(1)}{port}"
    return " or ".join(redact_url(url) for url in dict.fromkeys(named or remote))


#: what _unreachable_index puts before a host that is no index's
_ELSEWHERE = "elsewhere:"
_FAILED_HOST = re.compile(r"host='([^']+)'(?:, port=(\d+))?")


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", text)[:3]
    return tuple(int(p) for p in parts)


def find_uv() -> str:
    """The uv that came with tljh-admin (the `uv` package), else one on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        from tljh_admin.layout import system_program

        # as root only the system folders' uv: PATH is whoever started tljh's choice
        found = system_program("uv") if os.geteuid() == 0 else shutil.which("uv")
        if found:
            return found
    raise TljhError(
        "--installer uv: uv is not installed",
        hint="pip install 'tljh-admin[uv]' next to tljh-admin, or use --installer pip",
        exit_code=ExitCode.USAGE,
    )


def pip_index_settings(environ: Mapping[str, str], env_root: str) -> dict[str, str]:
    """The index settings pip would use (policy.pip_index_settings); uv reads none of pip's
    files, so they are handed to it explicitly."""
    from tljh_admin.policy import pip_index_settings as settings

    return settings(environ, env_root)


def uv_index_args(settings: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    if settings.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        args.append("--no-index")
    if settings.get("index-url"):
        args += ["--index-url", settings["index-url"]]
    for url in settings.get("extra-index-url", "").split():
        args += ["--extra-index-url", url]
    for link in settings.get("find-links", "").split():
        args += ["--find-links", link]
    for host in settings.get("trusted-host", "").split():
        args += ["--allow-insecure-host", host]
    return args


class Installer(abc.ABC):
    name = ""

    def __init__(self, env: Environment, child_env: dict[str, str], workdir: str):
        from tljh_admin.permissions import require_only_root_can_change

        require_only_root_can_change(env)  # before anything of the env runs (a plan runs pip)
        self.env = env
        self.child_env = child_env
        self.workdir = workdir
        self.python = env.interpreter.path

    def install_args(
        self,
        requirements: Sequence[str],
        constraint_file: str | None,
        upgrade: bool,
        options: PipOptions = NO_OPTIONS,
    ) -> list[str]:
        args = ["--upgrade"] if upgrade else []
        args += options.uv_args() if self.name == UV else options.pip_args()
        if constraint_file:
            args += ["-c", constraint_file]
        return [*args, *requirements]

    def index_urls(self, options: PipOptions = NO_OPTIONS) -> list[str]:
        """The indexes this request reads: its own, else the admin's configuration, else PyPI."""
        settings = pip_index_settings(self.child_env, self.env.root)
        first = options.index_url or settings.get("index-url") or DEFAULT_INDEX_URL
        return [first, *options.extra_index_urls, *settings.get("extra-index-url", "").split()]

    @abc.abstractmethod
    def check_usable(self) -> None:
        """Refuse early when this installer cannot work on this environment."""

    @abc.abstractmethod
    def resolve(self, requirements: Sequence[str], constraint_file: str | None, upgrade: bool) -> Resolution:
        """A dry run with the real resolver."""

    @abc.abstractmethod
    def install_command(
        self, requirements: Sequence[str], constraint_file: str | None, upgrade: bool
    ) -> list[str]:
        """The command that does what `resolve` planned."""

    @abc.abstractmethod
    def uninstall_command(self, names: Sequence[str]) -> list[str]:
        """The command that removes `names`."""

    def _dry_run(
        self, command: list[str], options: PipOptions = NO_OPTIONS, extra_env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """Run a resolve-only command; its failure is the request's, told in the installer's words.
        A build it runs (an sdist's backend) may start helpers that leave its process group:
        they carry a marker of this run and are ended with it."""
        import secrets

        from tljh_admin.transaction import CHANGE_MARKER, end_processes

        marker = f"plan-{os.getpid()}-{secrets.token_hex(8)}"
        try:
            proc = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env={**self.child_env, **(extra_env or {}), CHANGE_MARKER: marker},
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                errors="replace",
            )
        finally:
            end_processes([], marker)
        if proc.returncode != 0:
            output = f"{proc.stdout}\n{proc.stderr}"
            raise InstallerFailed(
                f"{self.name} could not resolve the request",
                _error_tail(proc.stderr or proc.stdout),
                _unreachable_index(output, self.index_urls(options)),
            )
        return proc

    def run(self, command: list[str], log_path: str, progress: Progress, tracker=None) -> None:
        """Run the installer, its output to a log and its last line to `progress`.

        It runs as its own process group (and session: a Ctrl-C on the terminal reaches only
        tljh, which decides). `tracker` (the Change) journals the group and marks the
        child's environment, so that recovery after a kill -9 can end every process of it."""
        run_logged(command, self.child_env, self.workdir, log_path, progress, tracker, self.name)


def run_logged(command, child_env, cwd, log_path, progress: Progress, tracker=None, name="") -> None:
    """The one way a change runs a program: own process group, output to the log, the
    whole group killed and waited for if tljh is stopped. Raises InstallerFailed."""
    extra = tracker.child_environment() if tracker is not None else {}
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**child_env, **extra},
            cwd=cwd,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        tail: list[str] = []
        try:
            if tracker is not None:
                tracker.record_process(proc.pid)
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                stripped = line.strip()
                if stripped:
                    progress(stripped)
                    tail = [*tail[-14:], stripped]
            code = proc.wait()
        except BaseException:
            from tljh_admin.transaction import signals_deferred

            with signals_deferred():
                end_group(proc)
                _end_strays(tracker)
            raise
    _end_strays(tracker)
    if code != 0:
        raise InstallerFailed(
            f"{name or os.path.basename(command[0])} exited with status {code}", "\n".join(tail)
        )


def _end_strays(tracker) -> None:
    """What the installer started that left its process group (a build's `setsid` helper,
    a compiler server) still carries the change's marker: ended once the installer is done,
    before anything is restored or kept."""
    if tracker is not None:
        from tljh_admin.transaction import end_processes

        end_processes(tracker.processes, tracker.marker)


def end_group(proc: subprocess.Popen) -> None:
    """Kill the child's whole process group and wait until none of it is left."""
    import signal
    import time

    from tljh_admin.transaction import change_processes

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while change_processes([[proc.pid, 0]], "\0") and time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            break
        time.sleep(0.02)


class PipInstaller(Installer):
    name = PIP

    def _pip(self) -> list[str]:
        return [self.python, "-m", "pip"]

    def check_usable(self) -> None:
        versions = [d.version for d in self.env.distributions if canonical_name(d.name) == "pip"]
        if not versions:
            raise TljhError(
                f"the {self.env.name} environment has no pip",
                hint=f"use --installer uv, or run {self.python} -m ensurepip",
                exit_code=ExitCode.REFUSED,
            )
        if _version_tuple(versions[0]) < PIP_REPORT_MIN:
            raise TljhError(
                f"pip {versions[0]} in the {self.env.name} environment cannot show a plan"
                " (needs pip >= 22.2)",
                hint=f"tljh env install --target {self.env.name} --installer uv --upgrade pip",
                exit_code=ExitCode.REFUSED,
            )

    def _root_user_action(self) -> list[str]:
        versions = [d.version for d in self.env.distributions if canonical_name(d.name) == "pip"]
        supported = versions and _version_tuple(versions[0]) >= PIP_ROOT_USER_ACTION_MIN
        return ["--root-user-action=ignore"] if supported else []

    def resolve(self, requirements, constraint_file, upgrade, options: PipOptions = NO_OPTIONS) -> Resolution:
        report_path = os.path.join(self.workdir, "pip-report.json")
        command = [
            *self._pip(),
            "install",
            "--dry-run",
            "--quiet",
            "--report",
            report_path,
            "--retries",
            DRY_RUN_RETRIES,
            "--timeout",
            DRY_RUN_TIMEOUT,
            *self._root_user_action(),
            *self.install_args(requirements, constraint_file, upgrade, options),
        ]
        self._dry_run(command, options)
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
        install = []
        requires = {}
        for item in report.get("install", []):
            meta = item["metadata"]
            install.append((meta["name"], meta["version"]))
            requires[canonical_name(meta["name"])] = tuple(meta.get("requires_dist") or ())
        installed = {canonical_name(d.name): d for d in self.env.distributions}
        remove = tuple(
            (installed[canonical_name(n)].name, installed[canonical_name(n)].version)
            for n, _ in install
            if canonical_name(n) in installed
        )
        return Resolution(tuple(install), remove, requires)

    def _pep668(self) -> list[str]:
        # policy.require_system_allowed let only an explicit --break-system-packages this far;
        # the plan's `--dry-run` is exempt from PEP 668, the real run is not
        return ["--break-system-packages"] if self.env.externally_managed else []

    def install_command(
        self, requirements, constraint_file, upgrade, options: PipOptions = NO_OPTIONS
    ) -> list[str]:
        # pip compiles bytecode by default; --no-warn-script-location: bin/ is the env's own
        return [
            *self._pip(),
            "install",
            "--progress-bar",
            "off",
            "--no-warn-script-location",
            *self._root_user_action(),
            *self._pep668(),
            *self.install_args(requirements, constraint_file, upgrade, options),
        ]

    def uninstall_command(self, names) -> list[str]:
        return [*self._pip(), "uninstall", "--yes", *self._root_user_action(), *self._pep668(), *names]


#: the lock file uv makes in an environment's root (uv's own, world-writable by design)
UV_ENV_LOCK = ".lock"


class UvInstaller(Installer):
    name = UV

    def __init__(self, env: Environment, child_env: dict[str, str], workdir: str):
        settings = pip_index_settings(child_env, env.root)
        if settings.get("cert") and "SSL_CERT_FILE" not in child_env:
            child_env = {**child_env, "SSL_CERT_FILE": settings["cert"]}
        super().__init__(env, child_env, workdir)
        self.index_args = uv_index_args(settings)
        self.uv = find_uv()

    def check_usable(self) -> None:
        """Nothing more to check: __init__ found uv, and uv needs no pip in the env."""

    def _uv(self, *args: str) -> list[str]:
        extra = ["--break-system-packages"] if self.env.externally_managed else []
        return [self.uv, "pip", *args, "--python", self.python, *extra, *self.index_args]

    def _drop_env_lock(self) -> None:
        """uv makes `<env>/.lock` (empty, mode 0666: any user may lock it) in the env it runs
        on, even for a dry run: a file others may write, in an env root runs. Removed after
        every uv run (uv makes it anew), by descriptor, never through a symlink; also when
        someone wrote into it meanwhile (only a `.lock` of root's own making, not others'
        to write, is left alone)."""
        try:
            root_fd = os.open(self.env.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return
        try:
            status = os.stat(UV_ENV_LOCK, dir_fd=root_fd, follow_symlinks=False)
            if stat.S_ISREG(status.st_mode) and (status.st_size == 0 or status.st_mode & stat.S_IWOTH):
                os.unlink(UV_ENV_LOCK, dir_fd=root_fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(root_fd)

    def run(self, command: list[str], log_path: str, progress: Progress, tracker=None) -> None:
        try:
            super().run(command, log_path, progress, tracker)
        finally:
            self._drop_env_lock()

    def resolve(self, requirements, constraint_file, upgrade, options: PipOptions = NO_OPTIONS) -> Resolution:
        command = [
            *self._uv("install", "--dry-run"),
            *self.install_args(requirements, constraint_file, upgrade, options),
        ]
        # the dry run's short retries and timeout (DRY_RUN_RETRIES), in uv's variables; a uv
        # that predates UV_HTTP_RETRIES ignores it and keeps its own 3 retries
        try:
            proc = self._dry_run(
                command, options, {"UV_HTTP_RETRIES": DRY_RUN_RETRIES, "UV_HTTP_TIMEOUT": DRY_RUN_TIMEOUT}
            )
        finally:
            self._drop_env_lock()
        install, remove = [], []
        for line in proc.stderr.splitlines():
            match = re.match(r"^ ([+-]) ([^=\s]+)==(\S+)", line)
            if match:
                (install if match.group(1) == "+" else remove).append((match.group(2), match.group(3)))
        return Resolution(tuple(install), tuple(remove), {})

    def install_command(
        self, requirements, constraint_file, upgrade, options: PipOptions = NO_OPTIONS
    ) -> list[str]:
        # Bytecode is compiled now: users cannot write __pycache__ in a root-owned env.
        # uv's default link mode stays (hard links from its cache on Linux: 2.5x faster than
        # copies here), from root's own cache (policy.isolated_environment); installers never
        # rewrite files in place, and UV_LINK_MODE=copy is honoured for admins who edit
        # installed files by hand.
        return [
            *self._uv("install", "--compile-bytecode"),
            *self.install_args(requirements, constraint_file, upgrade, options),
        ]

    def uninstall_command(self, names) -> list[str]:
        extra = ["--break-system-packages"] if self.env.externally_managed else []
        return [self.uv, "pip", "uninstall", "--python", self.python, *extra, *names]


def make_installer(name: str, env: Environment, child_env: dict[str, str], workdir: str) -> Installer:
    if name == PIP:
        installer: Installer = PipInstaller(env, child_env, workdir)
    elif name == UV:
        installer = UvInstaller(env, child_env, workdir)
    else:
        raise TljhError(f"unknown installer {name!r}", hint=f"choose one of: {', '.join(INSTALLERS)}")
    installer.check_usable()
    return installer


def _error_tail(output: str, lines: int = 12) -> str:
    kept = [line for line in output.splitlines() if line.strip() and "WARNING: Location" not in line]
    return "\n".join(kept[-lines:])


def plan_changes(env: Environment, resolution: Resolution, requested: frozenset[str]) -> list[PlannedChange]:
    from packaging.version import InvalidVersion, Version

    before = {canonical_name(d.name): d.version for d in env.distributions}
    removed = {canonical_name(n): v for n, v in resolution.remove}
    changes = []
    for name, version in resolution.install:
        key = canonical_name(name)
        old = before.get(key) or removed.get(key)
        if old is None:
            action = INSTALL
        else:
            try:
                newer, older = Version(version), Version(old)
                action = UPGRADE if newer > older else DOWNGRADE if newer < older else REINSTALL
            except InvalidVersion:
                action = REINSTALL if old == version else UPGRADE
        changes.append(PlannedChange(name, old, version, action, key in requested))
    installing = {canonical_name(n) for n, _ in resolution.install}
    for name, version in resolution.remove:
        if canonical_name(name) not in installing:
            changes.append(PlannedChange(name, version, None, REMOVE, canonical_name(name) in requested))
    return sorted(changes, key=lambda c: canonical_name(c.name))


def write_constraints(workdir: str, lines: Sequence[str]) -> str | None:
    if not lines:
        return None
    fd, path = tempfile.mkstemp(prefix="constraints-", suffix=".txt", dir=workdir)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path
