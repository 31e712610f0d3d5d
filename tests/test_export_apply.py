"""`tljh env apply`: a lock exported from the suite's user env, applied with real pip to a
fresh env of the same CPython, gives the same packages; applying it again changes nothing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.support import prefixes
from tests.support.listing import file_listing, listing_diff


@pytest.fixture
def offline(wheelhouse):
    """Index settings for the installer: only the session's wheels (rule 2 keeps them)."""
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse), "PIP_CONFIG_FILE": "/dev/null"}


@pytest.fixture
def fresh_prefix(base_prefix, tmp_path, system_python, cpython_source) -> Path:
    """The suite's prefix with a user env made anew from the same CPython: pip only."""
    prefix = prefixes.copy_prefix(base_prefix, tmp_path / "fresh tljh")
    shutil.rmtree(prefix / "user")
    if cpython_source is not None:
        prefixes.copy_cpython(cpython_source, prefix / "user")
    else:
        prefixes.make_venv(system_python, prefix / "user")
    return prefix


def _packages(tljh, prefix: Path) -> set[tuple[str, str, str]]:
    result = tljh("--prefix", prefix, "env", "packages", "--target", "user", "--json")
    assert result.code == 0, result.stderr
    return {(p["name"], p["version"], p["installer"]) for p in result.json()["packages"]}


@pytest.mark.floor
def test_round_trip_and_second_apply_changes_nothing(tljh, base_prefix, fresh_prefix, offline, tmp_path):
    lock = tmp_path / "user.lock.json"
    exported = tljh("--prefix", base_prefix, "env", "export", "--target", "user", "--format", "lock")
    assert exported.code == 0, exported.stderr
    lock.write_text(exported.stdout)
    assert _packages(tljh, base_prefix) != _packages(tljh, fresh_prefix)

    apply = ("--prefix", fresh_prefix, "env", "apply", lock, "--target", "user", "--yes", "--json")
    dry = tljh(*apply[:-2], "--dry-run", "--json", env=offline)
    assert dry.code == 0, dry.stderr
    plan = dry.json()
    assert plan["schema"] == "tljh-admin/change" and plan["changed"] is True and plan["dry_run"] is True
    assert {c["package"].lower() for c in plan["changes"]} >= {"jupyterhub", "jupyterlab", "numpy"}

    first = tljh(*apply, env=offline)
    assert first.code == 0, first.stderr
    assert first.json()["changed"] is True and first.json()["result"] == "ok"
    assert _packages(tljh, fresh_prefix) == _packages(tljh, base_prefix)
    again = tljh("--prefix", fresh_prefix, "env", "export", "--target", "user", "--format", "lock")
    assert json.loads(again.stdout) == json.loads(exported.stdout)

    before = file_listing(fresh_prefix / "user", contents=True)
    second = tljh(*apply, env=offline)
    assert second.code == 0, second.stderr
    assert second.json()["changed"] is False and second.json()["changes"] == []
    assert listing_diff(before, file_listing(fresh_prefix / "user", contents=True)) == []
    history = tljh("--prefix", fresh_prefix, "env", "history", "--json").json()["changes"]
    assert [c["kind"] for c in history] == ["apply"]


def _lock_of(tljh, prefix: Path) -> dict:
    exported = tljh("--prefix", prefix, "env", "export", "--target", "user", "--format", "lock")
    assert exported.code == 0, exported.stderr
    return json.loads(exported.stdout)


def test_refused_and_bad_files_change_nothing(tljh, prefix, offline, tmp_path):
    document = _lock_of(tljh, prefix)
    files = tmp_path / "files"
    files.mkdir()

    def variant(name: str, change) -> Path:
        copy = json.loads(json.dumps(document))
        change(copy)
        path = files / name
        path.write_text(json.dumps(copy))
        return path

    def set_version(name, version):
        def change(doc):
            for package in doc["packages"]:
                if package["name"] == name:
                    package["version"] = version

        return change

    other_hub = variant("other-hub.json", set_version("jupyterhub", "5.3.0"))
    other_python = variant("other-python.json", lambda d: d.update(python="3.7.17"))
    with_conda = variant(
        "conda.json",
        lambda d: d["packages"].insert(
            0,
            {
                "name": "gdal",
                "version": "3.9.2",
                "manager": "conda",
                "installer": "conda",
                "requested": True,
                "source": {
                    "type": "conda",
                    "channel": "conda-forge",
                    "build": "py313h0_0",
                    "subdir": "linux-64",
                },
            },
        ),
    )
    without_hub = variant(
        "no-hub.json", lambda d: d.update(packages=[p for p in d["packages"] if p["name"] != "jupyterhub"])
    )
    newer = variant("newer.json", lambda d: d.update(version=99))
    not_a_lock = files / "report.json"
    not_a_lock.write_text(json.dumps({"schema": "tljh-admin/doctor", "version": 1}))
    option_line = files / "requirements.txt"
    option_line.write_text("numpy==2.1.0\n--index-url https://example.org/simple\n")
    # pip joins #subdirectory= unchecked onto what it unpacks, and runs the build backend it
    # finds there, as root, even for a dry run's plan: a lock must not climb out of its source
    climbing_vcs = variant(
        "climbing-vcs.json",
        lambda d: d["packages"].insert(
            0,
            {
                "name": "legit",
                "version": "1.0",
                "manager": "pip",
                "installer": "pip",
                "requested": True,
                "source": {
                    "type": "vcs",
                    "vcs": "git",
                    "url": "https://example.org/legit.git",
                    "commit": "0123abcd",
                    "subdirectory": "../../../tmp/evil",
                },
            },
        ),
    )
    climbing_archive = files / "climbing-archive.txt"
    climbing_archive.write_text(
        "legit @ https://example.org/legit-1.0.tar.gz#subdirectory=../../../tmp/evil\n"
    )
    climbing_vcs_line = files / "climbing-vcs.txt"
    climbing_vcs_line.write_text(
        "legit @ git+https://example.org/legit.git@0123abcd#subdirectory=a/../../evil\n"
    )
    # other shapes than export writes: refused as such, never coerced into package names
    shapes = {
        "python-number.json": lambda d: d.update(python=3.13),
        "version-true.json": lambda d: d.update(version=True),
        "source-type-list.json": lambda d: d["packages"][0].update(source={"type": []}),
        "requested-text.json": lambda d: d["packages"][0].update(requested="yes"),
    }
    odd_locks = [variant(name, change) for name, change in shapes.items()]
    scalar = files / "scalar.json"
    scalar.write_text("null\n")
    odd_ymls = []
    for number, dependencies in enumerate(
        ["[{pip: 5}]", "[null]", "[{pip: six}]", "[{pip: [], conda: [x]}]"]
    ):
        odd_ymls.append(files / f"odd-{number}.yml")
        odd_ymls[-1].write_text(f"dependencies: {dependencies}\n")
    hashed = files / "hashed.txt"  # pip-compile --generate-hashes: before, "Expected comma"
    hashed.write_text("numpy==2.1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    huge = files / "huge.txt"  # sparse: no disk, but read whole it filled root's memory
    with open(huge, "wb") as f:
        f.truncate(256 * 1024**2)
    fifo = files / "fifo.txt"  # read, it would hang
    os.mkfifo(fifo)
    deep_lock = files / "deep.json"  # the JSON and YAML parsers recurse: a RecursionError
    deep_lock.write_text('{"packages": ' + "[" * 100_000 + "]" * 100_000 + "}")
    deep_yml = files / "deep.yml"
    deep_yml.write_text("dependencies: " + "[" * 5000 + "]" * 5000 + "\n")
    # a file only root may read, through a user's symlink: its line is never echoed
    secret = files / "secret"
    secret.write_text("root:s3cr3t-hash:20228:0:99999:7:::\n")
    secret.chmod(0o600)
    secret_link = files / "team-env.txt"
    secret_link.symlink_to(secret)

    # the environments are compared; state/ may gain tljh-admin's own (empty) bookkeeping
    before = {env: file_listing(prefix / env, contents=True) for env in ("hub", "user")}
    cases = [
        (other_hub, [], 4, "has jupyterhub 5.3.0, but the hub runs jupyterhub 5.2.1"),
        (other_python, [], 2, "is for Python 3.7"),
        (with_conda, [], 2, "lists 1 conda packages (gdal ==3.9.2 py313h0_0)"),
        (without_hub, ["--exact"], 4, "--exact would remove it and break TLJH"),
        (newer, [], 2, "is a lock of version 99"),
        (not_a_lock, [], 2, "is not a tljh-admin lock file"),
        (option_line, [], 2, "is an option; apply takes requirement lines only"),
        (climbing_vcs, [], 2, "a vcs source that is not VCS+URL@COMMIT"),
        (climbing_archive, [], 2, "comes from a local path or an unknown kind of URL"),
        (climbing_vcs_line, [], 2, "comes from a local path or an unknown kind of URL"),
        (secret_link, [], 2, "team-env.txt, line 1 is not a valid requirement"),
        *((lock, [], 2, "is not a tljh-admin lock file") for lock in (*odd_locks, scalar)),
        *((yml, [], 2, "a dependencies entry") for yml in odd_ymls),
        (files / "missing.json", [], 2, "does not exist"),
        (deep_lock, [], 2, "nested too deeply"),
        (huge, [], 2, "is larger than 16 MiB"),
        (hashed, [], 2, "pins hashes (pip-compile --generate-hashes)"),
        (fifo, [], 2, "is not a file"),
        (deep_yml, [], 2, "is not valid YAML"),
    ]
    for path, extra, code, words in cases:
        result = tljh("--prefix", prefix, "env", "apply", path, "-t", "user", "--yes", *extra, env=offline)
        assert (result.code, result.stdout) == (code, ""), (path.name, result.stderr)
        assert words in result.stderr and result.stderr.count("\n") == 1, result.stderr
        assert "s3cr3t" not in result.stderr and "index-url" not in result.stderr
    # --json changes nothing without --yes (and there is no terminal to ask on)
    result = tljh("--prefix", prefix, "env", "apply", other_hub, "-t", "user", "--json", env=offline)
    assert result.code == 2 and "--yes" in result.stderr
    for env, listing in before.items():
        assert listing_diff(listing, file_listing(prefix / env, contents=True)) == []


def test_requirements_apply_exact_and_change_json(tljh, prefix, offline, tmp_path):
    """A requirements file: what differs changes, --exact removes what it does not list, the
    JSON says what happened; the other change commands answer --dry-run --json alike."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("jupyterhub==5.2.1\njupyterlab\nnumpy==2.1.0  # the course moved on\n")
    apply = ("--prefix", prefix, "env", "apply", requirements, "-t", "user")
    plan = tljh(*apply, "--exact", "--dry-run", "--json", env=offline).json()
    actions = {c["package"].lower(): (c["current"], c["target"], c["action"]) for c in plan["changes"]}
    assert actions["numpy"] == ("1.26.4", "2.1.0", "upgrade")
    assert actions["notebook"] == ("7.2.2", None, "remove")
    assert "pip" not in actions and "jupyterlab" not in actions  # pip stays; jupyterlab is satisfied
    assert plan["changed"] is True and plan["change_id"] is None

    done = tljh(*apply, "--exact", "--yes", "--json", env=offline)
    assert done.code == 0, done.stderr
    assert done.json()["changed"] is True and isinstance(done.json()["change_id"], int)
    installed = {p["name"].lower(): p["version"] for p in _lock_of(tljh, prefix)["packages"]}
    assert installed["numpy"] == "2.1.0" and "notebook" not in installed
    again = tljh(*apply, "--exact", "--yes", env=offline)
    assert again.code == 0 and "already matches" in again.stderr
    yml = tmp_path / "environment.yml"
    exported = tljh("--prefix", prefix, "env", "export", "-t", "user", "--format", "environment.yml", yml)
    assert exported.code == 0, exported.stderr
    same = tljh("--prefix", prefix, "env", "apply", yml, "-t", "user", "--exact", "--dry-run", "--json")
    assert same.code == 0 and same.json()["changed"] is False, same.stderr

    commands = {
        "install": ("env", "install", "-t", "user", "notebook"),
        "uninstall": ("env", "uninstall", "-t", "user", "numpy"),
        "rollback": ("env", "rollback", "-t", "user"),
    }
    for command, args in commands.items():
        result = tljh("--prefix", prefix, *args, "--dry-run", "--json", env=offline)
        assert result.code == 0, result.stderr
        document = result.json()
        assert set(document) == {
            "schema",
            "version",
            "prefix",
            "command",
            "environment",
            "dry_run",
            "changed",
            "changes",
            "change_id",
            "result",
            "notes",
            "also",
        }
        assert (document["command"], document["changed"], document["dry_run"]) == (command, True, True)
        assert document["also"] == []  # one environment moved, one rolled back
    rolled = tljh("--prefix", prefix, "env", "rollback", "-t", "user", "--yes", "--json", env=offline).json()
    assert rolled["changed"] is True and rolled["result"] == "ok"
    assert {p["name"].lower(): p["version"] for p in _lock_of(tljh, prefix)["packages"]}["numpy"] == "1.26.4"


def test_conda_lock_round_trip(tljh, conda_base_prefix, conda_prefix, offline):
    """A conda user env moved away from its lock (a conda package added, one upgraded) is
    brought back by the env's own conda (the stand-in on py-rattler) in one change; a second
    apply changes nothing."""
    from tests.support.conda_fixtures import conda

    user = conda_prefix / "user"
    conda(user, "install", "--yes", "--prefix", str(user), "-c", "conda-forge", "gdal", "numpy=2.1.0")
    lock = conda_prefix.parent / "conda.lock.json"
    wanted = _lock_of(tljh, conda_base_prefix)
    lock.write_text(json.dumps(wanted))

    def conda_part(document):
        return {
            (p["name"], p["version"], p["source"]["build"])
            for p in document["packages"]
            if p["manager"] == "conda"
        }

    assert conda_part(_lock_of(tljh, conda_prefix)) != conda_part(wanted)
    apply = ("--prefix", conda_prefix, "env", "apply", lock, "-t", "user", "--exact", "--yes", "--json")
    first = tljh(*apply, env=offline)
    assert first.code == 0, first.stderr
    actions = {c["package"]: c["action"] for c in first.json()["changes"]}
    assert actions["numpy"] == "downgrade" and actions["gdal"] == "remove" and actions["libgdal"] == "remove"
    assert {c["channel"] for c in first.json()["changes"] if c["package"] == "numpy"} == {"conda-forge"}
    after = _lock_of(tljh, conda_prefix)
    assert conda_part(after) == conda_part(wanted)
    assert [p for p in after["packages"] if p["manager"] == "pip"] == [
        p for p in wanted["packages"] if p["manager"] == "pip"
    ]
    second = tljh(*apply, env=offline)
    assert second.code == 0 and second.json()["changed"] is False
    history = tljh("--prefix", conda_prefix, "env", "history", "--json").json()["changes"]
    assert [(c["kind"], c["installer"], c["result"]) for c in history] == [("apply", "mamba", "ok")]


def test_exact_with_the_requested_packages_keeps_what_they_need(tljh, prefix, offline, tmp_path):
    """`export --requested` lists what the admin asked for, not its dependencies: --exact
    with it must keep those (before, it removed every dependency, spawns failed, and the
    outcome said ok); it removes only what nothing listed needs."""
    requested = tmp_path / "requested.txt"
    bom = tmp_path / "bom.txt"  # Windows editors write one; pip reads through it
    bom.write_bytes(b"\xef\xbb\xbfnumpy==1.26.4 \\\n    # via pip-compile's continuation\n")
    kept = tljh("--prefix", prefix, "env", "apply", bom, "-t", "user", "--dry-run", "--json", env=offline)
    assert kept.code == 0 and kept.json()["changed"] is False, kept.stderr
    exported = tljh(
        "--prefix", prefix, "env", "export", "-t", "user", "-f", "requirements", "--requested", requested
    )
    assert exported.code == 0, exported.stderr
    lines = [line for line in requested.read_text().splitlines() if line and not line.startswith("#")]
    assert 2 <= len(lines) < 10  # jupyterhub, jupyterlab, notebook, numpy: no dependencies
    before = file_listing(prefix / "user")
    apply = ("--prefix", prefix, "env", "apply", requested, "-t", "user", "--exact")
    plan = tljh(*apply, "--dry-run", "--json", env=offline)
    assert plan.code == 0, plan.stderr
    assert plan.json()["changed"] is False and plan.json()["changes"] == []
    # numpy is listed by nothing else: without it in the file, --exact removes it alone
    requested.write_text("\n".join(line for line in lines if not line.lower().startswith("numpy")) + "\n")
    done = tljh(*apply, "--yes", "--json", env=offline)
    assert done.code == 0, done.stderr
    assert [(c["package"].lower(), c["action"]) for c in done.json()["changes"]] == [("numpy", "remove")]
    prefixes.run([prefix / "user" / "bin" / "python3", "-m", "pip", "check"])  # raises if broken
    assert not list((prefix / "user" / "lib").glob("python3*/site-packages/numpy"))
    assert listing_diff(before, file_listing(prefix / "user"))  # numpy's files went, nothing else broke


@pytest.fixture
def git_server(tmp_path):
    """`git daemon` on a free local port, serving the folder it returns (a git:// URL is a
    travelling URL that apply accepts; file:// ones it refuses)."""
    import socket
    import subprocess

    served = tmp_path / "served"
    served.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            f"--base-path={served}",
            "--listen=127.0.0.1",
            f"--port={port}",
            served,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):  # until it listens
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            import time

            time.sleep(0.05)
        yield served, f"git://127.0.0.1:{port}"
    finally:
        daemon.terminate()
        daemon.wait()


def test_vcs_requirements_by_tag_branch_short_commit_or_none(tljh, prefix, offline, tmp_path, git_server):
    """pip records a tag or branch as requested_revision and the commit as commit_id: a tag
    installs once and then matches (before: it never matched after the change, which was
    undone), and so do the commit (short or whole) and no revision at all (before: a crash);
    another repository or revision does not."""
    import subprocess

    from tests.support.vcs import git_project
    from tljh_admin import apply_env
    from tljh_admin.envs import inspect_environment
    from tljh_admin.layout import resolve_layout

    served, base = git_server
    repo, commit = git_project(served / "vcspkg", "vcspkg", "1.0.0")
    subprocess.run(["git", "-C", repo, "tag", "v1.0"], check=True)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"vcspkg @ git+{base}/vcspkg@v1.0\n")
    apply = ("--prefix", prefix, "env", "apply", requirements, "-t", "user")
    done = tljh(*apply, "--yes", "--json", env=offline)
    assert done.code == 0, done.stderr
    again = tljh(*apply, "--dry-run", "--json", env=offline)
    assert again.code == 0 and again.json()["changed"] is False, again.stderr

    env = inspect_environment("user", resolve_layout(prefix))

    def missing(url: str) -> list[str]:
        requirements.write_text(f"vcspkg @ git+{url}\n")
        return [
            w.key for w in apply_env.differences(env, apply_env.read_desired(str(requirements)), False)[0]
        ]

    for same in (
        f"{base}/vcspkg@v1.0",
        f"{base}/vcspkg@{commit[:10]}",
        f"{base}/vcspkg@{commit}",
        f"{base}/vcspkg",
    ):
        assert missing(same) == [], same
    other_commit = commit[:7] + ("1" if commit[7] == "0" else "0")
    for elsewhere in (f"{base}/other@v1.0", f"{base}/vcspkg@v1.1", f"{base}/vcspkg@{other_commit}"):
        assert missing(elsewhere) == ["vcspkg"], elsewhere


def test_extras_are_met_only_with_what_they_add(tljh, prefix, offline, tmp_path):
    from tests.support.wheels import WheelSpec, build_wheel

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build_wheel(WheelSpec("extrapkg", "1.0.0", ('helperpkg>=1; extra == "dev"',)), wheels)
    build_wheel(WheelSpec("helperpkg", "1.0.0"), wheels)
    local = {**offline, "PIP_FIND_LINKS": f"{offline['PIP_FIND_LINKS']} {wheels}"}
    assert (
        tljh("--prefix", prefix, "env", "install", "-t", "user", "extrapkg==1.0.0", "--yes", env=local).code
        == 0
    )
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("extrapkg[dev]==1.0.0\n")
    apply = ("--prefix", prefix, "env", "apply", requirements, "-t", "user")
    plan = tljh(*apply, "--dry-run", "--json", env=local)
    assert plan.code == 0, plan.stderr
    assert plan.json()["changed"] is True
    assert ("helperpkg", "install") in {(c["package"].lower(), c["action"]) for c in plan.json()["changes"]}
    assert tljh(*apply, "--yes", env=local).code == 0
    assert tljh(*apply, "--dry-run", "--json", env=local).json()["changed"] is False


def test_environment_yml_conda_versions_read_as_conda_reads_them(tljh, conda_prefix, offline, tmp_path):
    """`gdal=3.9` is conda's 3.9.* (3.9.2 matches it); `gdal==3.9` is exactly 3.9 (before:
    both were read as ==3.9, and an installed 3.9.2 never matched)."""
    from tests.support.conda_fixtures import conda

    user = conda_prefix / "user"
    conda(user, "install", "--yes", "--prefix", str(user), "-c", "conda-forge", "gdal")
    yml = tmp_path / "environment.yml"
    apply = ("--prefix", conda_prefix, "env", "apply", yml, "-t", "user", "--dry-run", "--json")
    for spec, changed in (("gdal=3.9", False), ("gdal=3.9.2", False), ("gdal=3", False), ("gdal=3.1", True)):
        yml.write_text(f"dependencies:\n  - {spec}\n")
        result = tljh(*apply, env=offline)
        if changed:  # nothing in the channel matches 3.1.*: the solver says so
            assert result.code == 7 and "gdal 3.1.*" in result.stderr, (spec, result.stderr)
        else:
            assert result.code == 0 and result.json()["changed"] is False, (spec, result.stderr)


def test_a_locks_conda_channel_counts(tljh, conda_prefix, offline, tmp_path):
    """A lock says which channel each conda package came from: a package from another
    channel is drift, and the lock's channels reach the solver (before: ignored, the file
    "already matched")."""
    from tests.support.conda_fixtures import conda

    user = conda_prefix / "user"
    conda(user, "install", "--yes", "--prefix", str(user), "-c", "conda-forge", "gdal")
    document = _lock_of(tljh, conda_prefix)
    lock = tmp_path / "lock.json"
    lock.write_text(json.dumps(document))
    apply = ("--prefix", conda_prefix, "env", "apply", lock, "-t", "user", "--dry-run", "--json")
    same = tljh(*apply, env=offline)
    assert same.code == 0 and same.json()["changed"] is False, same.stderr
    for package in document["packages"]:
        if package["name"] == "gdal":
            package["source"]["channel"] = "bioconda"
    lock.write_text(json.dumps(document))
    moved = tljh(*apply, env=offline)
    assert "already matches" not in moved.stderr
    assert moved.code != 0 and "bioconda" in moved.stderr, moved.stderr  # no such channel here


def test_the_change_documents_notes_carry_what_stderr_said(tljh, prefix, offline):
    """docs/json.md: `notes` holds the notes for people; before, always []."""
    document = _lock_of(tljh, prefix)
    (numpy,) = [p for p in document["packages"] if p["name"].lower() == "numpy"]
    numpy["source"] = {"type": "file", "path": "/srv/numpy.whl", "hash": None}
    lock = prefix.parent / "local.lock.json"
    lock.write_text(json.dumps(document))
    result = tljh("--prefix", prefix, "env", "apply", lock, "-t", "user", "--dry-run", "--json", env=offline)
    assert result.code == 0, result.stderr
    (note,) = result.json()["notes"]
    assert "installed from /srv/numpy.whl" in note and note in result.stderr


def test_an_unreachable_archive_url_is_named_not_the_index(tljh, prefix, offline, tmp_path):
    # before: "cannot reach the package index at https://pypi.org/simple" for a requirement's
    # own URL that nothing answers on
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy @ https://127.0.0.1:9/numpy-2.1.0-py3-none-any.whl\n")
    result = tljh("--prefix", prefix, "env", "apply", requirements, "-t", "user", "--dry-run", env=offline)
    assert result.code != 0
    first = result.stderr.splitlines()[0]
    assert "cannot reach 127.0.0.1:9, which a requirement's URL names" in first, result.stderr
    assert "package index" not in first
