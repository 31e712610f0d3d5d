"""`tljh upgrade` against TLJH's own upgrade steps, run by hand on an identical copy, with
real pip resolving real wheels."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support import prefixes
from tests.support.listing import file_listing, listing_diff
from tests.test_install import everything, system_listing
from tljh_admin.errors import ExitCode
from tljh_admin.upgrade import restart_hub

HUB_REQUIREMENTS = "jupyterhub>=5.2.0,<6\noauthenticator>=17.1.0,<18\njupyterhub-idle-culler>=1.4.0,<2\n"


@pytest.fixture
def offline(wheelhouse):
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}


@pytest.fixture
def hub_requirements(tmp_path):
    path = tmp_path / "requirements-hub-env.txt"
    path.write_text(HUB_REQUIREMENTS)
    return path


def test_upgrade_equals_tljhs_own_steps(tljh, base_prefix, tmp_path, wheelhouse, offline, hub_requirements):
    ours = prefixes.copy_prefix(base_prefix, tmp_path / "ours")
    theirs = prefixes.copy_prefix(base_prefix, tmp_path / "theirs")
    user_before = prefixes.pip_list(ours / "user")
    system_before = system_listing(prefixes.find_system_python(), ours)

    result = tljh("--prefix", ours, "upgrade", "--yes", "--hub-requirements", hub_requirements, env=offline)
    assert result.code == 0, result.stderr
    assert "sudo systemctl restart jupyterhub" in result.stderr

    # TLJH's installer, by hand (tljh/installer.py): hub from its requirements, user only jupyterhub
    prefixes.pip_install(theirs / "hub", wheelhouse, "--upgrade", "-r", str(hub_requirements))
    prefixes.pip_install(theirs / "user", wheelhouse, "--upgrade", "jupyterhub>=5.2.0,<6")
    prefixes.pip_install(theirs / "user", wheelhouse, "pip>=23.1.2")  # TLJH raises pip to its minimum too

    assert prefixes.pip_list(ours / "hub") == prefixes.pip_list(theirs / "hub")
    # the user env's jupyterhub is pinned to the hub's exact new version rather than to the
    # hub's range; here both resolve to 5.3.0, so the sets are equal
    assert prefixes.pip_list(ours / "user") == prefixes.pip_list(theirs / "user")
    assert ("jupyterhub", "5.3.0") in prefixes.pip_list(ours / "user")
    assert ("jupyterhub", "5.3.0") in prefixes.pip_list(ours / "hub")
    # nothing else in the user env moved, and the system env is byte-identical
    user_after = prefixes.pip_list(ours / "user")
    moved = {"jupyterhub", "pip"}  # pip only when it was below TLJH's 23.1.2
    assert {p for p in user_after if p[0] not in moved} == {p for p in user_before if p[0] not in moved}
    assert listing_diff(system_before, system_listing(prefixes.find_system_python(), ours)) == []
    history = tljh("--prefix", ours, "env", "history", "--json").json()["changes"]
    assert [(h["target"], h["kind"], h["result"]) for h in history] == [("hub,user", "upgrade", "ok")]


def test_failing_user_step_restores_both(tljh, prefix, offline, hub_requirements, system_python):
    # a folder where jupyterhub 5.3.0 installs a data file: pip fails half way through the
    # user step, after the hub step has succeeded
    (prefix / "user" / "share" / "jupyterhub" / "static" / "marker.txt").mkdir(parents=True)
    before = everything(prefix, system_python)
    result = tljh("--prefix", prefix, "upgrade", "--yes", "--hub-requirements", hub_requirements, env=offline)
    assert result.code == ExitCode.CHANGE_FAILED, result.stderr
    first = result.stderr.splitlines()[0]
    assert "the user step" in first and "restored" in first
    assert listing_diff(before, everything(prefix, system_python)) == []
    (entry,) = tljh("--prefix", prefix, "env", "history", "--json").json()["changes"]
    assert entry["result"] == "failed" and entry["target"] == "hub,user"


@pytest.mark.floor
def test_dry_run_and_json_change_nothing(tljh, prefix, offline, hub_requirements, system_python):
    before = everything(prefix, system_python)
    dry = tljh(
        "--prefix", prefix, "upgrade", "--dry-run", "--hub-requirements", hub_requirements, env=offline
    )
    assert dry.code == 0, dry.stderr
    assert "jupyterhub" in dry.stdout and "5.3.0" in dry.stdout and "not touched" in dry.stdout
    plan = tljh("--prefix", prefix, "upgrade", "--json", "--hub-requirements", hub_requirements, env=offline)
    doc = plan.json()
    keys = {"schema", "version", "prefix", "requirements", "blockers", "hub_jupyterhub_after", "steps"}
    assert set(doc) == keys | {"changes", "notes", "changed"}
    assert doc["changed"] is True  # what a playbook's changed_when reads
    assert doc["hub_jupyterhub_after"] == "5.3.0" and doc["requirements"]["source"] == "file"
    changes = {(c["env"], c["package"].lower()): (c["current"], c["target"]) for c in doc["changes"]}
    assert changes[("hub", "jupyterhub")] == ("5.2.1", "5.3.0")
    assert changes[("user", "jupyterhub")] == ("5.2.1", "5.3.0")
    assert changes[("hub", "oauthenticator")] == ("17.1.0", "17.3.0")
    assert {env for env, _ in changes} == {"hub", "user"}
    assert listing_diff(before, everything(prefix, system_python)) == []


def test_not_a_terminal_without_yes_is_refused(tljh, prefix, offline, hub_requirements, system_python):
    before = everything(prefix, system_python)
    result = tljh("--prefix", prefix, "upgrade", "--hub-requirements", hub_requirements, env=offline)
    assert result.code == ExitCode.USAGE and "--yes" in result.stderr
    assert listing_diff(before, everything(prefix, system_python)) == []


def test_installed_tljh_is_the_authority(tljh, prefix, wheelhouse, offline, hub_requirements):
    prefixes.pip_install(prefix / "hub", wheelhouse, "--no-deps", "the-littlest-jupyterhub")
    doc = tljh(
        "--prefix", prefix, "upgrade", "--json", "--hub-requirements", hub_requirements, env=offline
    ).json()
    assert doc["requirements"]["source"] == "installed-tljh"
    assert doc["requirements"]["path"].endswith("tljh/requirements-hub-env.txt")
    assert "--hub-requirements" in doc["notes"][0]
    assert doc["hub_jupyterhub_after"] == "5.2.1"  # TLJH 2.0.0's own list says <5.3


def test_a_fifo_for_the_installed_tljhs_list_is_refused_not_passed_over(tljh, prefix, wheelhouse, offline):
    # a FIFO where TLJH's own list belongs was taken for no list at all: the plan silently
    # followed tljh-admin's copy instead of the installed TLJH's
    prefixes.pip_install(prefix / "hub", wheelhouse, "--no-deps", "the-littlest-jupyterhub")
    (listed,) = (prefix / "hub").glob("lib/python3.*/site-packages/tljh/requirements-hub-env.txt")
    listed.unlink()
    os.mkfifo(listed)
    before = file_listing(prefix)
    result = tljh("--prefix", prefix, "upgrade", "--json", env=offline, timeout=60)
    assert result.code == ExitCode.USAGE, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert str(listed) in line and "is not a file" in line and "Hint:" in line, line
    assert listing_diff(before, file_listing(prefix)) == []


def test_shipped_copy_when_nothing_else(tljh, prefix, offline):
    doc = tljh("--prefix", prefix, "upgrade", "--json", env=offline).json()
    assert doc["requirements"]["source"] == "shipped"
    assert doc["requirements"]["path"].endswith("data/requirements-hub-env.txt")


def test_broken_user_env_blocks_with_a_hint(tljh, prefix, offline, hub_requirements, system_python):
    (prefix / "user" / "bin" / "python3").unlink()
    before = everything(prefix, system_python)
    result = tljh("--prefix", prefix, "upgrade", "--yes", "--hub-requirements", hub_requirements, env=offline)
    assert result.code == ExitCode.REFUSED
    assert "cannot upgrade" in result.stdout and "tljh doctor" in result.stdout
    # and on stderr, one line, as every refusal; with --json too (before: stdout only)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("tljh: error: cannot upgrade: ") and "Hint:" in line, line
    as_json = tljh(
        "--prefix", prefix, "upgrade", "--json", "--hub-requirements", hub_requirements, env=offline
    )
    assert as_json.code == ExitCode.REFUSED and as_json.json()["blockers"], as_json.stdout
    (line,) = as_json.stderr.strip().splitlines()
    assert line.startswith("tljh: error: cannot upgrade: ") and "Hint:" in line, line
    assert listing_diff(before, everything(prefix, system_python)) == []


def test_restart_uses_systemctl_where_systemd_runs():
    # systemd cannot run in this sandbox; its command runner is the one thing faked here.
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    assert restart_hub(True, run=fake_run) == "restarted jupyterhub"
    from tljh_admin.layout import systemctl

    assert calls == [[systemctl(), "restart", "jupyterhub"]]
    assert systemctl().startswith("/")  # by absolute path, never PATH's
    assert "yourself" in restart_hub(False, run=fake_run)
    assert len(calls) == 1


def test_user_env_files_change_only_for_jupyterhub(tljh, prefix, offline, hub_requirements):
    before = file_listing(prefix / "user")
    assert (
        tljh("--prefix", prefix, "upgrade", "--yes", "--hub-requirements", hub_requirements, env=offline).code
        == 0
    )
    changed = [line[2:].split(": ")[0] for line in listing_diff(before, file_listing(prefix / "user"))]
    (site,) = {p.split("site-packages")[0] + "site-packages" for p in changed if "site-packages" in p}
    inside = {p[len(site) + 1 :].split("/")[0] for p in changed if p.startswith(site + "/")}
    outside = {p for p in changed if not p.startswith(site)}
    assert inside == {"jupyterhub", "jupyterhub-5.2.1.dist-info", "jupyterhub-5.3.0.dist-info"}
    # jupyterhub's data files, and the folders that hold what changed
    assert all(
        p == site or p.startswith("share") or p in ("lib", "lib/" + site.split("/")[1]) for p in outside
    ), outside


def test_rolling_back_one_env_of_an_upgrade_takes_the_other_along(
    tljh, prefix, offline, hub_requirements, system_python
):
    # `tljh upgrade` moved jupyterhub in hub and user together; rolling back only the user env
    # would leave the user's jupyterhub behind the hub's (rule 4): both go back, in one change
    numpy = tljh("--prefix", prefix, "env", "install", "-t", "user", "numpy==2.1.0", "--yes", env=offline)
    assert numpy.code == 0, numpy.stderr
    before = everything(prefix, system_python)
    result = tljh("--prefix", prefix, "upgrade", "--yes", "--hub-requirements", hub_requirements, env=offline)
    assert result.code == 0, result.stderr
    first, upgrade = tljh("--prefix", prefix, "env", "history", "--json").json()["changes"]

    # back past the upgrade to before a user-only change: the hub could not follow; refused
    listing = everything(prefix, system_python)
    past = tljh("--prefix", prefix, "env", "rollback", "-t", "user", "--to", str(first["id"]), "--yes")
    assert past.code == ExitCode.REFUSED, past.stderr
    assert "jupyterhub" in past.stderr and f"--to {upgrade['id']}" in past.stderr
    assert listing_diff(listing, everything(prefix, system_python)) == []

    # a later change to the hub would be undone by taking the hub back: it must be acknowledged
    culler = tljh(
        "--prefix", prefix, "env", "install", "-t", "hub", "jupyterhub-tmpauthenticator", "--yes", env=offline
    )
    assert culler.code == 0, culler.stderr
    plan = tljh("--prefix", prefix, "env", "rollback", "--target", "user", "--dry-run", "--json").json()
    assert [a["environment"] for a in plan["also"]] == ["hub"]
    assert {c["package"] for c in plan["also"][0]["changes"]} >= {"jupyterhub", "jupyterhub-tmpauthenticator"}
    listing = everything(prefix, system_python)
    refused = tljh("--prefix", prefix, "env", "rollback", "--target", "user", "--yes")
    assert refused.code == ExitCode.REFUSED and "later changes" in refused.stderr, refused.stderr
    assert listing_diff(listing, everything(prefix, system_python)) == []

    result = tljh("--prefix", prefix, "env", "rollback", "--target", "user", "--yes", "--accept-drift")
    assert result.code == 0, result.stderr
    assert "rolled back with it" in result.stderr
    assert listing_diff(before, everything(prefix, system_python)) == []
    last = tljh("--prefix", prefix, "env", "history", "--json").json()["changes"][-1]
    assert set(last["target"].split(",")) == {"hub", "user"} and last["result"] == "ok"


def test_hub_requirements_that_bring_jupyterlab_are_refused(tljh, prefix, offline, tmp_path, system_python):
    # rule 5 in an upgrade: `env install -t hub jupyterlab` is refused, and so is a hub
    # requirements file (or a plugin's additions) that brings it (before: planned and run)
    requirements = tmp_path / "hub-requirements.txt"
    requirements.write_text("jupyterhub>=5.2.0,<5.3\nlab-dragging-plugin\n")
    before = everything(prefix, system_python)
    for mode in ("--dry-run", "--yes"):
        result = tljh("--prefix", prefix, "upgrade", "--hub-requirements", requirements, mode, env=offline)
        assert result.code == ExitCode.REFUSED, result.stderr
        (line,) = result.stderr.splitlines()
        assert "jupyterlab" in line and "belong in the user environment" in line
    assert listing_diff(before, everything(prefix, system_python)) == []
