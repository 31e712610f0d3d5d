"""Session fixtures built from real parts: real wheels, real venvs, a real CPython copy.

The expensive things (wheelhouse, the base PREFIX) are built once per session; each test
that changes anything gets its own prefix, made of hard links to the base (see
tests/support/prefixes.copy_prefix) and removed when the test ends.
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
from tests.support.listing import file_listing, listing_diff
from tests.support.wheels import build_wheelhouse

REPO = Path(__file__).resolve().parent.parent

# conda user env fixtures (built only by the tests that ask for them)
pytest_plugins = ["tests.support.conda_fixtures"]


# scripts/test hands whole modules to two xdist workers in collection order
# (--dist loadfile --no-loadscope-reorder): the longest go first, so that none starts last
# while the other worker has nothing left to do.
LONGEST_FIRST = (
    "test_faults.py", "test_rebuild.py", "test_install.py", "test_doctor_integrity.py", "test_upgrade.py",
    "test_export_apply.py", "test_conda_upgrade.py", "test_ansible.py", "test_doctor.py", "test_export.py",
)  # fmt: skip


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a module kept


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


@pytest.fixture(scope="session")
def managed_system_python(tmp_path_factory, cpython_source) -> Path:
    """The system interpreter for tests that change the system env: a copied CPython with
    the EXTERNALLY-MANAGED marker Debian and Ubuntu ship (PEP 668), so that such a test
    never writes into this machine's /usr/bin/python3."""
    if cpython_source is None:
        pytest.skip("no CPython installation to copy")
    root = prefixes.copy_cpython(cpython_source, tmp_path_factory.mktemp("system") / "usr")
    (stdlib,) = root.glob("lib/python3.*/")
    # the wording of Debian's python3.11 package (/usr/lib/python3.11/EXTERNALLY-MANAGED)
    (stdlib / "EXTERNALLY-MANAGED").write_text(
        "[externally-managed]\nError=To install Python packages system-wide, try apt install python3-xyz\n"
    )
    return root / "bin" / "python3"


@pytest.fixture(scope="session")
def base_listing(base_prefix) -> dict:
    return file_listing(base_prefix)


def _check_base_unchanged(base_prefix: Path, base_listing: dict) -> None:
    changed = listing_diff(base_listing, file_listing(base_prefix))
    if changed:
        prefixes.put_back(base_prefix, base_listing)  # mode, owner, mtime: the next tests run on
        pytest.fail(
            "this test changed files of the shared base prefix in place; call "
            "tests.support.prefixes.own(path) before changing them:\n" + "\n".join(changed[:10])
        )


@pytest.fixture
def shared_prefix(base_prefix, base_listing):
    """The base PREFIX itself, for tests of refusals and read-only commands: nothing may
    change in it, and the test fails if anything did."""
    yield base_prefix
    _check_base_unchanged(base_prefix, base_listing)


@pytest.fixture
def prefix(base_prefix, base_listing, tmp_path):
    """A private PREFIX, free to change: hard links to the base's files. A test that changes
    an existing file in place (chmod, chown, rewriting it) calls `prefixes.own(path)` first;
    one that forgets fails here rather than corrupting the tests after it."""
    path = prefixes.copy_prefix(base_prefix, tmp_path / "opt tljh")
    yield path
    shutil.rmtree(path, ignore_errors=True)
    _check_base_unchanged(base_prefix, base_listing)


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


@pytest.fixture
def planted_find(tmp_path, monkeypatch) -> Path:
    """A `find` planted first in PATH (a folder early in it may be writable by someone
    else); returns the file it touches when run. What runs as root must never run it."""
    planted = tmp_path / "planted-bin"
    planted.mkdir()
    marker = tmp_path / "planted-find-ran"
    (planted / "find").write_text(f"#!/bin/sh\ntouch '{marker}'\nexit 0\n")
    (planted / "find").chmod(0o755)
    monkeypatch.setenv("PATH", f"{planted}:{os.environ['PATH']}")
    return marker


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
