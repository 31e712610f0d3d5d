"""`tljh env rebuild`: a new venv for an environment whose Python moved under it.

A distribution upgrade moves `/usr/bin/python3` to a new minor version; the hub venv's
interpreter then runs the new Python, which cannot see `lib/python3.OLD/` (TLJH#613, #957,
#1036, #813). The old interpreter cannot run, so everything is read from files: each
distribution, its version, whether it was requested (`REQUESTED`) and where it came from
(`direct_url.json`, PEP 610: an index, a VCS URL at a commit, a local archive or folder,
editable or not). Then:

1. a venv is made by the current system python beside the old one (`PREFIX/hub.rebuild-ID`);
2. the real resolver plans the same projects at the same versions (`pip install --dry-run
   --report`); a pin that does not install on the new Python is moved to the nearest version
   that does, and the plan says which and why; TLJH's hub requirements still hold;
3. the installer fills the venv; scripts and activation files are made to name the final
   folder (bytecode needs nothing: the import system corrects its recorded path); the new
   interpreter must import jupyterhub and every requested package and find every other
   top-level package the old env had; nothing is left world-writable; owner and modes are
   the old root's;
4. the two folders are exchanged in one `renameat2(RENAME_EXCHANGE)`, and the old venv is
   moved, untouched, into the change's snapshot folder: the rollback target.

A journal records the change before anything is created; a killed rebuild is undone by the
next command (`recover_killed`, called by transaction.recover_unfinished), whichever step it
died in.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tljh_admin import policy, snapshot, tljh
from tljh_admin.changes import _scratch_parent, recover_first
from tljh_admin.envs import inspect_environment
from tljh_admin.envs.backends import CONDA, STANDALONE, VENV, VenvBackend
from tljh_admin.envs.model import Environment
from tljh_admin.envs.requirements import broken_requirements
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.errors import (
    ChangeFailed,
    ExitCode,
    Refused,
    ResolutionFailed,
    Stopped,
    TljhError,
    UsageError,
)
from tljh_admin.files import open_binary, open_text, read_bytes
from tljh_admin.installers import (
    PIP,
    UV,
    InstallerFailed,
    find_uv,
    pip_index_settings,
    run_logged,
    uv_index_args,
)
from tljh_admin.layout import HUB, SYSTEM, USER, Layout, interpreter_in, unknown_target
from tljh_admin.plugins import installed_plugins
from tljh_admin.transaction import (
    FAILED,
    INTERRUPTED,
    OK,
    RESTORED,
    RUNNING,
    Change,
    EnvState,
    Interrupted,
    StateDir,
    change_areas,
    env_owner,
    locked_and_recovered,
    scratch_folder,
    signals_deferred,
    sigterm_raises,
)

Progress = Callable[[str], None]

KIND = "rebuild"
TLJH_DISTRIBUTION = "the-littlest-jupyterhub"  # TLJH's project name (its setup.py)

# Origin.kind values, from PEP 610's direct_url.json (no file: installed from an index)
INDEX, VCS, ARCHIVE, DIRECTORY, EDITABLE = "index", "vcs", "archive", "directory", "editable"
#: a direct_url.json that is there but not PEP 610's shape: where it came from is not known
UNKNOWN_ORIGIN = "unknown"

# PlannedDist.action values
SAME, CHANGED, ADDED, DROPPED = "same", "changed", "added", "dropped"

# linux/fs.h: renameat2() flag that swaps two paths in one step.
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100

# pip's own wording (src/pip/_internal/index/package_finder.py), stable since pip 20.
_NO_MATCH = re.compile(
    r"Could not find a version that satisfies the requirement (\S+) \(from versions: ([^)]*)\)"
)
_IGNORED_PYTHON = re.compile(r"Ignored the following versions that require a different python version: (.*)")
# Imports the names before "--" (what the hub itself imports: jupyterhub's app, the
# authenticators, spawners and plugins that were requested); finds the rest (their
# dependencies, whose import the first group exercises anyway) without running them.
_IMPORT_CHECK = """\
import importlib, importlib.util, json, sys
split = sys.argv.index("--")
failed = {}
for name in sys.argv[1:split]:
    try:
        importlib.import_module(name)
    except BaseException as error:  # any failure to import is what we report
        failed[name] = f"{type(error).__name__}: {error}"
for name in sys.argv[split + 1:]:
    try:
        if importlib.util.find_spec(name) is None:
            failed[name] = "not found by the new interpreter"
    except BaseException as error:
        failed[name] = f"{type(error).__name__}: {error}"
sys.stdout.write(json.dumps(failed))
"""
# Packaging tools: found, not imported (pkg_resources scans every distribution when imported).
_TOOLING = frozenset({"pip", "setuptools", "pkg_resources", "_distutils_hack", "wheel"})
# The interpreter's version, and the pip wheel its ensurepip would install (Debian keeps them
# in /usr/share/python-wheels, named by ensurepip._WHEEL_PKG_DIR; CPython in ensurepip/_bundled).
_PYTHON_FACTS = """\
import glob, json, os, sys
try:
    import ensurepip
    folder = getattr(ensurepip, "_WHEEL_PKG_DIR", None)
    folder = folder or os.path.join(os.path.dirname(ensurepip.__file__), "_bundled")
    wheels = sorted(glob.glob(os.path.join(folder, "pip-*.whl")))
except ImportError:
    wheels = []
sys.stdout.write(json.dumps([sys.version.split()[0], sys.implementation.name, wheels[-1] if wheels else ""]))
"""


@dataclass(frozen=True)
class Origin:
    """Where a distribution came from (PEP 610 direct_url.json)."""

    kind: str
    url: str = ""
    vcs: str = ""
    commit: str = ""
    subdirectory: str = ""
    #: UNKNOWN_ORIGIN: what is wrong with its direct_url.json
    problem: str = ""


@dataclass(frozen=True)
class InstalledDist:
    """One distribution as the old environment's files describe it."""

    name: str
    version: str
    requested: bool
    origin: Origin
    #: top-level modules and packages its files provide, as found on disk
    importable: tuple[str, ...]


@dataclass(frozen=True)
class PlannedDist:
    name: str
    before: str | None
    after: str | None
    action: str
    requested: bool
    source: str
    reason: str = ""


@dataclass
class RebuildPlan:
    target: str
    root: str
    kind: str
    old_python: str | None
    new_python: str
    python_command: str
    installer: str
    requirements: list[str]
    constraints: list[str]
    items: list[PlannedDist] = field(default_factory=list)
    importable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plugins: list = field(default_factory=list)
    #: False when the plan is the input only: `--yes` skips the separate dry run and the
    #: install itself is the resolution (items are filled in after it)
    resolved: bool = False

    @property
    def changed(self) -> list[PlannedDist]:
        return [i for i in self.items if i.action != SAME]


@dataclass(frozen=True)
class RebuildRequest:
    target: str
    installer: str = PIP
    lock_timeout: float = 600.0
    command: str = ""
    #: plan before installing (a dry run, or a plan to confirm); False installs straight away
    resolve_first: bool = True
    dry_run: bool = False


@dataclass(frozen=True)
class RebuildOutcome:
    change_id: int
    plan: RebuildPlan
    history: dict
    saved: str


# -- reading the old environment from files --------------------------------------------------


def read_origin(dist_info: str) -> Origin:
    """PEP 610: direct_url.json says how a distribution was installed; none means an index."""
    from tljh_admin.envs.sitepackages import read_direct_url

    try:
        data = read_direct_url(dist_info)
    except OSError as error:
        return Origin(UNKNOWN_ORIGIN, problem=error.strerror or str(error))
    except ValueError as error:
        return Origin(UNKNOWN_ORIGIN, problem=str(error) or "not PEP 610's shape")
    if data is None:
        return Origin(INDEX)
    url = data["url"]
    subdirectory = data.get("subdirectory") or ""
    if isinstance(data.get("vcs_info"), dict):
        info = data["vcs_info"]
        return Origin(VCS, url, info["vcs"], info["commit_id"], subdirectory)
    if isinstance(data.get("dir_info"), dict):
        kind = EDITABLE if data["dir_info"].get("editable") else DIRECTORY
        return Origin(kind, url, subdirectory=subdirectory)
    return Origin(ARCHIVE, url, subdirectory=subdirectory)


def _top_level_candidates(dist_info: str) -> set[str]:
    names: set[str] = set()
    try:
        with open_text(os.path.join(dist_info, "top_level.txt"), encoding="utf-8") as f:
            names.update(line.strip().replace("/", ".").split(".")[0] for line in f if line.strip())
    except (OSError, UnicodeDecodeError):  # none, or damaged: RECORD below still names them
        pass
    try:
        with open_text(os.path.join(dist_info, "RECORD"), encoding="utf-8", errors="replace") as f:
            for line in f:
                path = line.rsplit(",", 2)[0].strip('"')
                first = path.split("/", 1)[0]
                if not first or first.startswith("..") or first.endswith((".dist-info", ".data", ".pth")):
                    continue
                if first == "__pycache__":
                    continue
                names.add(first.split(".", 1)[0] if "/" not in path else first)
    except OSError:
        pass
    return names


def importable_names(site_dir: str, dist_info: str) -> tuple[str, ...]:
    """Top-level names a distribution provides that are on disk in `site_dir`: a package
    folder, a module, or an extension module. These must import in the rebuilt env."""
    try:
        present = os.listdir(site_dir)
    except OSError:
        return ()
    found = []
    for name in sorted(_top_level_candidates(os.path.join(site_dir, dist_info))):
        if not name.isidentifier() or name.startswith("__editable__"):
            continue
        if (name in present and os.path.isdir(os.path.join(site_dir, name))) or any(
            p == f"{name}.py" or (p.startswith(f"{name}.") and p.endswith(".so")) for p in present
        ):
            found.append(name)
    return tuple(found)


def read_installed(env: Environment) -> list[InstalledDist]:
    """Every distribution of `env`, read from its metadata folders."""
    found = []
    for dist in env.distributions:
        folder = os.path.join(dist.location, dist.metadata_dir)
        dist_info = dist.metadata_dir.endswith(".dist-info")
        found.append(
            InstalledDist(
                name=dist.name,
                version=dist.version,
                requested=dist_info and os.path.exists(os.path.join(folder, "REQUESTED")),
                origin=read_origin(folder) if dist_info else Origin(INDEX),
                importable=importable_names(dist.location, dist.metadata_dir),
            )
        )
    return found


# -- what to ask the installer for -----------------------------------------------------------


def _file_path(url: str) -> str | None:
    if url.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return unquote(urlsplit(url).path)
    return None


def _safe_url(url: str) -> bool:
    """A URL from the env's own files goes into a requirements file: one line, no option."""
    return bool(url) and not url.startswith("-") and not any(c in url for c in "\n\r \t")


def requirement_line(dist: InstalledDist) -> tuple[str, str]:
    """The line that reinstalls `dist` from where it came from, and a note when that source
    is gone (then the index's release of the same version is used)."""
    origin = dist.origin
    pin = f"{dist.name}=={dist.version}"
    if origin.kind == INDEX:
        return pin, ""
    if origin.kind == UNKNOWN_ORIGIN:  # said in the plan: it may have come from elsewhere
        return pin, (
            f"{dist.name}: its direct_url.json is damaged ({origin.problem}), so where it came from is"
            f" not known; installing {dist.version} from the index"
        )
    if not _safe_url(origin.url):
        return pin, f"{dist.name}: its recorded source {origin.url!r} is not usable; using the index"
    local = _file_path(origin.url)
    if local is not None and not os.path.exists(local):
        return pin, f"{dist.name}: {local} is gone; installing {dist.version} from the index"
    if local is not None:
        from tljh_admin.permissions import others_reach, running_user

        # a folder a user recreated in /tmp after the one installed from was cleared, a checkout in a home
        others = others_reach(os.path.realpath(local), running_user())
        if others:
            return pin, (
                f"{dist.name}: users other than root can change {local} ({others}), and building it"
                f" runs its code as root; installing {dist.version} from the index"
            )
    from tljh_admin.export import safe_subdirectory

    if origin.subdirectory and not safe_subdirectory(origin.subdirectory):
        return pin, (
            f"{dist.name}: its subdirectory {origin.subdirectory!r} climbs out of its source, where"
            f" the build would run code as root; installing {dist.version} from the index"
        )
    fragment = f"#subdirectory={origin.subdirectory}" if origin.subdirectory else ""
    if origin.kind == VCS:
        if not origin.commit:
            return pin, f"{dist.name}: no commit recorded for {origin.url}; using the index"
        return f"{dist.name} @ {origin.vcs}+{origin.url}@{origin.commit}{fragment}", ""
    if origin.kind == EDITABLE:
        return f"-e {origin.url}{fragment}", ""
    return f"{dist.name} @ {origin.url}{fragment}", ""


def hub_requirement_specs(env: Environment) -> tuple[dict[str, str], str]:
    """TLJH's hub requirements as {name: specifier}: the installed TLJH's own copy when it
    is in the env (the authority), else tljh-admin's copy of TLJH 2.0's list."""
    from packaging.requirements import InvalidRequirement, Requirement

    path, source = tljh.HUB_REQUIREMENTS, "tljh-admin's copy of TLJH 2.0's hub requirements"
    for dist in env.distributions:
        if canonical_name(dist.name) == TLJH_DISTRIBUTION:
            candidate = os.path.join(dist.location, "tljh", "requirements-hub-env.txt")
            if os.path.lexists(candidate):  # there but not a file (a FIFO) is damage, said below
                path, source = candidate, f"TLJH {dist.version}'s own hub requirements"
    specs = {}
    try:
        with open_text(path, encoding="utf-8") as f:
            content = f.read(policy.INPUT_FILE_LIMIT + 1)  # a list is a few hundred bytes
    except (OSError, UnicodeDecodeError) as error:
        why = error.strerror if isinstance(error, OSError) and error.strerror else "it is not UTF-8 text"
        raise _damaged_requirements(path, source, why) from None
    if len(content) > policy.INPUT_FILE_LIMIT:
        raise _damaged_requirements(
            path, source, f"it is larger than {policy.INPUT_FILE_LIMIT // 1024**2} MiB"
        )
    lines = content.splitlines()
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if text and not text.startswith("-"):
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                raise _damaged_requirements(path, source, f"line {number} is not a requirement") from None
            specs[canonical_name(requirement.name)] = str(requirement.specifier)
    return specs, source


def _damaged_requirements(path: str, source: str, why: str) -> TljhError:
    """The plan cannot hold TLJH's requirements: one line, and the way on. TLJH's own copy
    can be moved aside (the plan then follows tljh-admin's copy); tljh-admin's is its own."""
    if path == tljh.HUB_REQUIREMENTS:
        hint = "reinstall tljh-admin: its own data file is damaged"
    else:
        hint = (
            f"move it aside (sudo mv {shlex.quote(path)} {shlex.quote(path + '.damaged')}): the plan then"
            " follows tljh-admin's copy of TLJH 2.0's hub requirements"
        )
    # nothing is read further and nothing was changed; the same code as any damaged file
    return TljhError(f"{source} ({path}) cannot be read: {why}", hint=hint, exit_code=ExitCode.IO_ERROR)


# -- running things --------------------------------------------------------------------------


def _run(command: list[str], child_env: dict[str, str], cwd: str, log: str | None = None):
    """A child in its own session (kill -9 of tljh must not leave it half-known; recovery
    kills its group), output captured."""
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        errors="replace",
        env=child_env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"$ {' '.join(command)}\n{proc.stdout}{proc.stderr}")
    return proc


def _tail(text: str, lines: int = 12) -> str:
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


@dataclass(frozen=True)
class NewPython:
    command: str
    version: str
    #: ensurepip's pip wheel: pip runs from it (`python pip.whl/pip`) to fill a venv made
    #: without pip, so the venv's own pip is installed once, at the old env's version
    pip_wheel: str


def python_facts(python: str) -> NewPython:
    """The interpreter to rebuild with, by running it (the one thing here that must run)."""
    try:
        proc = subprocess.run(
            [python, "-I", "-c", _PYTHON_FACTS], capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
    except OSError as error:
        raise UsageError(
            f"the system python {python} cannot run: {error.strerror}",
            hint="pass --system-python PATH (or set TLJH_SYSTEM_PYTHON) to the interpreter to rebuild with",
        ) from None
    if proc.returncode != 0:
        said = _tail(proc.stderr, 1) or f"it exited with status {proc.returncode} and said nothing"
        raise UsageError(
            f"the system python {python} does not run: {said}",
            hint="pass --system-python PATH to a working python3",
        )
    try:
        version, implementation, wheel = json.loads(proc.stdout)
        if not all(isinstance(fact, str) for fact in (version, implementation)):
            raise ValueError
    except (ValueError, TypeError):  # /bin/true: runs, and is no Python
        raise UsageError(
            f"the system python {python} is not a Python interpreter: it did not answer as one",
            hint="pass --system-python PATH to a working python3",
        ) from None
    if implementation != "cpython":
        raise UsageError(f"{python} is {implementation}, not CPython", hint="pass --system-python PATH")
    return NewPython(python, version, wheel if wheel and os.path.isfile(wheel) else "")


def pip_command(venv: str, new: NewPython) -> list[str]:
    """How to run pip for `venv`: its own once it has one, else ensurepip's wheel."""
    python = interpreter_in(venv)
    if new.pip_wheel and not _has_pip(venv):
        return [python, os.path.join(new.pip_wheel, "pip")]
    return [python, "-m", "pip"]


def _has_pip(venv: str) -> bool:
    import glob

    return bool(glob.glob(os.path.join(glob.escape(venv), "lib", "python3*", "site-packages", "pip")))


# -- the plan --------------------------------------------------------------------------------


class _Resolver:
    """Dry runs with the new venv's own pip, relaxing pins that do not fit the new Python."""

    def __init__(self, pip: list[str], child_env: dict[str, str], workdir: str, new_python: str, log: str):
        self.pip = pip
        self.child_env = child_env
        self.workdir = workdir
        self.new_python = new_python
        self.log = log

    def dry_run(self, requirements: list[str], constraints: list[str]):
        req_file, cons_file = self.write_inputs(requirements, constraints)
        report = os.path.join(self.workdir, "rebuild-report.json")
        command = [*self.pip, "install", "--dry-run", "--quiet", "--ignore-installed"]
        command += ["--report", report, "-r", req_file, "-c", cons_file]
        proc = _run(command, self.child_env, self.workdir, self.log)
        if proc.returncode != 0:
            return None, proc.stderr + proc.stdout
        with open(report, encoding="utf-8") as f:
            return json.load(f), ""

    def write_inputs(
        self, requirements: list[str], constraints: list[str], installer: str = PIP
    ) -> tuple[str, str]:
        if installer == PIP:
            requirements = [_pip_spelling(line) for line in requirements]
        req_file = os.path.join(self.workdir, "rebuild-requirements.txt")
        cons_file = os.path.join(self.workdir, "rebuild-constraints.txt")
        for path, lines in ((req_file, requirements), (cons_file, constraints)):
            with open(path, "w", encoding="utf-8") as f:
                f.write("".join(f"{line}\n" for line in lines))
        return req_file, cons_file

    def available(self, name: str) -> tuple[list[str], str]:
        """The versions of `name` pip would consider for the new Python (its own error lists
        them), and what it says it ignored for Requires-Python."""
        _, output = self.dry_run([f"{name}===tljh-admin-no-such-version"], [])
        return _parse_no_match(output, name)


def _pip_spelling(line: str) -> str:
    """pip before 23.1 (packaging < 22) refuses `name @ git+file:///repo@commit` (a URL
    without a host); the `#egg=` form says the same to every pip."""
    name, sep, url = line.partition(" @ ")
    if sep and "+file:///" in url.split("#", 1)[0] and url.split("+", 1)[0] in ("git", "hg", "svn", "bzr"):
        joiner = "&" if "#" in url else "#"
        return f"{url}{joiner}egg={name}"
    return line


def _parse_no_match(output: str, name: str) -> tuple[list[str], str]:
    versions: list[str] = []
    for match in _NO_MATCH.finditer(output):
        if canonical_name(re.split(r"[=<>!~\[ ;@]", match.group(1))[0]) == canonical_name(name):
            versions = [v.strip() for v in match.group(2).split(",") if v.strip() and v.strip() != "none"]
    ignored = ""
    match = _IGNORED_PYTHON.search(output)
    if match:
        ignored = match.group(1).strip()
    return versions, ignored


def nearest_version(old: str, available: list[str], specifier: str) -> str | None:
    """The release closest to `old` that the new Python can install and TLJH allows: the
    oldest newer one (old releases stop supporting new Pythons, newer ones start), else the
    newest older one. Pre-releases only when `old` was one."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    allowed = SpecifierSet(specifier)
    base = Version(old)
    candidates = []
    for text in available:
        try:
            version = Version(text)
        except InvalidVersion:
            continue
        if version.is_prerelease and not base.is_prerelease:
            continue
        if version in allowed or allowed.contains(version, prereleases=True):
            candidates.append(version)
    newer = sorted(v for v in candidates if v > base)
    older = sorted(v for v in candidates if v < base)
    if base in candidates:
        return str(base)
    if newer:
        return str(newer[0])
    return str(older[-1]) if older else None


@dataclass
class _Inputs:
    """The pins a plan is resolved from; `index_pins` may be relaxed, direct sources may not."""

    requested: list[str]  # names, canonical, in order
    index_pins: dict[str, str]  # canonical name -> version
    direct: dict[str, str]  # canonical name -> requirement line (URL or -e)
    names: dict[str, str]  # canonical -> display name
    tljh_specs: dict[str, str]
    extra_constraints: list[str]
    dropped_pins: set[str] = field(default_factory=set)

    def lines(self) -> tuple[list[str], list[str]]:
        requirements, constraints = [], list(self.extra_constraints)
        for key in self.requested:
            if key in self.direct:
                requirements.append(self.direct[key])
            else:
                requirements.append(f"{self.names[key]}=={self.index_pins[key]}")
        for key, version in sorted(self.index_pins.items()):
            if key not in self.requested and key not in self.dropped_pins:
                constraints.append(f"{self.names[key]}=={version}")
            elif key in self.dropped_pins and key not in self.requested:
                constraints.append(f"{self.names[key]}>={version}")
        for key, spec in sorted(self.tljh_specs.items()):
            if spec and key in self.names:
                constraints.append(f"{self.names[key]}{spec}")
        return requirements, constraints


def _inputs(target: str, env: Environment, had: list[InstalledDist], layout: Layout, notes: list[str]):
    requested = [canonical_name(d.name) for d in had if d.requested]
    if not requested:
        notes.append("no REQUESTED markers in the old env: every distribution is treated as requested")
        requested = [canonical_name(d.name) for d in had]
    index_pins, direct, names = {}, {}, {}
    for dist in had:
        key = canonical_name(dist.name)
        names[key] = dist.name
        line, note = requirement_line(dist)
        if note:
            notes.append(note)
        if line.startswith("-e ") or " @ " in line:
            direct[key] = line
            if key not in requested:
                requested.append(key)  # a direct URL cannot be a constraint: ask for it by name
        else:
            index_pins[key] = dist.version
    tljh_specs: dict[str, str] = {}
    extra: list[str] = []
    if target == HUB:
        tljh_specs, source = hub_requirement_specs(env)
        notes.append(f"TLJH's requirements hold: {source}")
    elif target == USER:
        hub = inspect_environment(HUB, layout)
        versions = {d.version for d in hub.distributions if canonical_name(d.name) == "jupyterhub"}
        if len(versions) == 1 and "jupyterhub" in names:
            extra.append(f"jupyterhub=={versions.pop()}")
    return _Inputs(requested, index_pins, direct, names, tljh_specs, extra)


def _violations(inputs: _Inputs) -> dict[str, str]:
    """Old pins TLJH's requirements no longer allow: relaxed before asking pip."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    found = {}
    for key, spec in inputs.tljh_specs.items():
        if key in inputs.index_pins and spec:
            try:
                if Version(inputs.index_pins[key]) not in SpecifierSet(spec):
                    found[key] = spec
            except InvalidVersion:
                continue
    return found


def resolve(resolver: _Resolver, inputs: _Inputs, reasons: dict[str, str]) -> dict:
    """Dry-run the inputs with the new interpreter; move each pin that does not install to
    its nearest version that does, one failure at a time, recording why. Returns pip's report."""
    original = dict(inputs.index_pins)
    rejected: dict[str, set[str]] = {}
    for key, spec in _violations(inputs).items():
        _relax(resolver, inputs, key, set(), f"TLJH requires {inputs.names[key]}{spec}", reasons, original)
    for _ in range(4 * len(inputs.index_pins) + 2):
        requirements, constraints = inputs.lines()
        report, output = resolver.dry_run(requirements, constraints)
        if report is not None:
            return report
        failing, why = diagnose(output, resolver.new_python)
        if failing in inputs.index_pins:
            rejected.setdefault(failing, set()).add(inputs.index_pins[failing])
            text = f"{original[failing]} does not install on Python {resolver.new_python}: {why}"
            _relax(resolver, inputs, failing, rejected[failing], text, reasons, original, output)
            continue
        if not inputs.dropped_pins and failing is None:
            # A conflict, not a missing file: keep the requested pins, let dependencies move
            # forward from their old versions, and say so per project.
            inputs.dropped_pins = {k for k in inputs.index_pins if k not in inputs.requested}
            for key in inputs.dropped_pins:
                reasons.setdefault(key, f"re-resolved: the old pins conflict on Python {resolver.new_python}")
            continue
        raise ResolutionFailed(
            f"the {len(inputs.requested)} requested projects do not install on Python {resolver.new_python}",
            hint=f"pip said:\n{_tail(output)}",
        )
    raise ResolutionFailed("the plan did not settle", hint=f"see {resolver.log}")


def _relax(resolver, inputs: _Inputs, key: str, rejected: set[str], why: str, reasons, original, output=""):
    spec = inputs.tljh_specs.get(key, "")
    available, _ = _parse_no_match(output, key)
    if not available:
        available, _ = resolver.available(inputs.names[key])
    nearest = nearest_version(original[key], [v for v in available if v not in rejected], spec)
    if nearest is None:
        raise ResolutionFailed(
            f"no release of {inputs.names[key]} installs on Python {resolver.new_python}"
            + (f" within TLJH's {inputs.names[key]}{spec}" if spec else ""),
            hint=f"{why}; versions the index offers: {', '.join(available) or 'none'}",
        )
    reasons.setdefault(key, why)
    inputs.index_pins[key] = nearest


_DIFFERENT_PYTHON = re.compile(r"Package '([^']+)' requires a different Python: (\S+) not in '([^']*)'")
_NO_DISTRIBUTION = re.compile(r"No matching distribution found for (\S+)")


def diagnose(output: str, new_python: str) -> tuple[str | None, str]:
    """Which pinned project pip could not install, in pip's words, or None for a conflict."""
    match = _DIFFERENT_PYTHON.search(output)
    if match:
        return canonical_name(match.group(1)), f"it requires Python {match.group(3)}"
    for pattern in (_NO_MATCH, _NO_DISTRIBUTION):
        match = pattern.search(output)
        if match:
            name = canonical_name(re.split(r"[=<>!~\[ ;@]", match.group(1))[0])
            ignored = _IGNORED_PYTHON.search(output)
            if ignored:
                return name, f"pip ignored {ignored.group(1).strip()}"
            return name, f"no file of it is built for Python {new_python} on this platform"
    return None, ""


def _items(
    had: list[InstalledDist],
    after: dict[str, tuple[str, str]],
    requested: set[str],
    reasons: dict[str, str],
    sources: dict[str, str],
) -> list[PlannedDist]:
    before = {canonical_name(d.name): d for d in had}
    items = []
    for key in sorted(before.keys() | after.keys()):
        old = before.get(key)
        new = after.get(key)
        name = (new or (old.name, ""))[0] if new else old.name
        if old is None:
            action, reason = ADDED, reasons.get(key, "a dependency the new resolution needs")
        elif new is None:
            action, reason = DROPPED, reasons.get(key, "not needed on the new Python (nothing requires it)")
        elif new[1] == old.version:
            action, reason = SAME, ""
        else:
            action, reason = CHANGED, reasons.get(key, "re-resolved")
        items.append(
            PlannedDist(
                name=name,
                before=old.version if old else None,
                after=new[1] if new else None,
                action=action,
                requested=key in requested,
                source=sources.get(key, "index"),
                reason=reason,
            )
        )
    return items


def _report_versions(report: dict) -> dict[str, tuple[str, str]]:
    found = {}
    for item in report.get("install", []):
        meta = item["metadata"]
        found[canonical_name(meta["name"])] = (meta["name"], meta["version"])
    return found


def _env_versions(env: Environment) -> dict[str, tuple[str, str]]:
    return {canonical_name(d.name): (d.name, d.version) for d in env.distributions}


# -- guards ----------------------------------------------------------------------------------


def _check(layout: Layout, target: str) -> Environment:
    if target == SYSTEM:
        raise Refused(
            "the system python belongs to the OS: it is not rebuilt",
            hint="rebuild --target hub or --target user",
        )
    if target not in (HUB, USER):
        raise unknown_target(target)
    env = inspect_environment(target, layout)
    if env.kind is None:
        raise UsageError(f"there is no {target} environment at {env.root}", hint="see tljh env list")
    if env.kind == CONDA:
        raise Refused(
            f"the {target} environment is a conda environment: upgrade its Python with conda",
            hint=f"{env.root}/bin/mamba install --prefix {env.root} -c conda-forge 'python=3.X'",
        )
    if env.kind not in (VENV, STANDALONE):
        raise Refused(f"the {target} environment is a {env.kind}; only a venv or CPython install is rebuilt")
    return env


def build_path(layout: Layout, target: str, change_id: int) -> str:
    """Where the new env is built: beside the old one, on the same file system, so that the
    swap is one rename. Derived from the layout and the id, never read from state."""
    root = layout.env_root(target)
    assert root is not None
    return f"{root}.rebuild-{change_id}"


# -- building --------------------------------------------------------------------------------


def _make_venv(new: NewPython, dest: str, prompt: str, work: _Work, tracker=None) -> None:
    """`python -m venv`, TLJH's own way to make the hub; without pip when pip can run from
    ensurepip's wheel instead (the frozen set installs the old env's pip into it)."""
    # the prompt is the final folder's name, not the build folder's (activate scripts show it)
    command = [new.command, "-m", "venv", "--prompt", prompt, dest]
    if new.pip_wheel:
        command.insert(3, "--without-pip")
    try:
        run_logged(command, work.child_env, work.workdir, work.log, _quiet, tracker, "venv")
    except InstallerFailed as failure:
        raise ChangeFailed(
            f"{new.command} -m venv failed: {_tail(failure.output, 1)}",
            hint="on Debian/Ubuntu: apt install python3-venv",
        ) from None


def _quiet(_: str) -> None:
    pass


def _install_command(installer: str, pip: list[str], python: str, req_file: str, cons_file: str, env):
    if installer == UV:
        index = uv_index_args(pip_index_settings(env, os.path.dirname(os.path.dirname(python))))
        return [
            find_uv(), "pip", "install", "--python", python, "--compile-bytecode", *index,
            "-r", req_file, "-c", cons_file,
        ]  # fmt: skip
    # pip compiles bytecode as it installs (users cannot write __pycache__ in a root-owned env);
    # the build folder's name in the .pyc files is corrected by the import system on load
    return [
        *pip,
        "install",
        "--progress-bar",
        "off",
        "--no-warn-script-location",
        "-r",
        req_file,
        "-c",
        cons_file,
    ]


def _relocate(build: str, final: str) -> None:
    """Scripts and activation files name the folder they were made in: make them name the
    folder the env will live in (the same fix `venv` would need for any move)."""
    old, new = build.encode(), final.encode()
    bin_dir = os.path.join(build, "bin")
    for entry in os.scandir(bin_dir):
        if not entry.is_file(follow_symlinks=False):
            continue
        with open_binary(entry.path) as f:
            head = f.read(2)
        if not entry.name.lower().startswith("activate") and head != b"#!":
            continue  # a program, not a script: it names no folder to move
        data = read_bytes(entry.path)
        if entry.name.lower().startswith("activate"):
            fixed = data.replace(old, new)
        elif data.startswith(b"#!"):
            # the interpreter line, or pip's /bin/sh trampoline for paths with spaces
            head_end = data.find(b"\n", data.find(b"\n", data.find(b"\n") + 1) + 1)
            head_end = len(data) if head_end < 0 else head_end
            fixed = data[:head_end].replace(old, new) + data[head_end:]
        else:
            continue
        if fixed != data:
            _write_like(entry.path, fixed)
    cfg = os.path.join(build, "pyvenv.cfg")
    data = read_bytes(cfg)
    if old in data:
        _write_like(cfg, data.replace(old, new))


def _write_like(path: str, data: bytes) -> None:
    st = os.lstat(path)
    tmp = path + ".tljh-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, stat.S_IMODE(st.st_mode))
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _normalise(root: str, owner: tuple[int, int], root_mode: int) -> int:
    """TLJH's `chown -R` + `chmod -R o-w`, plus readable by all (a root umask of 077 must not
    lock users out): applied to a tree this change made itself, symlinks left alone. Each
    object is reached from `root` without following symlinks and fixed through its
    descriptor only if it is still the inode the walk saw (snapshot.Beneath)."""
    uid, gid = owner
    fixed = 0
    with snapshot.Beneath(root) as opener:
        for folder, dirs, files in os.walk(root):
            for name in [*files, None]:
                path = folder if name is None else os.path.join(folder, name)
                st = os.lstat(path)
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                    continue
                mode = stat.S_IMODE(st.st_mode)
                wanted = (mode | ((mode & 0o500) >> 3) | ((mode & 0o500) >> 6)) & ~stat.S_IWOTH
                if path == root:
                    wanted = root_mode
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    # possibly a hard link to a file outside the env: only o+w is taken
                    # away (transaction._fix_one says why)
                    owner_ok, wanted = True, mode & ~stat.S_IWOTH
                else:
                    owner_ok = (st.st_uid, st.st_gid) == (uid, gid)
                if owner_ok and wanted == mode:
                    continue
                fd = opener.open_scanned(path, st.st_dev, st.st_ino)
                try:
                    if not owner_ok:
                        os.fchown(fd, uid, gid)
                        fixed += 1
                    if wanted != mode:
                        os.fchmod(fd, wanted)
                        fixed += 1
                finally:
                    os.close(fd)
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
    return fixed


def _import_failures(python: str, imported: list[str], found: list[str], child_env, cwd) -> dict[str, str]:
    """Names the new interpreter cannot import (or find). All in one process first; a name
    that fails there is tried again alone, since one import can upset another without
    either being broken."""
    failed = _import_batch(python, imported, found, child_env, cwd)
    if len(imported) + len(found) > 1:
        failed = {
            n: why
            for n, why in failed.items()
            if _import_batch(python, [n] if n in imported else [], [n] if n in found else [], child_env, cwd)
        }
    return failed


def _import_batch(python: str, imported: list[str], found: list[str], child_env, cwd) -> dict[str, str]:
    if not imported and not found:
        return {}
    proc = _run([python, "-c", _IMPORT_CHECK, *imported, "--", *found], child_env, cwd)
    if proc.returncode != 0 or not proc.stdout.strip():
        return {"(import check)": _tail(proc.stderr, 3)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def exchange(a: str, b: str) -> None:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), a)


# the fallback swap's intermediate name for the old env, next to the build folder
_ASIDE = ".old"


def _swap(root: str, build: str) -> None:
    try:
        exchange(root, build)
    except OSError as error:
        if error.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
        # no RENAME_EXCHANGE on this file system: three renames; after a kill in between
        # put_old_env_back finds the old env by its inode under any of these names
        aside = build + _ASIDE
        os.rename(root, aside)
        os.rename(build, root)
        os.rename(aside, build)


# -- the change ------------------------------------------------------------------------------


@dataclass
class _Work:
    """What planning and applying share, beyond the plan shown to the admin."""

    had: list[InstalledDist]
    inputs: _Inputs
    new: NewPython
    child_env: dict[str, str]
    build: str
    workdir: str
    log: str
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass
class PreparedRebuild:
    plan: RebuildPlan
    apply: Callable[[Progress], RebuildOutcome] | None = None
    recovered: list[dict] = field(default_factory=list)


@dataclass
class _RebuildChange(Change):
    """A Change whose snapshot is the old env itself, moved aside by the swap: the journal
    also names the old root's inode (a rename keeps it) and whether the swap has begun, so
    recovery can tell which folder holds the old env."""

    old_inode: list[int] | None = None
    swapping: bool = False

    def journal_entry(self) -> dict:
        return {
            **super().journal_entry(),
            "rebuild": {"old_inode": self.old_inode, "swapping": self.swapping},
        }

    def start(self) -> None:
        """Reserve an id and journal the change (phase `snapshotting`: the env is untouched
        until the swap, and recovery of that phase changes nothing in it)."""

        def entry(change_id: int) -> dict:
            self.change_id = change_id
            return self.journal_entry()

        self.change_id = self.state.reserve_id(entry)


@contextlib.contextmanager
def prepare_rebuild(layout: Layout, request: RebuildRequest, notify: Progress) -> Iterator[PreparedRebuild]:
    """Guards, recovery of unfinished changes, the old env read from files, and (unless
    `resolve_first` is off) the plan, resolved in a throwaway venv of the new Python in a
    scratch folder. Nothing under PREFIX changes until `apply`, which locks, re-checks,
    builds the new env beside the old one, checks it and swaps it in."""
    if request.installer not in (PIP, UV):
        raise UsageError(f"unknown installer {request.installer!r}", hint="choose one of: pip, uv")
    env = _check(layout, request.target)
    from tljh_admin.permissions import require_only_root_can_change

    # the old env becomes the rollback snapshot, and what others planted would come back
    require_only_root_can_change(env)
    new = python_facts(layout.system_python)
    recovered: list[dict] = []
    if request.dry_run:
        recover_first(layout, [request.target], request.lock_timeout, notify, dry_run=True)
    else:
        state_or_prefix = layout.state if os.path.isdir(layout.state) else layout.prefix
        policy.require_write_access([os.path.dirname(env.root), env.root, state_or_prefix])
        recovered = recover_first(layout, [request.target], request.lock_timeout, notify)
        env = _check(layout, request.target)
    workdir = scratch_folder(_scratch_parent(layout, request.dry_run))
    try:
        plan, work = _plan(layout, request, env, new, workdir)
        apply = None
        if not request.dry_run:

            def apply(progress: Progress) -> RebuildOutcome:
                return _apply(layout, request, env, plan, work, progress, notify)

        yield PreparedRebuild(plan, apply, recovered)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _plan(layout, request, env, new: NewPython, workdir) -> tuple[RebuildPlan, _Work]:
    notes: list[str] = []
    had = read_installed(env)
    old_short = ".".join((env.python_version or "").split(".")[:2])
    if env.kind == STANDALONE:
        notes.append(f"the {env.name} env is a CPython installation; it becomes a venv made by {new.command}")
    if old_short == ".".join(new.version.split(".")[:2]) and env.ok:
        notes.append(f"the {env.name} env already runs Python {old_short}: the same set is reinstalled")
    inputs = _inputs(request.target, env, had, layout, notes)
    entry = _hub_entry(env) if request.target == HUB else set()
    importable = {n for d in had for n in d.importable} | entry
    plan = RebuildPlan(
        target=request.target,
        root=env.root,
        kind=env.kind,
        old_python=env.python_version,
        new_python=new.version,
        python_command=new.command,
        installer=request.installer,
        requirements=[],
        constraints=[],
        importable=sorted(importable),
        notes=notes,
        plugins=installed_plugins(env) if request.target == HUB else [],
    )
    child_env = policy.isolated_environment(os.environ, env.root, workdir)
    scratch_venv = os.path.join(workdir, "plan-venv")
    work = _Work(had, inputs, new, child_env, scratch_venv, workdir, os.path.join(workdir, "log"))
    if request.resolve_first:
        _make_venv(new, work.build, os.path.basename(env.root), work)
        _resolve_into(plan, work)
    else:
        plan.requirements, plan.constraints = inputs.lines()
    return plan, work


def _hub_entry(env: Environment) -> set[str]:
    """What systemd's `python3 -m jupyterhub` imports: jupyterhub and, where the old env had
    it, jupyterhub.app (the whole hub: tornado, SQLAlchemy, the handlers)."""
    names = {"jupyterhub"}
    if any(os.path.isfile(os.path.join(site, "jupyterhub", "app.py")) for site in env.site_dirs):
        names.add("jupyterhub.app")
    return names


def _resolve_into(plan: RebuildPlan, work: _Work) -> None:
    python = interpreter_in(work.build)
    resolver = _Resolver(
        pip_command(work.build, work.new), work.child_env, work.workdir, plan.new_python, work.log
    )
    report = resolve(resolver, work.inputs, work.reasons)
    after = _env_versions(VenvBackend(plan.target, work.build, python).inspect())
    after.update(_report_versions(report))
    plan.items = _items(work.had, after, set(work.inputs.requested), work.reasons, _sources(work.inputs))
    # install exactly what was planned: every resolved version becomes a constraint
    plan.requirements, _ = work.inputs.lines()
    direct = work.inputs.direct
    plan.constraints = [f"{n}=={v}" for key, (n, v) in sorted(after.items()) if key not in direct]
    plan.resolved = True


def _sources(inputs: _Inputs) -> dict[str, str]:
    return {key: line.split(" @ ", 1)[-1].removeprefix("-e ") for key, line in inputs.direct.items()}


class _Failed(Exception):
    def __init__(self, message: str, output: str):
        super().__init__(message)
        self.output = output


def _apply(layout, request, planned_env, plan: RebuildPlan, work: _Work, progress, notify) -> RebuildOutcome:
    target = plan.target
    with locked_and_recovered(layout, [target], request.lock_timeout, notify) as (state, _recovered):
        env = inspect_environment(target, layout)
        if _packages(env) != _packages(planned_env):
            raise Refused(
                f"the {target} environment changed since the plan was made; nothing was changed",
                hint="run the command again to see a new plan",
            )
        state.check_writable()
        change = _RebuildChange(layout, state, None, request.command, KIND, {}, plan.installer)
        change.envs[target] = EnvState(env, change_areas(layout, env))
        change.old_inode = _inode(os.path.realpath(env.root))
        with sigterm_raises():
            change.start()
            work.log = state.path("logs", f"{change.change_id}.log")
            work.build = build_path(layout, target, change.change_id)
            if os.path.lexists(work.build):  # not this change's: never reused, never removed
                change.abandon(f"{work.build} already exists")
                raise Refused(
                    f"{work.build} already exists; nothing was changed",
                    hint="move it away (no tljh-admin change is using it), then run the command again",
                )
            try:
                _build_and_swap(layout, env, plan, work, change, progress)
            except BaseException as error:
                with signals_deferred():
                    if change.phase == RUNNING:  # swapped and recorded: the snapshot is complete
                        change.restore()
                    else:
                        put_old_env_back(layout, change.journal_entry())
                    detail = f"{error}\n{getattr(error, 'output', '')}".strip()
                    result = INTERRUPTED if isinstance(error, (KeyboardInterrupt, Interrupted)) else FAILED
                    entry = change.finish(result, None, detail)
                if result == INTERRUPTED:
                    raise Stopped(f"interrupted: the {target} environment is as it was") from None
                if isinstance(error, (_Failed, InstallerFailed)):
                    raise ChangeFailed(
                        f"{error}; the old {target} environment is in place (change {entry['id']})",
                        hint=f"the details:\n{error.output}" if error.output else f"see {work.log}",
                    ) from None
                raise
        after = {target: _packages(inspect_environment(target, layout))}
        detail = f"rebuilt with Python {plan.new_python}; the old env is kept as the rollback snapshot"
        entry = change.finish(OK, after, detail)
        return RebuildOutcome(change.change_id, plan, entry, state.snapshot_dir(change.change_id, target))


def _packages(env: Environment) -> dict[str, str]:
    return {d.name: d.version for d in env.distributions}


def _inode(path: str) -> list[int] | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino]


def _build_and_swap(layout, env, plan: RebuildPlan, work: _Work, change: _RebuildChange, progress) -> None:
    root, build = os.path.realpath(env.root), work.build
    python = interpreter_in(build)
    progress(f"making a venv with {plan.python_command} in {build}")
    _make_venv(work.new, build, os.path.basename(root), work, change)

    def install() -> None:
        resolver = _Resolver([], work.child_env, work.workdir, plan.new_python, work.log)
        req_file, cons_file = resolver.write_inputs(plan.requirements, plan.constraints, plan.installer)
        progress(f"installing {len(plan.requirements)} requested projects with {plan.installer}")
        pip = pip_command(build, work.new)
        command = _install_command(plan.installer, pip, python, req_file, cons_file, work.child_env)
        run_logged(command, work.child_env, work.workdir, work.log, progress, change, plan.installer)

    try:
        install()
    except InstallerFailed:
        if plan.resolved:
            raise
        # the straight install failed: find out whether the plan needs relaxing
        progress("the exact pins do not all install on the new Python: planning")
        _resolve_into(plan, work)
        install()
    new_env = VenvBackend(plan.target, build, python).inspect()
    if not plan.resolved:
        plan.items = _items(
            work.had, _env_versions(new_env), set(work.inputs.requested), work.reasons, _sources(work.inputs)
        )
        plan.resolved = True
    if _drop_extras(plan, work, new_env, change):
        new_env = VenvBackend(plan.target, build, python).inspect()
    progress("checking the new env")
    _verify(plan, new_env, python, work)
    _relocate(build, root)
    root_st = os.lstat(root)
    _normalise(build, env_owner(layout, env), stat.S_IMODE(root_st.st_mode))
    os.lchown(build, root_st.st_uid, root_st.st_gid)

    progress(f"swapping {root} for the new env")
    areas = change.envs[plan.target].areas
    snapshot_dir = change.state.snapshot_dir(change.change_id, plan.target)
    farm = os.path.join(snapshot_dir, snapshot.FILES)
    mirror = farm + root
    os.makedirs(os.path.dirname(mirror), mode=0o700)
    change.swapping = True
    change.state.write_journal(change.journal_entry())
    _swap(root, build)
    # the old env becomes the change's snapshot as it is (same inodes): the farm layout of
    # snapshot.py, with a manifest like snapshot.take's, so rollback and recovery need nothing new
    os.rename(build, mirror)
    snapshot.write_json_atomic(
        os.path.join(snapshot_dir, snapshot.MANIFEST),
        {
            "version": snapshot.MANIFEST_VERSION,
            "areas": list(areas.folders),
            "root": areas.root,
            "top_level": sorted(areas.top_level),
            "skip": sorted(areas.skip),
            "entries": sum(
                1 for _ in snapshot.walk_farm(os.path.join(snapshot_dir, snapshot.FILES), areas.folders)
            ),
            "complete": True,
            "root_meta": [stat.S_IMODE(root_st.st_mode), root_st.st_uid, root_st.st_gid, root_st.st_mtime_ns],
        },
    )
    change.phase, change.swapping = RUNNING, False
    change.state.write_journal(change.journal_entry())


def _drop_extras(plan: RebuildPlan, work: _Work, new_env: Environment, change) -> bool:
    """What the new venv's ensurepip brought that the old env did not have (setuptools on
    older Pythons) goes, so the new env holds the planned set and no more."""
    had = {canonical_name(d.name) for d in work.had}
    planned = {canonical_name(i.name) for i in plan.items if i.after}
    extras = [d.name for d in new_env.distributions if canonical_name(d.name) not in had | planned]
    if not extras:
        return False
    command = [*pip_command(work.build, work.new), "uninstall", "--yes", *extras]
    run_logged(command, work.child_env, work.workdir, work.log, _quiet, change, "pip")
    plan.notes.append(f"removed {', '.join(extras)}: the new venv brought it, the old env did not have it")
    return True


def _verify(plan: RebuildPlan, new_env: Environment, python: str, work: _Work) -> None:
    broken = broken_requirements(new_env)
    if broken:
        lines = [f"{b.dist.name} {b.dist.version} requires {b.requirement} ({b.kind})" for b in broken]
        raise _Failed("the new env's requirements are not satisfied (pip check)", "\n".join(lines))
    # the hub's own imports run (systemd starts `python3 -m jupyterhub`); the rest is found
    requested = {n for d in work.had if d.requested for n in d.importable} | {"jupyterhub", "jupyterhub.app"}
    imported = sorted(n for n in plan.importable if n in requested and n not in _TOOLING)
    found = sorted(n for n in plan.importable if n not in imported)
    failures = _import_failures(python, imported, found, work.child_env, work.workdir)
    if failures:
        raise _Failed(
            f"the new env cannot import {', '.join(sorted(failures))}",
            "\n".join(f"{name}: {why}" for name, why in sorted(failures.items())),
        )


def put_old_env_back(layout: Layout, journal: dict) -> None:
    """Undo a rebuild that had not recorded its swap (journal phase `snapshotting`): find
    the old env by its inode at the root, the build folder or the snapshot folder, put it
    at the root, and remove the new one. Every path is derived from the layout and the id,
    never read from state; a symlink is removed, never followed. Called by the rebuild on
    failure and by recovery (transaction.recover_unfinished) after a kill."""
    for target in journal.get("envs", {}):
        if target not in (HUB, USER):
            continue
        root = os.path.realpath(layout.env_root(target))
        build = build_path(layout, target, int(journal["id"]))
        state = StateDir.of(layout)
        mirror = os.path.join(state.snapshot_dir(int(journal["id"]), target), snapshot.FILES) + root
        # every name the old env can be under: _swap's fallback renames through ASIDE
        aside = build + _ASIDE
        old = (journal.get("rebuild") or {}).get("old_inode")
        if old is not None and _inode(root) != old:
            for place in (build, aside, mirror):
                if _inode(place) == old and not os.path.islink(place):
                    if os.path.lexists(root):
                        _swap(root, place)  # the old env back at the root; `place` holds the new one
                    else:  # killed after the fallback's first rename: no env at the root
                        os.rename(place, root)
                    break
        for leftover in (build, aside, mirror):
            if os.path.islink(leftover):
                os.unlink(leftover)
            elif os.path.isdir(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(state.snapshot_dir(int(journal["id"]), target), snapshot.MANIFEST))


def recover_killed(state: StateDir, journal: dict, notify: Progress) -> dict | None:
    """Recovery of a killed rebuild (transaction.recover_unfinished, its processes already
    ended). Before the swap was recorded: put the old env back by hand and close the change;
    returns its history entry. After: the generic restore from the snapshot (the old env
    itself) does it; only a stray build folder is removed here, and None is returned."""
    layout = state.layout
    assert layout is not None
    if journal.get("phase") != RUNNING:
        notify(f"restoring change {journal['id']} ({journal['command']}), which was interrupted")
        put_old_env_back(layout, journal)
        detail = (
            "the process was killed during the rebuild; the old env is back, put there by the next command"
        )
        return state.close(journal, RESTORED, journal["before"], detail)
    for target in journal.get("envs", {}):
        if target in (HUB, USER):
            path = build_path(layout, target, int(journal["id"]))
            if os.path.islink(path):
                os.unlink(path)
            elif os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
    return None
