"""conda packages in the user env through the change machinery: plan, guards, history,
rollback.

conda and mamba cannot be installed here: the env's bin/mamba and bin/conda are the
stand-in (tests/support/conda_standin.py), py-rattler solving against a local channel of
real conda packages built in this session and linking them (real conda-meta records).
"""

from __future__ import annotations

import subprocess

from packaging.utils import canonicalize_name

from tests.support import prefixes
from tests.support.cli import tljh_argv
from tests.support.conda_fixtures import conda_list
from tests.support.listing import file_listing, listing_diff
from tljh_admin.errors import ExitCode


def _envs(prefix) -> dict:
    """hub and user, every file (tljh-admin's own state folder may be created by any command)."""
    return {
        f"{env}/{path}": entry
        for env in ("hub", "user")
        for path, entry in file_listing(prefix / env).items()
    }


def _set(rows) -> set[tuple[str, str]]:
    return {(canonicalize_name(r["name"]), r["version"]) for r in rows}


def test_docs_example_installs_then_rollback_is_byte_identical_offline(tljh, conda_prefix, system_python):
    user = conda_prefix / "user"
    before = file_listing(user, contents=True)

    # TLJH's docs: `sudo -E conda install -c conda-forge gdal`; here through tljh-admin
    result = tljh("--prefix", conda_prefix, "env", "install", "--target", "user", "--conda", "gdal", "--yes")
    assert result.code == 0, result.stderr
    plan = [
        line.split()
        for line in result.stdout.splitlines()[2:]
        if line.startswith("  ") and "*" not in line[:3]
    ]
    assert ["gdal", "*", "-", "3.9.2", "conda-forge", "install"] in plan
    assert ["libgdal", "-", "3.9.2", "conda-forge", "install"] in plan
    assert ["proj", "-", "9.4.1", "conda-forge", "install"] in plan
    assert "(jupyterhub pinned to the hub's: jupyterhub==5.2.1)" in result.stdout

    # inspection equals conda's own view of the result
    packages = tljh("--prefix", conda_prefix, "env", "packages", "--target", "user", "--json").json()[
        "packages"
    ]
    assert _set(packages) == _set(conda_list(user))
    assert {"gdal", "libgdal", "proj"} <= {p["name"] for p in packages}

    # uninstall --conda: conda removes what depends on the removed package, and the plan says so
    removed = tljh(
        "--prefix", conda_prefix, "env", "uninstall", "--target", "user", "--conda", "libgdal", "--yes"
    )
    assert removed.code == 0, removed.stderr
    assert "gdal" in removed.stdout and "remove" in removed.stdout
    assert "gdal" not in {r["name"] for r in conda_list(user)}

    history = tljh("--prefix", conda_prefix, "env", "history", "--target", "user", "--json").json()["changes"]
    install, uninstall = history
    assert (install["kind"], install["installer"], install["result"]) == ("install", "mamba", "ok")
    assert install["after"]["user"]["libgdal"] == "3.9.2"  # C libraries are in the record too
    assert install["detail"] == "user: conda revision 1"  # revision 0 made the env
    assert uninstall["detail"] == "user: conda revision 2"

    # back to before the install, without any installer or channel: a network namespace
    # with nothing in it, and the rollback runs no conda at all
    argv = tljh_argv(
        "--prefix", conda_prefix, "env", "rollback", "-t", "user", "--to", str(install["id"]), "--yes"
    )
    environ = prefixes.hermetic_env(NO_COLOR="1", TLJH_SYSTEM_PYTHON=str(system_python))
    offline = subprocess.run(["unshare", "--net", *argv], capture_output=True, text=True, env=environ)
    assert offline.returncode == 0, offline.stderr
    after = file_listing(user, contents=True)
    assert after == before, listing_diff(before, after)


def test_pip_over_conda_is_refused_and_nothing_changes(tljh, conda_prefix, wheelhouse):
    before = _envs(conda_prefix)
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}
    result = tljh(
        "--prefix", conda_prefix, "env", "install", "--target", "user", "numpy==2.1.0", "--yes", env=offline
    )
    assert result.code == ExitCode.REFUSED, result.stderr
    (line,) = result.stderr.strip().splitlines()  # one line: message, then the way out
    assert "pip would replace or remove numpy, which conda installed" in line
    assert "--conda numpy" in line and "--force" in line
    assert _envs(conda_prefix) == before, listing_diff(before, _envs(conda_prefix))


def test_removing_what_the_user_env_cannot_lose_is_refused(tljh, conda_prefix):
    """`env uninstall --conda python` took conda, mamba and pip with it and said done: the
    env could never be changed again. What TLJH runs there (python, conda, mamba, pip) is
    refused without --force, named or found in conda's own plan; nothing changes."""
    before = _envs(conda_prefix)
    base = ("--prefix", conda_prefix, "env", "uninstall", "--target", "user", "--yes")
    for args, words in (
        (("--conda", "python"), "removing python from the user environment breaks it"),
        (("--conda", "mamba"), "removing mamba from the user environment breaks it"),
        (("pip",), "removing pip from the user environment breaks TLJH's installer"),
    ):
        result = tljh(*base, *args)
        assert result.code == ExitCode.REFUSED, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert words in line and "--force" in line, line
    assert _envs(conda_prefix) == before, listing_diff(before, _envs(conda_prefix))


def test_conda_over_pip_is_refused_and_nothing_changes(tljh, conda_prefix, wheelhouse):
    before = _envs(conda_prefix)
    # the first complaint: gdal from PyPI fails; the answer points at --conda
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}
    pip_gdal = tljh("--prefix", conda_prefix, "env", "install", "-t", "user", "gdal", "--yes", env=offline)
    assert pip_gdal.code != 0 and "tljh env install --target user --conda gdal" in pip_gdal.stderr
    # traitlets came from pip (with jupyterhub); conda's traitlets would overwrite its files
    result = tljh(
        "--prefix", conda_prefix, "env", "install", "--target", "user", "--conda", "traitlets", "--yes"
    )
    assert result.code == ExitCode.REFUSED, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "conda would replace or remove traitlets 5.14.3 (pip)" in line and "--force" in line
    # a --dry-run, a channel that does not exist, and a spec that is shell text change nothing either
    dry = tljh("--prefix", conda_prefix, "env", "install", "--target", "user", "--conda", "gdal", "--dry-run")
    assert dry.code == 0 and "libgdal" in dry.stdout, dry.stderr
    missing = tljh(
        "--prefix", conda_prefix, "env", "install", "-t", "user", "--conda", "no-such-pkg", "--yes"
    )
    assert missing.code == ExitCode.RESOLUTION_FAILED, missing.stderr
    bad = tljh("--prefix", conda_prefix, "env", "install", "-t", "user", "--conda", "gdal;id", "--yes")
    assert bad.code == ExitCode.USAGE and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    uv = tljh(
        "--prefix",
        conda_prefix,
        "env",
        "install",
        "-t",
        "user",
        "--conda",
        "gdal",
        "--installer",
        "uv",
        "--yes",
    )
    assert uv.code == ExitCode.USAGE and "--installer uv is for Python packages" in uv.stderr
    hub = tljh("--prefix", conda_prefix, "env", "install", "-t", "hub", "--conda", "gdal", "--yes")
    assert hub.code == ExitCode.REFUSED and "not a conda environment" in hub.stderr
    assert _envs(conda_prefix) == before, listing_diff(before, _envs(conda_prefix))


def test_kill_during_a_conda_install_is_restored_by_the_next_command(tljh, conda_prefix, system_python):
    """kill -9 of tljh and its installer's group while mamba links: the next command
    restores the env, conda-meta/history included."""
    import os
    import signal
    import time

    user = conda_prefix / "user"
    before = file_listing(user, contents=True)
    environ = prefixes.hermetic_env(NO_COLOR="1", TLJH_SYSTEM_PYTHON=str(system_python))
    argv = tljh_argv("--prefix", conda_prefix, "env", "install", "-t", "user", "--conda", "gdal", "--yes")
    proc = subprocess.Popen(
        argv, env=environ, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    logs = conda_prefix / "state" / "tljh-admin" / "logs"

    def mamba_started() -> bool:
        return logs.is_dir() and any("mamba install" in p.read_text() for p in logs.glob("*.log"))

    deadline = time.monotonic() + 60
    while not mamba_started():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # tljh; mamba runs in its own group, which recovery ends
    proc.wait()

    dry = tljh("--prefix", conda_prefix, "env", "install", "-t", "user", "--conda", "proj", "--dry-run")
    assert dry.code == ExitCode.REFUSED and "never finished" in dry.stderr  # a dry run restores nothing
    nxt = tljh(
        "--prefix", conda_prefix, "env", "uninstall", "-t", "user", "--conda", "tljh-admin-absent", "--yes"
    )
    assert "restoring change 1" in nxt.stderr, nxt.stderr
    after = file_listing(user, contents=True)
    assert after == before, listing_diff(before, after)
