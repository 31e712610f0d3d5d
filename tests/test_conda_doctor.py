"""doctor on a conda user env: every record's files, conda's history, conda and mamba.

The env and every change to it are made by the conda stand-in (py-rattler; conda itself
cannot be installed here) and real pip; damage is done the way it happens on servers: a
file deleted by hand, a record removed by hand, pip run over a conda package.
"""

from __future__ import annotations

import os

from tests.support import prefixes
from tests.support.conda_fixtures import conda


def _doctor(tljh, prefix, **kwargs):
    result = tljh("--prefix", prefix, "doctor", "--json", **kwargs)
    return result, {(c["id"], c["env"]): c for c in result.json()["checks"]}


def test_healthy_conda_env(tljh, conda_base_prefix):
    result, checks = _doctor(tljh, conda_base_prefix)
    assert result.code == 0, result.stdout  # warnings only
    for check in ("conda-files", "conda-history", "conda-tools", "pip-over-conda"):
        assert checks[(check, "user")]["status"] == "ok", checks[(check, "user")]
    minimums = checks[("minimum-versions", "user")]
    # the fixture's mamba 0.15.3 is below TLJH's 0.16.0
    assert minimums["status"] == "warning"
    assert [f["subject"] for f in minimums["findings"]] == ["mamba"]


def test_damage_is_found(tljh, conda_prefix, wheelhouse):
    user = conda_prefix / "user"
    conda(user, "install", "--yes", "--prefix", str(user), "-c", "conda-forge", "gdal")
    (user / "lib" / "libgdal.so.35").unlink()  # a C library deleted by hand
    (proj_record,) = (user / "conda-meta").glob("proj-*.json")
    proj_record.unlink()  # a record removed by hand: conda's history still lists proj
    (user / "bin" / "conda").unlink()  # conda's command gone, its record still there
    prefixes.pip_install(user, wheelhouse, "numpy==2.1.0")  # pip over conda's numpy

    _, checks = _doctor(tljh, conda_prefix)
    files = checks[("conda-files", "user")]
    assert files["status"] == "failed"
    by_subject = {f["subject"]: f for f in files["findings"]}
    message = by_subject["libgdal"]["message"]
    assert "libgdal 3.9.2: 1 of its 2 files are missing (lib/libgdal.so.35)" in message
    assert "--force-reinstall -c conda-forge libgdal" in by_subject["libgdal"]["hint"]
    # pip removed the files of conda's numpy: conda's record of them now lies as well
    assert "numpy" in by_subject

    history = checks[("conda-history", "user")]
    assert history["status"] == "warning"
    assert any("proj-9.4.1-h0_0" in f["message"] and "no record" in f["message"] for f in history["findings"])

    tools = checks[("conda-tools", "user")]
    assert tools["status"] == "failed"
    assert [f["subject"] for f in tools["findings"]] == [str(user / "bin" / "conda")]

    over = checks[("pip-over-conda", "user")]
    assert over["status"] == "warning" and [f["subject"] for f in over["findings"]] == ["numpy"]
    assert "RemoveError" in over["findings"][0]["message"]


def test_checks_skip_a_pip_user_env(tljh, base_prefix):
    _, checks = _doctor(tljh, base_prefix)
    for check in ("conda-files", "conda-history", "conda-tools"):
        assert checks[(check, "user")]["status"] == "skipped"


def test_records_edited_into_another_shape(tljh, conda_prefix):
    """A record conda would fail on (its `files` null, its `name` gone): doctor says which
    and why, and export refuses to write a lock missing that package; neither crashes."""
    import json

    from tljh_admin.errors import ExitCode

    user = conda_prefix / "user"
    # the stand-in wrote these from real packages; only the damage is done by hand
    records = sorted((user / "conda-meta").glob("*.json"))
    nulled, nameless = records[0], records[1]
    for record, edit in ((nulled, {"files": None}), (nameless, {"name": None})):
        data = json.loads(record.read_text())
        data.update(edit)
        if edit.get("name", 0) is None:
            del data["name"]
        record.unlink()  # a hard link to the shared base: replaced, not edited in place
        record.write_text(json.dumps(data))
    _, checks = _doctor(tljh, conda_prefix)
    files = checks[("conda-files", "user")]
    assert files["status"] == "failed", files
    messages = {f["subject"]: f["message"] for f in files["findings"]}
    assert "files is not a list" in messages[str(nulled)] and "name is missing" in messages[str(nameless)]
    exported = tljh("--prefix", conda_prefix, "env", "export", "-t", "user", "--format", "lock")
    assert exported.code == ExitCode.REFUSED and "not a conda record" in exported.stderr, exported.stderr
    assert exported.stdout == "" and "Traceback" not in exported.stderr


def test_a_conda_env_that_lost_conda_meta_is_not_a_healthy_plain_install(tljh, conda_prefix):
    """Without conda-meta/ the env looks like a plain CPython installation, yet it holds
    conda and mamba, which no longer know its packages: broken, with the way out."""
    import shutil

    from tljh_admin.errors import ExitCode

    shutil.rmtree(conda_prefix / "user" / "conda-meta")
    listed = tljh("--prefix", conda_prefix, "env", "list", "--json")
    user = next(e for e in listed.json()["environments"] if e["name"] == "user")
    assert listed.code == ExitCode.PROBLEMS_FOUND and user["status"] == "broken"
    assert "no conda-meta/" in user["reason"] and "installer" in user["reason"]
    _, checks = _doctor(tljh, conda_prefix)
    assert checks[("env-present", "user")]["status"] == "failed"
    assert tljh("--prefix", conda_prefix, "upgrade", "--dry-run").code != ExitCode.OK


def test_a_record_cut_short_has_a_hint_that_repairs_it(tljh, conda_prefix):
    """conda reads every record before it acts, so `--force-reinstall` alone fails on the
    very record it should replace; the hint is one line to paste, with PREFIX quoted (it
    holds a space here)."""
    import json
    import shlex
    import subprocess

    user = conda_prefix / "user"
    (record,) = (user / "conda-meta").glob("pip-*.json")  # the stand-in wrote it from a real package
    prefixes.own(record)  # a hard link to the shared base: its own inode before it is cut
    os.truncate(record, 300)  # a write cut short
    _, checks = _doctor(tljh, conda_prefix)
    (finding,) = [f for f in checks[("conda-files", "user")]["findings"] if f["subject"] == str(record)]
    hint = finding["hint"]
    assert shlex.quote(str(user)) in hint
    for part in hint.split(" && "):  # as root already: each command without its sudo
        subprocess.run(shlex.split(part.removeprefix("sudo ")), check=True, env=prefixes.hermetic_env())
    assert json.loads(record.read_text())["name"] == "pip"
    _, checks = _doctor(tljh, conda_prefix)
    assert checks[("conda-files", "user")]["status"] == "ok", checks[("conda-files", "user")]


def test_fifos_in_conda_meta_never_hang(tljh, conda_prefix):
    meta = conda_prefix / "user" / "conda-meta"
    (record,) = meta.glob("pip-*.json")
    for path in (record, meta / "history"):
        path.unlink()
        os.mkfifo(path)
    listed = tljh("--prefix", conda_prefix, "env", "list", "--json", timeout=30)
    assert "Traceback" not in listed.stderr
    result, checks = _doctor(tljh, conda_prefix, timeout=30)
    assert "Traceback" not in result.stderr
    assert str(record) in {f["subject"] for f in checks[("conda-files", "user")]["findings"]}


def test_a_20_gb_sparse_conda_record_or_history_is_not_read_whole(tljh, conda_prefix):
    """Before: read whole, and the out-of-memory killer ended tljh. Under a 2 GiB
    address-space limit here, so the old code fails with MemoryError instead."""
    import resource

    def two_gib():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    meta = conda_prefix / "user" / "conda-meta"
    (record,) = meta.glob("pip-*.json")
    for path in (record, meta / "history"):
        prefixes.own(path)  # a hard link of the shared base: its own inode before it grows
        os.truncate(path, 20 << 30)  # what the stand-in wrote, then 20 GB of zeros
    listed = tljh("--prefix", conda_prefix, "env", "list", "--json", timeout=60, preexec_fn=two_gib)
    assert "Traceback" not in listed.stderr and "MemoryError" not in listed.stderr, listed.stderr[-400:]
    result, checks = _doctor(tljh, conda_prefix, timeout=60, preexec_fn=two_gib)
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stdout
    (finding,) = [f for f in checks[("conda-files", "user")]["findings"] if f["subject"] == str(record)]
    assert finding["status"] == "failed" and "not a conda record" in finding["message"]
    assert all(c["status"] != "error" for c in checks.values()), result.stdout[-800:]


def test_a_condarc_or_history_conda_cannot_read_is_a_conda_tools_failure(tljh, conda_prefix, system_python):
    """Before: doctor was silent while conda stopped at every command on a `.condarc` that is
    no YAML (an admin's hand edit: a tab in the indentation) or a conda-meta/history that
    is not UTF-8 (conda reads it for every solve)."""
    from tljh_admin import doctor
    from tljh_admin.layout import resolve_layout

    user = conda_prefix / "user"
    condarc, history = user / ".condarc", user / "conda-meta" / "history"
    text = condarc.read_text()
    condarc.unlink()  # hard links of the shared base: replaced, never written through
    condarc.write_text(text.replace("  - conda-forge", "\t- conda-forge"))
    size = prefixes.own(history).stat().st_size  # its own inode: appended to, not the base's
    with history.open("ab") as f:
        f.write(b"# cmd: caf\xe9\n")  # a hand edit in Latin-1 at the end of conda's own history
    _, checks = _doctor(tljh, conda_prefix)
    tools = checks[("conda-tools", "user")]
    assert tools["status"] == "failed", tools
    subjects = {f["subject"]: f for f in tools["findings"]}
    assert "tab" in subjects[str(condarc)]["message"] and "sudo mv" in subjects[str(condarc)]["hint"]
    assert "not UTF-8" in subjects[str(history)]["message"]
    # YAML that is no mapping, without tabs: only the parser sees it, with --deep
    condarc.write_text("channels: [conda-forge\n")
    os.truncate(history, size)  # conda's history as the stand-in wrote it
    _, checks = _doctor(tljh, conda_prefix)
    assert checks[("conda-tools", "user")]["status"] == "ok"
    ctx = doctor.Context(resolve_layout(conda_prefix, system_python), deep=True)
    (result,) = doctor.run_doctor(ctx, doctor.select_checks(["conda-tools"], deep=True)).results
    (finding,) = result.findings
    assert result.status == "failed" and "not valid YAML" in finding.message, finding
