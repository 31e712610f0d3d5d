"""`tljh env apply` and `tljh env export` against hostile input: lock and environment.yml
fields that would reach pip or conda as options, and export folders someone else controls.
Every refusal is a one-line usage error with nothing changed on disk."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import NOBODY
from tests.support.listing import file_listing, listing_diff
from tljh_admin import conda

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown to uid 65534)")


def _lock(*packages: dict) -> dict:
    return {"schema": "tljh-admin/env-lock", "version": 1, "packages": list(packages)}


def _pip(name: str, version: str, source: dict) -> dict:
    return {"name": name, "version": version, "manager": "pip", "requested": True, "source": source}


def _conda(name: str, version: str, build: str | None = "py_0", channel: str = "conda-forge") -> dict:
    source = {"type": "conda", "channel": channel, "subdir": "noarch", "build": build}
    return {"name": name, "version": version, "manager": "conda", "requested": True, "source": source}


def _envs(prefix) -> dict:
    return {f"{env}/{p}": e for env in ("hub", "user") for p, e in file_listing(prefix / env).items()}


def _refused_each(tljh, prefix, files: list, word: str) -> None:
    before = _envs(prefix)
    for path in files:
        result = tljh("--prefix", prefix, "env", "apply", path, "--target", "user", "--dry-run")
        assert result.code == 2, (path.name, result.stderr)
        assert len(result.stderr.strip().splitlines()) <= 2 and "Traceback" not in result.stderr
        assert word in result.stderr, (path.name, result.stderr)
    assert _envs(prefix) == before, listing_diff(before, _envs(prefix))


def test_validate_specs_refuses_any_field_that_reads_as_an_option():
    assert conda.validate_specs(["gdal ==3.9.2 py313h0_0", "numpy>=2"]) == (
        "gdal ==3.9.2 py313h0_0",
        "numpy>=2",
    )
    for spec in ("--override-channels", "gdal --override-channels", "gdal ==3.9 -c"):
        with pytest.raises(conda.UsageError):
            conda.validate_specs([spec])


def test_apply_refuses_lock_fields_that_are_not_what_export_writes(tljh, prefix, tmp_path):
    # each would reach pip as an option, a path or a foreign index, run as root
    entries = {
        "index-redirect": _pip("--extra-index-url=https://evil.example/simple#", "1.0", {"type": "index"}),
        "version-option": _pip("numpy", "1.0 --index-url https://evil.example/simple", {"type": "index"}),
        "url-local": _pip("numpy", "1.0", {"type": "url", "url": "file:///etc/passwd"}),
        "vcs-option": _pip(
            "numpy",
            "1.0",
            {"type": "vcs", "vcs": "git", "url": "https://x.example/r.git", "commit": "a -r /x"},
        ),
        "vcs-unknown": _pip(
            "numpy", "1.0", {"type": "vcs", "vcs": "evil", "url": "https://x/r", "commit": "a"}
        ),
        "manager": {**_pip("numpy", "1.0", {"type": "index"}), "manager": "npm"},
    }
    files = []
    for name, entry in entries.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(_lock(entry)))
        files.append(path)
    local = tmp_path / "requirements.txt"
    local.write_text(f"evil @ file://{tmp_path}\n")
    files.append(local)
    _refused_each(tljh, prefix, files[:-1], "export it again on the source server")
    _refused_each(tljh, prefix, files[-1:], "local path")


def test_apply_refuses_conda_fields_that_would_be_options(tljh, conda_prefix, tmp_path):
    """Lock and environment.yml conda entries that conda/mamba would read as options (another
    channel, whose post-link scripts run as root): refused before conda is run at all."""
    lock_cases = {
        "build-channel": _conda("gdal", "3.9.2", build="--channel=file:///tmp/evil"),
        "name-option": _conda("--override-channels", "1"),
        "version-space": _conda("gdal", "3.9.2 --offline"),
        "channel-file": _conda("gdal", "3.9.2", channel="file:///tmp/evil"),
    }
    files = []
    for name, entry in lock_cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(_lock(entry)))
        files.append(path)
    for number, dependency in enumerate(
        ("--override-channels", "gdal --channel=file:///tmp/evil", "gdal=3.9=-x")
    ):
        path = tmp_path / f"environment-{number}.yml"
        path.write_text(f"name: user\ndependencies:\n  - {json.dumps(dependency)}\n")
        files.append(path)
    before = _envs(conda_prefix)
    for path in files:
        result = tljh("--prefix", conda_prefix, "env", "apply", path, "--target", "user", "--dry-run")
        assert result.code == 2 and "Traceback" not in result.stderr, (path.name, result.stderr)
        assert "conda" in result.stderr, (path.name, result.stderr)
    assert _envs(conda_prefix) == before, listing_diff(before, _envs(conda_prefix))


@needs_root
def test_repo2docker_export_refuses_a_folder_someone_else_controls(tljh, shared_prefix, open_tmp, tmp_path):
    base = ("--prefix", shared_prefix, "env", "export", "--target", "user", "--format", "repo2docker")
    theirs = open_tmp / "theirs"
    theirs.mkdir(mode=0o777)
    theirs.chmod(0o777)
    subprocess.run(["chown", "65534:65534", theirs], check=True)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)  # ours, but the group may swap what is inside
    for folder in (theirs, shared):
        result = tljh(*base, folder)
        assert result.code == 2 and "belongs to another user or others may write" in result.stderr, (
            result.stderr
        )
        assert os.listdir(folder) == []
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    result = tljh(*base, ours)
    assert result.code == 0, result.stderr
    written = {p: e for p, e in file_listing(ours).items()}
    assert "requirements.txt" in written and all(e[3] == 0 for e in written.values() if e[0] == "file")


@needs_root
def test_repo2docker_export_reads_no_file_a_kernel_folder_user_swapped_in(tljh, prefix, tmp_path):
    """A TA's kernel folder (theirs) under share/jupyter/kernels: a symlink (swapped in after
    the walk listed a file) and a hard link to a root-only file (where fs.protected_hardlinks
    is 0) are not read into the export; their own plain file is."""
    from tljh_admin import export

    secret = tmp_path / "shadow"
    secret.write_text("root-only-secret\n")
    secret.chmod(0o600)
    kernels = prefix / "user" / "share" / "jupyter" / "kernels"
    course = kernels / "course"
    course.mkdir(parents=True)
    (course / "kernel.json").write_text('{"argv": ["python3"], "display_name": "Course"}\n')
    (course / "swapped.json").symlink_to(secret)
    os.link(secret, course / "linked.json")  # as root: what protected_hardlinks=0 lets a user do
    subprocess.run(["chown", "-R", "65534:65534", course], check=True)
    root = str(prefix / "user")
    swapped, plain = export._read_env_files(root, [str(course / "swapped.json"), str(course / "kernel.json")])
    assert swapped == export._NOT_PLAIN  # the swap, after the walk
    assert plain.startswith(b'{"argv"')
    dest = tmp_path / "image"
    dest.mkdir(mode=0o700)
    result = tljh("--prefix", prefix, "env", "export", "--target", "user", "--format", "repo2docker", dest)
    assert result.code == 0, result.stderr
    exported = {p.name: p.read_bytes() for p in dest.rglob("*.json")}
    assert "kernel.json" in exported and "linked.json" not in exported
    assert not any(b"root-only-secret" in content for content in exported.values())
    assert "linked.json left out" in result.stdout + result.stderr


def test_repo2docker_export_leaves_out_what_users_servers_cannot_read(tljh, prefix, tmp_path):
    # a root-only Jupyter config (a token) had no effect under TLJH (users' servers could not
    # read it); copied into an image it became active and readable by all (before: 0644)
    config = prefix / "user" / "etc" / "jupyter" / "jupyter_server_config.d"
    config.mkdir(parents=True, exist_ok=True)
    private = config / "zz-admin.json"
    private.write_text('{"IdentityProvider": {"token": "s3cr3t-token"}}\n')
    private.chmod(0o600)
    dest = tmp_path / "image"
    result = tljh("--prefix", prefix, "env", "export", "--target", "user", "--format", "repo2docker", dest)
    assert result.code == 0, result.stderr
    assert not [p for p in dest.rglob("*") if p.is_file() and b"s3cr3t" in p.read_bytes()]
    assert "zz-admin.json left out: users' servers cannot read it" in result.stderr


def test_a_failed_repo2docker_export_leaves_nothing(tljh, prefix, tmp_path):
    # a full disk, played by RLIMIT_FSIZE (writes past it fail with EFBIG; Python ignores
    # SIGXFSZ): before, a half-written folder stayed, and a rerun said it was not empty
    import resource

    dest = tmp_path / "out" / "image"
    dest.parent.mkdir()

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    args = ("--prefix", prefix, "env", "export", "--target", "user", "--format", "repo2docker", dest)
    result = tljh(*args, preexec_fn=small_files)
    assert result.code == 74, result.stderr  # ExitCode.IO_ERROR, as for a full stdout
    (line,) = result.stderr.splitlines()
    assert "File too large" in line and "Hint:" in line
    assert list(dest.parent.iterdir()) == []
    again = tljh(*args)
    assert again.code == 0, again.stderr


def test_export_destinations_as_the_shell_reads_them(tljh, prefix, tmp_path, open_tmp):
    """A trailing slash names a folder (before: a file named like it was written); `link/..`
    is where `>` would write; nothing is written into TLJH's state or environments (before,
    an export over state/tljh-admin/history.jsonl wiped the history); a file replaced keeps
    its stricter mode and its owner (before: root's, 0644), but not in a folder others may
    write, where anyone could have made it first (before: a secret export went to them)."""
    export_args = ("--prefix", prefix, "env", "export", "-t", "user", "-f", "requirements")
    state = prefix / "state" / "tljh-admin"
    state.mkdir(parents=True, exist_ok=True)
    history = state / "history.jsonl"
    history.write_text("")
    before = file_listing(prefix)
    for dest, words in (
        (f"{tmp_path}/newdir/", "names a folder"),
        (str(history), "exports are not written into TLJH's own folders"),
        (str(prefix / "user" / "reqs.txt"), "exports are not written into TLJH's own folders"),
    ):
        result = tljh(*export_args, dest)
        assert result.code == 2, (dest, result.stderr)
        (line,) = result.stderr.splitlines()
        assert words in line and "Hint:" in line, line
    assert listing_diff(before, file_listing(prefix)) == []
    assert not (tmp_path / "newdir").exists()

    real = tmp_path / "real" / "inner"
    real.mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    assert tljh(*export_args, f"{tmp_path}/link/../through.txt").code == 0
    assert (tmp_path / "real" / "through.txt").is_file() and not (tmp_path / "through.txt").exists()

    private = tmp_path / "private.txt"
    private.write_text("old\n")
    private.chmod(0o600)
    os.chown(private, 65534, 65534)
    assert tljh(*export_args, private).code == 0
    status = private.stat()
    assert (status.st_mode & 0o777, status.st_uid, status.st_gid) == (0o600, 65534, 65534)
    assert "jupyterhub" in private.read_text()

    shared = open_tmp / f"shared-{tmp_path.name}"  # a /tmp of its own: sticky, anyone may add
    shared.mkdir()
    shared.chmod(0o1777)
    planted = shared / "reqs.txt"
    subprocess.run([*NOBODY, "sh", "-c", f"umask 077; : > '{planted}'"], check=True)
    assert tljh(*export_args, planted).code == 0
    status = planted.stat()
    assert (status.st_mode & 0o777, status.st_uid) == (0o600, 0)
    read = subprocess.run([*NOBODY, "cat", planted], capture_output=True, text=True)
    assert read.returncode != 0 and not read.stdout
