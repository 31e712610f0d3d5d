"""One backend per kind of environment, told apart by the files each kind leaves.

- venv: `pyvenv.cfg` (the hub, made by the system python, like TLJH's bootstrap does);
- conda: `conda-meta/` (the user env in real TLJH, a Miniforge install);
- standalone: any other full CPython installation (`bin/python3` + `lib/pythonX.Y/os.py`);
- system: the OS interpreter (`/usr/bin/python3`), Debian's dist-packages layout included.

Inspection never starts an interpreter: versions, site folders and distributions all come
from the file system, so it is fast and safe to run on a broken environment.
"""

from __future__ import annotations

import os
import re

from tljh_admin.envs.model import (
    BROKEN,
    MISSING,
    OK,
    CondaRecord,
    Distribution,
    Environment,
    InterpreterLink,
    Package,
    SiteProblem,
)
from tljh_admin.envs.sitepackages import scan_site_dir
from tljh_admin.files import open_text, read_bytes
from tljh_admin.layout import SYSTEM, Layout, interpreter_in

VENV, CONDA, STANDALONE, SYSTEM_KIND = "venv", "conda", "standalone", "system"
KINDS = (VENV, CONDA, STANDALONE, SYSTEM_KIND)

_MAX_LINKS = 40  # the kernel's own limit on a symlink chain (MAXSYMLINKS)
_PYTHON_DIR = re.compile(r"python(\d+)\.(\d+)t?$")
_PATCHLEVEL = re.compile(rb'#define\s+PY_VERSION\s+"([^"]+)"')
# A record's top-level "channel" key. Every record conda, mamba or rattler writes has one;
# inside a JSON string a quote is escaped, so a file path cannot fake this pattern.
_CHANNEL_KEY = re.compile(rb'"channel"\s*:\s*"([^"]*)"')
_DIST_INFO = b".dist-info/"
_SUBDIRS = ("noarch", "linux-64", "linux-aarch64", "linux-ppc64le", "osx-64", "osx-arm64", "win-64")


def follow_interpreter(path: str) -> InterpreterLink:
    """Walk `path`'s symlink chain by hand, so a dangling link says where it ends."""
    chain = [path]
    current = path
    while os.path.islink(current) and len(chain) <= _MAX_LINKS:
        target = os.readlink(current)
        current = os.path.normpath(os.path.join(os.path.dirname(current), target))
        chain.append(current)
    runnable = os.path.isfile(current) and os.access(current, os.X_OK)
    return InterpreterLink(path=path, chain=tuple(chain), end=current, runnable=runnable)


def read_pyvenv_cfg(root: str) -> dict[str, str]:
    """Its `key = value` lines. UnicodeDecodeError as for Python itself, whose site.venv()
    reads it as UTF-8 at every start and stops there (tested with CPython 3.11)."""
    values: dict[str, str] = {}
    with open_text(os.path.join(root, "pyvenv.cfg"), encoding="utf-8") as f:
        for line in f:
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip().lower()] = value.strip()
    return values


def _version_from_name(name: str) -> str | None:
    match = _PYTHON_DIR.match(name)
    return f"{match.group(1)}.{match.group(2)}" if match else None


_PYTHON_DIR_NAME = re.compile(r"python(\d+\.\d+)t?$")  # bin/python3.11, lib/python3.13t


def binary_version(binary: str) -> str | None:
    """X.Y of the interpreter file `binary` (the end of a symlink chain), from its name
    (`python3.11`) or else from the installation it sits in (its `lib/pythonX.Y/os.py`;
    when there are several, the `bin/pythonX.Y` that is this very file)."""
    name = os.path.basename(binary)
    match = _PYTHON_DIR_NAME.search(name)
    if match:
        return match.group(1)
    if not name.startswith("python"):
        return None  # /usr/bin/false beside /usr/lib/python3.11 is no Python
    install = os.path.dirname(os.path.dirname(binary))
    try:
        names = os.listdir(os.path.join(install, "lib"))
    except OSError:
        return None
    versions = sorted(
        m.group(1)
        for m in map(_PYTHON_DIR_NAME.match, names)
        if m and os.path.isfile(os.path.join(install, "lib", m.group(0), "os.py"))
    )
    if len(versions) == 1:
        return versions[0]
    for version in versions:
        candidate = os.path.join(install, "bin", f"python{version}")
        try:
            if os.path.samefile(candidate, binary):
                return version
        except OSError:
            continue
    return None


def _lib_python_dirs(root: str) -> list[str]:
    """`lib/pythonX.Y` folders under a prefix, newest first (after an OS upgrade there can be two)."""
    found: dict[str, str] = {}
    for lib in ("lib", "lib64"):
        try:
            with os.scandir(os.path.join(root, lib)) as entries:
                for e in entries:
                    if _PYTHON_DIR.match(e.name) and e.is_dir():
                        found.setdefault(os.path.realpath(e.path), e.path)
        except OSError:
            continue
    return sorted(found.values(), key=_lib_version_key, reverse=True)


def _lib_version_key(path: str) -> tuple[int, ...]:
    return tuple(map(int, _version_from_name(os.path.basename(path)).split(".")))


def _patch_version(root: str, short: str) -> str | None:
    """X.Y.Z from the installed C headers, when the installation has them."""
    try:
        match = _PATCHLEVEL.search(
            read_bytes(os.path.join(root, "include", f"python{short}", "patchlevel.h"))
        )
    except OSError:
        return None
    return match.group(1).decode() if match else None


class Backend:
    """Inspection shared by every kind; subclasses say where things live."""

    kind = ""
    #: top-level folders of the environment no change writes into: left out of snapshots
    #: (the kind's say over its change areas; transaction.change_areas snapshots the rest)
    untouched: frozenset[str] = frozenset()
    #: files (relative to the root) a change of this kind rewrites in place rather than
    #: replacing: snapshots keep a copy of them, not a link (transaction.change_areas)
    rewritten_in_place: frozenset[str] = frozenset()
    #: the installers that may change this kind of environment (defaults.INSTALLERS and conda)
    installers: tuple[str, ...] = ("pip", "uv")

    def __init__(self, name: str, root: str, interpreter: str):
        self.name = name
        self.root = root
        self.interpreter = interpreter

    # -- what each kind answers differently ------------------------------------------------
    def python_version(self, link: InterpreterLink) -> str | None:
        short = _version_from_name(os.path.basename(link.end))
        if short is None:
            libs = _lib_python_dirs(self.root)
            short = _version_from_name(os.path.basename(libs[0])) if libs else None
        if short is None:
            return None
        return _patch_version(self.root, short) or short

    def site_dirs(self, version: str | None) -> list[str]:
        return [os.path.join(lib, "site-packages") for lib in self._lib_dirs(version)]

    def _lib_dirs(self, version: str | None) -> list[str]:
        short = ".".join(version.split(".")[:2]) if version else None
        libs = _lib_python_dirs(self.root)
        matching = [lib for lib in libs if short and os.path.basename(lib).startswith(f"python{short}")]
        return matching or libs

    def conda_records(self) -> list[CondaRecord]:
        return []

    def venv_base(self) -> tuple[str, str] | None:
        return None

    def broken_reason(self, link: InterpreterLink) -> str | None:
        if link.runnable:
            return None
        if not os.path.lexists(link.path):
            return f"no interpreter at {link.path}"
        if len(link.chain) > _MAX_LINKS:
            return f"{link.path} is a symlink loop"
        if os.path.lexists(link.end):
            return f"{link.end} is not an executable file"
        hops = " -> ".join(link.chain)
        return f"{link.path} is a dangling symlink: {hops} (missing)"

    def _stdlib_gone(self, link: InterpreterLink) -> str | None:
        """An installation (conda's, a standalone CPython) carries its own standard library
        in lib/pythonX.Y: without it, its Python stops at start ("No module named
        'encodings'"). Venvs use their base's; the system's is apt's."""
        short = binary_version(link.end)
        if short is None:
            return None
        for name in (f"python{short}", f"python{short}t"):
            lib = os.path.join(self.root, "lib", name)
            if os.path.isfile(os.path.join(lib, "os.py")):
                return None
            if os.path.isdir(lib) and not os.access(lib, os.R_OK | os.X_OK):
                return None  # this user cannot look: not gone
        return (
            f"its standard library is gone ({os.path.join(self.root, 'lib', f'python{short}', 'os.py')} is"
            f" missing): {link.path} stops at start, or runs on another installation's (restore it:"
            f" tljh env rollback --target {self.name})"
        )

    # -- the shared part -------------------------------------------------------------------
    def inspect(self) -> Environment:
        link = follow_interpreter(self.interpreter)
        reason = self.broken_reason(link)
        version = self.python_version(link)
        records = self.conda_records()
        conda_owned = frozenset(os.path.basename(r.dist_info) for r in records if r.dist_info)
        site_dirs: list[str] = []
        dists: list[Distribution] = []
        problems: list[SiteProblem] = []
        seen: set[str] = set()
        for site in self.site_dirs(version):
            real = os.path.realpath(site)
            if real in seen or not os.path.isdir(site):
                continue
            seen.add(real)
            site_dirs.append(site)
            found, trouble = scan_site_dir(site, conda_owned)
            dists.extend(found)
            problems.extend(trouble)
        return Environment(
            name=self.name,
            kind=self.kind,
            root=self.root,
            interpreter=link,
            python_version=version,
            status=BROKEN if reason else OK,
            reason=reason,
            externally_managed=self.externally_managed(version),
            venv_base=self.venv_base(),
            site_dirs=tuple(site_dirs),
            distributions=tuple(sorted(dists, key=lambda d: (d.name.lower(), d.version))),
            problems=tuple(problems),
            conda_records=tuple(records),
        )

    def externally_managed(self, version: str | None) -> bool:
        """PEP 668: an EXTERNALLY-MANAGED file beside the standard library."""
        return any(os.path.isfile(os.path.join(lib, "EXTERNALLY-MANAGED")) for lib in self._lib_dirs(version))


class VenvBackend(Backend):
    kind = VENV

    def __init__(self, name: str, root: str, interpreter: str):
        super().__init__(name, root, interpreter)
        #: why pyvenv.cfg makes the venv unusable (None: it does not)
        self.cfg_problem: str | None = None
        cfg = os.path.join(root, "pyvenv.cfg")
        try:
            self.cfg = read_pyvenv_cfg(root)
        except UnicodeDecodeError:
            self.cfg = {}
            self.cfg_problem = f"{cfg} is not UTF-8 text: its Python stops at start reading it"
        except PermissionError:
            self.cfg = {}  # root's alone: the venv's Python, run by root, reads it
        except FileNotFoundError:
            self.cfg = {}
            self.cfg_problem = (
                f"{cfg} is gone (or leads nowhere): {interpreter} runs the Python it links to as"
                " itself, not as this venv, and its pip would change that Python's packages"
            )
        except OSError as error:
            self.cfg = {}
            self.cfg_problem = f"{cfg} cannot be read ({error.strerror}): its Python reads it at every start"

    def python_version(self, link: InterpreterLink) -> str | None:
        # pyvenv.cfg says which Python made the venv: `version` (venv) or `version_info` (uv).
        return self.cfg.get("version") or self.cfg.get("version_info") or super().python_version(link)

    def site_dirs(self, version: str | None) -> list[str]:
        # A venv's own site folder is whichever lib/pythonX.Y it holds, even when the base
        # interpreter has moved on (the OS-upgrade breakage): that is where its packages are.
        own = [os.path.join(lib, "site-packages") for lib in _lib_python_dirs(self.root)]
        if self.cfg.get("include-system-site-packages", "false").lower() == "true":
            home = self.cfg.get("home")
            if home:
                own.extend(system_site_dirs(os.path.dirname(home.rstrip("/")), version))
        return own

    def venv_base(self) -> tuple[str, str] | None:
        home = self.cfg.get("home")
        version = self.cfg.get("version") or self.cfg.get("version_info") or ""
        return (home, version) if home else None

    def broken_reason(self, link: InterpreterLink) -> str | None:
        if self.cfg_problem:
            return (
                f"{self.cfg_problem} (put it back: tljh env rollback --target {self.name}, or rebuild it:"
                f" tljh env rebuild --target {self.name})"
            )
        reason = super().broken_reason(link)
        base = self.venv_base()
        if reason and base:
            home, version = base
            reason += f"; pyvenv.cfg expects Python {version or '?'} in {home}"
        if reason is None:
            # runnable, but maybe not the Python its packages were installed for: the OS
            # Python moved on under the venv (TLJH#613); read from files, nothing is started
            runs = binary_version(link.end)
            lib_dirs = _lib_python_dirs(self.root)
            libs = [os.path.basename(lib) for lib in lib_dirs]
            if runs and libs and f"python{runs}" not in libs:
                reason = (
                    f"{link.path} runs Python {runs}, but its packages are in lib/{', lib/'.join(libs)}:"
                    f" the OS Python moved on under it (tljh env rebuild --target {self.name})"
                )
            elif not any(os.path.isdir(os.path.join(lib, "site-packages")) for lib in lib_dirs) and all(
                os.access(lib, os.R_OK | os.X_OK) for lib in lib_dirs
            ):  # a lib/pythonX.Y this user cannot enter is unreadable, not gone: the scan says so
                reason = self._packages_gone()
        return reason

    def _packages_gone(self) -> str:
        """Every venv (venv's, virtualenv's, uv's) has a lib/pythonX.Y/site-packages: without
        one, whatever it held is gone, and it would only look like an empty env."""
        dangling = []
        seen = set()
        for lib in ("lib", "lib64"):
            folder = os.path.join(self.root, lib)
            if os.path.realpath(folder) in seen:
                continue  # venv's lib64 is a symlink to lib
            seen.add(os.path.realpath(folder))
            try:
                with os.scandir(folder) as entries:
                    for e in entries:
                        if _PYTHON_DIR.match(e.name) and e.is_symlink() and not os.path.exists(e.path):
                            dangling.append(f"{lib}/{e.name} -> {os.readlink(e.path)}")
            except OSError:
                continue
        what = (
            f"{', '.join(sorted(dangling))} leads nowhere" if dangling else "no lib/pythonX.Y/site-packages"
        )
        return (
            f"its packages are gone: {what} (restore them: tljh env rollback --target {self.name},"
            " or run TLJH's installer again)"
        )

    def externally_managed(self, version: str | None) -> bool:
        return False  # a venv is never externally managed, whatever its base is


class CondaBackend(Backend):
    # conda's package cache: conda fills it, but an environment's state does not depend on it
    untouched = frozenset({"pkgs"})
    # conda's History appends each revision to the same file (conda/history.py opens it "a")
    rewritten_in_place = frozenset({"conda-meta/history"})
    # conda packages with the env's own mamba/conda; pip and uv for Python distributions
    installers = ("pip", "uv", "conda")
    kind = CONDA

    def broken_reason(self, link: InterpreterLink) -> str | None:
        return super().broken_reason(link) or self._stdlib_gone(link)

    def conda_records(self) -> list[CondaRecord]:
        """Every record in conda-meta/, read without parsing whole files.

        A record is `NAME-VERSION-BUILD.json` (conda names them so and relies on it); the
        rest comes from one search each: the channel, and the first dist-info among its
        files. `python`'s record lists the whole standard library (~400 kB of JSON), so a
        full parse would cost more than reading every other package of the env.
        """
        records = []
        meta = os.path.join(self.root, "conda-meta")
        try:
            names = sorted(n for n in os.listdir(meta) if n.endswith(".json"))
        except OSError:
            return records
        for file_name in names:
            parts = file_name[: -len(".json")].rsplit("-", 2)
            if len(parts) != 3 or not all(parts):
                continue  # not a record conda wrote (conda skips these too)
            try:
                data = read_bytes(os.path.join(meta, file_name))
            except OSError:  # a FIFO, a folder, 20 GB...: still a package conda counts (and fails on)
                data = b""
            channel = _CHANNEL_KEY.search(data)
            records.append(
                CondaRecord(
                    name=parts[0],
                    version=parts[1],
                    dist_info=_first_dist_info(data),
                    build=parts[2],
                    channel=channel_display_name(channel.group(1).decode("utf-8", "replace"))
                    if channel
                    else "",
                    meta_file=file_name,
                )
            )
        return records

    def python_version(self, link: InterpreterLink) -> str | None:
        # conda-meta/python-3.11.7-<build>.json names the exact interpreter conda installed.
        try:
            names = os.listdir(os.path.join(self.root, "conda-meta"))
        except OSError:
            names = []
        for file_name in names:
            parts = file_name.split("-")
            if parts[0] == "python" and len(parts) >= 3 and parts[1][:1].isdigit():
                return parts[1]
        return super().python_version(link)


class StandaloneBackend(Backend):
    kind = STANDALONE

    def broken_reason(self, link: InterpreterLink) -> str | None:
        reason = super().broken_reason(link) or self._stdlib_gone(link)
        tools = [t for t in ("conda", "mamba") if os.path.isfile(os.path.join(self.root, "bin", t))]
        if reason is None and tools:
            # Miniforge without conda-meta/: conda no longer knows what it installed, and
            # every conda command on it (TLJH's upgrade included) fails or undoes packages
            reason = (
                f"it has bin/{tools[0]} but no conda-meta/: conda's records of its packages are gone"
                " (re-run TLJH's installer to recreate the user environment)"
            )
        return reason


class SystemBackend(Backend):
    kind = SYSTEM_KIND

    def broken_reason(self, link: InterpreterLink) -> str | None:
        reason = super().broken_reason(link)
        if reason:
            return reason
        # --system-python /usr/bin/false: runnable, but TLJH makes the hub venv with it
        version = binary_version(link.end)
        install = os.path.dirname(os.path.dirname(link.end))
        if not version or not os.path.isfile(os.path.join(install, "lib", f"python{version}", "os.py")):
            return f"{link.path} is not a Python interpreter: {link.end} has no lib/pythonX.Y/os.py beside it"
        return None

    def site_dirs(self, version: str | None) -> list[str]:
        return system_site_dirs(self.root, version)


def system_site_dirs(prefix: str, version: str | None) -> list[str]:
    """Site folders of an interpreter installed at `prefix`, in sys.path order.

    Debian and Ubuntu patch site.py: pip installs land in /usr/local/lib/pythonX.Y/dist-packages
    and apt's in /usr/lib/python3/dist-packages; other builds use lib/pythonX.Y/site-packages.
    """
    short = ".".join(version.split(".")[:2]) if version else None
    libs = _lib_python_dirs(prefix)
    if short is None and libs:
        short = _version_from_name(os.path.basename(libs[0]))
    if short is None:
        return []
    join = os.path.join
    if os.path.isdir(join(prefix, "lib", "python3", "dist-packages")):
        local = "/usr/local" if os.path.normpath(prefix) == "/usr" else join(prefix, "local")
        return [
            join(local, "lib", f"python{short}", "dist-packages"),
            join(prefix, "lib", "python3", "dist-packages"),
            join(prefix, "lib", f"python{short}", "dist-packages"),
        ]
    return [join(prefix, "lib", f"python{short}", "site-packages")]


def _first_dist_info(data: bytes) -> str | None:
    end = data.find(_DIST_INFO)
    if end < 0:
        return None
    start = data.rfind(b'"', 0, end) + 1
    return data[start : end + len(_DIST_INFO) - 1].decode("utf-8", "replace")


def channel_display_name(channel: str) -> str:
    """What `conda list` shows for a record's channel: `conda-forge` for
    `https://conda.anaconda.org/conda-forge/linux-64` or a local `file:///.../conda-forge/`."""
    parts = [p for p in channel.rstrip("/").split("/") if p]
    if len(parts) > 1 and parts[-1] in _SUBDIRS:
        parts.pop()
    return parts[-1] if parts else ""


def packages(env: Environment) -> list[Package]:
    """The rows `tljh env packages` shows, sorted by name.

    In a conda env these are what `conda list` lists: one row per conda record (the
    dist-info a record installed is that row, not a second one), then the distributions no
    record owns, marked with channel `pypi`. Elsewhere: one row per distribution.
    """
    if env.kind != CONDA:
        rows = [
            Package(d.name, d.version, d.installer, d.location, d.metadata_dir, "", "")
            for d in env.distributions
        ]
        return rows
    owned: dict[str, CondaRecord] = {}
    for record in env.conda_records:
        if record.dist_info:
            owned[os.path.normpath(os.path.join(env.root, record.dist_info))] = record
    rows = []
    seen_records = set()
    for dist in env.distributions:
        record = owned.get(os.path.normpath(os.path.join(dist.location, dist.metadata_dir)))
        if record is None:
            rows.append(
                Package(dist.name, dist.version, dist.installer, dist.location, dist.metadata_dir, "pypi", "")
            )
        else:
            seen_records.add(record.meta_file)
            rows.append(
                Package(
                    record.name,
                    record.version,
                    "conda",
                    dist.location,
                    dist.metadata_dir,
                    record.channel,
                    record.build,
                )
            )
    meta = os.path.join(env.root, "conda-meta")
    for record in env.conda_records:
        if record.meta_file not in seen_records:
            rows.append(
                Package(
                    record.name, record.version, "conda", meta, record.meta_file, record.channel, record.build
                )
            )
    return sorted(rows, key=lambda p: (p.name.lower(), p.version))


def installers_for(kind: str | None) -> tuple[str, ...]:
    """The installers the kind of environment allows (its backend's say)."""
    backend = next(
        (b for b in (VenvBackend, CondaBackend, StandaloneBackend, SystemBackend) if b.kind == kind), None
    )
    return backend.installers if backend is not None else ()


def package_versions(env: Environment) -> dict[str, str]:
    """{name: version} of the rows `packages` gives: what history and drift checks record
    (a conda change shows up there with its C libraries, not only its Python parts)."""
    return {p.name: p.version for p in packages(env)}


def backend_for(name: str, layout: Layout) -> Backend | None:
    """The backend that fits what is on disk, or None when the environment is not there."""
    if name == SYSTEM:
        interpreter = layout.system_python
        if not os.path.lexists(interpreter):
            return None
        real = os.path.realpath(interpreter)
        return SystemBackend(name, os.path.dirname(os.path.dirname(real)), interpreter)
    root = layout.env_root(name)
    assert root is not None
    if not os.path.isdir(root):
        return None
    interpreter = interpreter_in(root)
    if os.path.lexists(os.path.join(root, "pyvenv.cfg")):  # whatever it is: VenvBackend judges it
        return VenvBackend(name, root, interpreter)
    if os.path.isdir(os.path.join(root, "conda-meta")):
        return CondaBackend(name, root, interpreter)
    if _links_outside(interpreter, root) and _lib_python_dirs(root):
        return VenvBackend(name, root, interpreter)  # a venv that lost its pyvenv.cfg
    return StandaloneBackend(name, root, interpreter)


def _links_outside(interpreter: str, root: str) -> bool:
    """bin/python3 is a symlink to a Python outside `root`: a venv's, never an installation's
    own (whose bin/python3 leads to its bin/python3.X)."""
    if not os.path.islink(interpreter):
        return False
    return not (os.path.realpath(interpreter) + "/").startswith(os.path.realpath(root) + "/")


def inspect_environment(name: str, layout: Layout) -> Environment:
    backend = backend_for(name, layout)
    if backend is None:
        return _missing(name, layout)
    return backend.inspect()


def inspect_all(layout: Layout, names: tuple[str, ...]) -> list[Environment]:
    return [inspect_environment(name, layout) for name in names]


def _missing(name: str, layout: Layout) -> Environment:
    root = layout.env_root(name)
    interpreter = layout.system_python if root is None else interpreter_in(root)
    return Environment(
        name=name,
        kind=None,
        root=root or "",
        interpreter=InterpreterLink(interpreter, (interpreter,), interpreter, False),
        python_version=None,
        status=MISSING,
        reason=f"nothing at {root or interpreter}",
        externally_managed=False,
        venv_base=None,
        site_dirs=(),
        distributions=(),
        problems=(),
        conda_records=(),
    )
