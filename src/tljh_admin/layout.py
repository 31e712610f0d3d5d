"""Every path tljh-admin knows about, and the one place that knows /opt/tljh.

Tests point this at a temporary PREFIX; nothing else in the package builds a path
from a constant.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tljh_admin.errors import ExitCode, TljhError

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

HUB, USER, SYSTEM = "hub", "user", "system"
ENV_NAMES = (HUB, USER, SYSTEM)

# Where tljh-admin keeps its own journal, history and snapshots, inside TLJH's state folder
# (root-only, mode 0700, like the rest of tljh/config.py's STATE_DIR).
ADMIN_STATE_DIR = "tljh-admin"

PREFIX_HINT = f"pass --prefix or set {PREFIX_ENV_VAR}; TLJH installs to {DEFAULT_PREFIX}"


@dataclass(frozen=True)
class Layout:
    prefix: Path
    system_python: Path

    @property
    def hub(self) -> Path:
        return self.prefix / HUB_DIR

    @property
    def user(self) -> Path:
        return self.prefix / USER_DIR

    @property
    def state(self) -> Path:
        return self.prefix / STATE_DIR

    @property
    def admin_state(self) -> Path:
        return self.state / ADMIN_STATE_DIR

    def env_root(self, name: str) -> Path | None:
        """The folder of a PREFIX environment; None for the system interpreter."""
        if name == HUB:
            return self.hub
        if name == USER:
            return self.user
        if name == SYSTEM:
            return None
        raise unknown_target(name)


def unknown_target(name: str) -> TljhError:
    return TljhError(
        f"unknown environment {name!r}",
        hint=f"choose one of: {', '.join(ENV_NAMES)}",
        exit_code=ExitCode.USAGE,
    )


def interpreter_in(env_root: Path) -> Path:
    """The interpreter TLJH runs in an environment: PREFIX/<env>/bin/python3 (tljh/installer.py)."""
    return env_root / "bin" / "python3"


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
    raw_prefix = os.fspath(prefix) if prefix else env.get(PREFIX_ENV_VAR) or DEFAULT_PREFIX
    raw_system = (
        os.fspath(system_python) if system_python else env.get(SYSTEM_PYTHON_ENV_VAR) or DEFAULT_SYSTEM_PYTHON
    )
    prefix_path = Path(os.path.abspath(os.path.expanduser(raw_prefix)))
    _check_prefix(prefix_path)
    return Layout(prefix=prefix_path, system_python=Path(os.path.abspath(raw_system)))


def _check_prefix(path: Path) -> None:
    if not os.path.lexists(path):
        raise TljhError(f"TLJH prefix {path} does not exist", hint=PREFIX_HINT)
    if not path.exists():
        raise TljhError(
            f"TLJH prefix {path} is a dangling symlink to {os.readlink(path)}", hint=PREFIX_HINT
        )
    if not path.is_dir():
        raise TljhError(f"TLJH prefix {path} is not a folder", hint=PREFIX_HINT)
    try:
        with os.scandir(path):
            pass
    except PermissionError:
        raise TljhError(
            f"TLJH prefix {path} is not readable by this user",
            hint="run with sudo, or pass a --prefix you can read",
            exit_code=ExitCode.PERMISSION_DENIED,
        ) from None
