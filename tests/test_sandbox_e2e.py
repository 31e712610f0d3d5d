"""The README's sandbox, built from the package index: TLJH's real hub requirements in a
venv made by the system python, and the real jupyterhub + user extras in a conda user env
(conda packages built on the fly around a separate CPython, as scripts/build_sandbox.py says).

This is the one place the test suite needs the network. The sandbox is built once (about
1.5 minutes) into sandbox/opt-tljh, or TLJH_TEST_SANDBOX, and reused when present.
"""

from __future__ import annotations

import os

import pytest
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO
from tests.support import prefixes
from tests.support.conda_fixtures import conda_list

pytestmark = pytest.mark.network


@pytest.fixture(scope="session")
def real_sandbox():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_sandbox", REPO / "scripts" / "build_sandbox.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = prefixes.Path(os.environ.get("TLJH_TEST_SANDBOX", REPO / "sandbox" / "opt-tljh")).resolve()
    module.build(path, fresh=False)
    return path


@pytest.mark.parametrize("target", ["hub", "user"])
def test_real_sandbox_packages_equal_pip_list(tljh, real_sandbox, target):
    result = tljh("--prefix", real_sandbox, "env", "packages", "--target", target, "--json")
    assert result.code == 0, result.stderr
    ours = {(canonicalize_name(p["name"]), str(Version(p["version"]))) for p in result.json()["packages"]}
    if (real_sandbox / target / "conda-meta").is_dir():  # a conda env: the oracle is conda list
        oracle = {
            (canonicalize_name(r["name"]), str(Version(r["version"])))
            for r in conda_list(real_sandbox / target)
        }
    else:
        oracle = prefixes.pip_list(real_sandbox / target)
    assert ours == oracle
    assert result.json()["problems"] == []


def test_real_sandbox_is_tljh_shaped(tljh, real_sandbox):
    result = tljh("--prefix", real_sandbox, "env", "list", "--json")
    assert result.code == 0, result.stderr
    envs = {e["name"]: e for e in result.json()["environments"]}
    assert envs["hub"]["kind"] == "venv"

    def version_of(env, name):
        (version,) = [p["version"] for p in envs[env]["packages"] if p["name"].lower() == name]
        return version

    hub_jupyterhub = version_of("hub", "jupyterhub")
    assert Version(hub_jupyterhub) in SpecifierSet(">=5.2.0,<6")  # TLJH 2.x hub spec
    assert version_of("user", "jupyterhub") == hub_jupyterhub
    hub_names = {canonicalize_name(p["name"]) for p in envs["hub"]["packages"]}
    user_names = {canonicalize_name(p["name"]) for p in envs["user"]["packages"]}
    assert {"oauthenticator", "jupyterhub-idle-culler", "pycurl"} <= hub_names
    assert "jupyterlab" not in hub_names
    assert {"jupyterlab", "notebook", "nbgitpuller", "ipywidgets"} <= user_names


def test_real_sandbox_is_healthy(tljh, real_sandbox):
    result = tljh("--prefix", real_sandbox, "doctor", "--json")
    doc = result.json()
    assert result.code == 0, [c for c in doc["checks"] if c["status"] in ("failed", "error")]
    assert doc["summary"]["failed"] == doc["summary"]["error"] == 0
