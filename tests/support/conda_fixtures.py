"""pytest fixtures for a TLJH PREFIX whose user env is a conda env, as on a real server.

Import them into a test module (`from tests.support.conda_fixtures import *`). The channel
and the base PREFIX are built once per session; each test gets a copy.

The user env is made the way a Miniforge installer and TLJH make it: the conda stand-in
(py-rattler behind conda's command line, see conda_standin.py) creates it from the local
channel (python, pip, conda, mamba, numpy as conda packages), then pip installs jupyterhub
and the user-server packages from the session's wheelhouse, as TLJH's installer does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import conda_channel, prefixes

# The base user env: conda at TLJH 2.0's pin, mamba below TLJH's minimum (so that an upgrade
# has a conda step), numpy from conda (the pip-over-conda case).
BASE_CONDA_SPECS = ("python", "pip", "conda=24.7.1", "mamba=0.15.3", "numpy=1.26.4")
BASE_PIP_REQUIREMENTS = ("jupyterhub==5.2.1", "jupyterlab", "notebook")


@pytest.fixture(scope="session")
def conda_channels(tmp_path_factory, wheelhouse, cpython_source) -> Path:
    """The folder holding the local `conda-forge` channel (the .condarc's custom_channels base)."""
    if cpython_source is None:
        pytest.skip("no CPython installation to package as conda's python")
    root = tmp_path_factory.mktemp("channels")
    conda_channel.build_test_channel(root, cpython_source, wheelhouse, prefixes.newest_bundled_pip())
    return root


def make_conda_user_env(user: Path, channels: Path, wheelhouse: Path | None) -> Path:
    user.mkdir(parents=True)
    (user / ".condarc").write_text(conda_channel.condarc_text(channels))
    prefixes.run(
        conda_channel.standin_command(
            "conda", user, "create", "--yes", "--prefix", str(user), "-c", "conda-forge", *BASE_CONDA_SPECS
        )
    )
    shutil.rmtree(user / "pkgs")  # `conda clean --all`, as Miniforge images ship
    if wheelhouse is not None:
        prefixes.pip_install(user, wheelhouse, *BASE_PIP_REQUIREMENTS)
    return user


@pytest.fixture(scope="session")
def conda_base_prefix(tmp_path_factory, base_prefix, conda_channels, wheelhouse) -> Path:
    """PREFIX with the usual hub venv and a conda user env."""
    root = tmp_path_factory.mktemp("conda-base") / "opt tljh"
    root.mkdir()
    shutil.copytree(base_prefix / "hub", root / "hub", symlinks=True)
    make_conda_user_env(root / "user", conda_channels, wheelhouse)
    (root / "state").mkdir(mode=0o700)
    prefixes.run(["chmod", "-R", "o-w", root])
    return root


@pytest.fixture
def conda_prefix(conda_base_prefix, tmp_path) -> Iterator[Path]:
    """A private copy of the conda PREFIX (hard links, see prefixes.copy_prefix), free to
    change; removed afterwards."""
    path = prefixes.copy_prefix(conda_base_prefix, tmp_path / "opt tljh")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def conda_list(user: Path) -> list[dict]:
    """The oracle: the stand-in's `conda list --json` on that env."""
    out = subprocess.run(
        [user / "bin" / "conda", "list", "--json", "--prefix", user],
        capture_output=True,
        text=True,
        check=True,
        env=prefixes.hermetic_env(),
    ).stdout
    return json.loads(out)


def conda(user: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the env's own conda stand-in (for setting a test's scene)."""
    return prefixes.run([user / "bin" / "conda", *args])
