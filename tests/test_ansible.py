"""examples/ansible/site.yml run by real ansible-core against localhost (local connection) on a
copy of the suite's prefix: the fleet report is gathered, the lock applied, and the second
run reports changed=0."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support import prefixes

REPO = Path(__file__).resolve().parent.parent
PLAYBOOK = REPO / "examples" / "ansible" / "site.yml"


def _recap(output: str) -> dict[str, int]:
    match = re.search(r"^localhost\s*:\s*(.*)$", output, re.MULTILINE)
    assert match, output
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def test_playbook_gathers_doctor_and_applies_one_lock_idempotently(
    tljh, prefix, base_prefix, wheelhouse, system_python, tmp_path
):
    lock = tmp_path / "user-env.lock.json"
    exported = tljh("--prefix", base_prefix, "env", "export", "--target", "user", "--format", "lock")
    assert exported.code == 0, exported.stderr
    document = json.loads(exported.stdout)
    # the fleet's lock differs from this host's env: one package at another version
    for package in document["packages"]:
        if package["name"] == "numpy":
            package["version"] = "2.1.0"
    lock.write_text(json.dumps(document))

    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        f"[tljh]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    variables = tmp_path / "vars.json"
    report = tmp_path / "fleet-doctor.json"
    variables.write_text(
        json.dumps(
            {
                "lock_file": str(lock),
                "tljh_argv": [sys.executable, "-m", "tljh_admin"],
                "tljh_prefix": str(prefix),
                "tljh_lock_dest": str(tmp_path / "host" / "user-env.lock.json"),
                "report_file": str(report),
                "tljh_environment": {
                    "PIP_NO_INDEX": "1",
                    "PIP_FIND_LINKS": str(wheelhouse),
                    "PIP_CONFIG_FILE": os.devnull,
                    "TLJH_SYSTEM_PYTHON": str(system_python),
                },
            }
        )
    )
    env = prefixes.hermetic_env(
        LC_ALL="C.UTF-8",  # ansible-core refuses to start without a UTF-8 locale
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"),
        ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-remote"),
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
    )
    playbook = [
        Path(sys.executable).parent / "ansible-playbook",
        "-i",
        inventory,
        PLAYBOOK,
        "-e",
        f"@{variables}",
    ]

    def play() -> dict[str, int]:
        proc = subprocess.run([os.fspath(a) for a in playbook], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return _recap(proc.stdout)

    first = play()
    assert first["changed"] == 3 and first["failed"] == 0  # lock folder, lock file, apply
    fleet = json.loads(report.read_text())
    assert fleet["localhost"]["schema"] == "tljh-admin/doctor"
    numpy = [
        p
        for p in tljh("--prefix", prefix, "env", "packages", "-t", "user", "--json").json()["packages"]
        if p["name"] == "numpy"
    ]
    assert [p["version"] for p in numpy] == ["2.1.0"]

    second = play()
    assert second["changed"] == 0 and second["failed"] == 0 and second["ok"] >= 5
