"""Inspection of a conda user env equals conda's own view (`conda list --json`).

The env is built by the conda stand-in (py-rattler solving and linking real conda packages
from a local channel; conda itself cannot be installed here) and pip, as TLJH builds it.
"""

from __future__ import annotations

from packaging.utils import canonicalize_name

from tests.support.conda_fixtures import conda, conda_list
from tests.support.prefixes import assert_broken_and_unchanged, stdlib_moved_away


def _name_versions(rows) -> set[tuple[str, str]]:
    return {(canonicalize_name(r["name"]), r["version"]) for r in rows}


def test_env_packages_equals_conda_list(conda_prefix, tljh):
    user = conda_prefix / "user"
    # a C library pulled in by a Python package: what conda list shows and pip list never does
    conda(user, "install", "--yes", "--prefix", str(user), "-c", "conda-forge", "gdal")
    oracle = conda_list(user)
    assert {"gdal", "libgdal", "proj", "python", "conda", "mamba", "jupyterhub"} <= {
        r["name"] for r in oracle
    }

    result = tljh("--prefix", conda_prefix, "env", "packages", "--target", "user", "--json")
    assert result.code == 0, result.stderr
    rows = result.json()["packages"]
    assert _name_versions(rows) == _name_versions(oracle)
    by_name = {r["name"]: r for r in rows}
    # conda packages carry their channel and build; pip's are marked as conda list marks them
    for name in ("libgdal", "proj", "python", "gdal", "numpy"):
        assert by_name[name]["installer"] == "conda"
        assert by_name[name]["channel"] == "conda-forge"
        assert by_name[name]["build"] == next(r["build_string"] for r in oracle if r["name"] == name)
    assert by_name["jupyterhub"]["installer"] == "pip"
    assert by_name["jupyterhub"]["channel"] == "pypi"
    assert by_name["numpy"]["metadata_dir"] == "numpy-1.26.4.dist-info"  # one row, not two
    assert by_name["libgdal"]["metadata_dir"] == "libgdal-3.9.2-h0_0.json"

    listed = tljh("--prefix", conda_prefix, "env", "list", "--json")
    assert listed.code == 0, listed.stderr
    (user_doc,) = [e for e in listed.json()["environments"] if e["name"] == "user"]
    assert user_doc["kind"] == "conda"
    assert user_doc["distribution_count"] == len(oracle)
    assert _name_versions(user_doc["packages"]) == _name_versions(oracle)


def test_a_conda_user_env_whose_standard_library_is_gone_is_broken(conda_prefix, tljh):
    """Before: `ok`, its conda records still counted, and a change then failed on "no pip"."""
    stdlib_moved_away(conda_prefix / "user")
    assert_broken_and_unchanged(tljh, conda_prefix, "standard library is gone")
