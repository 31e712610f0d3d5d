"""`tljh env install / uninstall / rollback / history`: the isolation rules, transactions and
permissions, with real pip (and uv) installing real wheels into real environments."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import NOBODY
from tests.support import prefixes
from tests.support.cli import read_until_closed, start_at_prompt, start_tljh, tljh_argv
from tests.support.listing import file_listing, listing_diff
from tljh_admin.envs import inspect_environment
from tljh_admin.errors import ExitCode
from tljh_admin.layout import resolve_layout


@pytest.fixture
def install(tljh, prefix, offline):
    """`tljh --prefix PREFIX env install -t TARGET ...`, offline unless told otherwise."""

    def run(target: str, *args, env=None, **kwargs):
        return tljh(
            "--prefix",
            prefix,
            "env",
            "install",
            "-t",
            target,
            *args,
            env=offline if env is None else env,
            **kwargs,
        )

    return run


@pytest.fixture
def offline(wheelhouse):
    """Index settings for the child: only the session's wheels. They must survive the
    tool's scrubbing of redirecting variables (rule 2 keeps index settings)."""
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}


def versions(prefix: Path, env: str, system_python: Path) -> dict[str, str]:
    found = inspect_environment(env, resolve_layout(prefix, system_python))
    return {d.name.lower(): d.version for d in found.distributions}


def env_listing(prefix: Path, env: str) -> dict:
    return file_listing(prefix / env)


def system_listing(system_python: Path, prefix: Path) -> dict:
    env = inspect_environment("system", resolve_layout(prefix, system_python))
    listing = {}
    for site in env.site_dirs:
        listing.update({f"{site}/{k}": v for k, v in file_listing(Path(site)).items()})
    return listing


def everything(prefix: Path, system_python: Path) -> dict:
    """All three environments (state/ is tljh-admin's own record and is left out)."""
    return {
        **{f"hub/{k}": v for k, v in env_listing(prefix, "hub").items()},
        **{f"user/{k}": v for k, v in env_listing(prefix, "user").items()},
        **system_listing(system_python, prefix),
    }


def world_writable(root: Path) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            st = os.lstat(os.path.join(folder, name))
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & stat.S_IWOTH:
                found.append(os.path.join(folder, name))
    return found


# -- rule 1 and isolation between environments --------------------------------------------


def test_install_into_user_leaves_hub_and_system_identical(prefix, system_python, install):
    hub_before, system_before = env_listing(prefix, "hub"), system_listing(system_python, prefix)
    result = install("user", "oauthenticator", "--yes")
    assert result.code == 0, result.stderr
    assert versions(prefix, "user", system_python)["oauthenticator"] == "17.3.0"
    assert listing_diff(hub_before, env_listing(prefix, "hub")) == []
    assert listing_diff(system_before, system_listing(system_python, prefix)) == []


def test_install_into_hub_leaves_user_and_system_identical(prefix, system_python, install):
    user_before, system_before = env_listing(prefix, "user"), system_listing(system_python, prefix)
    result = install("hub", "oauthenticator==17.3.0", "--yes")
    assert result.code == 0, result.stderr
    assert versions(prefix, "hub", system_python)["oauthenticator"] == "17.3.0"
    assert listing_diff(user_before, env_listing(prefix, "user")) == []
    assert listing_diff(system_before, system_listing(system_python, prefix)) == []
    assert "restart" in result.stderr  # the hub only sees new packages after a restart


def test_the_envs_own_interpreter_runs_not_a_pip_on_path(prefix, offline, tmp_path, system_python, install):
    # A `pip` and `python3` first on PATH that would install elsewhere, as `sudo pip` does.
    trap = tmp_path / "trap-bin"
    trap.mkdir()
    for name in ("pip", "pip3", "python", "python3", "uv"):
        (trap / name).write_text("#!/bin/sh\necho WRONG-PIP >&2\nexit 99\n")
        (trap / name).chmod(0o755)
    env = {**offline, "PATH": f"{trap}:{os.environ['PATH']}"}
    result = install("user", "numpy==2.1.0", "--yes", env=env)
    assert result.code == 0, result.stderr
    assert "WRONG-PIP" not in result.stderr
    assert versions(prefix, "user", system_python)["numpy"] == "2.1.0"


# -- rule 2 ----------------------------------------------------------------------------------


def test_redirecting_variables_do_not_redirect(prefix, offline, tmp_path, system_python, install):
    elsewhere = {name: tmp_path / name for name in ("pythonpath", "pip-target", "userbase", "pip-prefix")}
    for folder in elsewhere.values():
        folder.mkdir()
    hub_before = env_listing(prefix, "hub")
    env = {
        **offline,
        "PYTHONPATH": str(elsewhere["pythonpath"]),
        "PIP_TARGET": str(elsewhere["pip-target"]),
        "PIP_USER": "1",
        "PYTHONUSERBASE": str(elsewhere["userbase"]),
        "PIP_PREFIX": str(elsewhere["pip-prefix"]),
        "VIRTUAL_ENV": str(prefix / "hub"),  # an activated hub venv, as in a hub admin's shell
    }
    result = install("user", "oauthenticator", "--yes", env=env)
    assert result.code == 0, result.stderr
    assert versions(prefix, "user", system_python)["oauthenticator"] == "17.3.0"
    for name, folder in elsewhere.items():
        assert list(folder.iterdir()) == [], name
    assert listing_diff(hub_before, env_listing(prefix, "hub")) == []


def test_scrubbing_keeps_index_settings():
    from tljh_admin.policy import scrubbed_environment

    env = scrubbed_environment(
        {
            "PIP_INDEX_URL": "https://mirror/simple",
            "PIP_CERT": "/c.pem",
            "PIP_TARGET": "/x",
            "PYTHONPATH": "/y",
        }
    )
    assert env["PIP_INDEX_URL"] == "https://mirror/simple" and env["PIP_CERT"] == "/c.pem"
    assert "PIP_TARGET" not in env and "PYTHONPATH" not in env
    assert env["PIP_USER"] == "0" and env["PYTHONNOUSERSITE"] == "1"


# -- rule 4: the jupyterhub pin ---------------------------------------------------------------


def test_upgrades_in_user_cannot_move_jupyterhub(prefix, system_python, install):
    # jupyterhub 5.3.0 and 6.0.0 are in the wheelhouse; --upgrade would take them without the pin
    result = install("user", "--upgrade", "oauthenticator", "traitlets", "--yes")
    assert result.code == 0, result.stderr
    assert versions(prefix, "user", system_python)["jupyterhub"] == "5.2.1"
    assert versions(prefix, "user", system_python)["oauthenticator"] == "17.3.0"


def test_package_needing_another_jupyterhub_is_refused_naming_both(prefix, system_python, install):
    before = everything(prefix, system_python)
    result = install("user", "hub-extension", "--yes")
    assert result.code == ExitCode.REFUSED, result.stderr
    line = result.stderr.splitlines()[-1]
    assert "hub-extension" in line and "6.0.0" in line and "5.2.1" in line and "Hint:" in line
    assert listing_diff(before, everything(prefix, system_python)) == []


def test_jupyterhub_itself_is_not_changed_in_user(tljh, prefix, system_python, install):
    before = everything(prefix, system_python)
    result = install("user", "jupyterhub==5.3.0", "--yes")
    assert result.code == ExitCode.REFUSED
    assert "tljh upgrade" in result.stderr
    assert listing_diff(before, everything(prefix, system_python)) == []


# -- rules 5, 6, 7 ---------------------------------------------------------------------------


@pytest.mark.parametrize("package", ["jupyterlab", "lab-dragging-plugin"])
def test_user_server_packages_refused_in_hub(prefix, system_python, package, install):
    before = everything(prefix, system_python)
    result = install("hub", package, "--yes")
    assert result.code == ExitCode.REFUSED, result.stderr
    assert "jupyterlab" in result.stderr and "--target user" in result.stderr
    assert listing_diff(before, everything(prefix, system_python)) == []


def test_force_puts_jupyterlab_in_hub(prefix, system_python, install):
    result = install("hub", "jupyterlab", "--force", "--yes")
    assert result.code == 0, result.stderr
    assert "jupyterlab" in versions(prefix, "hub", system_python)


@pytest.mark.parametrize("flags", [[], ["--allow-system"]])
def test_system_is_refused(prefix, system_python, flags, install):
    before = everything(prefix, system_python)
    result = install("system", "numpy", "--yes", *flags)
    assert result.code == ExitCode.REFUSED
    (line,) = result.stderr.splitlines()
    if flags:  # this machine's python3 is Debian's, with an EXTERNALLY-MANAGED marker
        assert "externally managed (PEP 668)" in line and "apt" in line
    else:
        assert "--allow-system" in line
    assert listing_diff(before, everything(prefix, system_python)) == []


def test_non_root_user_is_told_to_use_sudo(nobody_python, base_prefix, open_tmp, offline, system_python):
    # A real unprivileged uid against a root-owned prefix it can read but not write.
    prefix = prefixes.copy_prefix(base_prefix, open_tmp / f"prefix-{os.getpid()}-{time.monotonic_ns()}")
    subprocess.run(["chmod", "a+rX", prefix, prefix.parent], check=True)
    before = everything(prefix, system_python)
    proc = subprocess.run(
        [
            *NOBODY,
            *tljh_argv(
                "--prefix",
                prefix,
                "env",
                "install",
                "-t",
                "user",
                "numpy==2.1.0",
                "--yes",
                python=nobody_python,
            ),
        ],
        capture_output=True,
        text=True,
        cwd="/",
        env=prefixes.hermetic_env(NO_COLOR="1", TLJH_SYSTEM_PYTHON=str(system_python), **offline),
    )
    assert proc.returncode == ExitCode.PERMISSION_DENIED, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert "sudo" in line
    assert listing_diff(before, everything(prefix, system_python)) == []
    assert not (prefix / "state" / "tljh-admin").exists()


def test_root_on_an_env_nobody_can_write_is_not_told_to_use_sudo(tljh, prefix, offline):
    # as root, an env that cannot be written is immutable (chattr +i) or on a file system
    # remounted read-only after disk errors: "run with sudo" sent root in circles
    user = prefix / "user"
    if os.geteuid() != 0 or subprocess.run(["chattr", "+i", user], capture_output=True).returncode:
        pytest.skip("needs root and a file system with the immutable attribute")
    try:
        before = file_listing(user)
        args = ("--prefix", prefix, "env", "install", "-t", "user", "numpy==2.1.0", "--yes")
        result = tljh(*args, env=offline)
    finally:
        subprocess.run(["chattr", "-i", user], check=True)
    assert result.code == ExitCode.REFUSED, result.stderr
    (line,) = result.stderr.splitlines()
    assert "immutable" in line and "chattr -i" in line and "sudo" not in line, line
    assert listing_diff(before, file_listing(user)) == []


# -- rule 3: the bad-input corpus ------------------------------------------------------------


CORPUS = {
    "--user as a package": ["--user", "numpy"],
    "--target= after --": ["--", "--target=/tmp/x", "numpy"],
    "--prefix as a package": ["--prefix", "/tmp", "numpy"],
    "--root as a package": ["--root=/", "numpy"],
    "an unknown option": ["--trusted-host=evil", "numpy"],
    "semicolon command": ["numpy; rm -rf /"],
    "command substitution": ["$(reboot)"],
    "backticks": ["`reboot`"],
    "pipe": ["numpy|sh"],
    "an URL": ["https://evil.example/pkg-1.0-py3-none-any.whl"],
    "a VCS URL": ["git+https://evil.example/pkg.git"],
    "a direct reference": ["pkg @ https://evil.example/pkg.whl"],
    "a path": ["./dist/pkg-1.0-py3-none-any.whl"],
    "an invalid specifier": ["numpy>>2"],
    "two names in one": ["numpy scipy"],
    "nothing at all": [],
    "an empty requirements file": ["-r", "{tmp}/empty.txt"],
    "a missing requirements file": ["-r", "{tmp}/no such.txt"],
    "a folder as requirements file": ["-r", "{tmp}"],
    "an option line in a file with spaces in its name": ["-r", "{tmp}/reqs with spaces.txt"],
    "shell text in a requirements file": ["-r", "{tmp}/shell.txt"],
    "a missing constraints file": ["-c", "{tmp}/missing constraints.txt", "numpy"],
}


def _corpus_files(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("# nothing here\n\n")
    (tmp_path / "reqs with spaces.txt").write_text("numpy==2.1.0\n--trusted-host elsewhere\n")
    (tmp_path / "shell.txt").write_text("numpy; $(reboot)\n")


# the floor run (scripts/test) takes one case of each kind: option, shell text, reference,
# specifier, requirements file, nothing
FLOOR_CORPUS = {
    "--user as a package", "semicolon command", "a direct reference", "an invalid specifier",
    "an option line in a file with spaces in its name", "nothing at all",
}  # fmt: skip


@pytest.mark.parametrize(
    "case", [pytest.param(case, marks=pytest.mark.floor) if case in FLOOR_CORPUS else case for case in CORPUS]
)
def test_bad_input_corpus(tljh, prefix, tmp_path, system_python, case, install):
    _corpus_files(tmp_path)
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in CORPUS[case]]
    before = everything(prefix, system_python)
    result = install("user", *args, "--yes")
    assert result.code in (ExitCode.USAGE, ExitCode.REFUSED), (case, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tljh: error: ") and "Hint:" in lines[0], result.stderr
    assert listing_diff(before, everything(prefix, system_python)) == []
    assert not (prefix / "state" / "tljh-admin" / "history.jsonl").exists()


def test_unknown_target_is_refused(prefix, system_python, install):
    before = everything(prefix, system_python)
    result = install("mars", "numpy", "--yes")
    assert result.code == ExitCode.USAGE
    (line,) = result.stderr.splitlines()
    assert "mars" in line and "Hint:" in line
    assert listing_diff(before, everything(prefix, system_python)) == []


def test_requirements_file_with_spaces_in_its_path(prefix, tmp_path, system_python, install):
    reqs = tmp_path / "my requirements.txt"
    reqs.write_text("# for the data science course\nnumpy==2.1.0  # pinned\noauthenticator\n")
    result = install("user", "-r", reqs, "--yes")
    assert result.code == 0, result.stderr
    assert versions(prefix, "user", system_python)["numpy"] == "2.1.0"


@pytest.mark.floor
def test_not_a_terminal_without_yes_is_refused(prefix, system_python, install):
    before = everything(prefix, system_python)
    result = install("user", "numpy==2.1.0")
    assert result.code == ExitCode.USAGE
    assert "--yes" in result.stderr
    assert listing_diff(before, everything(prefix, system_python)) == []


@pytest.mark.floor
def test_dry_run_shows_the_plan_and_changes_nothing(prefix, system_python, install):
    before = everything(prefix, system_python)
    result = install("user", "numpy==2.1.0", "oauthenticator", "--dry-run")
    assert result.code == 0, result.stderr
    assert "numpy" in result.stdout and "1.26.4" in result.stdout and "2.1.0" in result.stdout
    assert "upgrade" in result.stdout and "install" in result.stdout
    assert listing_diff(before, everything(prefix, system_python)) == []


# -- transactions ----------------------------------------------------------------------------


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _user_site(prefix: Path) -> Path:
    (site,) = (prefix / "user").glob("lib/python3.*/site-packages")
    return site


def test_concurrent_installs_are_serialized(prefix, offline, system_python):
    journal = prefix / "state" / "tljh-admin" / "journal"
    first = start_tljh(prefix, ["env", "install", "-t", "user", "bigpkg", "--yes"], offline)
    _wait_for(lambda: journal.is_dir() and any(journal.iterdir()))  # first holds the lock and runs
    second = start_tljh(prefix, ["env", "install", "-t", "user", "oauthenticator", "--yes"], offline)
    _, err1 = first.communicate(timeout=300)
    _, err2 = second.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert "waiting for pid" in err2
    installed = versions(prefix, "user", system_python)
    assert installed["bigpkg"] == "1.0.0" and installed["oauthenticator"] == "17.3.0"
    history = [json.loads(line) for line in (prefix / "state" / "tljh-admin" / "history.jsonl").open()]
    assert [h["result"] for h in history] == ["ok", "ok"]
    assert set(history[1]["before"]["user"]) >= {"bigpkg"}  # the second saw the first's result


def test_lock_timeout(prefix, offline):
    journal = prefix / "state" / "tljh-admin" / "journal"
    first = start_tljh(prefix, ["env", "install", "-t", "user", "bigpkg", "--yes"], offline)
    _wait_for(lambda: journal.is_dir() and any(journal.iterdir()))
    second = start_tljh(
        prefix, ["env", "install", "-t", "user", "oauthenticator", "--yes", "--lock-timeout", "0.2"], offline
    )
    _, err2 = second.communicate(timeout=60)
    first.communicate(timeout=300)
    assert second.returncode == ExitCode.LOCKED
    assert "still locked" in err2 and "--lock-timeout" in err2


def test_kill_9_mid_install_then_next_command_restores(tljh, prefix, offline, system_python, install):
    before = everything(prefix, system_python)
    site = _user_site(prefix)
    proc = start_tljh(
        prefix,
        ["env", "install", "-t", "user", "bigpkg", "numpy==2.1.0", "--yes"],
        offline,
        start_new_session=True,
    )
    # kill tljh and pip together once pip is half way through writing bigpkg's 3,000 files
    _wait_for(lambda: (site / "bigpkg").is_dir() and len(os.listdir(site / "bigpkg")) > 300)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert listing_diff(before, everything(prefix, system_python)) != []  # really half-installed

    # a dry run changes nothing, a restore included: it names the change and stops
    planned = install("user", "oauthenticator", "--dry-run")
    assert planned.code == ExitCode.REFUSED and "change 1 to the user environment never" in planned.stderr
    # the next real change restores first, then goes on (here: to refuse its own input)
    nxt = tljh("--prefix", prefix, "env", "uninstall", "-t", "user", "tljh-admin-not-installed", "--yes")
    assert nxt.code == ExitCode.USAGE and "not installed" in nxt.stderr, nxt.stderr
    assert "restoring change 1" in nxt.stderr
    assert listing_diff(before, everything(prefix, system_python)) == []
    history = tljh("--prefix", prefix, "env", "history", "--json").json()["changes"]
    assert history[-1]["result"] == "restored-after-kill"


def test_sigterm_mid_install_restores(prefix, offline, system_python):
    before = everything(prefix, system_python)
    site = _user_site(prefix)
    proc = start_tljh(prefix, ["env", "install", "-t", "user", "bigpkg", "--yes"], offline)
    _wait_for(lambda: (site / "bigpkg").is_dir() and len(os.listdir(site / "bigpkg")) > 300)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "restored" in err
    assert listing_diff(before, everything(prefix, system_python)) == []


def test_failed_install_is_restored_and_named(tljh, prefix, system_python, install):
    before = everything(prefix, system_python)
    result = install("user", "breaks-midway", "--yes")
    assert result.code == ExitCode.CHANGE_FAILED
    assert "restored" in result.stderr.splitlines()[0]
    assert listing_diff(before, everything(prefix, system_python)) == []
    (entry,) = tljh("--prefix", prefix, "env", "history", "--json").json()["changes"]
    assert entry["result"] == "failed"


@pytest.mark.floor
def test_install_then_rollback_is_byte_identical_without_the_index(
    tljh, prefix, tmp_path, system_python, install
):
    before = everything(prefix, system_python)
    result = install("user", "numpy==2.1.0", "oauthenticator", "--yes")
    assert result.code == 0, result.stderr
    assert listing_diff(before, everything(prefix, system_python)) != []
    # no index, no wheels: nothing to download from during the rollback
    no_index = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "nothing-here")}
    back = tljh("--prefix", prefix, "env", "rollback", "-t", "user", "--yes", env=no_index)
    assert back.code == 0, back.stderr
    assert listing_diff(before, everything(prefix, system_python)) == []


@pytest.mark.floor
def test_uninstall_then_rollback(tljh, prefix, system_python):
    before = everything(prefix, system_python)
    result = tljh("--prefix", prefix, "env", "uninstall", "-t", "user", "numpy", "--yes")
    assert result.code == 0, result.stderr
    assert "numpy" not in versions(prefix, "user", system_python)
    back = tljh("--prefix", prefix, "env", "rollback", "-t", "user", "--to", "1", "--yes")
    assert back.code == 0, back.stderr
    assert listing_diff(before, everything(prefix, system_python)) == []


def test_uninstall_refusals(tljh, prefix, system_python, offline):
    before = everything(prefix, system_python)
    missing = tljh("--prefix", prefix, "env", "uninstall", "-t", "user", "not-installed", "--yes")
    assert missing.code == ExitCode.USAGE and "not installed" in missing.stderr
    hub = tljh("--prefix", prefix, "env", "uninstall", "-t", "hub", "jupyterhub", "--yes")
    assert hub.code == ExitCode.REFUSED and "--force" in hub.stderr
    pip = tljh("--prefix", prefix, "env", "uninstall", "-t", "hub", "pip", "--dry-run")
    assert pip.code == ExitCode.REFUSED and "breaks TLJH's installer and every later change" in pip.stderr
    assert not (prefix / "state" / "tljh-admin").exists()  # refusals of the input make none
    # the first change that plans makes it (its installer works in state/tljh-admin/scratch);
    # from then on refusals, failed resolves and dry runs write nothing, not even a lock's
    # holder note (the work folder comes and goes in scratch/, whose time alone changes)
    primed = tljh("--prefix", prefix, "env", "install", "-t", "user", "numpy==0.0.0.1", "--yes", env=offline)
    assert (
        primed.code == ExitCode.RESOLUTION_FAILED and (prefix / "state" / "tljh-admin" / "scratch").is_dir()
    )
    whole = file_listing(prefix)
    for args, code in (
        (("env", "uninstall", "-t", "user", "not-installed", "--yes"), ExitCode.USAGE),
        (("env", "rollback", "-t", "user", "--to", "99", "--yes"), ExitCode.USAGE),
        (("env", "install", "-t", "user", "numpy==0.0.0.1", "--yes"), ExitCode.RESOLUTION_FAILED),
        (("env", "install", "-t", "user", "numpy==2.1.0", "--dry-run"), ExitCode.OK),
    ):
        result = tljh("--prefix", prefix, *args, env=offline)
        assert result.code == code, (args, result.stderr)
    changed = listing_diff(whole, file_listing(prefix))
    assert [line for line in changed if not line.startswith("~ state/tljh-admin/scratch: ")] == []
    assert listing_diff(before, everything(prefix, system_python)) == []


@pytest.mark.floor
def test_history_records_who_what_and_result(tljh, prefix, offline, install):
    install(
        "user",
        "numpy==2.1.0",
        "--yes",
        env={**offline, "SUDO_USER": "ada"},
    )
    doc = tljh("--prefix", prefix, "env", "history", "--target", "user", "--json").json()
    assert (doc["schema"], doc["version"]) == ("tljh-admin/history", 1)
    (entry,) = doc["changes"]
    assert set(entry) == {
        "id",
        "time",
        "who",
        "target",
        "command",
        "kind",
        "installer",
        "before",
        "after",
        "result",
        "detail",
        "snapshot_bytes",
    }
    assert isinstance(entry["snapshot_bytes"], int)
    assert entry["who"] == "ada" and entry["target"] == "user" and entry["result"] == "ok"
    assert entry["before"]["user"]["numpy"] == "1.26.4" and entry["after"]["user"]["numpy"] == "2.1.0"
    assert "install -t user numpy==2.1.0" in entry["command"]
    assert tljh("--prefix", prefix, "env", "history", "--target", "hub", "--json").json()["changes"] == []


# -- permissions and bytecode ----------------------------------------------------------------


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_no_world_writable_files_after_install_even_with_umask_0(prefix, offline, installer, install):
    result = install(
        "user",
        "oauthenticator",
        "bigpkg",
        "--yes",
        "--installer",
        installer,
        # bytecode is still compiled when the caller's shell says not to write any
        env={**offline, "PYTHONDONTWRITEBYTECODE": "1"},
        preexec_fn=lambda: os.umask(0),
    )
    assert result.code == 0, result.stderr
    assert world_writable(prefix / "user") == []
    assert world_writable(prefix / "hub") == []
    # bytecode is compiled at install time, so users get it without writing __pycache__
    site = _user_site(prefix)
    assert list((site / "oauthenticator" / "__pycache__").glob("__init__.*.pyc"))


def test_uv_installer_keeps_the_pin(prefix, system_python, install):
    result = install("user", "--upgrade", "oauthenticator", "--yes", "--installer", "uv")
    assert result.code == 0, result.stderr
    installed = versions(prefix, "user", system_python)
    assert installed["jupyterhub"] == "5.2.1" and installed["oauthenticator"] == "17.3.0"
    refused = install("user", "hub-extension", "--yes", "--installer", "uv")
    assert refused.code == ExitCode.REFUSED and "5.2.1" in refused.stderr


def test_new_files_get_root_as_owner(prefix, install):
    # a setgid site folder of another group, read-only for it (nothing the root-safety gate
    # refuses), hands that group every file pip writes there: normalisation gives them back
    # to root:root, the code owner (as root, pip itself always writes root-owned files)
    site = _user_site(prefix)
    os.chown(site, 0, 1234)
    os.chmod(site, 0o2755)
    result = install("user", "oauthenticator", "--yes")
    assert result.code == 0, result.stderr
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in (site / "oauthenticator").rglob("*")}
    owners |= {(p.stat().st_uid, p.stat().st_gid) for p in site.glob("oauthenticator-*.dist-info/*")}
    assert owners == {(0, 0)}
    assert "wrongly owned" in result.stderr


@pytest.mark.parametrize("answer", ["y", "n"])
def test_asks_on_a_terminal(prefix, offline, system_python, answer):
    """On a terminal the plan is shown and the admin is asked; 'n' changes nothing."""
    before = everything(prefix, system_python)
    env = prefixes.hermetic_env(NO_COLOR="1", TLJH_SYSTEM_PYTHON=str(system_python), **offline)
    proc, main, seen = start_at_prompt(prefix, ["env", "install", "-t", "user", "numpy==2.1.0"], env)
    os.write(main, f"{answer}\n".encode())
    rest = read_until_closed(main)
    assert proc.wait(timeout=120) == 0
    os.close(main)
    assert b"numpy" in seen and b"1.26.4" in seen and b"2.1.0" in seen  # the plan came first
    if answer == "y":
        assert versions(prefix, "user", system_python)["numpy"] == "2.1.0"
        assert b"done: change 1" in rest
    else:
        assert b"nothing was changed" in rest
        assert listing_diff(before, everything(prefix, system_python)) == []
