"""The isolation rules (DESIGN.md section 1), one named guard each.

Every guard either returns what the change may use or raises TljhError with a hint. All of
them run before anything touches the disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from tljh_admin.envs.model import Environment
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.errors import ExitCode, Refused, TljhError, UsageError
from tljh_admin.files import open_text
from tljh_admin.installers import NO_OPTIONS, PipOptions
from tljh_admin.layout import HUB, SYSTEM, USER
from tljh_admin.placement import USER_SERVER_PACKAGES  # rule 5's set; doctor reads it too

# Rule 2: variables that would send an install somewhere else, or make the child import
# from somewhere else. Index settings (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_CERT, ...)
# and pip's config files are deliberately kept.
REDIRECTING_VARIABLES = frozenset(
    {
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONUSERBASE",
        "PYTHONSTARTUP",
        "PYTHONEXECUTABLE",
        "PYTHONSAFEPATH",
        "PIP_TARGET",
        "PIP_PREFIX",
        "PIP_ROOT",
        "PIP_USER",
        "PIP_SRC",
        "PIP_EDITABLE",
        "PIP_REQUIRE_VIRTUALENV",
        "PIP_PYTHON",
        "PIP_BREAK_SYSTEM_PACKAGES",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "CONDA_DEFAULT_ENV",
        "CONDA_PYTHON_EXE",
        "UV_PYTHON",
        "UV_SYSTEM_PYTHON",
        "UV_PROJECT_ENVIRONMENT",
        "UV_TARGET",
        "UV_PREFIX",
        "UV_BREAK_SYSTEM_PACKAGES",
    }
)

# Rule 3: pip options that would install outside the environment.
ESCAPING_OPTIONS = ("--user", "--target", "-t", "--prefix", "--root", "--src", "-e", "--editable")
# Never valid in a requirement, always meaningful to a shell. (`;`, quotes, `<`, `>` and
# parentheses are legal in markers and specifiers; packaging judges those.)
_SHELL_TEXT = re.compile(r"[`$|&\\{}\n\r]")
# what pip takes as a local file, not a project name, when an argument ends with it
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip", ".tar")


def scrubbed_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The child's environment: the caller's, less everything that redirects an install."""
    env = {k: v for k, v in environ.items() if k not in REDIRECTING_VARIABLES}
    env["PYTHONNOUSERSITE"] = "1"  # root's ~/.local must not shadow the env while pip runs
    env["PIP_USER"] = "0"  # overrides `user = true` in a pip.conf
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


# Installer settings an admin's configuration may carry into a change: where packages come
# from and how to reach it. Everything else (target, prefix, root, user, src, requirement,
# constraint, editable, ...) could send the install elsewhere or widen it.
PIP_INDEX_KEYS = (
    "index-url", "extra-index-url", "find-links", "no-index", "cert", "client-cert",
    "trusted-host", "timeout", "retries", "proxy",
)  # fmt: skip
UV_INDEX_VARIABLES = frozenset(
    {"UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_FIND_LINKS",
     "UV_NO_INDEX", "UV_HTTP_TIMEOUT", "UV_NATIVE_TLS", "UV_NO_CACHE",
     "UV_CONCURRENT_DOWNLOADS", "UV_CONCURRENT_INSTALLS", "UV_OFFLINE", "UV_INSECURE_HOST"}
)  # fmt: skip


def pip_config_files(environ: Mapping[str, str], env_root: str) -> list[str]:
    """The configuration files pip would read for `env_root`'s interpreter, in its order."""
    if environ.get("PIP_CONFIG_FILE"):
        return [environ["PIP_CONFIG_FILE"]]
    home = os.path.expanduser("~")
    xdg_dirs = environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
    return [
        *(os.path.join(d, "pip", "pip.conf") for d in xdg_dirs if d),
        "/etc/pip.conf",
        os.path.join(home, ".pip", "pip.conf"),
        os.path.join(environ.get("XDG_CONFIG_HOME", os.path.join(home, ".config")), "pip", "pip.conf"),
        os.path.join(env_root, "pip.conf"),
    ]


def pip_index_settings(environ: Mapping[str, str], env_root: str) -> dict[str, str]:
    """The index settings pip would use: its config files, then PIP_* variables (pip's own
    precedence); only the keys of PIP_INDEX_KEYS, whitespace-joined where they are lists."""
    import configparser

    settings: dict[str, str] = {}
    for path in pip_config_files(environ, env_root):
        parser = configparser.RawConfigParser()
        try:
            with open_text(path) as f:
                parser.read_file(f)
        except (configparser.Error, OSError, UnicodeDecodeError):  # none, or not a config file
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                settings.update(
                    {k: " ".join(v.split()) for k, v in parser.items(section) if k in PIP_INDEX_KEYS}
                )
    for key in PIP_INDEX_KEYS:
        value = environ.get("PIP_" + key.upper().replace("-", "_"))
        if value:  # an empty variable is an unset one
            settings[key] = value
    return settings


def isolated_environment(environ: Mapping[str, str], env_root: str, workdir: str) -> dict[str, str]:
    """The installer child's environment, isolated from every configuration file: pip and
    uv config files may set target, prefix, root, user, src, requirement or constraint
    just as variables can, and read them from places root does not watch (~/.config,
    /etc/xdg, the env root, uv.toml in the working folder). Refusing would make an admin
    edit shared files to use tljh; instead the child reads no config file at all
    (PIP_CONFIG_FILE=/dev/null, UV_NO_CONFIG) and gets only the index settings of those
    files (PIP_INDEX_KEYS) as PIP_* variables. It runs in `workdir`, an empty folder."""
    settings = pip_index_settings(environ, env_root)
    env = scrubbed_environment(environ)
    for key in list(env):
        pip_other = key.startswith("PIP_") and key[4:].lower().replace("_", "-") not in PIP_INDEX_KEYS
        if pip_other or (key.startswith("UV_") and key not in UV_INDEX_VARIABLES):
            del env[key]
    env.update({"PIP_" + key.upper().replace("-", "_"): value for key, value in settings.items()})
    env["PIP_CONFIG_FILE"] = os.devnull  # pip: /dev/null means "read no configuration file"
    env["UV_NO_CONFIG"] = "1"
    # caches, temporary builds and conda's ~/.condarc only where nobody but this user can
    # change them: under `sudo -E`, HOME, TMPDIR and XDG_* still name the admin's folders,
    # and uv (unlike pip) uses a cache another uid owns, hard-linking its files into the env
    # (so UV_CACHE_DIR is not passed on either)
    for key in [k for k in env if k.startswith("XDG_")]:
        del env[key]
    env["HOME"] = installer_home(workdir)
    if env.get("TMPDIR") and not _shared_safely(env["TMPDIR"]):
        env["TMPDIR"] = workdir  # (the private work folder costs uv a quarter of a second)
    if environ.get("UV_LINK_MODE") in ("copy", "hardlink", "clone"):  # never `symlink`: env files
        env["UV_LINK_MODE"] = environ["UV_LINK_MODE"]  # would lead into root's own cache
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env["PWD"] = workdir
    return env


def installer_home(workdir: str) -> str:
    """HOME for an installer child: this user's own home from the password database, when
    nobody else can change it or a folder above it; else the private work folder."""
    import pwd

    from tljh_admin import permissions

    try:
        home = pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:
        return workdir
    if home and os.path.isdir(home) and not permissions.unsafe_ancestor(home, permissions.running_user()):
        return home
    return workdir


def _shared_safely(folder: str) -> bool:
    """Whether installers may make their private temporary folders in `folder`: it belongs
    to root (or this user), others cannot write it or it is sticky like /tmp (so they
    cannot rename what root makes there), and nobody else can swap a folder above it."""
    import stat

    from tljh_admin import permissions

    try:
        st = os.stat(folder)
    except OSError:
        return False
    if st.st_uid not in (0, os.geteuid()) or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
        return False
    parent = os.path.dirname(os.path.realpath(folder))
    return not permissions.unsafe_ancestor(parent, permissions.running_user())


@dataclass(frozen=True)
class RequirementSet:
    """Validated requirements: what to pass to the installer, and the project names."""

    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    names: frozenset[str]
    #: requirement-file lines with their `--hash` options ("name==1.0 --hash=sha256:..."),
    #: handed to the installer in a requirements file of tljh's own (pip takes hashes only there)
    hashed: tuple[str, ...] = ()
    #: the command line's pip options with those of the requirements files
    options: PipOptions = NO_OPTIONS


def _refuse(message: str, hint: str, code: ExitCode = ExitCode.USAGE) -> TljhError:
    return TljhError(message, hint=hint, exit_code=code)


def parse_requirement(text: str, origin: str = "argument"):
    """One requirement, validated with packaging: a name, extras, versions, a marker.
    Options, shell text, URLs and paths are refused."""
    from packaging.requirements import InvalidRequirement, Requirement

    stripped = text.strip()
    where = f" ({origin})" if origin != "argument" else ""
    if origin != "argument":
        try:
            return parse_requirement(stripped)
        except TljhError as error:
            # never echo a line of the file: `-r /etc/shadow` must not print its first line
            raise _refuse(f"{origin} is not a plain requirement", error.hint, error.exit_code) from None
    if stripped.lower().endswith(_ARCHIVE_SUFFIXES):
        raise _refuse(
            f"{stripped!r} is a file name, not a package name",
            "install released packages by name; put a private wheel on an index and use PIP_INDEX_URL",
        )
    if not stripped:
        raise _refuse(f"empty requirement{where}", "name a package, e.g. numpy or 'numpy>=2,<3'")
    if stripped.startswith("-"):
        if stripped.split("=")[0] in ("-e", "--editable"):
            raise _refuse(
                f"{stripped!r}{where}: an editable install puts a folder outside the environment on its"
                " sys.path, which root then imports from",
                "install a built package by name (put it on an index: PIP_INDEX_URL)",
                ExitCode.REFUSED,
            )
        if stripped.split("=")[0] in ESCAPING_OPTIONS:
            raise _refuse(
                f"{stripped!r}{where} would install outside the environment",
                "tljh installs only into the --target environment; drop the option",
                ExitCode.REFUSED,
            )
        raise _refuse(
            f"{stripped!r}{where} looks like an option, not a package",
            "put options before the package names; see tljh env install --help",
        )
    if _SHELL_TEXT.search(stripped):
        raise _refuse(
            f"{stripped!r}{where} contains shell syntax",
            "pass plain requirement specifiers such as 'numpy>=2'; nothing is run through a shell",
        )
    if "://" in stripped or stripped.startswith(("/", "./", "~")) or " @ " in stripped:
        raise _refuse(
            f"{stripped!r}{where} is a URL or a path, not a package name",
            "install released packages by name; put a private package on an index and use PIP_INDEX_URL",
        )
    try:
        requirement = Requirement(stripped)
    except InvalidRequirement as error:
        if ";" in stripped:
            raise _refuse(
                f"{stripped!r}{where} is not a valid requirement: only an environment marker may follow ';'",
                "quote requirements with markers, e.g. 'tomli; python_version < \"3.11\"'",
            ) from None
        raise _refuse(
            f"{stripped!r}{where} is not a valid requirement: {str(error).splitlines()[0]}",
            "use a PEP 508 specifier such as 'numpy>=2,<3'",
        ) from None
    if requirement.url:
        raise _refuse(
            f"{stripped!r}{where} is a direct URL reference",
            "install released packages by name; put a private package on an index and use PIP_INDEX_URL",
        )
    return requirement


# In a requirements file, what tljh passes on (a subset of pip's "Requirements File Format"):
# the options that say where packages come from, and per requirement its hashes.
_FILE_INDEX_OPTIONS = {"-i": "index-url", "--index-url": "index-url", "--extra-index-url": "extra-index-url"}
_HASH = re.compile(r"^(sha256|sha384|sha512):[0-9a-fA-F]+$")
# pip's comment rule: `#` at the start of a line or after whitespace
_COMMENT = re.compile(r"(^|\s+)#.*$")


@dataclass(frozen=True)
class FileLine:
    """One logical line of a requirements file: a requirement and its hashes, or options."""

    number: int
    requirement: str
    hashes: tuple[str, ...] = ()
    #: (pip option name without dashes, value): index-url, extra-index-url, pre
    options: tuple[tuple[str, str], ...] = ()


def logical_lines(text: str) -> list[tuple[int, str]]:
    """pip's reading of a file: `\\` continuations joined, comments dropped; numbered by the
    line each starts on."""
    joined: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if pending is None and raw.lstrip().startswith("#"):
            continue
        start, before = pending if pending else (number, "")
        if raw.endswith("\\") and not raw.endswith("\\\\"):
            pending = (start, f"{before} {raw[:-1]}")
            continue
        pending = None
        joined.append((start, f"{before} {raw}"))
    if pending:
        joined.append(pending)
    return [(n, line) for n, text in joined if (line := _COMMENT.sub("", text).strip())]


def _file_line(number: int, line: str, where: str) -> FileLine:
    """Validate one logical line. Never echoes the line: `-r /etc/shadow` must not print it."""
    if _SHELL_TEXT.search(line):
        raise _refuse(f"{where} contains shell syntax", "use plain requirement specifiers such as 'numpy>=2'")
    tokens = line.split()
    first_option = next((i for i, t in enumerate(tokens) if t.startswith("-")), len(tokens))
    requirement, rest = " ".join(tokens[:first_option]), tokens[first_option:]
    if requirement:
        parse_requirement(requirement, origin=where)
    hashes: list[str] = []
    options: list[tuple[str, str]] = []
    while rest:
        token = rest.pop(0)
        name, _, value = token.partition("=") if token.startswith("--") else (token[:2], "", token[2:])
        if name in ESCAPING_OPTIONS:
            raise Refused(
                f"{where} would install outside the environment",
                hint="tljh installs only into the --target environment; drop that option from the file",
            )
        takes_value = name == "--hash" or name in _FILE_INDEX_OPTIONS
        if takes_value and not value and rest:
            value = rest.pop(0)
        if name == "--hash" and requirement and _HASH.match(value):
            hashes.append(value)
        elif name in _FILE_INDEX_OPTIONS and not requirement and value:
            options.append((_FILE_INDEX_OPTIONS[name], validate_index_url(value, where)))
        elif name == "--pre" and not requirement and not value:
            options.append(("pre", ""))
        else:
            raise _refuse(
                f"{where} has an option tljh does not pass on from a requirements file",
                "files may use -i/--index-url, --extra-index-url, --pre and --hash=sha256:...; "
                "give other options on the command line",
            )
    return FileLine(number, requirement, tuple(hashes), tuple(options))


#: the most an input file (requirements, lock, environment.yml) may hold: a lock of
#: thousands of packages is well under 1 MiB; a sparse 100 GiB file must not fill memory
INPUT_FILE_LIMIT = 16 * 1024**2


def read_input_text(path: str, what: str, hint: str) -> str:
    """The UTF-8 text of an input file (a BOM is dropped, as pip drops it). Opened first and
    judged by descriptor: a regular file of at most INPUT_FILE_LIMIT bytes; never a FIFO
    (it would hang), a device or a folder, whatever the path pointed at a moment before."""
    import stat as stat_module

    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise _refuse(f"{what} {path} does not exist", hint) from None
    except OSError as error:
        raise _refuse(f"cannot read {what} {path}: {error.strerror}", "check its permissions") from None
    try:
        if not stat_module.S_ISREG(os.fstat(fd).st_mode):
            raise _refuse(f"{what} {path} is not a file", hint)
        chunks, size = [], 0
        while size <= INPUT_FILE_LIMIT and (chunk := os.read(fd, 1 << 20)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise _refuse(f"cannot read {what} {path}: {error.strerror}", "check the file") from None
    finally:
        os.close(fd)
    if size > INPUT_FILE_LIMIT:
        raise _refuse(f"{what} {path} is larger than {INPUT_FILE_LIMIT // 1024**2} MiB", hint)
    try:
        return b"".join(chunks).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _refuse(f"{what} {path} is not UTF-8 text", "check its encoding") from None


def read_requirement_lines(path: str, kind: str = "requirements") -> list[FileLine]:
    """The logical lines of a requirements file, each validated (see _file_line)."""
    text = read_input_text(path, f"{kind} file", "check the path; quote it if it has spaces")
    return [_file_line(number, line, f"{path}, line {number}") for number, line in logical_lines(text)]


def read_requirement_file(path: str, kind: str = "requirements") -> list[str]:
    """Plain requirement lines of a file (hub requirements, constraints); option lines are refused."""
    lines = []
    for line in read_requirement_lines(path, kind):
        if line.options or line.hashes:
            raise _refuse(
                f"{path}, line {line.number} is not a plain requirement",
                f"a {kind} file here takes requirement specifiers only",
            )
        lines.append(line.requirement)
    return lines


def validate_index_url(url: str, where: str = "--index-url") -> str:
    """An index URL: http(s) or file, nothing a shell or pip would read as more."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    plain = not _SHELL_TEXT.search(url) and not any(c.isspace() for c in url)
    located = parts.netloc or parts.scheme == "file"
    if not plain or parts.scheme not in ("http", "https", "file") or not located:
        raise UsageError(
            f"{where}: not an index URL",
            hint="give an http(s) URL (e.g. https://pypi.org/simple), or file:///path for an index on disk",
        )
    return url


def _merge_file_options(options: PipOptions, lines: Iterable[FileLine], path: str) -> PipOptions:
    """The command line's options plus a file's; two different index URLs are refused."""
    index_url, extra, pre = options.index_url, list(options.extra_index_urls), options.pre
    for line in lines:
        for name, value in line.options:
            if name == "index-url" and index_url not in (None, value):
                raise UsageError(
                    f"{path}, line {line.number} names another --index-url than the command line or file",
                    hint="keep one --index-url; add other indexes with --extra-index-url",
                )
            if name == "index-url":
                index_url = value
            elif name == "extra-index-url" and value not in extra:
                extra.append(value)
            elif name == "pre":
                pre = True
    return replace(options, index_url=index_url, extra_index_urls=tuple(extra), pre=pre)


def validate_requirements(
    packages: Iterable[str],
    requirement_files: Iterable[str],
    constraint_files: Iterable[str],
    options: PipOptions = NO_OPTIONS,
) -> RequirementSet:
    """Rule 3: every package argument and requirement-file line is a plain requirement (with
    hashes), and every option in a file one that only says where packages come from."""
    if options.index_url:
        validate_index_url(options.index_url)
    for url in options.extra_index_urls:
        validate_index_url(url, "--extra-index-url")
    requirements = [str(parse_requirement(p)) for p in packages]
    hashed: list[str] = []
    names = {canonical_name(parse_requirement(r).name) for r in requirements}
    for path in requirement_files:
        lines = read_requirement_lines(path)
        wanted = [line for line in lines if line.requirement]
        if not wanted:
            raise _refuse(f"requirements file {path} lists no requirements", "add requirements or drop -r")
        options = _merge_file_options(options, lines, path)
        for line in wanted:
            names.add(canonical_name(parse_requirement(line.requirement).name))
            if line.hashes:
                hashed.append(" ".join([line.requirement, *(f"--hash={h}" for h in line.hashes)]))
            else:
                requirements.append(line.requirement)
    constraints: list[str] = []
    for path in constraint_files:
        constraints.extend(read_requirement_file(path, kind="constraints"))
    if not names:
        raise _refuse("nothing to install", "name packages, or pass -r requirements.txt")
    return RequirementSet(tuple(requirements), tuple(constraints), frozenset(names), tuple(hashed), options)


def validate_package_names(packages: Iterable[str]) -> frozenset[str]:
    """For uninstall: plain project names only."""
    names = []
    for package in packages:
        requirement = parse_requirement(package)
        if requirement.specifier or requirement.extras or requirement.marker:
            raise _refuse(f"{package!r}: uninstall takes project names only", f"use {requirement.name!r}")
        names.append(canonical_name(requirement.name))
    if not names:
        raise _refuse("nothing to uninstall", "name the packages to remove")
    return frozenset(names)


def require_runnable(env: Environment) -> None:
    """Rule 1: the change runs the env's own interpreter, so that interpreter must work."""
    if env.status != "ok":
        raise _refuse(
            f"the {env.name} environment is {env.status}: {env.reason}",
            "run `tljh doctor` to see how to repair it",
            ExitCode.REFUSED,
        )


def require_system_allowed(env: Environment, allow_system: bool, break_system_packages: bool) -> None:
    """Rule 6: the system interpreter belongs to the OS."""
    if env.name != SYSTEM:
        return
    if not allow_system:
        raise _refuse(
            "the system environment is refused: TLJH uses it only to bootstrap the hub",
            "use --target hub or --target user; pass --allow-system only if you really mean the OS python",
            ExitCode.REFUSED,
        )
    if env.externally_managed and not break_system_packages:
        raise _refuse(
            f"{env.interpreter.path} is externally managed (PEP 668): its packages belong to apt",
            "install the Debian/Ubuntu package instead (apt install python3-<name>), "
            "or add --break-system-packages if you accept the risk",
            ExitCode.REFUSED,
        )


def refuse_user_server_packages_in_hub(env: Environment, names: Iterable[str], force: bool) -> None:
    """Rule 5: no JupyterLab & co. in the hub env unless forced."""
    if env.name != HUB or force:
        return
    misplaced = sorted(set(names) & USER_SERVER_PACKAGES)
    if misplaced:
        raise _refuse(
            f"{', '.join(misplaced)} belong{'s' if len(misplaced) == 1 else ''} in the user environment, "
            "not the hub",
            "use --target user (or --force to put "
            f"{'it' if len(misplaced) == 1 else 'them'} in the hub anyway)",
            ExitCode.REFUSED,
        )


def refuse_direct_jupyterhub_change(env: Environment, names: Iterable[str]) -> None:
    """Rule 4: the user env's jupyterhub follows the hub; it is changed only by an upgrade."""
    if env.name == USER and "jupyterhub" in set(names):
        raise _refuse(
            "jupyterhub in the user environment follows the hub's version",
            "run `tljh upgrade` to move both together",
            ExitCode.REFUSED,
        )


def jupyterhub_pin(hub: Environment) -> str:
    """Rule 4: the constraint every user-env change runs under."""
    versions = sorted({d.version for d in hub.distributions if canonical_name(d.name) == "jupyterhub"})
    if hub.status != "ok" or len(versions) != 1:
        found = "no jupyterhub" if not versions else f"jupyterhub {', '.join(versions)}"
        raise _refuse(
            f"cannot pin the user environment's jupyterhub: the hub environment has {found}"
            + (f" and is {hub.status}" if hub.status != "ok" else ""),
            "repair the hub first (tljh doctor)",
            ExitCode.REFUSED,
        )
    return f"jupyterhub=={versions[0]}"


def require_write_access(paths: Iterable[str]) -> None:
    """Rule 7: refuse before anything runs when this user cannot write where the change writes."""
    for path in paths:
        refusal = write_refusal(path)
        if refusal is not None:
            raise refusal


def write_refusal(path: str) -> TljhError | None:
    """Why this user cannot write `path` (or the nearest folder above it that exists), or
    None when it can: what a change would be refused with (doctor reports it beforehand)."""
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    return None if os.access(probe, os.W_OK | os.X_OK) else _unwritable(probe)


def _unwritable(path: str) -> TljhError:
    """Why `path` cannot be written: sudo is the answer only for a user who is not root."""
    import shlex

    if os.statvfs(path).f_flag & os.ST_RDONLY:
        return _refuse(
            f"{path} is on a file system mounted read-only (after disk errors, the kernel does this)",
            "check the disk (dmesg), then remount it read-write",
            ExitCode.REFUSED,
        )
    if os.geteuid() == 0:
        return _refuse(
            f"{path} cannot be written, even by root (an immutable attribute?)",
            f"lsattr -d {shlex.quote(path)} shows it; chattr -i removes it, if nobody set it on purpose",
            ExitCode.REFUSED,
        )
    return _refuse(
        f"this user cannot write to {path}",
        "run with sudo (TLJH's environments belong to root)",
        ExitCode.PERMISSION_DENIED,
    )


# What a user's server needs to start (jupyterhub-singleuser and the server it runs) and
# what the hub needs to run: an uninstall that breaks one of these is refused unless forced.
SPAWN_NEEDS = {
    USER: frozenset(
        canonical_name(n)
        for n in ("jupyterhub", "jupyterlab", "notebook", "nbclassic", "jupyter_server", "ipykernel")
    ),
    HUB: frozenset({"jupyterhub", "the-littlest-jupyterhub"}),
}


def reverse_dependencies(env: Environment, removing: Iterable[str]) -> list[tuple[str, str]]:
    """Installed distributions (not removed themselves) whose Requires-Dist, for this
    environment's Python, names a package being removed: (name, requirement), by name."""
    from tljh_admin.envs.requirements import _only_for_extras, _parse, marker_environment, requires_of

    removing = {canonical_name(n) for n in removing}
    markers = marker_environment(env)
    found = []
    for dist in env.distributions:
        if canonical_name(dist.name) in removing:
            continue
        for text in requires_of(dist):
            if _only_for_extras(text):
                continue
            requirement = _parse(text)
            if requirement is None or canonical_name(requirement.name) not in removing:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate(markers):
                continue
            found.append((dist.name, str(requirement)))
            break
    return sorted(found, key=lambda item: canonical_name(item[0]))


def essential_packages(env: Environment) -> dict[str, str]:
    """{name: what removing it breaks} for what a PREFIX env cannot lose: jupyterhub (the hub
    and every spawn), pip (TLJH's installer and every tljh-admin change run the env's own
    pip, tljh/installer.py and tljh/conda.py), and in a conda env python, conda and mamba
    (TLJH installs the user env's conda packages with its mamba or conda)."""
    if env.name not in (HUB, USER):
        return {}
    essential = {
        "jupyterhub": f"removing jupyterhub from the {env.name} environment breaks TLJH",
        "pip": f"removing pip from the {env.name} environment breaks TLJH's installer and every later change",
    }
    if env.kind == "conda":
        for name in ("python", "conda", "mamba"):
            essential[name] = (
                f"removing {name} from the {env.name} environment breaks it: TLJH installs its packages"
                " with its own mamba or conda"
            )
    return essential


def refuse_removing_essentials(env: Environment, removed: Iterable[str], force: bool) -> None:
    """Refuse a plan that removes what the env cannot lose (essential_packages), unless forced."""
    essential = essential_packages(env)
    hit = sorted({canonical_name(n) for n in removed} & essential.keys())
    if hit and not force:
        more = f" (and {', '.join(hit[1:])})" if hit[1:] else ""
        raise _refuse(
            essential[hit[0]] + more, "pass --force if that is really what you want", ExitCode.REFUSED
        )


def refuse_breaking_spawns(env: Environment, breaks: list[tuple[str, str]], force: bool) -> None:
    """An uninstall must not break what the hub or users' servers need to start."""
    needed = SPAWN_NEEDS.get(env.name, frozenset())
    hit = [name for name, _ in breaks if canonical_name(name) in needed or "authenticator" in name.lower()]
    if hit and not force:
        raise _refuse(
            f"this would break {', '.join(hit)} in the {env.name} environment "
            "(they require what is removed); "
            + ("the hub" if env.name == HUB else "users' servers")
            + " could no longer start",
            "pass --force to remove it anyway",
            ExitCode.REFUSED,
        )


def refuse_moving_hub_jupyterhub(plan, requires: Mapping[str, tuple[str, ...]]) -> None:
    """Rule 4 from the hub's side: a hub install that moves the hub's jupyterhub would leave
    the user env's behind. Refused, not followed: moving both is what `tljh upgrade` does,
    with TLJH's own plan, and a change to one env that rewrites the other is a surprise."""
    # a hub without jupyterhub yet (being set up) has nothing to keep in step
    moved = [c for c in plan if canonical_name(c.name) == "jupyterhub" and c.before and c.before != c.after]
    if not moved:
        return
    change = moved[0]

    def names_jupyterhub(line: str) -> bool:
        return canonical_name(re.split(r"[\s;<>=!~\[(]", line, maxsplit=1)[0]) == "jupyterhub"

    needers = sorted(
        name for name, lines in requires.items() if name != "jupyterhub" and any(map(names_jupyterhub, lines))
    )
    why = f" (needed by {', '.join(needers)})" if needers else ""
    raise _refuse(
        f"this would move the hub's jupyterhub from {change.before or 'none'} "
        f"to {change.after or 'none'}{why}; "
        "the user environment's jupyterhub must stay the same version",
        "use `tljh upgrade` to move both together, or pin the hub's version (jupyterhub==X)",
        ExitCode.REFUSED,
    )
