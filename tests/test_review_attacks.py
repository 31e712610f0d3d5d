"""Defects found by an adversarial review (h17), each reproduced with real processes.

Marked xfail(strict=True) until fixed: when a fix lands the test passes, strict xfail turns
that into a failure, and the marker is removed with the fix.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from tests.conftest import NOBODY

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, setpriv, chown)")


def _lock(*packages: dict) -> dict:
    return {"schema": "tljh-admin/env-lock", "version": 1, "packages": list(packages)}


def _pip_package(name: str, version: str, source: dict) -> dict:
    return {"name": name, "version": version, "manager": "pip", "requested": True, "source": source}


@needs_root
def test_export_to_a_device_node_does_not_replace_it(tljh, shared_prefix, tmp_path):
    # `tljh env export ... /dev/null` (or /dev/full) as root replaced the device with a file
    device = tmp_path / "full"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    result = tljh("--prefix", shared_prefix, "env", "export", "--target", "user", "--format", "lock", device)
    assert stat.S_ISCHR(os.lstat(device).st_mode), result.stderr


@pytest.mark.parametrize("fmt", ["lock", "repo2docker"])
def test_export_to_an_unusable_place_is_one_line(tljh, shared_prefix, fmt):
    dest = "/proc/1/x" if fmt == "lock" else "/proc/tljh-export"
    result = tljh("--prefix", shared_prefix, "env", "export", "--target", "user", "--format", fmt, dest)
    assert result.code == 2 and "Traceback" not in result.stderr, result.stderr


def test_apply_lock_package_name_is_not_a_pip_option(tljh, prefix, tmp_path):
    # the lock's line is NAME==VERSION: a file named "secret==1" is what `-r.../secret` opens
    secret = tmp_path / "secret==1"
    secret.write_text("root-only-secret-line\n")
    secret.chmod(0o600)
    lock = tmp_path / "lock.json"
    lock.write_text(json.dumps(_lock(_pip_package(f"-r{tmp_path / 'secret'}", "1", {"type": "pypi"}))))
    result = tljh("--prefix", prefix, "env", "apply", lock, "--target", "user", "--dry-run")
    assert "root-only-secret-line" not in result.stderr + result.stdout
    assert result.code == 2, result.stderr  # a bad lock is a usage error, not a resolution failure


@needs_root
def test_apply_dry_run_runs_no_code_from_a_user_owned_folder(tljh, prefix, open_tmp, tmp_path):
    # A lock made on another server names a folder by path; here that path belongs to uid
    # 65534. An in-tree build backend with no build requirements keeps this offline.
    project = open_tmp / "review-evil-project"
    marker = open_tmp / "review-evil-ran-as-root"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "evilbackend"\nbackend-path = ["."]\n'
    )
    (project / "evilbackend.py").write_text(
        f"import os\nopen({str(marker)!r}, 'w').write(str(os.geteuid()))\n"
    )
    subprocess.run(["chown", "-R", "65534:65534", project], check=True)
    lock = tmp_path / "lock.json"
    lock.write_text(
        json.dumps(_lock(_pip_package("evil", "1.0", {"type": "directory", "path": str(project)})))
    )
    try:
        tljh("--prefix", prefix, "env", "apply", lock, "--target", "user", "--dry-run")
        assert not marker.exists(), f"the project's code ran as uid {marker.read_text()}"
    finally:
        subprocess.run(["rm", "-rf", project, marker], check=True)


@needs_root
def test_normalisation_never_chmods_outside_the_env(open_tmp, tmp_path, monkeypatch):
    """A folder in the env that others can write (an install under root's umask 000 makes
    them) lets uid 65534 swap a parent folder for a symlink between find's listing and the
    fixes: O_NOFOLLOW guards only the last component and the inode is not compared. The
    hook only fixes the moment of the swap that a looping attacker would hit by chance."""
    from tljh_admin import snapshot, transaction

    # under open_tmp: uid 65534 must reach the env (pytest's tmp_path is inside a 0700 folder)
    base = open_tmp / f"race-{tmp_path.name}"
    env, outside = base / "env", base / "etc"
    site = env / "site"
    site.mkdir(parents=True)
    outside.mkdir()
    for folder in (base, env):
        folder.chmod(0o755)
    site.chmod(0o777)
    victim = outside / "shadow"
    victim.write_text("secret\n")
    victim.chmod(0o600)
    attacker = [*NOBODY, "sh", "-c"]
    subprocess.run(
        [*attacker, f"mkdir {site}/sub && touch {site}/sub/shadow && chmod 600 {site}/sub/shadow"], check=True
    )
    listed = transaction._offending_paths

    def listed_then_swapped(*args, **kwargs):
        found = listed(*args, **kwargs)
        subprocess.run([*attacker, f"mv {site}/sub {site}/old && ln -s {outside} {site}/sub"], check=True)
        return found

    monkeypatch.setattr(transaction, "_offending_paths", listed_then_swapped)
    transaction.normalize_permissions(snapshot.install_areas(str(env), []), (0, 0))
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


@pytest.mark.parametrize("renames_done", [1, 2])
def test_rebuild_recovery_after_a_kill_inside_the_fallback_swap(tmp_path, renames_done):
    """Where RENAME_EXCHANGE is missing, rebuild._swap does root -> BUILD.old, BUILD -> root,
    BUILD.old -> BUILD. A kill -9 between those renames leaves the old env at BUILD.old,
    which put_old_env_back (the recovery) does not search: after 1 rename it deletes the
    new env and leaves no hub at all; after 2 it leaves the new env and says the old is back.
    The folders are made by hand in the state a kill leaves (the kill itself would need a
    file system without RENAME_EXCHANGE)."""
    from tljh_admin.layout import Layout
    from tljh_admin.rebuild import build_path, put_old_env_back

    prefix = tmp_path / "opt"
    hub = prefix / "hub"
    (hub / "bin").mkdir(parents=True)
    (hub / "bin" / "old-marker").write_text("old\n")
    layout = Layout(str(prefix), "/usr/bin/python3")
    build = build_path(layout, "hub", 7)
    os.makedirs(os.path.join(build, "bin"))
    old_inode = [os.lstat(hub).st_dev, os.lstat(hub).st_ino]
    journal = {"id": 7, "envs": {"hub": {}}, "rebuild": {"old_inode": old_inode, "swapping": True}}
    os.rename(hub, build + ".old")
    if renames_done == 2:
        os.rename(build, hub)
    put_old_env_back(layout, journal)
    assert (hub / "bin" / "old-marker").exists()


def test_z2jh_config_without_secrets_holds_no_nested_secret(tljh, prefix, tmp_path):
    config = prefix / "config"
    config.mkdir(exist_ok=True)
    (config / "config.yaml").write_text(
        "auth:\n  type: ldapauthenticator.LDAPAuthenticator\n  LDAPAuthenticator:\n"
        "    server_address: ldap.example.org\n    auth_state_extra: {bind_password: S3CRET-NESTED}\n"
    )
    dest = tmp_path / "z2jh.yaml"
    result = tljh("--prefix", prefix, "env", "export", "--target", "user", "--format", "z2jh-config", dest)
    assert result.code == 0, result.stderr
    # stderr says the nested key was "not carried to z2jh", yet the file carries it, world-readable
    assert "S3CRET-NESTED" not in dest.read_text()
