"""Inspection from files, checked against real pip in real environments."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support import prefixes
from tests.support.prefixes import assert_broken_and_unchanged, stdlib_moved_away
from tljh_admin.envs import inspect_environment
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.layout import resolve_layout

# the whole module is in the floor run (scripts/test)
pytestmark = pytest.mark.floor


def tool_packages(result) -> set[tuple[str, str]]:
    return {(canonicalize_name(p["name"]), str(Version(p["version"]))) for p in result.json()["packages"]}


def site_packages(env_root: Path) -> Path:
    (site,) = env_root.glob("lib/python3.*/site-packages")
    return site


@pytest.mark.parametrize("target", ["hub", "user"])
def test_packages_equal_pip_list(tljh, base_prefix, target):
    result = tljh("--prefix", base_prefix, "env", "packages", "--target", target, "--json")
    assert result.code == 0, result.stderr
    assert tool_packages(result) == prefixes.pip_list(base_prefix / target)
    assert result.json()["problems"] == []


def test_leftover_is_reported_not_counted(tljh, prefix, wheelhouse):
    user_site = site_packages(prefix / "user")
    # What pip's AdjacentTempDirectory leaves when it is killed while removing numpy: the
    # dist-info renamed with `~` for its first letter (a copy of the real one, as pip moves it).
    shutil.copytree(user_site / "numpy-1.26.4.dist-info", user_site / "~umpy-1.26.4.dist-info")

    result = tljh("--prefix", prefix, "env", "packages", "--target", "user", "--json")
    doc = result.json()
    names = [canonicalize_name(p["name"]) for p in doc["packages"]]
    assert names.count("numpy") == 1
    assert tool_packages(result) == prefixes.pip_list(prefix / "user")
    (leftover,) = [p for p in doc["problems"] if p["kind"] == "leftover"]
    assert leftover["project"] == "numpy"
    assert leftover["paths"] == [str(user_site / "~umpy-1.26.4.dist-info")]


def test_duplicate_dist_infos_are_both_reported(tljh, prefix, wheelhouse):
    # The real way this happens: pip told to ignore what is installed.
    prefixes.pip_install(prefix / "user", wheelhouse, "--no-deps", "--ignore-installed", "numpy==2.1.0")
    pip_says = prefixes.pip_list(prefix / "user")
    pip_numpy = {v for n, v in pip_says if n == "numpy"}
    assert len(pip_numpy) == 1  # pip shows only one of the two

    result = tljh("--prefix", prefix, "env", "packages", "--target", "user", "--json")
    doc = result.json()
    ours = tool_packages(result)
    assert {v for n, v in ours if n == "numpy"} == {"1.26.4", "2.1.0"}
    # everything else agrees with pip
    assert {p for p in ours if p[0] != "numpy"} == {p for p in pip_says if p[0] != "numpy"}
    (duplicate,) = [p for p in doc["problems"] if p["kind"] == "duplicate"]
    assert duplicate["project"] == "numpy"
    assert len(duplicate["paths"]) == 2
    # the tool also says which version's files an `import numpy` really gets
    imported = subprocess.run(
        [prefix / "user" / "bin" / "python3", "-c", "import numpy; print(numpy.__version__)"],
        capture_output=True,
        text=True,
        check=True,
        env=prefixes.hermetic_env(),
    ).stdout.strip()
    assert duplicate["detail"].endswith(f"the files on disk are {imported}'s")


def test_python_versions_read_from_files_match_the_interpreters(base_prefix, system_python):
    layout = resolve_layout(base_prefix, system_python)
    for name in ("hub", "user", "system"):
        env = inspect_environment(name, layout)
        real = subprocess.run(
            [env.interpreter.path, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # patch level when the files say it (pyvenv.cfg, patchlevel.h), else major.minor
        assert real == env.python_version or real.startswith(env.python_version + "."), name


def test_site_dirs_match_the_interpreters_own(base_prefix, system_python):
    layout = resolve_layout(base_prefix, system_python)
    for name in ("hub", "user"):
        env = inspect_environment(name, layout)
        real = json.loads(
            subprocess.run(
                [env.interpreter.path, "-c", "import site, json; print(json.dumps(site.getsitepackages()))"],
                capture_output=True,
                text=True,
                check=True,
                env=prefixes.hermetic_env(),
            ).stdout
        )
        existing = [os.path.realpath(p) for p in real if os.path.isdir(p)]
        assert [os.path.realpath(p) for p in env.site_dirs] == existing, name


def test_kinds(base_prefix, system_python, cpython_source):
    layout = resolve_layout(base_prefix, system_python)
    assert inspect_environment("hub", layout).kind == "venv"
    assert inspect_environment("hub", layout).venv_base[0] == str(system_python.parent)
    expected_user = "standalone" if cpython_source else "venv"
    assert inspect_environment("user", layout).kind == expected_user
    system = inspect_environment("system", layout)
    assert system.kind == "system"
    stdlib = Path(system.root) / "lib" / f"python{'.'.join(system.python_version.split('.')[:2])}"
    assert system.externally_managed == (stdlib / "EXTERNALLY-MANAGED").is_file()


def test_egg_info_distributions_are_listed(prefix, system_python):
    site = site_packages(prefix / "user")
    (site / "legacy_thing.egg-info").mkdir()
    (site / "legacy_thing.egg-info" / "PKG-INFO").write_text(
        "Metadata-Version: 1.1\nName: legacy-thing\nVersion: 0.3\n\n"
    )
    env = inspect_environment("user", resolve_layout(prefix, system_python))
    assert ("legacy-thing", "0.3") in {(d.name, d.version) for d in env.distributions}
    assert ("legacy-thing", "0.3") in prefixes.pip_list(prefix / "user")


@pytest.mark.parametrize(
    "name",
    ["Foo_Bar", "foo.bar", "FOO--bar", "jupyterhub-idle-culler", "zope.interface", "a__b..c", "PyYAML"],
)
def test_canonical_name_matches_packaging(name):
    assert canonical_name(name) == canonicalize_name(name)


def test_a_standalone_user_env_whose_standard_library_is_gone_is_broken(tljh, prefix, cpython_source):
    """Before: a standalone CPython user env whose lib/pythonX.Y was moved away was `ok`,
    and a change then failed on "no pip". (The conda case: test_conda_inspect.py.)"""
    if not cpython_source:
        pytest.skip("the user env is a venv without a CPython source on this machine")
    user = prefix / "user"
    stdlib_moved_away(user)
    # what the env's Python really does: stops, or (its build prefix still being there, as
    # on this machine) runs on another installation's standard library
    ran = subprocess.run(
        [user / "bin" / "python3", "-c", "import os; print(os.__file__)"], capture_output=True, text=True
    )
    assert ran.returncode != 0 or not ran.stdout.startswith(str(user)), ran
    assert_broken_and_unchanged(tljh, prefix, "standard library is gone")
