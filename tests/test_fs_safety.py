"""File-system safety of changes run as root: the umask every write happens under."""

from __future__ import annotations

import os
import stat

from tests.test_install import install, offline  # noqa: F401  (fixtures, used by name)


def _group_or_world_writable(root) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            st = os.lstat(os.path.join(folder, name))
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                found.append(os.path.join(folder, name))
    return found


def test_install_under_umask_000_never_makes_writable_files(prefix, install):  # noqa: F811
    """Under an inherited umask 000, files pip writes would be 0666 until normalisation
    (which only drops o+w): others could plant code meanwhile. The tool sets 022 at start,
    so every file it or its installer creates, in the env and in the snapshot, is born
    without group or world write (normalisation cannot hide this: g+w would remain)."""
    before = {path for path, _ in _walk_inodes(prefix)}
    result = install("user", "oauthenticator", "--yes", preexec_fn=lambda: os.umask(0))
    assert result.code == 0, result.stderr
    created = [path for path, _ in _walk_inodes(prefix) if path not in before]
    assert any("oauthenticator" in path for path in created)
    assert _group_or_world_writable(prefix / "user") == []
    assert _group_or_world_writable(prefix / "state") == []
    for path, st in _walk_inodes(prefix):
        if path in created and not stat.S_ISLNK(st.st_mode):
            assert stat.S_IMODE(st.st_mode) & 0o7022 == 0, (path, oct(st.st_mode))


def _walk_inodes(root):
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            yield path, os.lstat(path)



def test_a_timeout_kills_the_childs_whole_process_group(tmp_path):
    """The plugin evaluation's timeout: a plugin whose import starts a process of its own
    must not outlive it, nor keep tljh waiting on the output pipe it inherited."""
    import subprocess
    import time

    import pytest

    from tljh_admin.transaction import run_with_group_timeout

    pid_file = tmp_path / "grandchild"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_with_group_timeout(
            ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; sleep 60"],
            1.0,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    assert time.monotonic() - started < 20
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
