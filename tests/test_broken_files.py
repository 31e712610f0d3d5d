"""Files that are not what they should be, as a damaged server (or someone who may write a
folder there) leaves them: a FIFO, a symlink to a device, a folder or a file where the other
belongs. Every command that reads one answers, with one line where it must stop, never
hangs, and never reads without end."""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import pytest

from tests.support.listing import file_listing, listing_diff
from tljh_admin.errors import ExitCode


def site(env_root: Path) -> Path:
    (found,) = env_root.glob("lib/python3.*/site-packages")
    return found


def answers(tljh, *args, **kwargs):
    try:
        return tljh(*args, timeout=30, **kwargs)
    except subprocess.TimeoutExpired:
        pytest.fail(f"tljh {' '.join(map(str, args))} hung (no answer in 30 s)")


def planted_dist(site_dir: Path, name: str = "planted", version: str = "1.0") -> Path:
    meta = site_dir / f"{name}-{version}.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n")
    return meta


def _state(prefix: Path) -> Path:
    state = prefix / "state" / "tljh-admin"
    (state / "journal").mkdir(mode=0o700, parents=True, exist_ok=True)
    state.chmod(0o700)
    return state


def _second_version_record(prefix: Path) -> Path:
    """RECORD of one of two dist-infos of a project: which is stale is told by reading both."""
    planted_dist(site(prefix / "hub"), version="1.0")
    return planted_dist(site(prefix / "hub"), version="2.0") / "RECORD"


# where the FIFO goes, and a command that reads it
FIFOS = {
    "metadata": (lambda p: planted_dist(site(p / "hub")) / "METADATA", ["env", "list", "--json"]),
    "installer": (lambda p: planted_dist(site(p / "hub")) / "INSTALLER", ["env", "list", "--json"]),
    "record": (lambda p: planted_dist(site(p / "hub")) / "RECORD", ["doctor", "--json", "record-files"]),
    "duplicate-record": (_second_version_record, ["doctor", "--json", "duplicate-dist-info"]),
    "pth": (lambda p: site(p / "hub") / "planted.pth", ["doctor", "--json", "hub-sys-path"]),
    "entry-points": (
        lambda p: planted_dist(site(p / "hub"), "tljh-plugin-x") / "entry_points.txt",
        ["plugins", "--json"],
    ),
    "history": (lambda p: _state(p) / "history.jsonl", ["env", "history"]),
    "journal": (lambda p: _state(p) / "journal" / "1.json", ["doctor", "--json", "unfinished-change"]),
}


@pytest.mark.parametrize("where", list(FIFOS))
def test_a_fifo_where_a_file_belongs_never_hangs(tljh, prefix, where):
    place, command = FIFOS[where]
    path = place(prefix)
    path.unlink(missing_ok=True)
    os.mkfifo(path, 0o600)
    result = answers(tljh, "--prefix", prefix, *command)
    assert "Traceback" not in result.stderr, result.stderr[-500:]
    if result.code not in (ExitCode.OK, ExitCode.PROBLEMS_FOUND):
        (line,) = result.stderr.splitlines()  # one line, naming the file
        assert path.name in line and "Hint:" in line and "free space" not in line, line


def _two_gib():
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def _hub_cfg(prefix: Path) -> Path:
    return prefix / "hub" / "pyvenv.cfg"


# a 20 GB file where a small one belongs (sparse: it takes no disk), and a command reading it
HUGE = {
    **FIFOS,
    "pyvenv-cfg": (_hub_cfg, ["env", "list", "--json"]),
    "settings": (lambda p: _state(p) / "settings.json", ["env", "prune", "--keep", "2", "--save"]),
}


@pytest.mark.parametrize("where", list(HUGE))
def test_a_20_gb_sparse_file_where_a_small_one_belongs_is_not_read_whole(tljh, prefix, where):
    """Before: read whole, and the out-of-memory killer ended tljh (on a live server it
    may choose the hub instead). Here under a 2 GiB address-space limit, so the old code
    fails with MemoryError rather than taking the machine down."""
    place, command = HUGE[where]
    path = place(prefix)
    # its first lines, never a blank one (which ends a METADATA header block), then zeros
    head = path.read_bytes().split(b"\n\n")[0][:200] + b"\n" if path.is_file() else b""
    path.unlink(missing_ok=True)  # the prefix's files are hard links of a shared base
    path.write_bytes(head)
    os.truncate(path, 20 << 30)
    result = answers(tljh, "--prefix", prefix, *command, preexec_fn=_two_gib)
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr, result.stderr[-500:]
    assert "MemoryError" not in result.stdout and '"status": "error"' not in result.stdout, result.stdout[
        -800:
    ]
    if result.code not in (ExitCode.OK, ExitCode.PROBLEMS_FOUND):
        (line,) = result.stderr.splitlines()  # one line, naming the file
        assert path.name in line and "Hint:" in line, line
    if where == "pyvenv-cfg":
        (hub,) = [e for e in result.json()["environments"] if e["name"] == "hub"]
        assert hub["status"] == "broken" and "64 MiB" in hub["reason"], hub


def test_metadata_leading_to_dev_zero_is_not_read(tljh, prefix):
    meta = planted_dist(site(prefix / "hub"))
    (meta / "METADATA").unlink()
    (meta / "METADATA").symlink_to("/dev/zero")
    result = answers(tljh, "--prefix", prefix, "env", "list", "--json", preexec_fn=_two_gib)
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert "planted-1.0.dist-info" in result.stdout  # reported as a folder without metadata


def test_duplicate_whose_record_names_dev_zero_is_not_read(tljh, prefix):
    # which duplicate is stale is told by hashing RECORD's files: never a device
    for version in ("1.0", "2.0"):
        meta = planted_dist(site(prefix / "hub"), version=version)
        (meta / "RECORD").write_text("/dev/zero,sha256=AAAA,1\n")
    result = answers(tljh, "--prefix", prefix, "env", "list", "--json", preexec_fn=_two_gib)
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr


@pytest.mark.parametrize("shape", ["state-is-a-file", "history-is-a-folder"])
def test_state_in_the_wrong_shape_is_named_in_one_line(tljh, prefix, shape):
    if shape == "state-is-a-file":
        (prefix / "state").rmdir()
        (prefix / "state").write_text("not a folder\n")
        named = str(prefix / "state")
    else:
        (_state(prefix) / "history.jsonl").mkdir()
        named = "history.jsonl"
    result = tljh("--prefix", prefix, "env", "history")
    assert result.code != ExitCode.OK
    (line,) = result.stderr.splitlines()
    assert named in line and "Hint:" in line, line
    assert "free space" not in line and "error: error:" not in line, line


def test_a_metadata_folder_without_metadata_is_a_doctor_finding(tljh, prefix):
    # env list names it among the site's problems; doctor said nothing
    meta = site(prefix / "user") / "ghost-1.0.dist-info"
    meta.mkdir()
    (meta / "INSTALLER").write_text("pip\n")
    result = tljh("--prefix", prefix, "doctor", "--json", "leftovers")
    (check,) = [c for c in result.json()["checks"] if c["env"] == "user"]
    assert check["status"] == "warning"
    (finding,) = check["findings"]
    assert finding["subject"] == str(meta) and "ghost-1.0.dist-info" in finding["message"]


def test_only_regular_files_are_read_and_a_symlink_to_one_still_is(tmp_path):
    from tljh_admin import files

    (tmp_path / "real").write_text("hello\n")
    (tmp_path / "link").symlink_to("real")  # an admin's config kept elsewhere: still read
    (tmp_path / "zero").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo")
    assert files.read_bytes(str(tmp_path / "link")) == b"hello\n"
    with files.open_text(str(tmp_path / "link")) as f:
        assert f.read() == "hello\n"
    for name in ("zero", "fifo", ""):
        with pytest.raises(OSError):
            files.read_bytes(str(tmp_path / name))


def test_a_record_that_is_not_utf8_is_skipped_where_exports_read_records(tljh, prefix, tmp_path):
    # a RECORD of bytes that are not UTF-8 (a damaged disk): the repo2docker export reads
    # every RECORD for the share/jupyter files it must carry, and raised there
    meta = planted_dist(site(prefix / "user"))
    (meta / "RECORD").write_bytes(b"../../../share/jupyter/x\xff.json,,\n")
    dest = tmp_path / "binder"
    args = ("--prefix", prefix, "env", "export", "-t", "user", "--format", "repo2docker", dest)
    result = answers(tljh, *args)
    assert result.code == ExitCode.OK and "Traceback" not in result.stderr, result.stderr[-500:]
    assert (dest / "requirements.txt").is_file()


def test_a_condarc_that_is_not_utf8_names_no_channel_and_the_lock_is_written(tljh, conda_prefix):
    # the lock reads the env's .condarc for channel names: bytes that are not UTF-8 raised
    condarc = conda_prefix / "user" / ".condarc"
    condarc.unlink(missing_ok=True)  # a hard link to the shared base: replaced, not edited
    condarc.write_bytes(b"custom_channels:\n  \xff: https://example.invalid\n")
    result = answers(tljh, "--prefix", conda_prefix, "env", "export", "-t", "user", "--format", "lock")
    assert result.code == ExitCode.OK and "Traceback" not in result.stderr, result.stderr[-500:]
    assert '"kind": "conda"' in result.stdout


def test_a_top_level_txt_that_is_not_utf8_leaves_record_to_name_what_must_import(tmp_path):
    # rebuild checks that what each distribution provides imports in the new env; a
    # top_level.txt that is not UTF-8 raised while it read the old env
    from tljh_admin.rebuild import importable_names

    site_dir = tmp_path / "site-packages"
    (site_dir / "demo").mkdir(parents=True)
    (site_dir / "demo" / "__init__.py").write_text("")
    meta = planted_dist(site_dir, "demo")
    (meta / "top_level.txt").write_bytes(b"demo\xff\n")
    (meta / "RECORD").write_text("demo/__init__.py,,\n")
    assert importable_names(str(site_dir), meta.name) == ("demo",)


def _tljh_wheel(path: Path, member: bytes, declared_zeros: int = 0) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tljh/__init__.py", "")
        zf.writestr("tljh/requirements-hub-env.txt", member if not declared_zeros else bytes(declared_zeros))
    return path


def test_a_damaged_tljh_archive_from_the_index_is_one_refusal(tmp_path):
    # `tljh upgrade --version X` reads X's requirements-hub-env.txt out of what pip
    # downloaded: a damaged archive, text that is not UTF-8 or a member of gigabytes (a
    # hostile or broken index) raised, or read it all into memory
    import tarfile

    from tljh_admin.errors import ResolutionFailed
    from tljh_admin.policy import INPUT_FILE_LIMIT
    from tljh_admin.tljh_version import requirements_member

    good = _tljh_wheel(tmp_path / "the_littlest_jupyterhub-9.9.9-py3-none-any.whl", b"jupyterhub>=5.2,<6\n")
    assert requirements_member(str(good)) == "jupyterhub>=5.2,<6\n"

    sdist_folder = tmp_path / "the_littlest_jupyterhub-9.9.9" / "tljh"
    sdist_folder.mkdir(parents=True)
    (sdist_folder / "requirements-hub-env.txt").write_bytes(os.urandom(256 * 1024))  # does not compress
    sdist = tmp_path / "the_littlest_jupyterhub-9.9.9.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        tf.add(sdist_folder.parent, arcname=sdist_folder.parent.name)
    os.truncate(sdist, sdist.stat().st_size // 2)

    garbage = tmp_path / "garbage-1.0-py3-none-any.whl"
    garbage.write_bytes(b"this is not a zip file\n" * 10)
    damaged = {
        "not-utf8": (_tljh_wheel(tmp_path / "a-1-py3-none-any.whl", b"jupyterhub\n\xff\n"), "not UTF-8"),
        "huge": (_tljh_wheel(tmp_path / "b-1-py3-none-any.whl", b"", INPUT_FILE_LIMIT + 1), "holds"),
        "truncated-sdist": (sdist, "cannot be read"),
        "not-a-zip": (garbage, "cannot be read"),
    }
    for case, (archive, words) in damaged.items():
        with pytest.raises(ResolutionFailed) as caught:
            requirements_member(str(archive))
        message = str(caught.value)
        assert archive.name in message and words in message and "\n" not in message, (case, message)
        assert caught.value.hint, case


def _damage_cfg(cfg: Path, how: str) -> None:
    cfg.unlink()  # a hard link of the shared base prefix: never written through
    if how == "dangling":
        cfg.symlink_to(cfg.parent / "pyvenv.cfg.moved")
    elif how == "not-utf8":
        cfg.write_bytes(b"home = /usr/bin\ninclude-system-site-packages = false\n# caf\xe9\n")
    elif how == "fifo":
        os.mkfifo(cfg, 0o644)


@pytest.mark.parametrize("how", ["missing", "dangling", "not-utf8", "fifo"])
def test_a_hub_venv_without_a_readable_pyvenv_cfg_is_broken_and_no_change_runs(tljh, prefix, how):
    """Before: without pyvenv.cfg the hub was taken for a CPython installation and was `ok`,
    while its bin/python3 really runs the OS Python as itself (its packages unseen) and
    `env install -t hub` would have run that Python's pip as root; a pyvenv.cfg that is
    not UTF-8 stops the hub's Python at start, and doctor said healthy."""
    hub = prefix / "hub"
    _damage_cfg(hub / "pyvenv.cfg", how)
    if how in ("missing", "not-utf8"):  # what the hub's own Python does with it, really
        ran = subprocess.run(
            [hub / "bin" / "python3", "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True
        )
        assert ran.returncode != 0 if how == "not-utf8" else ran.stdout.strip() != str(hub), ran
    listed = answers(tljh, "--prefix", prefix, "env", "list", "--json")
    (entry,) = [e for e in listed.json()["environments"] if e["name"] == "hub"]
    assert entry["status"] == "broken" and "pyvenv.cfg" in entry["reason"], entry
    doctor = answers(tljh, "--prefix", prefix, "doctor", "--json", "env-present").json()
    (check,) = [c for c in doctor["checks"] if c["env"] == "hub"]
    assert check["status"] == "failed" and "pyvenv.cfg" in check["findings"][0]["message"]
    before = file_listing(prefix)
    change = answers(tljh, "--prefix", prefix, "env", "install", "-t", "hub", "oauthenticator", "--yes")
    assert change.code == ExitCode.REFUSED, change.stderr
    (line,) = change.stderr.splitlines()
    assert "pyvenv.cfg" in line and "Hint:" in line
    assert listing_diff(before, file_listing(prefix)) == []


def test_a_pth_file_python_cannot_read_at_start_is_a_failure_naming_it(tljh, prefix):
    """Before: doctor said healthy while the hub's Python stopped at start on a .pth that
    is not UTF-8 text (site.addpackage), and every user server hung on a FIFO .pth."""
    hub_pth = site(prefix / "hub") / "zz-latin1.pth"
    hub_pth.write_bytes(b"# caf\xe9\n")
    ran = subprocess.run([prefix / "hub" / "bin" / "python3", "-c", "pass"], capture_output=True, text=True)
    assert ran.returncode != 0 and "UnicodeDecodeError" in ran.stderr  # the real failure
    user_pth = site(prefix / "user") / "zz-fifo.pth"
    os.mkfifo(user_pth, 0o644)
    doc = answers(tljh, "--prefix", prefix, "doctor", "--json", "pth-files").json()
    checks = {c["env"]: c for c in doc["checks"]}
    (hub,) = checks["hub"]["findings"]
    assert checks["hub"]["status"] == "failed" and hub["subject"] == str(hub_pth)
    assert "not UTF-8" in hub["message"] and hub["impact"] == "hub-fails" and "sudo mv" in hub["hint"]
    (user,) = checks["user"]["findings"]
    assert "FIFO" in user["message"] and user["impact"] == "spawns-fail"
    hub_pth.unlink()
    user_pth.unlink()
    healthy = answers(tljh, "--prefix", prefix, "doctor", "--json", "pth-files").json()
    assert {c["status"] for c in healthy["checks"]} == {"ok"}
