"""`tljh env apply`: a lock exported from the suite's user env, applied with real pip to a
fresh env of the same CPython, gives the same packages; applying it again changes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support import prefixes
from tests.support.listing import file_listing, listing_diff


@pytest.fixture
def offline(wheelhouse):
    """Index settings for the installer: only the session's wheels (rule 2 keeps them)."""
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse), "PIP_CONFIG_FILE": "/dev/null"}


@pytest.fixture
def fresh_prefix(base_prefix, tmp_path, system_python, cpython_source) -> Path:
    """The suite's prefix with a user env made anew from the same CPython: pip only."""
    prefix = prefixes.copy_prefix(base_prefix, tmp_path / "fresh tljh")
    shutil.rmtree(prefix / "user")
    if cpython_source is not None:
        prefixes.copy_cpython(cpython_source, prefix / "user")
    else:
        prefixes.make_venv(system_python, prefix / "user")
    return prefix


def _packages(tljh, prefix: Path) -> set[tuple[str, str, str]]:
    result = tljh("--prefix", prefix, "env", "packages", "--target", "user", "--json")
    assert result.code == 0, result.stderr
    return {(p["name"], p["version"], p["installer"]) for p in result.json()["packages"]}


def test_round_trip_and_second_apply_changes_nothing(tljh, base_prefix, fresh_prefix, offline, tmp_path):
    lock = tmp_path / "user.lock.json"
    exported = tljh("--prefix", base_prefix, "env", "export", "--target", "user", "--format", "lock")
    assert exported.code == 0, exported.stderr
    lock.write_text(exported.stdout)
    assert _packages(tljh, base_prefix) != _packages(tljh, fresh_prefix)

    apply = ("--prefix", fresh_prefix, "env", "apply", lock, "--target", "user", "--yes", "--json")
    dry = tljh(*apply[:-2], "--dry-run", "--json", env=offline)
    assert dry.code == 0, dry.stderr
    plan = dry.json()
    assert plan["schema"] == "tljh-admin/change" and plan["changed"] is True and plan["dry_run"] is True
    assert {c["package"].lower() for c in plan["changes"]} >= {"jupyterhub", "jupyterlab", "numpy"}

    first = tljh(*apply, env=offline)
    assert first.code == 0, first.stderr
    assert first.json()["changed"] is True and first.json()["result"] == "ok"
    assert _packages(tljh, fresh_prefix) == _packages(tljh, base_prefix)
    again = tljh("--prefix", fresh_prefix, "env", "export", "--target", "user", "--format", "lock")
    assert json.loads(again.stdout) == json.loads(exported.stdout)

    before = file_listing(fresh_prefix / "user", contents=True)
    second = tljh(*apply, env=offline)
    assert second.code == 0, second.stderr
    assert second.json()["changed"] is False and second.json()["changes"] == []
    assert listing_diff(before, file_listing(fresh_prefix / "user", contents=True)) == []
    history = tljh("--prefix", fresh_prefix, "env", "history", "--json").json()["changes"]
    assert [c["kind"] for c in history] == ["apply"]
