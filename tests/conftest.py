"""Session fixtures built from real parts: real wheels, real venvs, a real CPython copy.

The expensive things (wheelhouse, the base PREFIX) are built once per session; each test
that changes anything gets its own copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import prefixes
from tests.support.cli import tljh_argv
from tests.support.wheels import build_wheelhouse

REPO = Path(__file__).resolve().parent.parent

# conda user env fixtures (built only by the tests that ask for them)
pytest_plugins = ["tests.support.conda_fixtures"]


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    wheelhouse = build_wheelhouse(tmp_path_factory.mktemp("wheelhouse"))
    pip_wheel = prefixes.newest_bundled_pip()
    if pip_wheel is not None:  # the real pip, so that `pip>=23.1.2` (TLJH's minimum) resolves offline
        shutil.copy2(pip_wheel, wheelhouse / pip_wheel.name)
    return wheelhouse


@pytest.fixture(scope="session")
def system_python() -> Path:
    return prefixes.find_system_python()


@pytest.fixture(scope="session")
def cpython_source() -> Path | None:
    return prefixes.find_standalone_cpython()


@pytest.fixture(scope="session")
def base_prefix(tmp_path_factory, wheelhouse, system_python, cpython_source) -> Path:
    # "with space" so that every test runs against a path with a space in it
    root = tmp_path_factory.mktemp("base") / "opt tljh"
    return prefixes.make_tljh_prefix(root, wheelhouse, system_python, cpython_source)


@pytest.fixture
def prefix(base_prefix, tmp_path) -> Path:
    """A private copy of the base PREFIX, free to change."""
    return prefixes.copy_prefix(base_prefix, tmp_path / "opt tljh")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self):
        import json

        return json.loads(self.stdout)


@pytest.fixture
def tljh(system_python):
    """Run the real `tljh` command in a subprocess, the way an admin or a script does."""

    def run(*args: str | os.PathLike[str], env: dict[str, str] | None = None, **kwargs) -> Result:
        full_env = prefixes.hermetic_env(NO_COLOR="1", TLJH_SYSTEM_PYTHON=str(system_python), COLUMNS="200")
        full_env.pop("TLJH_INSTALL_PREFIX", None)
        full_env.update(env or {})
        proc = subprocess.run(
            tljh_argv(*args),
            capture_output=True,
            text=True,
            env=full_env,
            **kwargs,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture(scope="session")
def open_tmp():
    """A temporary folder uid 65534 can enter (pytest's own is 0700)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="tljh-open-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


@pytest.fixture(scope="session")
def nobody_python(open_tmp, system_python):
    """An interpreter with tljh-admin that uid 65534 can run."""
    if os.geteuid() != 0:
        pytest.skip("dropping to uid 65534 needs root")
    return prefixes.world_runnable_tool(open_tmp / "tool", system_python)


NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
