"""Faults a root tool must survive, with real processes: kill -9 at many moments of a real
multi-package install, concurrent changes, a killed upgrade, hostile or damaged state,
installer configuration files, repeated signals. One test per class of issue 10; each
asserts the defect itself, so each fails on the code before the fix."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import NOBODY
from tests.support import prefixes
from tests.support.cli import read_until_closed, start_tljh, tljh_argv
from tests.support.listing import file_listing, listing_diff
from tests.support.wheels import WheelSpec, build_wheel
from tljh_admin.envs import inspect_environment
from tljh_admin.errors import ExitCode
from tljh_admin.layout import resolve_layout

CHUNKS = 8
CHUNK_FILES = 100


@pytest.fixture(scope="session")
def fault_wheels(tmp_path_factory) -> Path:
    """Wheels for faults: `chunky` pulls in 8 packages of 150 files each (a multi-package
    install slow enough to be killed at chosen moments), `data-writer` writes everywhere a
    wheel can (.data/data under lib/, headers, scripts)."""
    house = tmp_path_factory.mktemp("fault-wheels")
    for i in range(CHUNKS):
        files = {f"chunk_{i}/part_{n:03d}.py": f"N = {n}\n" for n in range(CHUNK_FILES)}
        build_wheel(WheelSpec(f"chunk-{i}", "1.0.0", files=files), house)
    build_wheel(WheelSpec("chunky", "1.0.0", tuple(f"chunk-{i}" for i in range(CHUNKS))), house)
    data = {
        "data_writer-1.0.0.data/data/lib/tljh-stray/stray.txt": "outside site-packages\n",
        "data_writer-1.0.0.data/data/share/data-writer/note.txt": "share\n",
        "data_writer-1.0.0.data/headers/data_writer.h": "#define X 1\n",
        "data_writer-1.0.0.data/scripts/data-writer-tool": "#!/bin/sh\necho hi\n",
    }
    build_wheel(WheelSpec("data-writer", "1.0.0", files=data), house)
    return house


@pytest.fixture
def offline(wheelhouse, fault_wheels):
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": f"{wheelhouse} {fault_wheels}"}


@pytest.fixture
def run(tljh, prefix, offline):
    """`tljh --prefix PREFIX ARGS`, offline."""

    def call(*args, env=None, **kwargs):
        return tljh("--prefix", prefix, *args, env={**offline, **(env or {})}, **kwargs)

    return call


def state_of(prefix: Path) -> Path:
    return prefix / "state" / "tljh-admin"


def envs_listing(prefix: Path) -> dict:
    """hub and user, every entry (path, type, size, mode, mtime): restores put the very
    same inodes back, so this is byte-identical without hashing the standard library."""
    return {
        **{f"hub/{k}": v for k, v in file_listing(prefix / "hub").items()},
        **{f"user/{k}": v for k, v in file_listing(prefix / "user").items()},
    }


def site_of(prefix: Path, env: str) -> Path:
    (site,) = (prefix / env).glob("lib/python3.*/site-packages")
    return site


def versions(prefix: Path, env: str) -> dict[str, str]:
    found = inspect_environment(env, resolve_layout(prefix, "/usr/bin/python3"))
    return {d.name.lower(): d.version for d in found.distributions}


def start(prefix: Path, args: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
    # its own group, so that "kill the whole group" spares pytest
    return start_tljh(prefix, args, env, start_new_session=True, **kwargs)


def wait_for(condition, timeout: float = 60.0, step: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(step)


#: a name no test installs: `env uninstall` of it is a real change command that recovers
#: first, as every change does, then stops at its input (not installed) having changed
#: nothing else. A dry run no longer recovers (it writes nothing).
NOT_INSTALLED = "tljh-admin-test-not-installed"


def next_change(run, target: str = "user"):
    """The next real change command after a kill: it restores the unfinished change."""
    result = run("env", "uninstall", "-t", target, NOT_INSTALLED, "--yes")
    assert "Traceback" not in result.stderr, result.stderr
    return result


def recovered_then_refused(result) -> bool:
    """next_change ran its recovery and then met its own input, not another refusal."""
    return result.code == ExitCode.USAGE and "not installed in the" in result.stderr


def journals(prefix: Path) -> list[dict]:
    found = []
    for path in sorted((state_of(prefix) / "journal").glob("*.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # being written or empty (a reservation)
    return found


def history(prefix: Path) -> list[dict]:
    path = state_of(prefix) / "history.jsonl"
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def installer_groups(prefix: Path) -> list[int]:
    return [pgid for j in journals(prefix) for pgid, _ in j.get("processes", [])]


def processes_marked(state: Path) -> list[int]:
    """Living processes carrying the change marker of this state folder."""
    needle = f"TLJH_ADMIN_CHANGE={state}#".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read():
                    found.append(int(name))
        except (OSError, IndexError):
            continue
    return found


def scratch_left(prefix: Path, pid: int) -> list[str]:
    import tempfile

    mine = [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(f"tljh-admin-{pid}-")]
    scratch = state_of(prefix) / "scratch"
    return mine + ([n for n in os.listdir(scratch) if n.startswith(f"{pid}-")] if scratch.is_dir() else [])


def doctor_unfinished(run) -> dict:
    result = run("doctor", "unfinished-change", "--json")
    (check,) = result.json()["checks"]
    return check


def kill(proc: subprocess.Popen, prefix: Path, whole: bool) -> None:
    """kill -9 of tljh alone, or of tljh's group and the installer's group it journaled."""
    groups = installer_groups(prefix) if whole else []
    if whole:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


# -- class 1 (and 15's scratch): kill -9 at eight moments --------------------------------------


def _log_says(prefix: Path, text: str) -> bool:
    for log in (state_of(prefix) / "logs").glob("*.log"):
        try:
            if text in log.read_text():
                return True
        except OSError:
            pass
    return False


def test_kill_9_at_eight_moments_is_restored_exactly(prefix, run, offline):
    """Class 1: kill -9 of tljh alone (the installer, in its own group, keeps writing) or of
    everything, from the first journal write to after pip's last line. The next command
    ends what still runs, then restores; doctor is clean; scratch folders are gone."""
    site = site_of(prefix, "user")
    before = envs_listing(prefix)

    def files_in(folder: str, at_least: int):
        return lambda: (site / folder).is_dir() and len(os.listdir(site / folder)) >= at_least

    # moments told by what is on disk, not by tljh's own journal fields
    moments = {
        "journal written, snapshot being taken": lambda: any((state_of(prefix) / "journal").glob("*.json")),
        "installer starting": lambda: any((state_of(prefix) / "logs").glob("*.log")),
        "first file of the first package": files_in("chunk_0", 1),
        "first package half written": files_in("chunk_0", CHUNK_FILES // 2),
        "third package written": files_in("chunk_2", CHUNK_FILES),
        "sixth package half written": files_in("chunk_5", CHUNK_FILES // 2),
        "last package's metadata": lambda: any(site.glob("chunky-1.0.0.dist-info")),
        "installer finished": lambda: _log_says(prefix, "Successfully installed"),
    }
    outcomes = []
    for number, (moment, reached) in enumerate(moments.items()):
        whole = number % 2 == 1
        seen = len(history(prefix))
        proc = start(prefix, ["env", "install", "-t", "user", "chunky", "--yes"], offline)
        wait_for(lambda reached=reached, proc=proc: reached() or proc.poll() is not None)
        kill(proc, prefix, whole)
        nxt = next_change(run)
        assert recovered_then_refused(nxt), (moment, nxt.stderr)
        assert processes_marked(state_of(prefix)) == [], moment
        assert scratch_left(prefix, proc.pid) == [], moment
        new = history(prefix)[seen:]
        result = new[0]["result"] if new else "never started"  # killed right after reserving an id
        outcomes.append((moment, result))
        if result == "ok":  # it finished before the kill landed: roll it back
            back = run("env", "rollback", "-t", "user", "--yes")
            assert back.code == 0, back.stderr
        assert listing_diff(before, envs_listing(prefix)) == [], moment
        assert journals(prefix) == [], moment
        assert doctor_unfinished(run)["status"] == "ok", moment
    # most moments must really have interrupted the change, late ones included
    interrupted = [m for m, r in outcomes if r != "ok"]
    assert len(interrupted) >= 6, outcomes
    assert "sixth package half written" in interrupted or "last package's metadata" in interrupted, outcomes


def test_kill_9_of_tljh_alone_never_races_its_still_running_installer(prefix, run, offline):
    """Class 1 itself: tljh killed alone while pip writes 3,000 files; pip goes on writing.
    The next command must end it before restoring, or pip's later files survive."""
    before = envs_listing(prefix)
    site = site_of(prefix, "user")
    proc = start(prefix, ["env", "install", "-t", "user", "bigpkg", "--yes"], offline)
    wait_for(lambda: (site / "bigpkg").is_dir() and len(os.listdir(site / "bigpkg")) > 200)
    kill(proc, prefix, whole=False)
    # what the files say now is no state anyone chose: read-only commands say so, and no
    # lock of it is exported (env apply would copy it to every server)
    listed = run("env", "list", "--json")
    user = next(e for e in listed.json()["environments"] if e["name"] == "user")
    assert (
        listed.code == ExitCode.PROBLEMS_FOUND and user["status"] == "broken" and "change 1" in user["reason"]
    )
    assert run("env", "packages", "-t", "user").code == ExitCode.PROBLEMS_FOUND
    exported = run("env", "export", "-t", "user", "--format", "lock")
    assert exported.code == ExitCode.REFUSED and "change 1" in exported.stderr and exported.stdout == ""
    nxt = next_change(run)
    assert recovered_then_refused(nxt), nxt.stderr
    assert run("env", "list").code == ExitCode.OK  # recovered
    time.sleep(1.5)  # whatever an orphan would still write lands by now
    assert listing_diff(before, envs_listing(prefix)) == []
    assert doctor_unfinished(run)["status"] == "ok"


def test_a_dry_run_after_a_kill_writes_nothing_and_names_the_unfinished_change(
    prefix, run, offline, tmp_path
):
    """Before: every dry run (install, uninstall, rollback, upgrade, apply) restored a killed
    change for real and set untrusted journals aside, then said "dry run: nothing was
    changed". A dry run now only reads: it names the unfinished change and stops (exit 4),
    PREFIX byte for byte as it was; doctor --fix, as its hint says, restores it."""
    site = site_of(prefix, "user")
    proc = start(prefix, ["env", "install", "-t", "user", "chunky", "--yes"], offline)
    wait_for(lambda: (site / "chunk_1").is_dir() or proc.poll() is not None)
    kill(proc, prefix, whole=True)  # nothing keeps writing: the listing can stay the same
    (journal,) = journals(prefix)
    (state_of(prefix) / "journal" / "7.json").write_text("garbage{")  # a real run sets it aside
    wanted = tmp_path / "wanted.txt"
    wanted.write_text("numpy\n")
    before = file_listing(prefix)
    for args in (
        ["env", "install", "-t", "user", "oauthenticator", "--dry-run"],
        ["env", "uninstall", "-t", "user", "numpy", "--dry-run"],
        ["env", "rollback", "-t", "user", "--dry-run"],
        ["env", "apply", str(wanted), "-t", "user", "--dry-run"],
        ["upgrade", "--dry-run"],
    ):
        result = run(*args)
        assert result.code == ExitCode.REFUSED, (args, result.stderr)
        assert f"change {journal['id']} to the user environment never finished" in result.stderr, args
        assert "Hint: restore it: sudo tljh doctor --fix" in result.stderr, args
        assert "Traceback" not in result.stderr and result.stdout == "", args
        assert listing_diff(before, file_listing(prefix)) == [], args
    (state_of(prefix) / "journal" / "7.json").unlink()
    fixed = run("doctor", "--fix", "unfinished-change")
    assert fixed.code == ExitCode.OK, fixed.stdout + fixed.stderr
    assert journals(prefix) == [] and not any(site.glob("chunk_*"))
    assert run("env", "uninstall", "-t", "user", "numpy", "--dry-run").code == ExitCode.OK


def test_a_dry_run_waits_for_a_change_running_now_as_a_real_command_does(prefix, run, offline):
    """A change running (not killed) is waited for within --lock-timeout, reading only:
    then the plan is of what that change left."""
    proc = start(prefix, ["env", "install", "-t", "user", "chunky", "--yes"], offline)
    wait_for(lambda: bool(installer_groups(prefix)) or proc.poll() is not None)
    (group,) = installer_groups(prefix)
    os.killpg(group, signal.SIGSTOP)  # it stays in progress while the dry runs look
    try:
        busy = run("env", "uninstall", "-t", "user", "numpy", "--dry-run", "--lock-timeout", "0")
        assert busy.code == ExitCode.LOCKED and "Traceback" not in busy.stderr, busy.stderr
    finally:
        os.killpg(group, signal.SIGCONT)
    waited = run("env", "uninstall", "-t", "user", "chunky", "--dry-run", "--lock-timeout", "120")
    assert waited.code == ExitCode.OK, waited.stderr  # chunky is there: the change ended, then it planned
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


def test_a_refused_command_leaves_no_state_folder_behind(prefix, run, tljh, tmp_path):
    """Before: recovery ran first and created state/tljh-admin/{journal,locks,logs,...} for
    any change command, a refused one or a dry run, even on a folder that is not TLJH."""
    import shutil

    shutil.rmtree(prefix / "state")
    empty = tmp_path / "not-tljh"
    empty.mkdir()
    before = file_listing(prefix)
    for args, code in (
        (["env", "uninstall", "-t", "user", NOT_INSTALLED, "--yes"], ExitCode.USAGE),
        (["env", "uninstall", "-t", "user", "numpy", "--dry-run"], ExitCode.OK),
        (["env", "rollback", "-t", "user", "--to", "0", "--yes"], ExitCode.USAGE),
        (["env", "rollback", "-t", "user", "--to", "-1", "--yes"], ExitCode.USAGE),
        (["env", "rollback", "-t", "user", "--to", "99999999999999999999", "--yes"], ExitCode.USAGE),
        (["env", "prune"], ExitCode.OK),
        (["env", "prune", "--save"], ExitCode.USAGE),
    ):
        result = run(*args)
        assert result.code == code, (args, result.stderr)
        assert "Traceback" not in result.stderr, args
        assert listing_diff(before, file_listing(prefix)) == [], args
    for args in (["env", "prune"], ["env", "uninstall", "-t", "user", "numpy", "--dry-run"]):
        result = tljh("--prefix", empty, *args)
        assert result.code in (ExitCode.OK, ExitCode.REFUSED), (args, result.stderr)
        assert "Traceback" not in result.stderr, args
        assert list(empty.iterdir()) == [], args


# -- class 2: ids unique across environments ---------------------------------------------------


def on_a_terminal(prefix: Path, args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    """tljh with a pseudo-terminal, stopped at its "Go ahead?" prompt."""
    import pty

    main, child = pty.openpty()
    full_env = prefixes.hermetic_env(NO_COLOR="1", TLJH_SYSTEM_PYTHON="/usr/bin/python3", **env)
    proc = subprocess.Popen(
        tljh_argv("--prefix", prefix, *args), stdin=child, stdout=child, stderr=child, env=full_env,
        start_new_session=True,
    )  # fmt: skip
    os.close(child)
    seen = b""
    while b"Go ahead?" not in seen:
        seen += os.read(main, 4096)
    return proc, main


def test_concurrent_changes_to_hub_and_user_get_different_ids_and_recover_apart(prefix, run, offline):
    before = envs_listing(prefix)
    hub, hub_tty = on_a_terminal(prefix, ["env", "install", "-t", "hub", "chunky"], offline)
    user, user_tty = on_a_terminal(prefix, ["env", "install", "-t", "user", "chunky"], offline)
    os.write(hub_tty, b"y\n")  # both confirmed at the same moment
    os.write(user_tty, b"y\n")
    frozen: dict[str, int] = {}

    def both_frozen() -> bool:
        # SIGSTOP each installer the moment its journal names it, so that neither change can
        # finish (and close its journal) before both are seen: under load one otherwise may
        for journal in journals(prefix):
            env = next(iter(journal["envs"]))
            for pgid, _start in journal.get("processes", []):
                if env not in frozen:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pgid, signal.SIGSTOP)
                    frozen[env] = pgid
        return len(frozen) == 2

    wait_for(both_frozen, step=0.001)
    found = journals(prefix)
    assert len(found) == 2, found  # two journals: not one shared by both changes
    ids = {next(iter(j["envs"])): j["id"] for j in found}
    assert ids["hub"] != ids["user"]
    kill(hub, prefix, whole=False)
    kill(user, prefix, whole=False)
    os.close(hub_tty)
    os.close(user_tty)
    # a hub command recovers the hub's change only; the user's stays for the user env
    assert recovered_then_refused(next_change(run, "hub"))
    assert [j["id"] for j in journals(prefix)] == [ids["user"]]
    hub_now = {k: v for k, v in envs_listing(prefix).items() if k.startswith("hub/")}
    assert listing_diff({k: v for k, v in before.items() if k.startswith("hub/")}, hub_now) == []
    assert (state_of(prefix) / "snapshots" / str(ids["user"]) / "user").is_dir()  # not cleaned by hub's
    assert recovered_then_refused(next_change(run, "user"))
    assert listing_diff(before, envs_listing(prefix)) == []
    results = {e["id"]: e["result"] for e in history(prefix)}
    assert results == {ids["hub"]: "restored-after-kill", ids["user"]: "restored-after-kill"}


# -- class 3: a killed upgrade is recovered, whole, by a change to either env -------------------


def test_killed_upgrade_is_recovered_before_a_user_change(prefix, run, offline, tmp_path):
    requirements = tmp_path / "hub-requirements.txt"
    requirements.write_text("jupyterhub>=5.2.0,<5.3\nchunky\n")
    before = envs_listing(prefix)
    proc = start(prefix, ["upgrade", "--hub-requirements", requirements, "--yes"], offline)
    hub_site = site_of(prefix, "hub")
    wait_for(lambda: (hub_site / "chunk_3").is_dir() or proc.poll() is not None)
    kill(proc, prefix, whole=False)  # the hub's pip keeps writing
    (journal,) = journals(prefix)
    assert set(journal["envs"]) == {"hub", "user"}
    nxt = next_change(run)
    assert recovered_then_refused(nxt), nxt.stderr
    assert f"restoring change {journal['id']}" in nxt.stderr
    assert listing_diff(before, envs_listing(prefix)) == []
    assert journals(prefix) == []
    assert processes_marked(state_of(prefix)) == []


# -- class 4: installer configuration files cannot redirect or widen ----------------------------


def test_pip_and_uv_config_files_keep_only_index_settings(prefix, run, wheelhouse, tmp_path):
    """The child reads no config file; index settings from them still apply (no-index and
    find-links come only from the file here)."""
    escape = tmp_path / "escaped"
    extra = tmp_path / "extra-requirements.txt"
    extra.write_text("oauthenticator\n")
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(
        f"[global]\nno-index = true\nfind-links = {wheelhouse}\ntarget = {escape}/target\n"
        f"[install]\nprefix = {escape}/prefix\nrequirement = {extra}\n"
    )
    (prefix / "user" / "pip.conf").write_text(f"[install]\nroot = {escape}/root\nuser = true\n")
    uv_toml = tmp_path / "uv.toml"
    uv_toml.write_text(f'[pip]\ntarget = "{escape}/uv-target"\nprefix = "{escape}/uv-prefix"\n')
    env = {
        "PIP_CONFIG_FILE": str(pip_conf),
        "UV_CONFIG_FILE": str(uv_toml),
        "PIP_NO_INDEX": "",
        "PIP_FIND_LINKS": "",
    }
    env = {k: v for k, v in env.items() if v}
    by_pip = run("env", "install", "-t", "user", "numpy==2.1.0", "--yes", env=env)
    assert by_pip.code == 0, by_pip.stderr
    by_uv = run(
        "env", "install", "-t", "hub", "oauthenticator==17.3.0", "--installer", "uv", "--yes", env=env
    )
    assert by_uv.code == 0, by_uv.stderr
    assert not escape.exists()
    assert versions(prefix, "user")["numpy"] == "2.1.0"
    assert "oauthenticator" not in versions(prefix, "user")  # the config's `requirement` is not used
    assert versions(prefix, "hub")["oauthenticator"] == "17.3.0"


# -- class 5: the state folder cannot be turned against root ------------------------------------


def test_a_state_folder_another_user_owns_is_refused_before_any_installer_runs(prefix, run):
    """The review's attack: with no journal/ in it, the state folder's safety was checked
    only at apply, after the plan's `python -m pip` had run as root with its working
    directory (first on sys.path) in a scratch/ another user owns, who can swap in a
    folder holding pip/__main__.py. Now refused before anything runs or is created there."""
    import shutil

    shutil.rmtree(prefix / "state")
    state = state_of(prefix)
    (state / "scratch").mkdir(parents=True)
    for folder in (state, state / "scratch"):
        os.chown(folder, 65534, 65534)
    before = file_listing(prefix)
    result = run("env", "install", "-t", "user", "numpy==2.1.0", "--yes")
    assert result.code == ExitCode.REFUSED, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "state folder is not safe to use" in line and "65534" in line, line
    assert listing_diff(before, file_listing(prefix)) == []  # scratch/ untouched: no work folder


def test_state_folder_is_private_under_umask_0_and_planted_state_touches_nothing_outside(
    prefix, run, offline, tmp_path
):
    import shutil

    shutil.rmtree(prefix / "state")
    result = subprocess.run(
        ["sh", "-c", 'umask 000; exec "$@"', "sh", *tljh_argv("--prefix", prefix, "env", "install", "-t",
                                                              "user", "oauthenticator", "--yes")],
        capture_output=True, text=True,
        env=prefixes.hermetic_env(NO_COLOR="1", TLJH_SYSTEM_PYTHON="/usr/bin/python3", **offline),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for folder in [prefix / "state", state_of(prefix), *state_of(prefix).iterdir()]:
        if folder.is_dir():
            assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0, folder

    victim = tmp_path / "victim"
    (victim / "keep").mkdir(parents=True)
    (victim / "keep" / "data.txt").write_text("root must not touch this\n")
    os.chmod(victim / "keep", 0o755)
    victim_before = file_listing(victim, contents=True)
    state = state_of(prefix)
    before = envs_listing(prefix)
    # a journal and manifest that would make a restore "restore" the victim folder
    manifest = {"version": 2, "areas": [str(victim)], "root": str(victim), "top_level": [], "skip": [],
                "entries": 0, "complete": True, "root_meta": [0o777, 0, 0, 0]}  # fmt: skip
    (state / "snapshots" / "99" / "user" / "files").mkdir(parents=True)
    (state / "snapshots" / "99" / "user" / "manifest.json").write_text(json.dumps(manifest))
    journal = {"id": 99, "command": "planted", "kind": "install", "installer": "pip", "who": "x",
               "started": "now", "envs": {"user": str(prefix / "user")}, "before": {"user": {}},
               "phase": "running", "processes": [], "marker": "x"}  # fmt: skip
    (state / "journal" / "99.json").write_text(json.dumps(journal))
    # and one naming a folder outside the prefix as the user env
    (state / "journal" / "98.json").write_text(
        json.dumps({**journal, "id": 98, "envs": {"user": str(victim)}})
    )
    nxt = next_change(run)
    assert nxt.code == ExitCode.REFUSED, nxt.stderr
    assert "lies outside the environment" in nxt.stderr or "belongs to" in nxt.stderr
    assert "untrusted journal" in nxt.stderr  # 98 set aside and reported
    assert "Traceback" not in nxt.stderr
    assert file_listing(victim, contents=True) == victim_before
    assert listing_diff(before, envs_listing(prefix)) == []
    doctor = doctor_unfinished(run)
    assert doctor["status"] == "failed"
    (state / "journal" / "99.json").unlink()

    # a lock file planted as a symlink is not followed (opening it "a+" would write the victim)
    (state / "locks" / "user.lock").unlink(missing_ok=True)
    os.symlink(victim / "keep" / "data.txt", state / "locks" / "user.lock")
    locked = run("env", "install", "-t", "user", "numpy==2.1.0", "--yes")
    assert locked.code == ExitCode.REFUSED and "symlink" in locked.stderr, locked.stderr
    assert file_listing(victim, contents=True) == victim_before
    (state / "locks" / "user.lock").unlink()

    # a state folder another user could write to, or a symlinked one, is refused
    os.chmod(state, 0o777)
    open_state = run("env", "install", "-t", "user", "numpy==2.1.0", "--yes")
    assert open_state.code == ExitCode.REFUSED and "writable by others" in open_state.stderr
    assert len(open_state.stderr.strip().splitlines()) == 1
    os.chmod(state, 0o700)
    state.rename(tmp_path / "real-state")
    os.symlink(victim, state)
    linked = run("env", "install", "-t", "user", "numpy==2.1.0", "--yes")
    assert linked.code == ExitCode.REFUSED and "symlink" in linked.stderr
    assert file_listing(victim, contents=True) == victim_before
    assert listing_diff(before, envs_listing(prefix)) == []


# -- class 6: corrupt, damaged or unwritable state --------------------------------------------


_HAND_EDITS = {
    "no before": lambda e: e.pop("before"),
    "before null": lambda e: e["before"].update(user=None),
    "time null": lambda e: e.update(time=None),
    "command int": lambda e: e.update(command=5),
    "after list": lambda e: e.update(after=[]),
    "version int": lambda e: e["before"]["user"].update(numpy=2),
    "id bool": lambda e: e.update(id=True),
}


def test_a_history_line_edited_into_another_shape_is_skipped(prefix, run):
    """A line that parses but lacks a field, or holds the wrong type, is skipped like a torn
    one: history lists the others, and rollback plans from a well-formed change."""
    state = state_of(prefix)
    assert run("env", "install", "-t", "user", "oauthenticator", "--yes").code == 0
    assert run("env", "install", "-t", "user", "numpy==2.1.0", "--yes").code == 0
    lines = (state / "history.jsonl").read_text().splitlines()
    for name, edit in _HAND_EDITS.items():
        second = json.loads(lines[1])
        edit(second)
        (state / "history.jsonl").write_text(lines[0] + "\n" + json.dumps(second) + "\n")
        for args in (
            ["env", "history"],
            ["env", "history", "--json"],
            ["env", "rollback", "-t", "user", "--dry-run"],
        ):
            result = run(*args)
            assert result.code == 0 and "Traceback" not in result.stderr, (name, args, result.stderr)
        assert [c["id"] for c in run("env", "history", "--json").json()["changes"]] == [1], name
    # doctor names the line rollback cannot see (before, nothing said so)
    doc = run("doctor", "--json", "unfinished-change").json()
    (finding,) = [f for c in doc["checks"] for f in c["findings"] if f["status"] == "warning"]
    assert "(line 2:" in finding["message"] and finding["impact"] == "changes-fail"
    assert finding["subject"] == str(state / "history.jsonl") and finding["hint"].startswith("look at")


@pytest.mark.floor
def test_corrupt_and_damaged_state_gives_one_line_and_never_a_wrong_restore(prefix, run, offline):
    state = state_of(prefix)
    assert run("env", "install", "-t", "user", "oauthenticator", "--yes").code == 0
    with open(state / "history.jsonl", "a") as f:
        f.write('{"id": 41, "result": "o')  # a write cut short
    (state / "journal" / "7.json").write_text("garbage{")
    (state / "journal" / "8.json").write_text("")  # an id reserved by a process killed right then
    shown = run("env", "history", "--json")
    assert shown.code == 0, shown.stderr
    assert [c["id"] for c in shown.json()["changes"]] == [1]
    nxt = run("env", "install", "-t", "user", "numpy==2.1.0", "--yes")
    assert nxt.code == 0, nxt.stderr
    assert "untrusted journal" in nxt.stderr and "Traceback" not in nxt.stderr
    ids = [c["id"] for c in run("env", "history", "--json").json()["changes"]]
    assert len(ids) == 2 and len(set(ids)) == 2  # the new line was not swallowed by the torn one
    assert not (state / "journal" / "8.json").exists()

    # a change killed while running whose snapshot is incomplete: refused, nothing deleted
    before = envs_listing(prefix)
    (state / "snapshots" / "50" / "user" / "files").mkdir(parents=True)
    journal = {"id": 50, "command": "x", "kind": "install", "installer": "pip", "who": "x", "started": "now",
               "envs": {"user": str(prefix / "user")}, "before": {"user": {}}, "phase": "running",
               "processes": [], "marker": "m"}  # fmt: skip
    (state / "journal" / "50.json").write_text(json.dumps(journal))
    refused = run("env", "install", "-t", "user", "tomli", "--yes")
    assert refused.code == ExitCode.REFUSED, refused.stderr
    assert "incomplete" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert listing_diff(before, envs_listing(prefix)) == []
    # a complete-looking manifest whose farm lost entries (damaged): refused too
    files = state / "snapshots" / "50" / "user" / "files"
    (state / "snapshots" / "50" / "user" / "manifest.json").write_text(json.dumps(
        {"version": 2, "areas": [str(prefix / "user")], "root": str(prefix / "user"), "top_level": [],
         "skip": [], "entries": 5000, "complete": True}
    ))  # fmt: skip
    (files / str(prefix / "user").lstrip("/")).mkdir(parents=True)
    damaged = run("env", "install", "-t", "user", "tomli", "--yes")
    assert damaged.code == ExitCode.REFUSED and "damaged" in damaged.stderr, damaged.stderr
    assert listing_diff(before, envs_listing(prefix)) == []
    (state / "journal" / "50.json").unlink()

    # the snapshot a rollback would restore from, damaged: its dry run refuses too (before:
    # it showed a plan, and only the real run met the manifest)
    manifest = state / "snapshots" / str(ids[-1]) / "user" / "manifest.json"
    manifest.write_text("garbage{")
    whole = file_listing(prefix)
    for mode in ("--dry-run", "--yes"):
        back = run("env", "rollback", "-t", "user", mode)
        assert back.code == ExitCode.REFUSED and "cannot be used" in back.stderr, (mode, back.stderr)
        assert len(back.stderr.strip().splitlines()) == 1 and back.stdout == "", mode
        assert listing_diff(whole, file_listing(prefix)) == [], mode

    # an immutable history file: the change is not started
    if subprocess.run(["chattr", "+i", state / "history.jsonl"], capture_output=True).returncode == 0:
        try:
            blocked = run("env", "install", "-t", "user", "tomli", "--yes")
        finally:
            subprocess.run(["chattr", "-i", state / "history.jsonl"], check=True)
        assert blocked.code == ExitCode.REFUSED and "nothing was changed" in blocked.stderr
        assert listing_diff(before, envs_listing(prefix)) == []


# -- class 7: everything a wheel writes is rolled back -------------------------------------------


def test_rollback_removes_wheel_data_written_under_lib_include_and_bin(prefix, run):
    before = envs_listing(prefix)
    assert run("env", "install", "-t", "user", "data-writer", "--yes").code == 0
    assert (prefix / "user" / "lib" / "tljh-stray" / "stray.txt").is_file()
    assert run("env", "rollback", "-t", "user", "--yes").code == 0
    assert listing_diff(before, envs_listing(prefix)) == []


# -- class 8: the hub's jupyterhub cannot move away from the user env's --------------------------


@pytest.mark.parametrize("request_", [["jupyterhub==5.3.0"], ["hub-extension"]])
def test_hub_install_moving_jupyterhub_is_refused(prefix, run, request_):
    before = envs_listing(prefix)
    result = run("env", "install", "-t", "hub", *request_, "--yes")
    assert result.code in (ExitCode.REFUSED,), result.stderr
    assert "jupyterhub" in result.stderr and "tljh upgrade" in result.stderr
    assert listing_diff(before, envs_listing(prefix)) == []


# -- class 9: uninstall shows and guards what it breaks --------------------------------------


def test_uninstall_shows_reverse_dependencies_and_refuses_breaking_spawns(prefix, run):
    before = envs_listing(prefix)
    refused = run("env", "uninstall", "-t", "user", "jupyter-server", "--yes")
    assert refused.code == ExitCode.REFUSED, refused.stderr
    assert "jupyterlab" in refused.stderr and "notebook" in refused.stderr and "--force" in refused.stderr
    assert listing_diff(before, envs_listing(prefix)) == []
    planned = run("env", "uninstall", "-t", "user", "jupyter-server", "--force", "--dry-run")
    assert planned.code == 0, planned.stderr
    rows = [line.split() for line in planned.stdout.splitlines()]
    breaks = {row[0] for row in rows if len(row) > 3 and row[3] == "breaks:"}
    assert breaks == {"jupyterlab", "notebook"}


# -- class 10: rollback shows drift and asks for it --------------------------------------------


def test_rollback_shows_drift_made_by_hand_and_needs_accept_drift(prefix, run, wheelhouse):
    assert run("env", "install", "-t", "user", "oauthenticator", "--yes").code == 0
    prefixes.pip_install(prefix / "user", wheelhouse, "numpy==2.1.0")  # an admin's own pip
    plan = run("env", "rollback", "-t", "user", "--dry-run")
    assert plan.code == 0
    assert "numpy 1.26.4 -> 2.1.0" in plan.stderr and "outside tljh-admin" in plan.stderr
    refused = run("env", "rollback", "-t", "user", "--yes")
    assert refused.code == ExitCode.REFUSED and "--accept-drift" in refused.stderr
    assert versions(prefix, "user")["numpy"] == "2.1.0"
    accepted = run("env", "rollback", "-t", "user", "--yes", "--accept-drift")
    assert accepted.code == 0, accepted.stderr
    assert versions(prefix, "user")["numpy"] == "1.26.4"


# -- class 11: snapshot space is visible, prunable and bounded ---------------------------------


@pytest.mark.floor
def test_snapshot_space_is_shown_prunable_and_bounded(prefix, run):
    assert run("env", "install", "-t", "user", "numpy==2.1.0", "--yes").code == 0
    assert run("env", "install", "-t", "user", "data-writer", "--yes").code == 0
    changes = run("env", "history", "--json").json()["changes"]
    # numpy 1.26.4 lives on only in the first snapshot
    assert changes[0]["snapshot_bytes"] > 0 and isinstance(changes[1]["snapshot_bytes"], int)
    assert "MiB" in run("env", "history").stderr
    disk = run("doctor", "disk-space", "--json").json()["checks"][0]
    assert any("rollback snapshot" in f["message"] for f in disk["findings"])
    pruned = run("env", "prune", "--keep", "1", "--save")
    assert pruned.code == 0 and "removed 1 snapshot" in pruned.stderr, pruned.stderr
    assert sorted(os.listdir(state_of(prefix) / "snapshots")) == ["2"]
    assert run("env", "install", "-t", "user", "tomli", "--yes").code == 0  # the saved bound applies
    assert sorted(os.listdir(state_of(prefix) / "snapshots")) == ["3"]


# -- class 12: signals during a restore, and no lock held at the prompt -------------------------


def test_repeated_sigterm_during_restore_still_restores(prefix, offline):
    before = envs_listing(prefix)
    site = site_of(prefix, "user")
    proc = start(prefix, ["env", "install", "-t", "user", "chunky", "--yes"], offline)
    wait_for(lambda: (site / "chunk_4").is_dir() or proc.poll() is not None)
    while proc.poll() is None:  # a SIGTERM every few milliseconds until it ends
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.003)
    _, err = proc.communicate()
    # 130 with a message, or, for a SIGTERM after the restore ended, the default death
    assert proc.returncode in (ExitCode.INTERRUPTED, -signal.SIGTERM), err
    assert "Traceback" not in err
    assert listing_diff(before, envs_listing(prefix)) == []
    assert journals(prefix) == []


def test_prompt_holds_no_lock_and_a_change_meanwhile_is_caught(prefix, offline):
    import pty

    main, child = pty.openpty()
    env = prefixes.hermetic_env(NO_COLOR="1", TLJH_SYSTEM_PYTHON="/usr/bin/python3", **offline)
    proc = subprocess.Popen(
        tljh_argv("--prefix", prefix, "env", "install", "-t", "user", "numpy==2.1.0"),
        stdin=child, stdout=child, stderr=child, env=env,
    )  # fmt: skip
    os.close(child)
    seen = b""
    while b"Go ahead?" not in seen:
        seen += os.read(main, 4096)
    other = start(prefix, ["env", "install", "-t", "user", "tomli", "--yes", "--lock-timeout", "1"], offline)
    _, err = other.communicate(timeout=120)
    assert other.returncode == 0, err  # the lock was free while the first one asked
    os.write(main, b"y\n")
    rest = read_until_closed(main)
    assert proc.wait(timeout=120) == ExitCode.REFUSED
    os.close(main)
    assert b"changed since the plan" in rest
    assert versions(prefix, "user")["numpy"] == "1.26.4"


# -- class 13: without root, read-only commands work or say so in one line ------------------------


def test_non_root_read_only_commands_and_bad_prefixes(nobody_python, base_prefix, open_tmp, tmp_path, tljh):
    prefix = prefixes.copy_prefix(base_prefix, open_tmp / f"prefix-{os.getpid()}-{time.monotonic_ns()}")
    subprocess.run(["chmod", "a+rX", prefix, prefix.parent], check=True)
    (prefix / "state" / "tljh-admin").mkdir(mode=0o700)
    (prefix / "state" / "tljh-admin" / "history.jsonl").write_text("")
    os.chmod(prefix / "state", 0o755)
    env = prefixes.hermetic_env(NO_COLOR="1", TLJH_SYSTEM_PYTHON="/usr/bin/python3")

    def as_nobody(*args):
        return subprocess.run(
            [*NOBODY, *tljh_argv("--prefix", prefix, *args, python=nobody_python)],
            capture_output=True, text=True, cwd="/", env=env,
        )  # fmt: skip

    hist = as_nobody("env", "history")
    assert hist.returncode == ExitCode.PERMISSION_DENIED, hist.stderr
    assert len(hist.stderr.strip().splitlines()) == 1 and "sudo" in hist.stderr
    doctor = as_nobody("doctor", "--json")
    assert doctor.returncode in (0, 1) and "Traceback" not in doctor.stderr, doctor.stderr
    dry_runs = (
        ["env", "install", "-t", "user", "tomli", "--dry-run"],
        ["env", "rollback", "-t", "user", "--dry-run"],
        ["upgrade", "--dry-run"],
    )
    for dry in dry_runs:
        result = as_nobody(*dry)
        assert result.returncode in (0, ExitCode.PERMISSION_DENIED), result.stderr
        assert len(result.stderr.strip().splitlines()) <= 1 and "Traceback" not in result.stderr, (
            result.stderr
        )
    os.symlink(tmp_path / "loop-b", tmp_path / "loop-a")
    os.symlink(tmp_path / "loop-a", tmp_path / "loop-b")
    for bad in (tmp_path / "loop-a", "/" + "x" * 5000):
        result = tljh("--prefix", bad, "env", "list")
        assert result.code == ExitCode.USAGE and len(result.stderr.strip().splitlines()) == 1, result.stderr


# -- class 14: --break-system-packages reaches the real pip run ---------------------------------


def test_break_system_packages_reaches_pip(prefix, run, cpython_source, tmp_path, wheelhouse):
    if cpython_source is None:
        pytest.skip("no CPython installation to copy as an externally managed interpreter")
    system = prefixes.copy_cpython(cpython_source, tmp_path / "os-python")
    (lib,) = system.glob("lib/python3.*")
    (lib / "EXTERNALLY-MANAGED").write_text("[externally-managed]\nError=use apt\n")
    python = system / "bin" / "python3"
    result = run("--system-python", python, "env", "install", "-t", "system", "tomli",
                 "--allow-system", "--break-system-packages", "--yes")  # fmt: skip
    assert result.code == 0, result.stderr
    assert (lib / "site-packages" / "tomli").is_dir()


# -- class 15: bare wheel names, secrets in files, scratch after kill -9 --------------------------


def test_wheel_file_names_and_unreadable_secrets(prefix, run, tmp_path, wheelhouse):
    before = envs_listing(prefix)
    (wheel,) = [w.name for w in wheelhouse.glob("tomli-*.whl")]
    bare = run("env", "install", "-t", "user", wheel, "--yes", cwd=wheelhouse)
    assert bare.code == ExitCode.USAGE and "file name" in bare.stderr, bare.stderr
    secret = tmp_path / "shadow"
    secret.write_text("root:$y$j9T$SECRETHASH:19000:0:99999:7:::\n")
    leaked = run("env", "install", "-t", "user", "-r", secret, "--yes")
    assert leaked.code == ExitCode.USAGE and "SECRETHASH" not in leaked.stderr + leaked.stdout
    assert listing_diff(before, envs_listing(prefix)) == []


def test_a_fifo_in_the_env_stops_a_change_at_its_snapshot_instead_of_hanging_pip(prefix, run, tmp_path):
    """Before: pip, reading the installed distributions, opened a FIFO where a METADATA
    belongs and waited forever, with the env's lock held. No package installs a FIFO,
    socket or device: the snapshot's walk (which sees every entry anyway) refuses it."""
    meta = site_of(prefix, "user") / "planted-1.0.dist-info"
    meta.mkdir()
    os.mkfifo(meta / "METADATA", 0o644)
    before = envs_listing(prefix)
    try:
        result = run("env", "install", "-t", "user", "oauthenticator", "--yes", timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the change hung on the FIFO")
    assert result.code == ExitCode.REFUSED, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"{meta / 'METADATA'} is a FIFO" in line and "sudo mv" in line, line
    assert listing_diff(before, envs_listing(prefix)) == []
    assert journals(prefix) == [] and history(prefix)[-1]["result"] == "abandoned"
    assert not any((state_of(prefix) / "snapshots").iterdir())
    # doctor names it before any change meets it, and is content once it is moved aside
    doc = run("doctor", "--json", "special-files").json()
    (user,) = [c for c in doc["checks"] if c["env"] == "user"]
    (finding,) = user["findings"]
    assert (user["status"], finding["subject"], finding["impact"]) == (
        "failed",
        str(meta / "METADATA"),
        "changes-fail",
    )
    assert finding["hint"].startswith("sudo mv ")
    (meta / "METADATA").rename(tmp_path / "METADATA.fifo")
    doc = run("doctor", "--json", "special-files").json()
    assert {c["status"] for c in doc["checks"]} == {"ok"}


def test_scratch_of_a_killed_command_is_cleaned(prefix, run, offline):
    proc = start(prefix, ["env", "install", "-t", "user", "chunky", "--yes"], offline)
    wait_for(lambda: bool(installer_groups(prefix)) or proc.poll() is not None)
    assert scratch_left(prefix, proc.pid) != []
    kill(proc, prefix, whole=True)
    assert run("env", "history").code == 0 and scratch_left(prefix, proc.pid) != []  # reads clean nothing
    assert recovered_then_refused(next_change(run))
    assert scratch_left(prefix, proc.pid) == []


def test_full_disk_while_taking_the_snapshot_changes_nothing(prefix, run, tmp_path):
    """Class 6, a full disk: the state folder on a 256 KiB tmpfs (a real file system that
    fills up; the env is on another one, so the snapshot must copy and runs out of space)."""
    state = state_of(prefix)
    state.mkdir(mode=0o700)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", state],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        before = envs_listing(prefix)
        result = run("env", "install", "-t", "user", "numpy==2.1.0", "--yes")
        assert result.code == ExitCode.CHANGE_FAILED, result.stderr
        assert "No space left" in result.stderr and "nothing was changed" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert listing_diff(before, envs_listing(prefix)) == []
        assert list((state / "journal").iterdir()) == []
        assert list((state / "snapshots").iterdir()) == []
    finally:
        subprocess.run(["umount", state], check=True)


def test_an_unfinished_change_whose_snapshot_is_gone_has_a_way_out(prefix, run):
    """The snapshot of a killed change removed by hand: nothing can be restored, so doctor
    offers no --fix but the way out (look at the env, then set the journal aside), changes
    are refused with the same words, and following them works. A change killed while it
    was still taking its snapshot changed nothing: a warning that --fix clears."""
    state = state_of(prefix)
    assert run("env", "install", "-t", "user", "oauthenticator", "--yes").code == 0
    journal = {"id": 50, "command": "tljh env install x", "kind": "install", "installer": "pip", "who": "x",
               "started": "now", "envs": {"user": str(prefix / "user")}, "before": {"user": {}},
               "phase": "running", "processes": [], "marker": "m"}  # fmt: skip
    (state / "journal" / "50.json").write_text(json.dumps(journal))
    finding = doctor_unfinished(run)["findings"][0]
    assert finding["status"] == "failed" and not finding["fixable"]
    assert "gone" in finding["message"] and finding["hint"].endswith(
        f"sudo rm {shlex.quote(str(state / 'journal' / '50.json'))}"
    )
    refused = run("env", "install", "-t", "user", "tomli", "--yes")
    assert refused.code == ExitCode.REFUSED and "gone" in refused.stderr and "sudo rm" in refused.stderr
    (state / "journal" / "50.json").unlink()  # what the hint says, after looking at the env
    assert run("env", "install", "-t", "user", "tomli", "--yes").code == 0

    (state / "journal" / "51.json").write_text(json.dumps({**journal, "id": 51, "phase": "snapshotting"}))
    finding = doctor_unfinished(run)["findings"][0]
    assert (
        finding["status"] == "warning"
        and finding["fixable"]
        and "before anything changed" in finding["message"]
    )
    assert run("doctor", "--fix", "unfinished-change").code == 0
    assert doctor_unfinished(run)["status"] == "ok"


def test_uv_leaves_no_world_writable_lock_and_its_killed_change_is_recovered(prefix, run, offline):
    """uv makes `<env>/.lock` mode 0666, even for a dry run (before: it stayed, and every
    later change was refused as "world-writable"); a uv change killed -9 mid-install, its
    .lock still there, is restored by the next command rather than refused before it."""
    site = site_of(prefix, "user")
    before = envs_listing(prefix)
    planned = run("env", "install", "-t", "user", "chunky", "--installer", "uv", "--dry-run")
    assert planned.code == 0, planned.stderr
    assert not (prefix / "user" / ".lock").exists()
    assert listing_diff(before, envs_listing(prefix)) == []
    proc = start(prefix, ["env", "install", "-t", "user", "chunky", "--installer", "uv", "--yes"], offline)
    wait_for(lambda: any(site.glob("chunk_*")) or proc.poll() is not None)
    kill(proc, prefix, whole=True)
    lock = prefix / "user" / ".lock"
    if not lock.exists():  # the kill landed before uv made it: as uv would have
        lock.touch()
        lock.chmod(0o666)
    nxt = next_change(run)
    assert recovered_then_refused(nxt), nxt.stderr
    assert "restoring change" in nxt.stderr
    planned = run("env", "install", "-t", "user", "chunky", "--installer", "uv", "--dry-run")
    assert planned.code == 0, planned.stderr
    assert listing_diff(before, envs_listing(prefix)) == []


def test_uv_lock_in_the_hub_is_removed_even_after_someone_wrote_into_it(prefix, run, tmp_path):
    """uv makes `.lock` in a venv's root (the hub's; not in the user env of these tests):
    gone after a dry run. Any user may write into it while uv runs (it is 0666): one byte
    kept it, and every later change was refused as "world-writable" until doctor --fix."""
    from tljh_admin import installers

    lock = prefix / "hub" / ".lock"
    planned = run("env", "install", "-t", "hub", "chunky", "--installer", "uv", "--dry-run")
    assert planned.code == 0, planned.stderr
    assert not lock.exists()

    uv = installers.UvInstaller(
        inspect_environment("hub", resolve_layout(prefix)), dict(os.environ), str(tmp_path)
    )
    lock.write_text("x")  # as uv leaves it, then a byte from whoever opened it
    lock.chmod(0o666)
    uv._drop_env_lock()
    assert not lock.exists()
    lock.write_text("root's own")  # not uv's: left alone
    uv._drop_env_lock()
    assert lock.read_text() == "root's own"
    again = run("env", "install", "-t", "hub", "chunky", "--installer", "uv", "--dry-run")
    assert again.code == 0, again.stderr


def test_a_ctrl_c_while_reserving_an_id_never_takes_another_changes(prefix, monkeypatch):
    """Two changes (hub and user) reserve ids at once: the loser of journal/N.json moves on to
    N+1. A Ctrl-C landing right after it lost (where strace held it in the review, played
    here by raising KeyboardInterrupt from the temp file's cleanup: a signal cannot be made
    to land on one line otherwise) left N in its change_id, and the abandon that follows
    removed the winner's journal and snapshot while it ran."""
    from tljh_admin import changes, snapshot
    from tljh_admin.layout import resolve_layout
    from tljh_admin.transaction import Change, StateDir

    layout = resolve_layout(prefix)
    state = StateDir.of(layout)
    state.ensure()
    winner = Change(layout, state, None, "tljh env install -t user x", "install", {}, "pip")
    winner.begin()
    loser = Change(layout, state, None, "tljh env install -t hub y", "install", {}, "pip")
    monkeypatch.setattr(state, "_highest_id", lambda: winner.change_id - 1)  # both saw the same
    unlink = snapshot.with_suppressed_unlink

    def interrupted_cleanup(path):
        unlink(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(snapshot, "with_suppressed_unlink", interrupted_cleanup)
    with pytest.raises(KeyboardInterrupt):
        loser.begin()
    monkeypatch.setattr(snapshot, "with_suppressed_unlink", unlink)
    assert loser.change_id is None
    changes._abandon(loser, KeyboardInterrupt())
    assert os.path.exists(state.path("journal", f"{winner.change_id}.json"))


def test_a_hangup_stops_the_change_and_restores_it(prefix, offline):
    # a dropped SSH session: before, SIGHUP killed tljh at once (as kill -9) while pip, in
    # its own session, finished the install unrecorded
    before = envs_listing(prefix)
    site = site_of(prefix, "user")
    proc = start(prefix, ["env", "install", "-t", "user", "chunky", "--yes"], offline)
    wait_for(lambda: (site / "chunk_2").is_dir() or proc.poll() is not None)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate()
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "restored" in err and "Traceback" not in err
    assert listing_diff(before, envs_listing(prefix)) == []
    assert journals(prefix) == [] and history(prefix)[-1]["result"] == "interrupted"


def test_killed_after_its_history_line_a_change_is_closed_not_undone(prefix, run, offline):
    """kill -9 between the history line and the journal's removal (or a SIGTERM there):
    before, the next command restored the finished change and wrote a second history line
    for it, or met its half-removed snapshot and refused every change."""
    site = site_of(prefix, "user")
    proc = start(prefix, ["env", "install", "-t", "user", "chunky", "--yes"], offline)
    journal_dir = state_of(prefix) / "journal"
    wait_for(lambda: any(journal_dir.glob("*.json")) or proc.poll() is not None)
    (left,) = journal_dir.glob("*.json")  # the journal as the killed process would leave it
    kept = left.read_bytes()
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    left.write_bytes(kept)
    after = envs_listing(prefix)
    planned = run("env", "uninstall", "-t", "user", "numpy", "--dry-run")
    assert planned.code == 0, planned.stderr  # an ended change is no unfinished one to a dry run
    nxt = next_change(run)
    assert recovered_then_refused(nxt), nxt.stderr
    assert "restor" not in nxt.stderr
    assert listing_diff(after, envs_listing(prefix)) == [] and any(site.glob("chunky-*.dist-info"))
    assert journals(prefix) == []
    assert [e["result"] for e in history(prefix)].count("ok") == 1 and len(history(prefix)) == 1


#: how long the escaped helper waits before it writes: longer than the rest of pip's run
SLEEPER_SECONDS = 3

_DAEMON_BACKEND = """
import base64, hashlib, os, subprocess, zipfile

def _hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    # a helper that leaves pip's process group and its pipes, as a compiler server does
    subprocess.Popen(
        ["setsid", "sh", "-c", "sleep @SECONDS@; touch " + @MARK@],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    info = "daemonpkg-1.0.dist-info"
    files = {
        "daemonpkg/__init__.py": b"",
        info + "/METADATA": b"Metadata-Version: 2.1\\nName: daemonpkg\\nVersion: 1.0\\n\\n",
        info + "/WHEEL": b"Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = "".join(f"{p},{_hash(d)},{len(d)}\\n" for p, d in files.items()) + info + "/RECORD,,\\n"
    files[info + "/RECORD"] = record.encode()
    name = "daemonpkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return name
"""


def test_a_process_that_left_the_installers_group_is_ended(prefix, run, offline, tmp_path):
    """A build that starts a `setsid` helper: the change's marker is in its environment, and
    it is ended when the installer is done (before: it outlived the change and wrote into
    the env seconds later, after any restore)."""
    import tarfile

    source = tmp_path / "daemonpkg-1.0"
    source.mkdir()
    (source / "pyproject.toml").write_text(
        '[project]\nname = "daemonpkg"\nversion = "1.0"\n\n'
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    mark = prefix / "user" / "daemon-was-here"
    backend = _DAEMON_BACKEND.replace("@MARK@", repr(f"'{mark}'")).replace("@SECONDS@", str(SLEEPER_SECONDS))
    (source / "backend.py").write_text(backend)
    links = tmp_path / "links"
    links.mkdir()
    with tarfile.open(links / "daemonpkg-1.0.tar.gz", "w:gz") as tar:
        tar.add(source, arcname=source.name)
    env = {**offline, "PIP_FIND_LINKS": f"{offline['PIP_FIND_LINKS']} {links}"}
    done = run(
        "env", "install", "-t", "user", "daemonpkg", "--no-cache-dir", "--yes", env=env
    )  # always built
    assert done.code == 0, done.stderr
    time.sleep(SLEEPER_SECONDS + 0.5)
    assert not mark.exists()


def test_the_snapshots_cp_carries_the_changes_marker(prefix, offline):
    """`cp -al` takes the snapshot in tljh's own process group: killed -9 with tljh alone, it
    went on linking while the next command removed its folder. It now carries the change's
    marker (the journal's), which recovery ends before anything is removed."""
    proc = start(prefix, ["env", "install", "-t", "user", "chunky", "--yes"], offline)
    seen: set[bytes] = set()
    ours = os.fsencode(prefix)  # the other worker's changes run `cp -al` too, on their prefixes
    deadline = time.monotonic() + 60
    while proc.poll() is None and not seen and time.monotonic() < deadline:
        for name in os.listdir("/proc"):
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes() if name.isdigit() else b""
                if cmdline.startswith(b"cp\0-a\0-l\0") and ours in cmdline:
                    environ = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
                    seen.update(v for v in environ if v.startswith(b"TLJH_ADMIN_CHANGE="))
            except OSError:
                continue
    proc.communicate()
    (change,) = [e for e in history(prefix)]
    assert seen == {f"TLJH_ADMIN_CHANGE={state_of(prefix)}#{change['id']}".encode()}


def test_another_users_process_with_a_change_marker_is_not_the_changes(tmp_path):
    """A change ends what its journal names: the installers' process groups and whatever
    carries its marker. The marker is predictable, so any user could start processes with
    it (and keep restarting them), and every change and recovery then failed after 30 s
    with "would not end". Only processes running as tljh-admin's user are a change's."""
    if os.geteuid() != 0:
        pytest.skip("another user's process needs root to start")
    from tljh_admin import transaction

    marker = f"{tmp_path}/state/tljh-admin#1"
    env = {**os.environ, "TLJH_ADMIN_CHANGE": marker}
    theirs = subprocess.Popen([*NOBODY, "sleep", "60"], env=env, start_new_session=True)
    ours = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    try:
        for proc in (theirs, ours):  # setpriv execs sleep: wait until it has
            deadline = time.monotonic() + 10
            while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "sleep":
                assert time.monotonic() < deadline
                time.sleep(0.01)
        # theirs also leads a group the journal could name (a dead leader's number, reused)
        groups = [[theirs.pid, transaction.process_start(theirs.pid)]]
        assert transaction.change_processes(groups, marker) == [ours.pid]
        assert transaction.end_processes(groups, marker, timeout=5) == 1
        assert ours.wait(timeout=5) == -signal.SIGKILL
        assert theirs.poll() is None
    finally:
        for proc in (theirs, ours):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()


def test_stale_scratch_cleaning_survives_a_folder_removed_meanwhile(prefix, monkeypatch):
    """Every change command first removes the work folders of killed commands, listing /tmp
    and then looking at each `tljh-admin-<dead pid>-*` name: a user who made one and
    removes it in between crashed the command."""
    if os.geteuid() != 0:
        pytest.skip("another user's folder needs root to make")
    import tempfile

    from tljh_admin import transaction

    state = transaction.StateDir.of(resolve_layout(prefix))
    state.ensure()
    dead = next(p for p in range(4_000_000, 4_100_000) if not os.path.exists(f"/proc/{p}"))
    planted = Path(tempfile.gettempdir()) / f"tljh-admin-{dead}-x"
    subprocess.run([*NOBODY, "mkdir", planted], check=True)
    listed = transaction._listdir

    def listed_then_removed(path):
        names = listed(path)
        if planted.name in names and planted.exists():  # the user's rmdir, at that moment
            subprocess.run([*NOBODY, "rmdir", planted], check=True)
        return names

    monkeypatch.setattr(transaction, "_listdir", listed_then_removed)
    try:
        transaction.clean_stale_scratch(state)
    finally:
        if planted.exists():
            planted.rmdir()
    assert not planted.exists()
