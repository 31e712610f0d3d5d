"""`tljh doctor`: each fault made for real (real pip in real environments), then found by
the right check with its subject named; fixes; the JSON contract; exit codes."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.support import prefixes
from tests.support.cli import tljh_argv
from tests.support.listing import file_listing, listing_diff
from tljh_admin import doctor
from tljh_admin.doctor.model import ERROR, FAILED, IMPACTS, OK, WARNING, Check, Finding
from tljh_admin.envs import inspect_environment
from tljh_admin.envs.requirements import broken_requirements
from tljh_admin.errors import ExitCode
from tljh_admin.layout import resolve_layout


def site(env_root: Path) -> Path:
    (found,) = env_root.glob("lib/python3.*/site-packages")
    return found


def pip(env_root: Path, wheelhouse: Path, *args: str) -> None:
    prefixes.pip_install(env_root, wheelhouse, *args)


def run_doctor(tljh, prefix, *args, env=None, **kwargs):
    result = tljh("--prefix", prefix, "doctor", "--json", *args, env=env, **kwargs)
    doc = result.json()
    by_key = {(c["id"], c["env"]): c for c in doc["checks"]}
    return result, doc, by_key


def subjects(check: dict) -> list[str]:
    return [f["subject"] for f in check["findings"]]


@pytest.mark.floor
def test_healthy_prefix_has_no_failures(tljh, base_prefix):
    result, doc, _ = run_doctor(tljh, base_prefix)
    assert result.code == ExitCode.OK, result.stdout
    assert doc["summary"]["failed"] == doc["summary"]["error"] == 0
    assert result.stderr == ""


@pytest.mark.floor
def test_json_contract(tljh, base_prefix):
    _, doc, _ = run_doctor(tljh, base_prefix)
    assert set(doc) == {"schema", "version", "prefix", "checks", "summary", "fixes", "changed", "exit_code"}
    assert (doc["schema"], doc["version"]) == ("tljh-admin/doctor", 1)
    assert set(doc["summary"]) == {"ok", "skipped", "warning", "failed", "error"}
    for check in doc["checks"]:
        assert set(check) == {"id", "title", "env", "status", "findings"}
        for finding in check["findings"]:
            assert set(finding) == {"status", "message", "subject", "hint", "fixable", "impact"}
            assert finding["impact"] in IMPACTS if finding["status"] in (WARNING, FAILED) else True
    # no systemd here: reported as skipped, never as ok
    (systemd,) = [c for c in doc["checks"] if c["id"] == "systemd-units"]
    assert systemd["status"] == "skipped"


def test_user_jupyterhub_at_another_minor(tljh, prefix, wheelhouse):
    pip(prefix / "user", wheelhouse, "--no-deps", "jupyterhub==5.3.0")  # what `sudo -E pip install -U` does
    result, _, checks = run_doctor(tljh, prefix)
    check = checks[("jupyterhub-versions", "user")]
    assert check["status"] == FAILED and subjects(check) == ["jupyterhub"]
    assert "5.2.1" in check["findings"][0]["message"] and "5.3.0" in check["findings"][0]["message"]
    assert result.code == ExitCode.PROBLEMS_FOUND


def test_user_jupyterhub_at_another_patch_is_a_warning(tljh, prefix, wheelhouse):
    pip(prefix / "user", wheelhouse, "--no-deps", "jupyterhub==5.2.0")
    result, _, checks = run_doctor(tljh, prefix, "jupyterhub-versions")
    assert checks[("jupyterhub-versions", "user")]["status"] == "warning"
    assert result.code == ExitCode.OK
    strict = tljh("--prefix", prefix, "doctor", "--strict", "jupyterhub-versions")
    assert strict.code == ExitCode.PROBLEMS_FOUND


def test_jupyterlab_in_hub(tljh, prefix, wheelhouse):
    pip(prefix / "hub", wheelhouse, "jupyterlab")
    _, _, checks = run_doctor(tljh, prefix)
    check = checks[("misplaced-packages", "hub")]
    assert check["status"] == "warning"
    assert "jupyterlab" in subjects(check)


@pytest.mark.floor
def test_world_writable_file_and_folder_in_hub_then_fix(tljh, prefix):
    hub_site = site(prefix / "hub")
    target_file = hub_site / "jupyterhub" / "__init__.py"
    target_dir = hub_site / "oauthenticator"
    prefixes.own(target_file)  # a hard link to the shared base until now
    os.chmod(target_file, 0o666)
    os.chmod(target_dir, 0o777)
    _, _, checks = run_doctor(tljh, prefix)
    check = checks[("world-writable", "hub")]
    assert check["status"] == FAILED
    assert set(subjects(check)) == {str(target_file), str(target_dir)}
    assert "root" in check["findings"][0]["message"]

    before = file_listing(prefix)
    dry = tljh("--prefix", prefix, "doctor", "--fix", "--dry-run", "--json").json()
    assert {f["subject"] for f in dry["fixes"]} >= {str(target_file), str(target_dir)}
    assert not any(f["applied"] for f in dry["fixes"]) and dry["changed"] is False
    assert listing_diff(before, file_listing(prefix)) == []

    fixed = tljh("--prefix", prefix, "doctor", "--fix", "--json")
    assert fixed.code == ExitCode.OK, fixed.stdout
    assert fixed.json()["changed"] is True
    _, _, again = run_doctor(tljh, prefix)
    assert again[("world-writable", "hub")]["status"] == OK
    changed = {line.split()[1].rstrip(":") for line in listing_diff(before, file_listing(prefix))}
    relative = {os.path.relpath(p, prefix) for p in (target_file, target_dir)}
    # only the two fixed paths changed (and tljh-admin's own state folder, for its locks)
    assert {c for c in changed if not c.startswith("state")} == relative


def test_names_planted_where_others_write_never_pass_for_scan_records(tljh, prefix, tmp_path):
    # The fault doctor is there to report: others may write into the user env's
    # site-packages, a folder find walks from. A file named like a detail record of the
    # old scan output, naming a private file in the folder doctor runs from (dev and inode
    # are anyone's to read with stat), must neither reach that file through --fix nor
    # crash the checks that would report the folder.
    user_site = site(prefix / "user")
    os.chmod(user_site, 0o777)
    here = tmp_path / "admin's folder"
    here.mkdir()
    secret = here / "secret"
    secret.write_text("token")
    secret.chmod(0o600)
    st = secret.stat()
    (user_site / f"\x01600 0 0 f {st.st_dev} {st.st_ino} secret").write_text("")
    fixed = tljh("--prefix", prefix, "doctor", "--fix", "--json", cwd=here).json()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    applied = {f["subject"] for f in fixed["fixes"] if f["applied"]}
    assert str(user_site) in applied and not {str(secret), "secret"} & applied

    os.chmod(user_site, 0o777)
    (user_site / "\x01a b c d e f g").write_text("")
    _, _, checks = run_doctor(tljh, prefix)
    assert not [key for key, check in checks.items() if check["status"] == ERROR]
    assert str(user_site) in subjects(checks[("world-writable", "user")])


def test_a_world_writable_socket_is_fixed(tljh, prefix, monkeypatch):
    # a socket cannot be opened (ENXIO): --fix promised `chmod o-w`, then could not do it,
    # and every change stayed refused because of it
    import socket

    sock_path = site(prefix / "user") / "planted.sock"
    monkeypatch.chdir(sock_path.parent)  # AF_UNIX paths are limited to 108 bytes
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(sock_path.name)
    os.chmod(sock_path, 0o777)
    fixed = tljh("--prefix", prefix, "doctor", "--fix", "--json", "world-writable").json()
    (applied,) = [f for f in fixed["fixes"] if f["subject"] == str(sock_path)]
    assert applied["applied"] and not applied.get("error"), applied
    assert stat.S_IMODE(os.lstat(sock_path).st_mode) == 0o775


def test_hub_config_others_can_change(tljh, prefix, tmp_path):
    """The hub runs PREFIX/config/jupyterhub_config.d/*.py as root and reads config.yaml:
    a file there others may write or own, and a symlink there to a file others own or to
    one not there yet, are root-code failures, each named; the hint for a symlink removes
    the link, never chowns through it."""
    config = prefix / "config"
    extra = config / "jupyterhub_config.d"
    extra.mkdir(mode=0o700, parents=True)  # as tljh/installer.py's ensure_config_yaml makes them
    config.chmod(0o700)
    (config / "config.yaml").write_text("{}\n")
    (extra / "course.py").write_text("c.Spawner.environment = {}\n")
    _, _, checks = run_doctor(tljh, prefix, "hub-config")
    assert checks[("hub-config", "hub")]["status"] == OK

    os.chmod(config / "config.yaml", 0o666)
    os.chown(extra / "course.py", 65534, 65534)
    elsewhere = tmp_path / "elsewhere.py"
    elsewhere.write_text("")
    os.chown(elsewhere, 65534, 65534)
    (extra / "linked.py").symlink_to(elsewhere)
    (extra / "later.py").symlink_to(tmp_path / "not-yet.py")
    result, _, checks = run_doctor(tljh, prefix, "hub-config")
    assert result.code == ExitCode.PROBLEMS_FOUND
    found = {f["subject"]: f for f in checks[("hub-config", "hub")]["findings"]}
    assert set(found) == {
        str(config / "config.yaml"),
        *(str(extra / n) for n in ("course.py", "linked.py", "later.py")),
    }
    assert {(f["status"], f["impact"]) for f in found.values()} == {(FAILED, "root-code")}
    assert "world-writable" in found[str(config / "config.yaml")]["message"]
    assert "uid 65534 owns it" in found[str(extra / "course.py")]["message"]
    assert f"leads to {elsewhere}" in found[str(extra / "linked.py")]["message"]
    assert "does not exist" in found[str(extra / "later.py")]["message"]
    assert found[str(extra / "linked.py")]["hint"].startswith("sudo rm ")


def test_missing_dependency_in_user(tljh, prefix, wheelhouse):
    pip(prefix / "user", wheelhouse, "--no-deps", "needs-missing")
    _, _, checks = run_doctor(tljh, prefix)
    check = checks[("broken-requirements", "user")]
    assert check["status"] == FAILED
    assert subjects(check) == ["needs-missing 1.0.0"]
    assert "not-in-wheelhouse" in check["findings"][0]["message"]


def _pip_check_pairs(env_root: Path) -> set[tuple[str, str]]:
    proc = subprocess.run(
        [env_root / "bin" / "python3", "-m", "pip", "check"],
        capture_output=True,
        text=True,
        env=prefixes.hermetic_env(),
    )
    pairs = set()
    for line in proc.stdout.splitlines():
        words = line.split()
        if "requires" in words:  # "X 1.0 requires Y, which is not installed."
            pairs.add(
                (
                    canonicalize_name(words[0]),
                    canonicalize_name(words[words.index("requires") + 1].rstrip(",")),
                )
            )
        elif "has" in words and "requirement" in words:  # "X 1.0 has requirement Y>=2, but you have Y 1.0."
            req = words[words.index("requirement") + 1].rstrip(",")
            pairs.add(
                (
                    canonicalize_name(words[0]),
                    canonicalize_name(req.split(">")[0].split("<")[0].split("=")[0]),
                )
            )
    return pairs


def test_broken_requirements_equal_pip_check(prefix, wheelhouse, system_python):
    # break both envs for real: missing, conflicting, and a marker that only applies to the
    # user env's Python (tomli for Python < 3.11)
    pip(prefix / "user", wheelhouse, "--no-deps", "needs-missing", "oauthenticator==17.1.0")
    subprocess.run(
        [prefix / "user" / "bin" / "python3", "-m", "pip", "uninstall", "-y", "traitlets", "jupyter-server"],
        check=True,
        capture_output=True,
        env=prefixes.hermetic_env(),
    )
    pip(prefix / "hub", wheelhouse, "--no-deps", "jupyterlab")  # needs jupyter-server, tomli on 3.10
    pip(prefix / "hub", wheelhouse, "--no-deps", "jupyterhub==4.1.6")  # oauthenticator needs >=5
    layout = resolve_layout(prefix, system_python)
    for name in ("hub", "user"):
        env = inspect_environment(name, layout)
        ours = {(canonicalize_name(b.dist.name), b.required) for b in broken_requirements(env)}
        assert ours == _pip_check_pairs(prefix / name), name
        assert ours  # each env really is broken


@pytest.mark.floor
def test_leftover_then_fix(tljh, prefix):
    user_site = site(prefix / "user")
    leftover = user_site / "~umpy-1.26.4.dist-info"
    shutil.copytree(user_site / "numpy-1.26.4.dist-info", leftover)  # a copy, as pip's rename leaves it
    _, _, checks = run_doctor(tljh, prefix)
    check = checks[("leftovers", "user")]
    assert check["status"] == "warning" and subjects(check) == [str(leftover)]
    assert check["findings"][0]["fixable"]
    tljh("--prefix", prefix, "doctor", "--fix", "leftovers")
    assert not leftover.exists()
    assert (user_site / "numpy-1.26.4.dist-info").exists()


def test_duplicate_dist_infos_then_fix(tljh, prefix, wheelhouse, system_python):
    pip(prefix / "user", wheelhouse, "--no-deps", "--ignore-installed", "numpy==2.1.0")
    user_site = site(prefix / "user")
    _, _, checks = run_doctor(tljh, prefix)
    check = checks[("duplicate-dist-info", "user")]
    assert check["status"] == FAILED
    assert str(user_site / "numpy-1.26.4.dist-info") in check["findings"][0]["subject"]
    assert str(user_site / "numpy-2.1.0.dist-info") in check["findings"][0]["subject"]
    tljh("--prefix", prefix, "doctor", "--fix", "duplicate-dist-info")
    assert not (user_site / "numpy-1.26.4.dist-info").exists()  # stale: its files were replaced
    assert ("numpy", "2.1.0") in prefixes.pip_list(prefix / "user")
    _, _, again = run_doctor(tljh, prefix)
    assert again[("duplicate-dist-info", "user")]["status"] == OK


def test_duplicate_dist_infos_with_a_fifo_among_the_files(tljh, prefix, wheelhouse):
    # which duplicate is stale is told by hashing the files of each RECORD: a FIFO where a
    # file was (someone who may write into the package's folder) hung doctor in open()
    pip(prefix / "user", wheelhouse, "--no-deps", "--ignore-installed", "numpy==2.1.0")
    init = site(prefix / "user") / "numpy" / "__init__.py"
    init.unlink()
    os.mkfifo(init)
    _, _, checks = run_doctor(tljh, prefix, timeout=30)
    assert checks[("duplicate-dist-info", "user")]["status"] == FAILED


def test_dangling_hub_interpreter(tljh, prefix):
    python3 = prefix / "hub" / "bin" / "python3"
    python3.unlink()
    python3.symlink_to("/usr/bin/python3.9-gone")
    result, _, checks = run_doctor(tljh, prefix)
    check = checks[("env-present", "hub")]
    assert check["status"] == FAILED
    message = check["findings"][0]["message"]
    assert "/usr/bin/python3.9-gone" in message and "pyvenv.cfg expects Python" in message
    assert check["findings"][0]["subject"] == str(python3)
    assert checks[("env-present", "user")]["status"] == OK  # the others are still checked
    assert checks[("broken-requirements", "user")]["status"] == OK
    assert result.code == ExitCode.PROBLEMS_FOUND


@pytest.mark.parametrize("how", ["dangling-symlink", "deleted"])
def test_a_venv_whose_packages_are_gone_is_broken_not_empty(tljh, prefix, how):
    # lib/pythonX.Y moved to another disk and its symlink left dangling, or removed: the
    # hub looked like an ok venv with 0 packages, and doctor sent the admin to `tljh upgrade`
    hub = prefix / "hub"
    (lib,) = (hub / "lib").glob("python3.*")
    if how == "dangling-symlink":
        lib.rename(lib.with_name(lib.name + ".elsewhere"))
        lib.symlink_to("/mnt/gone/" + lib.name)
    else:
        shutil.rmtree(lib / "site-packages")
    listed = {e["name"]: e for e in tljh("--prefix", prefix, "env", "list", "--json").json()["environments"]}
    assert listed["hub"]["status"] == "broken" and listed["user"]["status"] == "ok"
    reason = listed["hub"]["reason"]
    assert "its packages are gone" in reason, reason
    assert (f"lib/{lib.name} -> /mnt/gone/{lib.name}" in reason) == (how == "dangling-symlink"), reason
    result, _, checks = run_doctor(tljh, prefix)
    check = checks[("env-present", "hub")]
    assert check["status"] == FAILED and check["findings"][0]["impact"] == "hub-fails"
    assert check["findings"][0]["hint"].startswith("sudo tljh env rollback --target hub"), check
    assert checks[("jupyterhub-present", "hub")]["status"] == "skipped"  # not `tljh upgrade`
    assert result.code == ExitCode.PROBLEMS_FOUND


def test_hub_venv_base_gone_after_os_upgrade(tljh, prefix):
    cfg = prefix / "hub" / "pyvenv.cfg"
    cfg.write_text(cfg.read_text().replace("home = /usr/bin", "home = /usr/lib/python3.10-removed/bin"))
    _, _, checks = run_doctor(tljh, prefix, "hub-venv-base")
    check = checks[("hub-venv-base", "hub")]
    assert check["status"] == FAILED and "no longer there" in check["findings"][0]["message"]


def test_package_in_a_system_like_interpreter(tljh, base_prefix, cpython_source, wheelhouse, tmp_path):
    if cpython_source is None:
        pytest.skip("needs a CPython installation to stand in for the system python")
    system = prefixes.copy_cpython(cpython_source, tmp_path / "usr")
    pip(system, wheelhouse, "oauthenticator")  # `sudo pip install oauthenticator`, the classic mistake
    result = tljh("--prefix", base_prefix, "--system-python", system / "bin" / "python3", "doctor", "--json")
    checks = {(c["id"], c["env"]): c for c in result.json()["checks"]}
    check = checks[("stray-system-installs", "system")]
    assert check["status"] == "warning"
    assert set(subjects(check)) == {"oauthenticator", "jupyterhub", "traitlets"}


def test_root_user_site(tljh, base_prefix, wheelhouse, tmp_path):
    home = tmp_path / "root-home"
    home.mkdir()
    subprocess.run(
        [
            base_prefix / "user" / "bin" / "python3",
            "-m",
            "pip",
            "install",
            "--user",
            "--no-index",
            "--find-links",
            wheelhouse,
            "--no-deps",
            "oauthenticator",
        ],
        check=True,
        capture_output=True,
        env=prefixes.hermetic_env(HOME=str(home), PYTHONNOUSERSITE=""),
    )
    _, _, checks = run_doctor(tljh, base_prefix, "root-user-site", env={"HOME": str(home)})
    check = checks[("root-user-site", "host")]
    assert check["status"] == "warning"
    assert any("oauthenticator" in s for s in subjects(check))


@pytest.mark.floor
def test_unfinished_change_then_fix(tljh, prefix, wheelhouse, system_python):
    before = file_listing(prefix / "user")
    env = prefixes.hermetic_env(
        NO_COLOR="1", PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse), TLJH_SYSTEM_PYTHON=str(system_python)
    )
    install = ["env", "install", "-t", "user", "bigpkg", "--yes"]
    proc = subprocess.Popen(
        tljh_argv("--prefix", prefix, *install),
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bigpkg = site(prefix / "user") / "bigpkg"
    import time

    while not (bigpkg.is_dir() and len(os.listdir(bigpkg)) > 300):
        assert proc.poll() is None
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    result, _, checks = run_doctor(tljh, prefix)
    check = checks[("unfinished-change", "host")]
    # (an ok finding also says how much space the change's snapshot holds)
    assert check["status"] == FAILED and [f["subject"] for f in check["findings"] if f["status"] != OK] == [
        "change 1"
    ]
    assert result.code == ExitCode.PROBLEMS_FOUND
    fixed = tljh("--prefix", prefix, "doctor", "--fix", "unfinished-change")
    assert fixed.code == ExitCode.OK, fixed.stdout
    assert listing_diff(before, file_listing(prefix / "user")) == []


def test_list_ids_and_targets(tljh, base_prefix):
    listed = tljh("--prefix", base_prefix, "doctor", "--list", "--json").json()
    assert set(listed) == {"schema", "version", "checks"}
    assert all(set(c) == {"id", "title", "envs", "why", "fixable"} for c in listed["checks"])
    ids = [c["id"] for c in listed["checks"]]
    assert len(ids) == len(set(ids)) >= 16
    assert all(i == i.lower() and " " not in i for i in ids)
    _, doc, _ = run_doctor(tljh, base_prefix, "leftovers", "--target", "user")
    assert [(c["id"], c["env"]) for c in doc["checks"]] == [("leftovers", "user")]
    unknown = tljh("--prefix", base_prefix, "doctor", "no-such-check")
    assert unknown.code == ExitCode.USAGE and "--list" in unknown.stderr
    # `--list ID...` lists those, in the order asked; an unknown one is a usage error there too
    some = tljh("--prefix", base_prefix, "doctor", "--list", "--json", "hub-config", "leftovers").json()
    assert [c["id"] for c in some["checks"]] == ["hub-config", "leftovers"]
    table = tljh("--prefix", base_prefix, "doctor", "--list", "acl-writers")
    assert "acl-writers" in table.stdout and "leftovers" not in table.stdout
    wrong = tljh("--prefix", base_prefix, "doctor", "--list", "no-such-check")
    assert wrong.code == ExitCode.USAGE and wrong.stdout == "" and "no-such-check" in wrong.stderr


def test_human_output(tljh, prefix, wheelhouse):
    pip(prefix / "hub", wheelhouse, "jupyterlab")
    result = tljh("--prefix", prefix, "doctor")
    assert result.code == ExitCode.OK
    for text in ("hub", "user", "system", "host", "misplaced-packages", "jupyterlab", "->", "checks:"):
        assert text in result.stdout


def test_a_crashing_check_is_an_error_and_the_others_run(base_prefix, system_python):
    def explode(ctx, env):
        raise RuntimeError("boom")

    crashing = Check("explodes", "a check with a bug", ("hub",), explode)
    ctx = doctor.Context(resolve_layout(base_prefix, system_python))
    report = doctor.run_doctor(ctx, [crashing, *doctor.REGISTRY])
    first = report.results[0]
    assert first.status == ERROR and "boom" in first.findings[0].message
    assert len(report.results) > 20
    assert report.exit_code(strict=False) == ExitCode.PROBLEMS_FOUND


def test_systemd_units(base_prefix, system_python):
    # systemd cannot run in this sandbox: its answers are the one thing mocked here.
    layout = resolve_layout(base_prefix, system_python)
    states = {"jupyterhub": "active", "traefik": "failed"}
    ctx = doctor.Context(layout, systemd_running=True, is_active=states.__getitem__)
    report = doctor.run_doctor(ctx, [doctor.checks.BY_ID["systemd-units"]])
    (result,) = report.results
    assert result.status == FAILED
    assert [f.subject for f in result.findings] == ["traefik.service"]


def test_disk_space(base_prefix, system_python, mocker):
    # A nearly full disk cannot be made safely here: the free-space figure is mocked.
    real = os.statvfs(base_prefix)
    nearly_full = os.statvfs_result((*real[:4], 100 * 1024**2 // real.f_frsize, *real[5:]))
    mocker.patch("os.statvfs", return_value=nearly_full)  # f_bavail: 100 MiB free
    ctx = doctor.Context(resolve_layout(base_prefix, system_python))
    (result,) = doctor.run_doctor(ctx, [doctor.checks.BY_ID["disk-space"]]).results
    assert result.status == FAILED and isinstance(result.findings[0], Finding)


def test_where_even_root_cannot_write_doctor_says_what_a_change_would_be_refused_with(tljh, prefix):
    """A site folder with the immutable attribute (chattr +i), then the user env on a file
    system mounted read-only (a read-only bind mount here; the kernel remounts a file system
    read-only after disk errors): both real. Doctor names each where the change gate would
    refuse, with the gate's own words, and changes nothing; the healthy prefix has neither."""
    if os.geteuid() != 0:
        pytest.skip("only root can set the immutable attribute and mount")

    def disk_space():
        result = tljh("--prefix", prefix, "doctor", "disk-space", "--json")
        (check,) = result.json()["checks"]
        return result.code, check

    assert disk_space()[1]["status"] == "ok"
    site = next((prefix / "hub").glob("lib/python3.*/site-packages"))
    if subprocess.run(["chattr", "+i", site], capture_output=True).returncode:
        pytest.skip("this file system has no immutable attribute")
    try:
        before = file_listing(prefix)
        code, check = disk_space()
        install = tljh("--prefix", prefix, "env", "install", "-t", "hub", "tljh-plugin-demo", "--yes")
        after = file_listing(prefix)
    finally:
        subprocess.run(["chattr", "-i", site], check=True)
    assert code == ExitCode.PROBLEMS_FOUND and check["status"] == "failed", check
    (finding,) = check["findings"]
    assert finding["subject"] == str(site) and finding["impact"] == "changes-fail", finding
    assert "even by root" in finding["message"] and "chattr -i" in finding["hint"], finding
    assert install.code == ExitCode.REFUSED and finding["hint"] in install.stderr, install.stderr
    assert listing_diff(before, after) == []

    user = prefix / "user"
    mounted = subprocess.run(["mount", "--bind", user, user], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", user, user], check=True)
        code, check = disk_space()
    finally:
        subprocess.run(["umount", user], check=True)
    assert code == ExitCode.PROBLEMS_FOUND, check
    sites = [str(p) for p in user.glob("lib/python3.*/site-packages")]
    assert [f["subject"] for f in check["findings"]] == [str(user), *sites], check
    assert all("mounted read-only" in f["message"] and "remount" in f["hint"] for f in check["findings"])
    assert disk_space()[1]["status"] == "ok"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["world-writable", "--target", "system"], "world-writable looks at hub, user, not at system"),
        (["--dry-run"], "--dry-run applies to --fix"),
        (["--list", "--fix"], "--list lists the checks and runs none"),
        (["--lock-timeout", "nan", "--fix"], "a number of seconds, 0 or more"),
        (["--lock-timeout", "-5", "--json"], "a number of seconds, 0 or more"),
    ],
)
def test_option_combinations_that_would_do_nothing_are_refused(tljh, prefix, argv, words):
    # before: each ran nothing (or ignored an option) and exited 0
    before = file_listing(prefix)
    result = tljh("--prefix", prefix, "doctor", *argv)
    assert result.code == ExitCode.USAGE and result.stdout == "", result.stderr
    (line,) = result.stderr.splitlines()
    assert words in line and "Hint:" in line, line
    assert listing_diff(before, file_listing(prefix)) == []


def test_a_check_named_twice_runs_once(tljh, base_prefix):
    _, doc, _ = run_doctor(tljh, base_prefix, "leftovers", "leftovers", "--target", "user")
    assert [(c["id"], c["env"]) for c in doc["checks"]] == [("leftovers", "user")]


def test_a_file_name_with_control_characters_reaches_the_terminal_escaped(tljh, prefix):
    # a user who can write somewhere doctor reports names the file: an ESC sequence (or a
    # line break) in that name must not be sent to the admin's terminal as one
    (site,) = (prefix / "hub" / "lib").glob("python3*/site-packages")
    planted = site / "x\x1b]0;owned\x07\nfake.py"
    planted.write_text("")
    planted.chmod(0o666)
    result = tljh("--prefix", prefix, "doctor", "world-writable", "--target", "hub")
    assert result.code == ExitCode.PROBLEMS_FOUND
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout
    assert "x\\x1b]0;owned\\x07\\nfake.py: world-writable file" in result.stdout
