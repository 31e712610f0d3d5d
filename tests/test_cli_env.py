"""`tljh env list` / `tljh env packages` as admins and scripts run them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import NOBODY
from tests.support import prefixes
from tests.support.cli import tljh_argv
from tests.support.listing import file_listing, listing_diff
from tljh_admin.cli import fast
from tljh_admin.errors import ExitCode

# the whole module is in the floor run (scripts/test)
pytestmark = pytest.mark.floor

ENV_KEYS = {
    "name",
    "kind",
    "status",
    "reason",
    "root",
    "interpreter",
    "interpreter_target",
    "python_version",
    "externally_managed",
    "venv_base",
    "site_dirs",
    "distribution_count",
    "packages",
    "problems",
}
PACKAGE_KEYS = {"name", "version", "installer", "location", "metadata_dir", "channel", "build"}


def test_env_list_json_contract(tljh, base_prefix):
    result = tljh("--prefix", base_prefix, "env", "list", "--json")
    assert result.code == ExitCode.OK, result.stderr
    doc = result.json()
    assert set(doc) == {"schema", "version", "prefix", "system_python", "environments"}
    assert (doc["schema"], doc["version"]) == ("tljh-admin/env-list", 1)
    assert [e["name"] for e in doc["environments"]] == ["hub", "user", "system"]
    for env in doc["environments"]:
        assert set(env) == ENV_KEYS
        assert env["status"] == "ok"
        assert env["distribution_count"] == len(env["packages"])
        for package in env["packages"]:
            assert set(package) == PACKAGE_KEYS
    assert result.stderr == ""


def test_env_packages_json_contract(tljh, base_prefix):
    doc = tljh("--prefix", base_prefix, "env", "packages", "--target", "hub", "--json").json()
    assert set(doc) == {
        "schema",
        "version",
        "prefix",
        "environment",
        "status",
        "reason",
        "packages",
        "problems",
    }
    assert (doc["schema"], doc["version"], doc["environment"]) == ("tljh-admin/env-packages", 1, "hub")


def test_env_list_table(tljh, base_prefix):
    result = tljh("--prefix", base_prefix, "env", "list")
    assert result.code == 0, result.stderr
    for word in ("hub", "user", "system", "venv", "ok"):
        assert word in result.stdout


def test_broken_hub_is_a_broken_row_and_others_still_listed(tljh, prefix):
    python3 = prefix / "hub" / "bin" / "python3"
    python3.unlink()
    # what an OS upgrade leaves: the venv's interpreter points at a Python that is gone
    python3.symlink_to("/usr/bin/python3.9-removed-by-do-release-upgrade")

    result = tljh("--prefix", prefix, "env", "list", "--json")
    assert result.code == ExitCode.PROBLEMS_FOUND
    envs = {e["name"]: e for e in result.json()["environments"]}
    hub = envs["hub"]
    assert hub["status"] == "broken"
    assert "/usr/bin/python3.9-removed-by-do-release-upgrade" in hub["reason"]
    assert "pyvenv.cfg expects Python" in hub["reason"]
    assert hub["distribution_count"] > 0  # its packages are still read from its files
    assert envs["user"]["status"] == "ok"
    assert envs["system"]["status"] == "ok"

    table = tljh("--prefix", prefix, "env", "list")
    assert table.code == ExitCode.PROBLEMS_FOUND
    assert "broken" in table.stdout and "dangling symlink" in table.stdout


def test_missing_user_env(tljh, prefix):
    subprocess.run(["rm", "-rf", prefix / "user"], check=True)
    result = tljh("--prefix", prefix, "env", "list", "--json")
    assert result.code == ExitCode.PROBLEMS_FOUND
    user = result.json()["environments"][1]
    assert (user["status"], user["kind"]) == ("missing", None)


def test_symlinked_prefix_and_environment_variable(tljh, base_prefix, tmp_path):
    link = tmp_path / "link to prefix"
    link.symlink_to(base_prefix)
    by_flag = tljh("--prefix", link, "env", "list", "--json")
    by_var = tljh("env", "list", "--json", env={"TLJH_INSTALL_PREFIX": str(link)})
    assert by_flag.code == by_var.code == 0
    assert by_flag.json() == by_var.json()
    assert by_flag.json()["prefix"] == str(link)
    assert by_flag.json()["environments"][0]["distribution_count"] > 0


def _bad_prefixes(tmp_path):
    a_file = tmp_path / "a file"
    a_file.write_text("not a prefix")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    return {
        "does not exist": (tmp_path / "no such prefix", "does not exist"),
        "is a file": (a_file, "is not a folder"),
        "dangling symlink": (dangling, "dangling symlink"),
    }


@pytest.mark.parametrize("case", ["does not exist", "is a file", "dangling symlink"])
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_bad_prefix_is_one_line_with_a_hint(tljh, tmp_path, case, json_flag):
    path, words = _bad_prefixes(tmp_path)[case]
    before = file_listing(tmp_path)
    result = tljh("--prefix", path, "env", "list", *json_flag)
    assert result.code == ExitCode.USAGE
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert words in lines[0] and "Hint:" in lines[0]
    assert listing_diff(before, file_listing(tmp_path)) == []


@pytest.mark.parametrize("where", ["closed prefix", "under a closed folder"])
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_unreadable_prefix_as_a_real_unprivileged_user(nobody_python, open_tmp, tmp_path, where, json_flag):
    # A real uid without rights, not a mocked euid: the kernel says no.
    if where == "closed prefix":
        target = open_tmp / "closed"
        target.mkdir(mode=0o700, exist_ok=True)
        target.chmod(0o700)
    else:
        target = tmp_path / "opt" / "tljh"  # pytest's tmp_path is inside a 0700 folder
        target.mkdir(parents=True)
    before = file_listing(target.parent)
    proc = subprocess.run(
        [*NOBODY, *tljh_argv("--prefix", target, "env", "list", *json_flag, python=nobody_python)],
        capture_output=True,
        text=True,
        env=prefixes.hermetic_env(NO_COLOR="1"),
        cwd="/",
    )
    assert proc.returncode == ExitCode.PERMISSION_DENIED, proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert "not readable" in line and "sudo" in line
    assert listing_diff(before, file_listing(target.parent)) == []


@pytest.mark.parametrize("flag", ["--prefix", "--system-python"])
def test_an_empty_path_is_refused_not_taken_for_the_default(tljh, prefix, flag):
    # `--prefix "$PREFX"` with a typo'd variable must not fall back to /opt/tljh (or, with
    # TLJH_INSTALL_PREFIX set, to that prefix): it is refused before anything is read
    before = file_listing(prefix)
    env = {"TLJH_INSTALL_PREFIX": str(prefix)}
    result = tljh(flag, "", "env", "uninstall", "-t", "user", "numpy", "--yes", env=env)
    assert result.code == ExitCode.USAGE
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert f"{flag} is empty" in line and "Hint:" in line
    assert listing_diff(before, file_listing(prefix)) == []


def test_unknown_target_is_a_usage_error(tljh, base_prefix):
    result = tljh("--prefix", base_prefix, "env", "packages", "--target", "nowhere", "--json")
    assert result.code == ExitCode.USAGE
    assert result.stdout == ""
    assert "nowhere" in result.stderr


FAST_SHAPES = [
    ["env", "list", "--json"],
    ["env", "packages", "--target", "user", "--json"],
    ["env", "packages", "--json", "--target=hub"],
    ["env", "packages", "-t", "system", "--json"],
    ["doctor", "--json"],
    ["doctor", "--json", "--strict", "-t", "user", "--target=hub", "leftovers", "env-present"],
    ["doctor", "no-such-check", "--json"],
    ["doctor", "--json", "Not_A_Check"],
    ["doctor", "--list", "--json"],
    ["doctor", "--json", "-t", "USER", "--fix", "--dry-run"],
    ["env", "history", "--json", "--target=Hub"],
]


@pytest.mark.parametrize("argv", FAST_SHAPES)
def test_fast_path_prints_what_the_typer_app_prints(tljh, prefix, argv):
    (prefix / "hub" / "bin" / "python3").unlink()  # a broken env too, so exit codes differ from 0
    args = ["--prefix", str(prefix), *argv]
    assert fast.parse(args) is not None
    quick = tljh(*args)
    full = tljh(*args, env={fast.DISABLE_VAR: "0"})
    assert (quick.code, quick.stdout, quick.stderr) == (full.code, full.stdout, full.stderr)


@pytest.mark.parametrize(
    "argv",
    [
        ["env", "list"],  # human output: Typer and rich
        ["env", "list", "--json", "--json"],
        ["env", "list", "--json", "--verbose"],
        ["env", "packages", "--json"],
        ["env", "packages", "--target", "mars", "--json"],
        ["--prefix", "env", "list", "--json"],
        ["--prefix=", "env", "list", "--json"],
        ["--bogus", "x", "env", "list", "--json"],
        ["env", "list", "--json", "--help"],
        ["doctor", "--json", "--target", "user", "--target", "mars"],
        ["doctor", "--json", "--lock-timeout", "soon"],
        ["doctor", "--json", "--", "leftovers"],
        ["--version", "env", "list", "--json"],
        ["-q", "--quiet", "env", "list", "--json"],
        ["env", "install", "-t", "user", "x", "--json"],
        ["doctor"],
        [],
    ],
)
def test_fast_path_leaves_everything_else_to_typer(argv):
    assert fast.parse(argv) is None


def test_bad_prefix_same_on_both_paths(tljh, tmp_path):
    args = ["--prefix", str(tmp_path / "nope"), "env", "list", "--json"]
    quick, full = tljh(*args), tljh(*args, env={fast.DISABLE_VAR: "0"})
    assert (quick.code, quick.stdout, quick.stderr) == (full.code, full.stdout, full.stderr)


def test_entry_points(base_prefix):
    tljh_script = os.path.join(os.path.dirname(sys.executable), "tljh")
    for cmd in ([tljh_script], [sys.executable, "-m", "tljh_admin"]):
        proc = subprocess.run([*cmd, "--version"], capture_output=True, text=True, check=True)
        assert proc.stdout.startswith("tljh-admin ")
        proc = subprocess.run([*cmd, "--help"], capture_output=True, text=True, check=True)
        assert "env" in proc.stdout


# an option given an empty value (a script's unset variable): refused before anything is
# read or written, never taken for "not given" (an empty --index-url installed from PyPI)
EMPTY_VALUES = {
    "--index-url": ["env", "install", "-t", "user", "--dry-run", "--index-url", "", "six"],
    "--extra-index-url": ["env", "install", "-t", "user", "--dry-run", "--extra-index-url", "", "six"],
    "--requirement": ["env", "install", "-t", "user", "--dry-run", "-r", ""],
    "--version": ["upgrade", "--dry-run", "--version", ""],
    "--hub-requirements": ["upgrade", "--dry-run", "--hub-requirements", ""],
    "--z2jh-chart": ["env", "export", "-t", "user", "-f", "z2jh-config", "--z2jh-chart", ""],
}


@pytest.mark.parametrize("typer_path", [False, True])
@pytest.mark.parametrize("flag", sorted(EMPTY_VALUES))
def test_an_empty_option_value_is_refused_and_nothing_is_written(tljh, prefix, flag, typer_path):
    before = file_listing(prefix)
    env = {fast.DISABLE_VAR: "0"} if typer_path else {}
    result = tljh("--prefix", prefix, *EMPTY_VALUES[flag], env=env)
    assert result.code == ExitCode.USAGE, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"{flag} is empty" in line and "Hint:" in line, line
    assert listing_diff(before, file_listing(prefix)) == []
