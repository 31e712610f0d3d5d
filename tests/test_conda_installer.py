"""The conda installer and its guards, on a real conda user env.

conda and mamba cannot be installed here: the env's bin/mamba and bin/conda are the
stand-in (tests/support/conda_standin.py), py-rattler solving and linking real conda
packages from a local channel. pip is the real pip, on the session's wheels.
"""

from __future__ import annotations

import pytest

from tests.support.listing import file_listing, listing_diff
from tljh_admin import conda
from tljh_admin.envs import inspect_environment
from tljh_admin.errors import Refused, UsageError
from tljh_admin.installers import PipInstaller, plan_changes
from tljh_admin.layout import resolve_layout
from tljh_admin.policy import scrubbed_environment


def _user(prefix, system_python):
    return inspect_environment("user", resolve_layout(prefix, system_python))


def test_plan_install_run_and_history(conda_prefix, system_python, tmp_path):
    env = _user(conda_prefix, system_python)
    installer = conda.CondaInstaller(env, scrubbed_environment({"PATH": "/usr/bin:/bin"}), str(tmp_path))
    installer.check_usable()
    assert installer.name == "mamba"  # TLJH's order: mamba when the env has it
    assert installer.install_command(["gdal"], None, False) == [
        str(conda_prefix / "user" / "bin" / "mamba"),
        "install",
        "--yes",
        "--prefix",
        str(conda_prefix / "user"),
        "-c",
        "conda-forge",
        "gdal",
    ]
    before = file_listing(conda_prefix)
    resolution = installer.plan(["gdal"])
    assert file_listing(conda_prefix) == before, "a dry run wrote to the prefix"
    rows = conda.plan_changes(env, resolution, ["gdal"])
    assert [(r.name, r.before, r.after, r.action, r.channel, r.requested) for r in rows] == [
        ("gdal", None, "3.9.2", "install", "conda-forge", True),
        ("libgdal", None, "3.9.2", "install", "conda-forge", False),
        ("proj", None, "9.4.1", "install", "conda-forge", False),
    ]
    conda.refuse_conda_over_pip(env, resolution, force=False)  # nothing pip installed is touched

    revision = conda.current_revision(env.root)
    installer.run(installer.install_command(["gdal"], None, False), str(tmp_path / "log"), lambda line: None)
    after = _user(conda_prefix, system_python)
    assert {"gdal", "libgdal", "proj"} <= {r.name for r in after.conda_records}
    assert conda.current_revision(env.root) == revision + 1
    on_disk = {r.meta_file[: -len(".json")] for r in after.conda_records}
    assert conda.history_dists(conda.read_history(env.root)) == on_disk

    # and a remove plan that takes the dependent Python package with the C library
    removal = installer.plan(["libgdal"], remove=True)
    assert {p.name for p in removal.unlink} == {"libgdal", "gdal"}


def test_guards_both_ways_refuse_before_anything_runs(conda_prefix, system_python, wheelhouse, tmp_path):
    env = _user(conda_prefix, system_python)
    before = file_listing(conda_prefix)
    child = scrubbed_environment(
        {"PATH": "/usr/bin:/bin", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}
    )

    # pip over conda: numpy is a conda package here; pip would replace it
    pip = PipInstaller(env, child, str(tmp_path))
    pip_plan = plan_changes(env, pip.resolve(["numpy==2.1.0"], None, False), frozenset({"numpy"}))
    with pytest.raises(Refused) as refused:
        conda.refuse_pip_over_conda(env, pip_plan, force=False)
    assert "numpy" in refused.value.message and "--conda numpy" in refused.value.hint
    conda.refuse_pip_over_conda(env, pip_plan, force=True)

    # conda over pip: traitlets came with jupyterhub from pip; conda's traitlets would overwrite it
    installer = conda.CondaInstaller(env, child, str(tmp_path))
    resolution = installer.plan(["traitlets"])
    with pytest.raises(Refused) as refused:
        conda.refuse_conda_over_pip(env, resolution, force=False)
    assert "traitlets 5.14.3 (pip)" in refused.value.message and "--force" in refused.value.hint

    # the hub's jupyterhub stays: conda must not bring another one
    moved = installer.plan(["jupyterhub=5.3.0"])
    with pytest.raises(Refused, match=r"jupyterhub 5\.3\.0; the hub runs 5\.2\.1"):
        conda.refuse_jupyterhub_move(moved, "jupyterhub==5.2.1")
    assert conda.jupyterhub_pin_specs(env, "jupyterhub==5.2.1") == []  # pip owns it here

    assert file_listing(conda_prefix) == before, listing_diff(before, file_listing(conda_prefix))


@pytest.mark.parametrize("spec", ["--prefix=/tmp", "gdal; rm -rf /", "conda-forge::gdal", "gdal`id`", " "])
@pytest.mark.floor
def test_bad_specs_are_usage_errors(spec):
    with pytest.raises(UsageError):
        conda.validate_specs([spec])


@pytest.mark.parametrize("channel", ["--override-channels", "http://plain.example/ch", "a b", "x;id", ""])
@pytest.mark.floor
def test_bad_channels_are_usage_errors(channel):
    with pytest.raises(UsageError):
        conda.validate_channels([channel])


@pytest.mark.floor
def test_good_specs_and_channels_pass():
    specs = ["gdal", "gdal=3.9", "gdal>=3.9,<4", "gdal==3.9.2", "python-dateutil"]
    assert conda.validate_specs(specs) == tuple(specs)
    assert conda.validate_channels(["conda-forge", "bioconda", "https://repo.example/ch"]) == (
        "bioconda",
        "https://repo.example/ch",
    )


@pytest.mark.floor
def test_child_environment_drops_conda_settings():
    child = conda.conda_environment(
        {"PATH": "/usr/bin", "CONDARC": "/tmp/evil", "CONDA_PKGS_DIRS": "/tmp", "MAMBA_ROOT_PREFIX": "/x"}
    )
    assert child == {"PATH": "/usr/bin"}


def test_conda_owned_jupyterhub_is_pinned_in_conda_requests(conda_prefix, system_python, tmp_path):
    """When conda owns the user env's jupyterhub, a conda request carries the hub's version."""
    from tests.support import prefixes
    from tests.support.conda_fixtures import conda as run_conda

    user = conda_prefix / "user"
    prefixes.run([user / "bin" / "python3", "-m", "pip", "uninstall", "--yes", "jupyterhub", "traitlets"])
    run_conda(user, "install", "--yes", "--prefix", str(user), "-c", "conda-forge", "jupyterhub=5.2.1")
    env = _user(conda_prefix, system_python)
    assert conda.jupyterhub_pin_specs(env, "jupyterhub==5.2.1") == ["jupyterhub==5.2.1"]
    installer = conda.CondaInstaller(env, scrubbed_environment({"PATH": "/usr/bin:/bin"}), str(tmp_path))
    pinned = installer.plan(["gdal", "jupyterhub==5.2.1"], update=True)
    assert "jupyterhub" not in {p.name for p in (*pinned.link, *pinned.unlink)}
    conda.refuse_jupyterhub_move(pinned, "jupyterhub==5.2.1")
    # without the pin, updating jupyterhub takes the newest one
    free = installer.plan(["jupyterhub"], update=True)
    with pytest.raises(Refused, match=r"the hub runs 5\.2\.1"):
        conda.refuse_jupyterhub_move(free, "jupyterhub==5.2.1")
