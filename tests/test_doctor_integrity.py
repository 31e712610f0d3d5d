"""`tljh doctor` checks what users actually run: each fault seeded with real commands (real
pip under `umask 077`, real chmod/chown, a real venv whose base CPython moved on, real
`.pth` files, scripts whose interpreter is gone, deleted package files), then found with
its severity and impact, and, where a fix exists, `--fix` removes exactly that finding.
The traps a healthy server has must stay green."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import NOBODY
from tests.support import prefixes
from tests.support.listing import file_listing, listing_diff
from tests.support.wheels import WheelSpec, build_wheel
from tljh_admin import doctor
from tljh_admin.doctor.model import FAILED, OK, SKIPPED
from tljh_admin.doctor.runtime import binary_version, script_interpreter
from tljh_admin.errors import ExitCode
from tljh_admin.layout import resolve_layout


def site(env_root: Path) -> Path:
    (found,) = env_root.glob("lib/python3.*/site-packages")
    return found


def run_doctor(tljh, prefix, *args):
    result = tljh("--prefix", prefix, "doctor", "--json", *args)
    doc = result.json()
    return result, doc, {(c["id"], c["env"]): c for c in doc["checks"]}


def problems(doc: dict) -> set[tuple[str, str, str, str]]:
    """(check, env, status, subject) of every finding that is not ok."""
    return {
        (c["id"], c["env"], f["status"], f["subject"])
        for c in doc["checks"]
        for f in c["findings"]
        if f["status"] not in (OK, SKIPPED)
    }


def deep_report(prefix: Path, system_python: Path, ids: list[str]):
    """--deep through the library: the same Context the command builds with --deep."""
    ctx = doctor.Context(resolve_layout(prefix, system_python), deep=True)
    report = doctor.run_doctor(ctx, doctor.select_checks(ids, deep=True))
    return {(r.check.id, r.env): r for r in report.results}


@pytest.fixture(scope="session")
def script_wheels(tmp_path_factory) -> Path:
    """Wheels with console scripts: one that stands in for jupyterhub-singleuser (it imports
    jupyterhub and prints its version, as the real one's --version does)."""
    wheelhouse = tmp_path_factory.mktemp("script-wheels")
    build_wheel(
        WheelSpec(
            "singleuser-stub",
            "1.0.0",
            files={
                "singleuser_stub/cli.py": (
                    "def main():\n    import jupyterhub\n\n    print(jupyterhub.__version__)\n"
                )
            },
            scripts=("jupyterhub-singleuser=singleuser_stub.cli:main", "stub-tool=singleuser_stub.cli:main"),
        ),
        wheelhouse,
    )
    return wheelhouse


# -- a healthy server, with every trap, is green -------------------------------------------------


@pytest.mark.floor
def test_healthy_prefix_with_the_traps_is_green(tljh, base_prefix, system_python):
    hub = base_prefix / "hub"
    # the traps, really there: setuptools' .pth runs an `import` line; a venv's bin/python*
    # are symlinks whose own mode is 777; Debian's python3 ships cryptography as a dist-info
    # and as a dpkg egg-info (when this machine's system python is Debian's)
    pth = site(hub) / "distutils-precedence.pth"
    assert pth.read_text().startswith("import ")
    links = [p for p in (hub / "bin").glob("python*") if p.is_symlink()]
    assert links and all(stat.S_IMODE(os.lstat(p).st_mode) == 0o777 for p in links)
    dist_packages = Path("/usr/lib/python3/dist-packages")
    debian_echo = list(dist_packages.glob("cryptography-*.dist-info")) + list(
        dist_packages.glob("cryptography*.egg-info")
    )

    result, doc, checks = run_doctor(tljh, base_prefix)
    assert result.code == ExitCode.OK, problems(doc)
    assert doc["summary"]["warning"] == doc["summary"]["failed"] == doc["summary"]["error"] == 0
    for key in [
        ("record-files", "hub"),
        ("record-files", "user"),
        ("record-files", "system"),
        ("hub-sys-path", "hub"),
        ("hub-venv-base", "hub"),
        ("script-shebangs", "hub"),
        ("script-shebangs", "user"),
        ("users-can-read", "user"),
        ("world-writable", "hub"),
    ]:
        assert checks[key]["status"] == OK, checks[key]
    if str(system_python) == "/usr/bin/python3" and len(debian_echo) == 2:
        assert checks[("duplicate-dist-info", "system")]["status"] == OK
    # the deep checks are not run (nor listed) without --deep
    assert not any(c["id"] in ("hub-imports", "singleuser-runs") for c in doc["checks"])


def test_relocated_scripts_differ_from_record_and_are_fine(tljh, prefix, base_prefix, system_python):
    # `prefix` is a copy of the base PREFIX whose scripts were rewritten to name the copy's
    # interpreters, as a relocation does: RECORD's hashes of them no longer match
    pip_script = prefix / "user" / "bin" / "pip"
    text = pip_script.read_text()
    assert str(prefix) in text and str(base_prefix) not in text
    result, doc, _ = run_doctor(tljh, prefix)
    assert result.code == ExitCode.OK, problems(doc)

    # (singleuser-runs fails here: nobody cannot reach pytest's 0700 tmp; see the nobody test)
    _, _, checks = run_doctor(tljh, prefix, "--deep")
    user = checks[("record-files", "user")]
    assert user["status"] == OK
    (scripts,) = [f for f in user["findings"] if "scripts" in f["message"]]
    assert "bin/pip" in scripts["message"] and "expected" in scripts["message"]
    assert checks[("hub-imports", "hub")]["status"] == OK  # --deep brings the spawning checks in
    assert ("singleuser-runs", "user") in checks

    # an edited module is another matter: named, and a warning
    module = prefixes.own(site(prefix / "user") / "jupyterhub" / "__init__.py")
    module.write_text(module.read_text() + "# edited by hand\n")
    deep = deep_report(prefix, system_python, ["record-files"])
    user = deep[("record-files", "user")]
    assert user.status == "warning"
    (changed,) = [f for f in user.findings if f.status == "warning"]
    assert "jupyterhub/__init__.py" in changed.message and changed.subject == "jupyterhub 5.2.1"
    assert changed.impact == "spawns-fail"


# -- files gone ------------------------------------------------------------------------------------


def test_deleted_package_files(tljh, prefix, wheelhouse):
    hub_site = site(prefix / "hub")
    module = hub_site / "jupyterhub" / "__init__.py"
    module.unlink()
    cache = next((site(prefix / "user") / "pip").rglob("*.pyc"), None)
    if cache is not None:
        cache.unlink()  # bytecode caches come back by themselves: not a finding
    result, doc, checks = run_doctor(tljh, prefix)
    assert result.code == ExitCode.PROBLEMS_FOUND
    check = checks[("record-files", "hub")]
    (finding,) = check["findings"]
    assert (check["status"], finding["subject"], finding["impact"]) == (
        FAILED,
        "jupyterhub 5.2.1",
        "hub-fails",
    )
    assert finding["message"].startswith("1 of the ") and "jupyterhub/__init__.py" in finding["message"]
    assert finding["hint"] == "sudo tljh env install --target hub --force-reinstall jupyterhub==5.2.1"
    assert checks[("record-files", "user")]["status"] == OK
    # the remedy the hint names, done with real pip, clears it
    prefixes.pip_install(prefix / "hub", wheelhouse, "--no-deps", "--force-reinstall", "jupyterhub==5.2.1")
    result, doc, _ = run_doctor(tljh, prefix)
    assert result.code == ExitCode.OK, problems(doc)


# -- readable by users -----------------------------------------------------------------------------


def _pip_under_umask(env_root: Path, wheelhouse: Path, *args: str) -> None:
    """Real pip, run the way root with `umask 077` in its profile runs it."""
    prefixes.run(
        [
            "sh",
            "-c",
            'umask 077 && exec "$0" -m pip install --no-index --find-links "$1" "$2"',
            env_root / "bin" / "python3",
            wheelhouse,
            *args,
        ]
    )


def test_umask_077_install_then_fix_removes_exactly_that(tljh, prefix, wheelhouse):
    _pip_under_umask(prefix / "user", wheelhouse, "bigpkg")
    bigpkg = site(prefix / "user") / "bigpkg"
    assert stat.S_IMODE(bigpkg.stat().st_mode) == 0o700  # what users' servers cannot enter
    result, before, checks = run_doctor(tljh, prefix)
    check = checks[("users-can-read", "user")]
    (finding,) = check["findings"]
    assert (check["status"], finding["impact"], finding["fixable"]) == (FAILED, "spawns-fail", True)
    assert "umask" in finding["message"] and "bigpkg" in finding["message"]
    assert finding["hint"].startswith("sudo tljh doctor --fix users-can-read")
    assert result.code == ExitCode.PROBLEMS_FOUND

    listing = file_listing(prefix / "user")
    fixed = tljh("--prefix", prefix, "doctor", "--fix", "--json", "users-can-read")
    assert fixed.code == ExitCode.OK, fixed.stdout
    _, after, checks = run_doctor(tljh, prefix)
    assert checks[("users-can-read", "user")]["status"] == OK
    assert problems(after) == problems(before) - {("users-can-read", "user", FAILED, str(prefix / "user"))}
    changed = {line.split()[1].rstrip(":") for line in listing_diff(listing, file_listing(prefix / "user"))}
    assert changed and all("bigpkg" in path for path in changed)
    assert stat.S_IMODE(bigpkg.stat().st_mode) == 0o755
    assert stat.S_IMODE((bigpkg / "__init__.py").stat().st_mode) == 0o644  # data gets no x bit


def test_fix_refuses_a_path_swapped_for_a_symlink(prefix, system_python, tmp_path):
    user_site = site(prefix / "user")
    target = prefixes.own(user_site / "numpy" / "__init__.py")
    target.chmod(0o600)
    ctx = doctor.Context(resolve_layout(prefix, system_python))
    report = doctor.run_doctor(ctx, doctor.select_checks(["users-can-read"]))
    # between the scan and the fix, the file becomes a symlink to something root owns
    precious = tmp_path / "precious"
    precious.write_text("root's\n")
    precious.chmod(0o600)
    target.unlink()
    target.symlink_to(precious)
    ((_, _, error),) = doctor.apply_fixes(report)
    assert error and "not changed" in error
    assert stat.S_IMODE(precious.stat().st_mode) == 0o600


# -- what runs as root stays root's ----------------------------------------------------------------


def test_files_another_uid_can_change_in_the_hub(tljh, prefix):
    hub_site = site(prefix / "hub")
    owned = prefixes.own(hub_site / "oauthenticator" / "__init__.py")
    group_writable = hub_site / "jupyterhub"
    os.chown(owned, 65534, 65534)  # a user's uid, as `sudo -u someone pip install` leaves it
    os.chown(group_writable, 0, 65534)
    group_writable.chmod(0o775)
    _, before, checks = run_doctor(tljh, prefix)
    check = checks[("stray-owners", "hub")]
    assert check["status"] == FAILED
    by_subject = {f["subject"]: f for f in check["findings"]}
    assert set(by_subject) == {str(owned), str(group_writable)}
    assert all(f["impact"] == "root-code" and "root" in f["message"] for f in by_subject.values())
    # no automatic chown: it would make root's whatever uid 65534 put into these files
    assert all(not f["fixable"] and "remove it" in f["hint"] for f in by_subject.values())
    before_fix = file_listing(prefix / "hub")
    fixed = tljh("--prefix", prefix, "doctor", "--fix", "--json", "stray-owners")
    assert fixed.code == ExitCode.PROBLEMS_FOUND and fixed.json()["changed"] is False
    assert listing_diff(before_fix, file_listing(prefix / "hub")) == []
    # a file only a group differs on, read-only for that group, is just regrouped
    regrouped = hub_site / "oauthenticator" / "regrouped.py"
    regrouped.write_text("")
    os.chown(owned, 0, 0)
    os.chown(group_writable, 0, 0)
    group_writable.chmod(0o755)
    os.chown(regrouped, 0, 65534)
    _, _, checks = run_doctor(tljh, prefix)
    (finding,) = checks[("stray-owners", "hub")]["findings"]
    assert finding["status"] == "warning" and finding["impact"] == "cosmetic" and finding["fixable"]
    fixed = tljh("--prefix", prefix, "doctor", "--fix", "--json", "stray-owners")
    assert fixed.code == ExitCode.OK, fixed.stdout
    _, after, checks = run_doctor(tljh, prefix)
    assert checks[("stray-owners", "hub")]["status"] == OK
    assert problems(after) == {p for p in problems(before) if p[0] != "stray-owners"}
    assert regrouped.stat().st_gid == 0


def test_pth_files_that_let_users_into_the_hub(tljh, prefix, tmp_path):
    hub_site = site(prefix / "hub")
    outside = tmp_path / "somebodys-code"
    outside.mkdir()
    (hub_site / "outside.pth").write_text(f"# an editable install\n{outside}\n")
    inside = prefix / "hub" / "share" / "plugins"
    inside.mkdir(parents=True)
    os.chown(inside, 65534, 65534)
    (hub_site / "plugins.pth").write_text("../../../share/plugins\nimport os\n")
    _, _, checks = run_doctor(tljh, prefix)
    check = checks[("hub-sys-path", "hub")]
    assert check["status"] == FAILED
    subjects = {f["subject"] for f in check["findings"]}
    assert subjects == {str(hub_site / "outside.pth"), str(hub_site / "plugins.pth")}
    assert all(f["impact"] == "root-code" and "root" in f["message"] for f in check["findings"])
    assert all(f["hint"].startswith("sudo rm ") for f in check["findings"])  # never a chown of theirs
    assert "distutils-precedence.pth" not in json.dumps(check)  # its `import` line is not a folder
    # the folder itself is also someone else's file under the hub
    assert str(inside) in {f["subject"] for f in checks[("stray-owners", "hub")]["findings"]}


# -- the interpreter the venv was made with ------------------------------------------------------------


def _pyenv(short: str) -> Path | None:
    found = sorted(Path(os.path.expanduser("~/.pyenv/versions")).glob(f"{short}.*"))
    return found[-1] if found and (found[-1] / "bin" / f"python{short}").exists() else None


def test_hub_venv_left_behind_by_the_os_python(tljh, prefix, wheelhouse, tmp_path, system_python):
    old, new = _pyenv("3.10"), _pyenv("3.12")
    if old is None or new is None:
        pytest.skip("needs CPython 3.10 and 3.12 under ~/.pyenv/versions")
    base = tmp_path / "usr"  # the OS Python the hub venv is made from
    prefixes.copy_cpython(old, base, with_pip=False)  # it only makes the venv
    hub = prefix / "hub"
    shutil.rmtree(hub)
    prefixes.run([base / "bin" / "python3", "-m", "venv", hub])
    prefixes.pip_install(
        hub, wheelhouse, "jupyterhub==5.2.1", "oauthenticator==17.1.0", "jupyterhub-idle-culler"
    )
    _, doc, checks = run_doctor(tljh, prefix, "-t", "hub")
    assert checks[("hub-venv-base", "hub")]["status"] != FAILED, problems(doc)

    # the OS upgrade: 3.10 goes, 3.12 takes its place; the interpreter file is a real copy
    # named python3, so only its installation says which Python it is
    base.rename(tmp_path / "usr-3.10-removed")
    prefixes.copy_cpython(new, base, with_pip=False)
    (base / "bin" / "python3").unlink()
    shutil.copy2(base / "bin" / "python3.12", base / "bin" / "python3")
    assert binary_version(str(base / "bin" / "python3")) == "3.12"

    result, doc, checks = run_doctor(tljh, prefix)
    check = checks[("hub-venv-base", "hub")]
    (finding,) = check["findings"]
    assert (check["status"], finding["impact"]) == (FAILED, "hub-fails")
    assert (
        "3.12" in finding["message"]
        and "3.10" in finding["message"]
        and "lib/python3.10" in finding["message"]
    )
    assert finding["hint"] == "sudo tljh env rebuild --target hub" and "upgrade" not in finding["hint"]
    # it starts, yet cannot import its packages: inspection (env list, env-present) says so too
    present = checks[("env-present", "hub")]
    assert present["status"] == FAILED and "moved on" in present["findings"][0]["message"]
    assert present["findings"][0]["hint"].startswith("sudo tljh env rebuild --target hub")
    listed = tljh("--prefix", prefix, "env", "list", "--json")
    hub = next(e for e in listed.json()["environments"] if e["name"] == "hub")
    assert listed.code == ExitCode.PROBLEMS_FOUND and hub["status"] == "broken" and "3.12" in hub["reason"]
    assert result.code == ExitCode.PROBLEMS_FOUND

    deep = deep_report(prefix, system_python, ["hub-imports"])
    imports = deep[("hub-imports", "hub")]
    assert imports.status == FAILED and "No module named 'jupyterhub'" in imports.findings[0].message


# -- console scripts -----------------------------------------------------------------------------------


def test_scripts_whose_interpreter_is_gone_or_elsewhere(tljh, prefix, script_wheels, wheelhouse):
    user = prefix / "user"
    prefixes.pip_install(user, script_wheels, "--no-deps", "singleuser-stub")
    dangling = user / "bin" / "stub-tool"
    lines = dangling.read_text().splitlines(keepends=True)
    # a prefix moved by hand: the script still names the old place, gone now
    dangling.write_text(
        "#!/opt/tljh-old/user/bin/python3\n" + "".join(lines[2 if lines[0] == "#!/bin/sh\n" else 1 :])
    )
    elsewhere = user / "bin" / "jupyterhub-singleuser"
    text = elsewhere.read_text().replace(str(user / "bin"), str(prefix / "hub" / "bin"))
    elsewhere.write_text(text)
    _, _, checks = run_doctor(tljh, prefix)
    check = checks[("script-shebangs", "user")]
    assert check["status"] == FAILED
    by_subject = {f["subject"]: f for f in check["findings"]}
    assert set(by_subject) == {"/opt/tljh-old/user/bin/python3", str(prefix / "hub" / "bin" / "python3")}
    assert "missing" in by_subject["/opt/tljh-old/user/bin/python3"]["message"]
    for finding in by_subject.values():
        assert finding["impact"] == "spawns-fail"
        assert (
            finding["hint"] == "sudo tljh env install --target user --force-reinstall singleuser-stub==1.0.0"
        )
    prefixes.pip_install(user, script_wheels, "--no-deps", "--force-reinstall", "singleuser-stub")
    _, _, checks = run_doctor(tljh, prefix)
    assert checks[("script-shebangs", "user")]["status"] == OK


def test_script_interpreter_reads_pips_launcher():
    assert script_interpreter(b"#!/opt/tljh/user/bin/python3\nimport sys\n") == "/opt/tljh/user/bin/python3"
    launcher = b"#!/bin/sh\n'''exec' \"/opt tljh/user/bin/python3\" \"$0\" \"$@\"\n' '''\n"
    assert script_interpreter(launcher) == "/opt tljh/user/bin/python3"
    assert script_interpreter(b"#!/usr/bin/env python3\n") == "/usr/bin/env"
    assert script_interpreter(b"\x7fELF") is None


# -- as a user who is not root; --deep as nobody ---------------------------------------------------------


@pytest.fixture
def open_prefix(base_prefix, open_tmp, request) -> Path:
    """A copy of the base PREFIX that uid 65534 can reach (pytest's tmp is 0700)."""
    dest = open_tmp / request.node.name / "opt tljh"
    dest.parent.mkdir()
    dest.parent.chmod(0o755)
    prefixes.copy_prefix(base_prefix, dest)
    yield dest
    shutil.rmtree(dest.parent)


def _as_nobody(nobody_python, open_prefix, system_python, *argv) -> subprocess.CompletedProcess:
    """tljh on `open_prefix` as uid 65534, as any user who is not root runs it."""
    layout = ["--prefix", open_prefix, "--system-python", system_python]
    return subprocess.run(
        [*NOBODY, nobody_python, "-m", "tljh_admin", *layout, *argv],
        capture_output=True,
        text=True,
        env=prefixes.hermetic_env(),
    )


def test_not_root_says_run_with_sudo_and_never_crashes(open_prefix, nobody_python, wheelhouse, system_python):
    _pip_under_umask(open_prefix / "user", wheelhouse, "bigpkg")
    proc = _as_nobody(nobody_python, open_prefix, system_python, "doctor", "--json")
    doc = json.loads(proc.stdout)
    assert doc["summary"]["error"] == 0, [c for c in doc["checks"] if c["status"] == "error"]
    checks = {(c["id"], c["env"]): c for c in doc["checks"]}
    readable = checks[("users-can-read", "user")]
    assert readable["status"] == FAILED  # what it could see, it reports
    # and what it could not read, users' servers cannot either: a failure, not a skip
    assert any("cannot read or enter, nor can users' servers" in f["message"] for f in readable["findings"])
    (site(open_prefix / "user")).chmod(0o700)  # even the site folder itself
    proc = _as_nobody(nobody_python, open_prefix, system_python, "doctor", "users-can-read")
    assert proc.returncode == 1 and "nor can users' servers" in proc.stdout, proc.stdout + proc.stderr
    assert "healthy" not in proc.stdout


def test_deep_runs_singleuser_as_nobody(open_prefix, script_wheels, wheelhouse, system_python):
    if os.geteuid() != 0:
        pytest.skip("running as uid 65534 needs root")
    # the user env is the copied CPython, its interpreter relocated as conda-build does
    # ($ORIGIN/../lib finds the env's own libpython, not the build's under root's home)
    user = open_prefix / "user"
    prefixes.pip_install(user, wheelhouse, "jupyterhub==5.2.1")
    prefixes.pip_install(user, script_wheels, "--no-deps", "singleuser-stub")
    deep = deep_report(open_prefix, system_python, ["singleuser-runs", "hub-imports"])
    assert deep[("singleuser-runs", "user")].status == OK, deep[("singleuser-runs", "user")].findings
    assert deep[("hub-imports", "hub")].status == OK, deep[("hub-imports", "hub")].findings

    (site(user) / "jupyterhub").chmod(0o700)  # what a root umask of 077 does
    deep = deep_report(open_prefix, system_python, ["singleuser-runs"])
    result = deep[("singleuser-runs", "user")]
    assert result.status == FAILED
    # exactly what fails: Python cannot see into the folder, and says what that breaks
    assert "65534" in result.findings[0].message and "jupyterhub" in result.findings[0].message
    assert result.findings[0].hint == "sudo tljh doctor --fix users-can-read"

    ctx = doctor.Context(resolve_layout(open_prefix, system_python))
    doctor.apply_fixes(doctor.run_doctor(ctx, doctor.select_checks(["users-can-read"])))
    deep = deep_report(open_prefix, system_python, ["singleuser-runs"])
    assert deep[("singleuser-runs", "user")].status == OK


def test_deep_hashes_only_regular_files_inside_the_env(tljh, prefix):
    """A RECORD is a file anyone who could write the site folder may plant: rows naming
    /dev/zero (a read that never ends) or a FIFO (an open that blocks) are not read."""
    hub_site = site(prefix / "hub")
    meta = hub_site / "planted-1.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: planted\nVersion: 1.0\n\n")
    os.mkfifo(hub_site / "planted.fifo")
    up = "../" * len(hub_site.parts)  # up to / from wherever the test's prefix is
    (meta / "RECORD").write_text(
        f"/dev/zero,sha256=AAAA,1\n{up}dev/zero,sha256=AAAA,1\n"
        "planted.fifo,sha256=AAAA,1\nplanted-1.0.dist-info/METADATA,,\n"
    )
    result = tljh("--prefix", prefix, "doctor", "--json", "--deep", "record-files", timeout=60)
    assert result.code == ExitCode.OK, result.stdout
    check = next(c for c in result.json()["checks"] if c["env"] == "hub")
    assert check["status"] == OK


def test_fixes_grant_nothing_through_a_hard_link_to_elsewhere(tljh, prefix, tmp_path):
    """Where fs.protected_hardlinks is 0 a user can link a root-only file into a folder of
    theirs in the env; users-can-read's a+r and stray-owners' chgrp would then reach that
    file. Only taking bits away passes a second name, and conda's own (pkgs/<dist>/<path>)."""
    user = prefix / "user"
    theirs = user / "share" / "course"
    theirs.mkdir(parents=True)
    secret = tmp_path / "shadow"
    secret.write_text("root-only\n")
    secret.chmod(0o600)
    os.chown(secret, 0, 42)  # root:shadow, as /etc/shadow
    os.link(secret, theirs / "notes.txt")  # as root: what protected_hardlinks=0 lets a user do
    # a conda package's file: the env's name and its package cache's, both 0600 (root's umask 077);
    # linked by hand: the conda stand-in copies files out of its cache, it never hard-links them
    conda_file = user / "share" / "condapkg.dat"
    conda_file.write_text("data\n")
    conda_file.chmod(0o600)
    twin = user / "pkgs" / "condapkg-1.0-0" / "share" / "condapkg.dat"
    twin.parent.mkdir(parents=True)
    os.link(conda_file, twin)
    fixed = tljh("--prefix", prefix, "doctor", "--fix", "--json", "users-can-read", "stray-owners")
    fixes = fixed.json()["fixes"]
    assert any(f["error"] and "hard link" in f["error"] for f in fixes), fixes
    st = secret.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o600, 42)
    assert stat.S_IMODE(conda_file.stat().st_mode) == 0o644


@pytest.mark.parametrize(
    "argv", [["env", "list"], ["env", "list", "--json"], ["env", "packages", "-t", "hub"]]
)
def test_not_root_and_an_unreadable_site_folder_is_one_line(open_prefix, nobody_python, system_python, argv):
    (site(open_prefix / "hub")).chmod(0o700)  # a root umask of 077 at install time
    proc = _as_nobody(nobody_python, open_prefix, system_python, *argv)
    assert proc.returncode == ExitCode.PERMISSION_DENIED, proc.stderr
    assert proc.stderr.count("\n") == 1 and "run with sudo" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("damage", ["fifo", "folder", "dangling", "not-utf8", "empty"])
def test_a_record_pip_cannot_read_is_a_failure_not_a_pass(tljh, prefix, damage):
    """Before: only a RECORD that was not there at all was a finding; one pip cannot read
    (a FIFO, a folder, a symlink that leads nowhere, bytes that are not UTF-8, an empty
    file) passed as if its files were all present."""
    (dist_info,) = site(prefix / "user").glob("numpy-*.dist-info")
    record = dist_info / "RECORD"
    record.unlink()  # a hard link to the shared base: unlinking leaves that alone
    if damage == "fifo":
        os.mkfifo(record)
    elif damage == "folder":
        record.mkdir()
    elif damage == "dangling":
        record.symlink_to(dist_info / "RECORD.gone")
    else:
        record.write_bytes(b"numpy/caf\xe9.py,,\n" if damage == "not-utf8" else b"")
    _, _, checks = run_doctor(tljh, prefix, "record-files")
    check = checks[("record-files", "user")]
    assert check["status"] == FAILED, check
    (finding,) = check["findings"]
    assert "RECORD" in finding["message"] and "numpy" in finding["subject"], finding
    assert finding["hint"].startswith(f"sudo rm -r '{dist_info}'") and "numpy==1.26.4" in finding["hint"]


def test_a_dist_info_that_lost_its_record(tljh, prefix):
    """What an interrupted hand-run pip leaves: pip can neither upgrade nor uninstall the
    project (`Cannot uninstall ... no RECORD file`), so doctor must not call it healthy."""
    (dist_info,) = site(prefix / "user").glob("numpy-*.dist-info")
    (dist_info / "RECORD").unlink()  # a hard link to the shared base: unlinking leaves that alone
    _, _, checks = run_doctor(tljh, prefix, "record-files")
    check = checks[("record-files", "user")]
    assert check["status"] == FAILED
    (finding,) = check["findings"]
    assert "no RECORD" in finding["message"] and finding["impact"] == "spawns-fail"
    assert finding["hint"].startswith(f"sudo rm -r '{dist_info}'") and "numpy==1.26.4" in finding["hint"]


def test_a_hub_python_that_is_a_script_is_a_warning_and_deep_says_what_it_runs(tljh, prefix, system_python):
    """Before: a bin/python3 replaced by a script (here one that runs the OS Python, which
    does not see the hub's packages) was `skipped: cannot tell which Python`, and doctor
    was healthy while the hub could not import jupyterhub."""
    python3 = prefix / "hub" / "bin" / "python3"
    python3.unlink()
    python3.write_text('#!/bin/sh\nexec /usr/bin/python3 "$@"\n')
    python3.chmod(0o755)
    _, _, checks = run_doctor(tljh, prefix, "hub-venv-base")
    check = checks[("hub-venv-base", "hub")]
    (finding,) = check["findings"]
    assert check["status"] == "warning" and finding["impact"] == "hub-fails", finding
    assert "is a script (#!/bin/sh)" in finding["message"] and "--deep" in finding["message"]
    deep = deep_report(prefix, system_python, ["hub-imports"])
    imports = deep[("hub-imports", "hub")]
    assert imports.status == FAILED and "No module named 'jupyterhub'" in imports.findings[0].message


def test_a_deep_check_that_hangs_is_ended_with_what_it_started(prefix, system_python, monkeypatch):
    """--deep runs the hub's Python; one that never answers, with a child it started (as a
    hung import's helper would), is ended as a group. Before, only the first process was
    killed, and the child ran on as root. The 120 s limit is lowered to 1 s here: the
    ending is what is tested, not the limit's length."""
    import time

    from tljh_admin.doctor import runtime

    monkeypatch.setattr(runtime, "DEEP_TIMEOUT_SECONDS", 1)
    python3 = prefix / "hub" / "bin" / "python3"
    python3.unlink()
    child = prefix / "child.pid"
    python3.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > '{child}'\nexec sleep 60\n")
    python3.chmod(0o755)
    started = time.monotonic()
    deep = deep_report(prefix, system_python, ["hub-imports"])
    assert time.monotonic() - started < 20
    imports = deep[("hub-imports", "hub")]
    assert imports.status == FAILED and "no answer in 1 s" in imports.findings[0].message, imports
    stat_file = Path(f"/proc/{int(child.read_text())}/stat")

    def running() -> bool:
        try:
            return stat_file.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False  # gone

    deadline = time.monotonic() + 5  # SIGKILL is delivered at once; reaping takes a moment
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(), f"{stat_file.parent.name}, the hung check's child, still runs"
