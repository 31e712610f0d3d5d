"""`tljh env rebuild` on a hub whose Python was upgraded under it, made of real parts.

The hub venv is made by a real older CPython (pyenv's 3.10), filled by that CPython's own
pip with real wheels built in the session, TLJH itself from a local git repository at a
commit, a package from a local wheel file and a TLJH plugin; then the old CPython is taken
away and its `python3` becomes the system python, as a distribution upgrade does. Nothing is
mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import oldhub
from tests.support.cli import tljh_argv
from tests.support.listing import file_listing, listing_diff
from tests.support.prefixes import _link_file, clone_tree, hermetic_env, run
from tljh_admin import plugins, rebuild
from tljh_admin.errors import ExitCode
from tljh_admin.layout import resolve_layout
from tljh_admin.transaction import StateDir

OLD_CPYTHON = oldhub.find_old_cpython()
pytestmark = pytest.mark.skipif(OLD_CPYTHON is None, reason="needs a CPython 3.10 build (pyenv) to cut off")


class World:
    """The broken prefix, built once, and what was true before the OS upgrade."""

    def __init__(self, base: Path, wheelhouse: Path, system_python: Path):
        self.mine = base / "mine"
        self.wheels = oldhub.build_rebuild_wheels(self.mine)
        # the index still serves the old pip and setuptools the hub had
        for wheel in (OLD_CPYTHON / "lib" / "python3.10" / "ensurepip" / "_bundled").glob("*.whl"):
            shutil.copy2(wheel, self.mine / wheel.name)
        self.broken_mirror = base / "mine-broken"
        shutil.copytree(self.mine, self.broken_mirror)
        os.unlink(self.broken_mirror / self.wheels["fragile"].name)
        oldhub.broken_fragile(self.broken_mirror)
        self.repo, self.commit = oldhub.make_tljh_repo(base / "tljh-repo")
        self.wheelhouse = wheelhouse
        self.system_python = system_python
        self.prefix = oldhub.make_old_hub(
            base / "world" / "opt tljh",
            OLD_CPYTHON,
            system_python,
            [wheelhouse, self.mine],
            self.wheels,
            self.repo,
            self.commit,
        )
        self.importable_before = json.loads((base / "world" / "importable.json").read_text())

    def index_env(self, broken: bool = False) -> dict[str, str]:
        mirror = self.broken_mirror if broken else self.mine
        return {
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": f"{self.wheelhouse} {mirror}",
            "PIP_CONFIG_FILE": os.devnull,
        }


@pytest.fixture(scope="session")
def world(tmp_path_factory, wheelhouse, system_python) -> World:
    return World(tmp_path_factory.mktemp("rebuild"), wheelhouse, system_python)


@pytest.fixture(scope="session")
def world_listing(world) -> dict:
    return file_listing(world.prefix)


@pytest.fixture
def prefix(world, world_listing, tmp_path) -> Path:
    """A private copy of the broken prefix: hard links to the world's files (rebuild moves
    the old hub aside and pip unlinks before writing), checked against the world after."""
    dest = tmp_path / "opt tljh"
    shutil.copytree(world.prefix, dest, symlinks=True, copy_function=_link_file)
    yield dest
    changed = listing_diff(world_listing, file_listing(world.prefix))
    assert changed == [], f"this test changed the shared old hub in place: {changed[:10]}"


def _layout(prefix: Path, world: World):
    return resolve_layout(prefix, world.system_python)


def _requested(site: Path) -> set[str]:
    return {p.parent.name.split("-")[0].lower().replace("_", "-") for p in site.glob("*.dist-info/REQUESTED")}


def _site(hub: Path) -> Path:
    (site,) = hub.glob("lib/python3.*/site-packages")
    return site


def test_the_broken_hub_is_really_broken(world, prefix):
    """The fixture's premise: the hub's interpreter is now the system python, which cannot
    see the packages in lib/python3.10."""
    hub = prefix / "hub"
    version = oldhub.hub_python_version(hub)
    assert version.startswith("3.11"), version
    proc = subprocess.run(
        [hub / "bin" / "python3", "-c", "import jupyterhub"], capture_output=True, env=hermetic_env()
    )
    assert proc.returncode != 0
    assert "jupyterhub" in world.importable_before and "tljh" in world.importable_before


def test_dry_run_shows_the_plan_and_changes_nothing(world, prefix, tljh):
    before = file_listing(prefix)
    result = tljh("--prefix", prefix, "env", "rebuild", "--target", "hub", "--json", env=world.index_env())
    assert result.code == 0, result.stderr
    assert listing_diff(before, file_listing(prefix)) == []

    plan = result.json()
    assert (plan["schema"], plan["version"]) == ("tljh-admin/rebuild-plan", 1)
    items = {i["name"]: i for i in plan["packages"]}
    # pins that do not install on 3.11 moved to the nearest release that does (1.1, not 2.0)
    assert (items["oldonly"]["before"], items["oldonly"]["after"]) == ("1.0", "1.1")
    assert items["oldonly"]["action"] == "changed" and "<3.11" in items["oldonly"]["reason"]
    assert (items["cext"]["before"], items["cext"]["after"]) == ("1.0", "1.1")
    assert "3.11" in items["cext"]["reason"]
    # everything else stays at its version, from where it came
    unchanged = {n for n, i in items.items() if i["action"] == "same"}
    assert {"jupyterhub", "oauthenticator", "traitlets", "localpkg", "the-littlest-jupyterhub"} <= unchanged
    assert world.commit in items["the-littlest-jupyterhub"]["source"]
    assert items["localpkg"]["source"].startswith("file://")
    assert plan["old_python"].startswith("3.10") and plan["new_python"].startswith("3.11")
    assert plan["plugins"] == ["demo"]
    assert any("TLJH 2.0.1's own hub requirements" in note for note in plan["notes"])

    # the hub cannot run its own packages: plugins are listed from files, not evaluated
    view = tljh("--prefix", prefix, "plugins", "--json")
    assert view.code == 0, view.stderr
    assert view.json()["evaluated"] is False and "3.10" in view.json()["reason"]
    assert view.json()["plugins"][0]["hooks"][:2] == [plugins.HUB_PIP, plugins.USER_PIP]


def test_rebuild_then_rollback(world, prefix, tljh):
    """One real `env rebuild --yes` (install first, plan when a pin fails), every fact the
    acceptance asks for, then `env rollback` to the old venv, byte for byte."""
    hub = prefix / "hub"
    old_listing = file_listing(hub, contents=True)
    old_requested = _requested(_site(hub))
    old_root = os.lstat(hub)
    # doctor names the breakage and the one remedy that works
    broken = tljh("--prefix", prefix, "doctor", "hub-venv-base", "--json")
    assert broken.code == 1, broken.stderr
    (finding,) = [f for c in broken.json()["checks"] for f in c["findings"] if f["status"] == "failed"]
    assert "3.10" in finding["message"] and finding["hint"].endswith("tljh env rebuild --target hub")
    result = tljh("--prefix", prefix, "env", "rebuild", "--target", "hub", "--yes", env=world.index_env())
    assert result.code == 0, result.stderr
    assert "oldonly" in result.stdout and "requires Python <3.11" in result.stdout
    assert "sudo tljh env rollback --target hub" in result.stderr

    env = hermetic_env()
    assert oldhub.hub_python_version(hub).startswith("3.11")
    for name in world.importable_before:  # each alone: what the old interpreter could import
        proc = subprocess.run([hub / "bin" / "python3", "-c", f"import {name}"], capture_output=True, env=env)
        assert proc.returncode == 0, (name, proc.stderr)
    run([hub / "bin" / "python3", "-m", "pip", "check"])
    site = _site(hub)
    assert _requested(site) == old_requested
    (tljh_info,) = site.glob("the_littlest_jupyterhub-*.dist-info")
    assert json.loads((tljh_info / "direct_url.json").read_text())["vcs_info"]["commit_id"] == world.commit
    assert not (site / "tljh" / "later.py").exists()  # the recorded commit, not the branch head
    assert {p.name for p in site.glob("oldonly-*.dist-info")} == {"oldonly-1.1.dist-info"}
    writable = [
        p
        for p in file_listing(hub)
        if not os.path.islink(hub / p) and os.lstat(hub / p).st_mode & stat.S_IWOTH
    ]
    assert writable == []
    st = os.lstat(hub)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (
        stat.S_IMODE(old_root.st_mode),
        old_root.st_uid,
        old_root.st_gid,
    )
    # console scripts and the venv's own files name the final path, and run
    hello = subprocess.run([hub / "bin" / "localpkg-hello"], capture_output=True, text=True, env=env)
    assert hello.stdout.strip() == "hello from localpkg", hello.stderr
    for path in [hub / "pyvenv.cfg", hub / "bin" / "activate", hub / "bin" / "localpkg-hello"]:
        assert ".rebuild-" not in path.read_text()
    assert not list(prefix.glob("hub.rebuild-*"))
    entry = StateDir.of(_layout(prefix, world)).history()[-1]
    assert (entry["kind"], entry["result"]) == ("rebuild", "ok")
    healthy = tljh("--prefix", prefix, "doctor", "--target", "hub", "--json")
    assert healthy.code == 0, healthy.stdout

    # the rebuilt hub runs its plugins: what they contribute is known now
    view = tljh("--prefix", prefix, "plugins", "--json").json()
    assert view["evaluated"], view["reason"]
    assert view["contributions"][plugins.HUB_PIP] == ["oauthenticator"]
    assert view["contributions"][plugins.USER_CONDA_CHANNELS] == ["bioconda"]
    lines, notes = plugins.upgrade_additions(rebuild.inspect_environment("hub", _layout(prefix, world)))
    assert lines == ["oauthenticator"] and any("xarray" in n and "apt" not in n for n in notes)
    gone = tljh("--prefix", prefix, "env", "uninstall", "--target", "hub", "oauthenticator", "--dry-run")
    assert gone.code == 0, gone.stderr
    assert "next TLJH upgrade brings back oauthenticator (plugin demo)" in gone.stderr

    back = tljh("--prefix", prefix, "env", "rollback", "--target", "hub", "--yes")
    assert back.code == 0, back.stderr
    assert listing_diff(old_listing, file_listing(hub, contents=True)) == []


def test_a_package_that_fails_to_install_leaves_the_old_hub(world, prefix, tljh):
    """The mirror now serves a fragile 1.0 that pip cannot install (after writing part of
    it): the rebuild fails, and the old venv is in place, unchanged."""
    before = file_listing(prefix / "hub", contents=True)
    result = tljh(
        "--prefix", prefix, "env", "rebuild", "--target", "hub", "--yes", env=world.index_env(broken=True)
    )
    assert result.code == 6, result.stderr  # CHANGE_FAILED
    assert "the old hub environment is in place" in result.stderr
    assert listing_diff(before, file_listing(prefix / "hub", contents=True)) == []
    assert not list(prefix.glob("hub.rebuild-*"))
    state = StateDir.of(_layout(prefix, world))
    assert state.journals() == []
    assert state.history()[-1]["result"] == "failed"


def test_kill_9_mid_rebuild_is_undone_by_doctor_fix_not_by_a_dry_run(world, prefix, tljh):
    before = file_listing(prefix / "hub", contents=True)
    state = StateDir.of(_layout(prefix, world))
    env = hermetic_env(TLJH_SYSTEM_PYTHON=str(world.system_python), **world.index_env())
    proc = subprocess.Popen(
        tljh_argv("--prefix", prefix, "env", "rebuild", "--target", "hub", "--yes"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    # kill it while pip writes bigpkg's 3,000 files into the new venv
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(
        prefix.glob("hub.rebuild-*/lib/python3.*/site-packages/bigpkg")
    ):
        assert proc.poll() is None, "the rebuild ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(prefix.glob("hub.rebuild-*")), "the kill came too late to test anything"
    (journal,) = state.journals()
    installers = [pgid for pgid, _ in journal["processes"]]

    # the restore ends the orphaned installer and undoes it all
    planned = tljh("--prefix", prefix, "env", "rollback", "--target", "hub", "--dry-run")
    assert planned.code == ExitCode.REFUSED and "never finished" in planned.stderr  # restores nothing
    # the old hub cannot run a change (its Python is gone): doctor --fix, as the hint says
    fixed = tljh("--prefix", prefix, "doctor", "--fix", "unfinished-change")
    assert fixed.code == ExitCode.OK, fixed.stdout + fixed.stderr
    assert listing_diff(before, file_listing(prefix / "hub", contents=True)) == []
    assert not list(prefix.glob("hub.rebuild-*"))
    assert all(_zombie_or_gone(pid) for pid in installers)
    assert state.history()[-1]["result"] == "restored-after-kill"


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_a_conda_user_env_is_refused_with_the_conda_way(world, prefix, tljh):
    user = prefix / "user"
    (user / "conda-meta").mkdir(parents=True)  # an empty conda-meta/ is what marks a conda env
    (user / "bin").mkdir()
    before = file_listing(prefix)
    result = tljh("--prefix", prefix, "env", "rebuild", "--target", "user", "--yes", env=world.index_env())
    assert result.code == 4, result.stderr  # REFUSED
    assert "upgrade its Python with conda" in result.stderr
    assert listing_diff(before, file_listing(prefix)) == []


def test_upgrade_version_moves_tljh_from_git_and_plans_from_its_own_list(world, tmp_path, tljh):
    """`tljh upgrade --version v2.0.2` on a hub whose TLJH came from git: TLJH moves to that
    tag from the same repository, and the plan follows v2.0.2's requirements-hub-env.txt
    (jupyterhub>=5.3), in the hub and, pinned to the hub's, in the user env."""
    prefix = tmp_path / "opt tljh"
    prefix.mkdir()
    links = [arg for folder in (world.wheelhouse, world.mine) for arg in ("--find-links", folder)]
    for env, packages in (
        ("hub", ["oauthenticator==17.1.0", "tljh-plugin-demo==1.0"]),
        ("user", []),
    ):
        run([world.system_python, "-m", "venv", prefix / env])
        pip = [prefix / env / "bin" / "python3", "-m", "pip", "install", "-q", "--no-index", *links]
        run([*pip, "jupyterhub==5.2.1", *packages])
    hub_pip = [prefix / "hub" / "bin" / "python3", "-m", "pip", "install", "-q", "--no-index", *links]
    run([*hub_pip, f"git+file://{world.repo}@{world.commit}#egg=the-littlest-jupyterhub"])
    (prefix / "state").mkdir(mode=0o700)

    planned = tljh("--prefix", prefix, "upgrade", "--version", "v2.0.2", "--json", env=world.index_env())
    assert planned.code == 0, planned.stderr
    plan = planned.json()
    assert plan["requirements"]["source"] == "tljh-version" and "v2.0.2" in plan["requirements"]["path"]
    changes = {(c["env"], c["package"]): (c["current"], c["target"]) for c in plan["changes"]}
    assert changes[("hub", "the-littlest-jupyterhub")] == ("2.0.1", "2.0.2")
    assert changes[("hub", "jupyterhub")] == ("5.2.1", "5.3.0")
    assert changes[("user", "jupyterhub")] == ("5.2.1", "5.3.0")
    assert any("plugins (demo) add to the hub step" in note for note in plan["notes"])

    done = tljh("--prefix", prefix, "upgrade", "--version", "v2.0.2", "--yes", env=world.index_env())
    assert done.code == 0, done.stderr
    tag = run(["git", "-C", world.repo, "rev-parse", "v2.0.2^{commit}"]).stdout.strip()
    (info,) = _site(prefix / "hub").glob("the_littlest_jupyterhub-*.dist-info")
    assert info.name == "the_littlest_jupyterhub-2.0.2.dist-info"
    assert json.loads((info / "direct_url.json").read_text())["vcs_info"]["commit_id"] == tag
    for env in ("hub", "user"):
        assert list(_site(prefix / env).glob("jupyterhub-5.3.0.dist-info")), env

    # a repository on this disk that others may change: pip would run its build as root
    mode = world.repo.stat().st_mode
    world.repo.chmod(0o777)
    try:
        refused = tljh("--prefix", prefix, "upgrade", "--version", "v2.0.1", "--json", env=world.index_env())
    finally:
        world.repo.chmod(mode)
    assert refused.code == ExitCode.REFUSED, refused.stderr
    assert f"{world.repo}: it is world-writable" in refused.stderr
    # gone (a /tmp cleared at boot): whoever creates that path first decides what is built
    away = world.repo.with_name("tljh-repo-away")
    world.repo.rename(away)
    try:
        refused = tljh("--prefix", prefix, "upgrade", "--version", "v2.0.1", "--json", env=world.index_env())
    finally:
        away.rename(world.repo)
    assert refused.code == ExitCode.REFUSED and "does not exist" in refused.stderr, refused.stderr


def test_a_standalone_user_env_becomes_a_venv_of_the_system_python(world, prefix, tljh):
    """The user env as a plain CPython installation (pyenv's 3.12, linked in) holding
    jupyterhub at the hub's version and numpy: rebuilt as a venv of the system python, with
    the same requested set, jupyterhub still the hub's."""
    source = Path(os.path.expanduser("~/.pyenv/versions/3.12.1"))
    if not (source / "bin" / "python3.12").exists():
        pytest.skip("needs pyenv's CPython 3.12.1 as a standalone user env")
    user = prefix / "user"
    clone_tree(source, user)  # nothing below is changed in place
    links = [arg for folder in (world.wheelhouse, world.mine) for arg in ("--find-links", folder)]
    run(
        [
            user / "bin" / "python3",
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            *links,
            "jupyterhub==5.2.1",
            "numpy",
        ]
    )
    site = user / "lib" / "python3.12" / "site-packages"
    requested = _requested(site)

    result = tljh("--prefix", prefix, "env", "rebuild", "--target", "user", "--yes", env=world.index_env())
    assert result.code == 0, result.stderr
    assert "becomes a venv" in result.stderr
    assert (user / "pyvenv.cfg").is_file() and oldhub.hub_python_version(user).startswith("3.11")
    new_site = _site(user)
    assert _requested(new_site) == requested
    assert list(new_site.glob("jupyterhub-5.2.1.dist-info")) and list(new_site.glob("numpy-*.dist-info"))
    run([user / "bin" / "python3", "-c", "import jupyterhub, numpy"])


# the ways TLJH's own requirements-hub-env.txt in the hub is found damaged (a failing disk, a
# hand edit): the plan holds TLJH's requirements, so it stops on one line and names the file
DAMAGED_TLJH_REQUIREMENTS = {
    "not-utf8": lambda path: path.write_bytes(b"jupyterhub>=5.2,<6\n\xff\xfe\n"),
    "not-a-requirement": lambda path: path.write_text("jupyterhub>=5.2,<6\npycurl===\n"),
    "fifo": lambda path: os.mkfifo(path),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_TLJH_REQUIREMENTS))
def test_a_damaged_tljh_requirements_file_stops_the_plan_on_one_line(world, prefix, tljh, damage):
    requirements = _site(prefix / "hub") / "tljh" / "requirements-hub-env.txt"
    requirements.unlink()  # a hard link to the shared world: replaced, never edited
    DAMAGED_TLJH_REQUIREMENTS[damage](requirements)
    before = file_listing(prefix)
    result = tljh(
        "--prefix", prefix, "env", "rebuild", "--target", "hub", "--json", env=world.index_env(), timeout=60
    )
    assert result.code == ExitCode.IO_ERROR, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "TLJH 2.0.1's own hub requirements" in line and "requirements-hub-env.txt" in line, line
    assert "Hint:" in line and "mv " in line, line
    if damage == "not-a-requirement":
        assert "line 2 is not a requirement" in line, line
    assert listing_diff(before, file_listing(prefix)) == []
