"""Every path tljh-admin knows about, and the one place that knows /opt/tljh.

Tests point this at a temporary PREFIX; nothing else in the package builds a path
from a constant. Paths are strings: this module is on the `env list --json` and completion
path, where importing pathlib and dataclasses would cost more than the work itself.
"""

from __future__ import annotations

import os
from collections import namedtuple

from tljh_admin.errors import PermissionDenied, UsageError

# TLJH's own default and variable: tljh/config.py,
# INSTALL_PREFIX = os.environ.get("TLJH_INSTALL_PREFIX", "/opt/tljh").
DEFAULT_PREFIX = "/opt/tljh"
PREFIX_ENV_VAR = "TLJH_INSTALL_PREFIX"

# bootstrap/bootstrap.py runs under the apt `python3` and makes the hub venv with it.
DEFAULT_SYSTEM_PYTHON = "/usr/bin/python3"
SYSTEM_PYTHON_ENV_VAR = "TLJH_SYSTEM_PYTHON"

# tljh/config.py: HUB_ENV_PREFIX, USER_ENV_PREFIX and STATE_DIR under INSTALL_PREFIX.
HUB_DIR = "hub"
USER_DIR = "user"
STATE_DIR = "state"

# tljh/config.py: CONFIG_DIR = INSTALL_PREFIX/config, CONFIG_FILE = CONFIG_DIR/config.yaml;
# tljh/jupyterhub_config.py then loads CONFIG_DIR/jupyterhub_config.d/*.py, in the hub, as root.
CONFIG_DIR = "config"
CONFIG_FILE = "config.yaml"
EXTRA_CONFIG_DIR = "jupyterhub_config.d"

HUB, USER, SYSTEM = "hub", "user", "system"
ENV_NAMES = (HUB, USER, SYSTEM)

# Where tljh-admin keeps its own journal, history and snapshots, inside TLJH's state folder
# (root-only, mode 0700, like the rest of tljh/config.py's STATE_DIR).
ADMIN_STATE_DIR = "tljh-admin"

PREFIX_HINT = f"pass --prefix or set {PREFIX_ENV_VAR}; TLJH installs to {DEFAULT_PREFIX}"


class Layout(namedtuple("Layout", "prefix system_python")):
    """PREFIX and the system interpreter, both absolute; every other path derives from them."""

    __slots__ = ()

    @property
    def hub(self) -> str:
        return os.path.join(self.prefix, HUB_DIR)

    @property
    def user(self) -> str:
        return os.path.join(self.prefix, USER_DIR)

    @property
    def state(self) -> str:
        return os.path.join(self.prefix, STATE_DIR)

    @property
    def config(self) -> str:
        return os.path.join(self.prefix, CONFIG_DIR)

    @property
    def config_file(self) -> str:
        return os.path.join(self.prefix, CONFIG_DIR, CONFIG_FILE)

    @property
    def extra_config(self) -> str:
        return os.path.join(self.prefix, CONFIG_DIR, EXTRA_CONFIG_DIR)

    @property
    def admin_state(self) -> str:
        return os.path.join(self.state, ADMIN_STATE_DIR)

    def change_writes(self, env) -> list[str]:
        """Where a change of `env` (an envs.model.Environment) writes: the env's root and
        site folders (the system interpreter's first site folder only), and tljh-admin's
        state (PREFIX before the state folder exists)."""
        paths = [env.root, *env.site_dirs] if env.name != SYSTEM else list(env.site_dirs[:1])
        return [*paths, self.state if os.path.isdir(self.state) else self.prefix]

    def env_root(self, name: str) -> str | None:
        """The folder of a PREFIX environment; None for the system interpreter."""
        if name == HUB:
            return self.hub
        if name == USER:
            return self.user
        if name == SYSTEM:
            return None
        raise unknown_target(name)


#: where the system programs tljh-admin runs as root (findutils' find, util-linux's setpriv)
#: are looked up: never PATH, which whoever started tljh chose. /usr/bin first (merged /usr
#: on Debian 12 and Ubuntu), then the unmerged places.
SYSTEM_BIN_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")


def system_program(name: str) -> str | None:
    """The absolute path of a system program, or None when the system has none."""
    for folder in SYSTEM_BIN_DIRS:
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


def systemctl() -> str:
    """systemd's systemctl; its packaged place when the system folders hold none, so that
    the error names it (never PATH's)."""
    return system_program("systemctl") or "/usr/bin/systemctl"


def unknown_target(name: str) -> UsageError:
    return UsageError(f"unknown environment {name!r}", hint=f"choose one of: {', '.join(ENV_NAMES)}")


def interpreter_in(env_root: str) -> str:
    """The interpreter TLJH runs in an environment: PREFIX/<env>/bin/python3 (tljh/installer.py)."""
    return os.path.join(env_root, "bin", "python3")


def resolve_layout(
    prefix: str | os.PathLike[str] | None = None,
    system_python: str | os.PathLike[str] | None = None,
    environ: os._Environ[str] | dict[str, str] | None = None,
) -> Layout:
    """Pick PREFIX and the system interpreter: flag, then variable, then TLJH's default.

    The prefix must be a readable folder; a symlinked prefix is kept as given so that
    messages show the path the admin typed.
    """
    env = os.environ if environ is None else environ
    for flag, given in (("--prefix", prefix), ("--system-python", system_python)):
        if given is not None and not os.fspath(given):
            # never the default in its place: `--prefix "$UNSET_VAR"` must not act on /opt/tljh
            raise UsageError(f"{flag} is empty", hint=f"give {flag} a path, or leave it out")
    raw_prefix = os.fspath(prefix) if prefix else env.get(PREFIX_ENV_VAR) or DEFAULT_PREFIX
    raw_system = (
        os.fspath(system_python) if system_python else env.get(SYSTEM_PYTHON_ENV_VAR) or DEFAULT_SYSTEM_PYTHON
    )
    prefix_path = os.path.abspath(os.path.expanduser(raw_prefix))
    _check_prefix(prefix_path)
    return Layout(prefix=prefix_path, system_python=os.path.abspath(raw_system))


def _check_prefix(path: str) -> None:
    unreadable = PermissionDenied(
        f"TLJH prefix {path} is not readable by this user",
        hint="run with sudo, or pass a --prefix you can read",
    )
    try:
        is_dir = os.path.isdir(path) if os.stat(path) else False
    except PermissionError:  # a folder above it is closed to us
        raise unreadable from None
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):
            raise UsageError(
                f"TLJH prefix {path} is a dangling symlink to {os.readlink(path)}", hint=PREFIX_HINT
            ) from None
        raise UsageError(f"TLJH prefix {path} does not exist", hint=PREFIX_HINT) from None
    except OSError as error:  # a symlink loop (ELOOP), a name too long (ENAMETOOLONG), ...
        shown = path if len(path) <= 200 else path[:200] + "..."
        raise UsageError(f"TLJH prefix {shown} cannot be used: {error.strerror}", hint=PREFIX_HINT) from None
    if not is_dir:
        raise UsageError(f"TLJH prefix {path} is not a folder", hint=PREFIX_HINT)
    try:
        with os.scandir(path):
            pass
    except PermissionError:
        raise unreadable from None
