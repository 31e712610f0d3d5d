"""`tljh upgrade` on a conda user env: TLJH's conda steps run for real, in the one
transaction with the hub and jupyterhub steps.

conda and mamba cannot be installed here: the env's bin/mamba is the stand-in
(tests/support/conda_standin.py), py-rattler linking real conda packages from a local
channel; the env starts with mamba 0.15.3, below TLJH's minimum 0.16.0.
"""

from __future__ import annotations

from tests.support.conda_fixtures import conda_list
from tests.support.listing import file_listing, listing_diff
from tljh_admin import tljh as tljh_facts
from tljh_admin.errors import ExitCode

HUB_REQUIREMENTS = "jupyterhub>=5.2.0,<6\noauthenticator>=17.1.0,<18\njupyterhub-idle-culler>=1.4.0,<2\n"


def _envs(prefix) -> dict:
    return {
        f"{env}/{path}": entry
        for env in ("hub", "user")
        for path, entry in file_listing(prefix / env, contents=True).items()
    }


def test_conda_steps_in_the_plan_then_a_failing_jupyterhub_step_restores_both(
    tljh, conda_prefix, wheelhouse, tmp_path
):
    user = conda_prefix / "user"
    requirements = tmp_path / "requirements-hub-env.txt"
    requirements.write_text(HUB_REQUIREMENTS)
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}
    upgrade = ("--prefix", conda_prefix, "upgrade", "--hub-requirements", requirements)

    doc = tljh(*upgrade, "--json", env=offline).json()
    mamba = str(user / "bin" / "mamba")
    head = [mamba, "install", "--yes", "--prefix", str(user), "-c", "conda-forge"]
    assert [s["command"] for s in doc["steps"] if s["command"][0] == mamba] == [
        [*head, "mamba>=0.16.0"],  # TLJH's minimum (tljh.MIN_MAMBA)
        [
            *head,
            "--force-reinstall",
            f"conda=={tljh_facts.PINNED_CONDA}",
            f"mamba=={tljh_facts.PINNED_MAMBA}",
        ],
    ]
    assert doc["steps"][-1]["env"] == "user" and "jupyterhub" in doc["steps"][-1]["description"]
    user_changes = {c["package"]: c for c in doc["changes"] if c["env"] == "user"}
    assert (user_changes["mamba"]["current"], user_changes["mamba"]["target"]) == ("0.15.3", "1.5.9")
    assert user_changes["mamba"]["channel"] == "conda-forge"
    assert user_changes["conda"]["action"] == "reinstall"
    assert (user_changes["jupyterhub"]["current"], user_changes["jupyterhub"]["target"]) == ("5.2.1", "5.3.0")

    # the jupyterhub step fails half way (a folder where jupyterhub 5.3.0 installs a data
    # file), after the hub step and both conda steps have run
    (user / "share" / "jupyterhub" / "static" / "marker.txt").mkdir(parents=True)
    before = _envs(conda_prefix)
    failed = tljh(*upgrade, "--yes", env=offline)
    assert failed.code == ExitCode.CHANGE_FAILED, failed.stderr
    assert "restored" in failed.stderr.splitlines()[0]
    after = _envs(conda_prefix)
    assert after == before, listing_diff(before, after)  # conda-meta/ and history included
    (entry,) = tljh("--prefix", conda_prefix, "env", "history", "--json").json()["changes"]
    assert (entry["target"], entry["result"]) == ("hub,user", "failed")
    log = (conda_prefix / "state" / "tljh-admin" / "logs" / f"{entry['id']}.log").read_text()
    assert "mamba>=0.16.0" in log and "+ mamba-1.5.9" in log  # the conda steps really ran

    # without the obstacle the same upgrade goes through: mamba raised, jupyterhub pinned
    (user / "share" / "jupyterhub" / "static" / "marker.txt").rmdir()
    done = tljh(*upgrade, "--yes", env=offline)
    assert done.code == 0, done.stderr
    versions = {r["name"]: r["version"] for r in conda_list(user)}
    assert versions["mamba"] == "1.5.9" and versions["conda"] == "24.7.1"
    assert versions["jupyterhub"] == "5.3.0"
    last = tljh("--prefix", conda_prefix, "env", "history", "--json").json()["changes"][-1]
    assert last["result"] == "ok" and last["detail"] == "user: conda revision 2"
