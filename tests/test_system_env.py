"""Changing the system env, on a stand-in: never on this machine's /usr/bin/python3."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.listing import file_listing, listing_diff
from tljh_admin.envs import inspect_environment
from tljh_admin.errors import ExitCode
from tljh_admin.layout import resolve_layout


def _site_listings(python: Path, prefix: Path) -> dict:
    env = inspect_environment("system", resolve_layout(prefix, python))
    return {site: file_listing(Path(site)) for site in env.site_dirs}


def test_break_system_packages_changes_the_stand_in_only(tljh, prefix, wheelhouse, managed_system_python):
    offline_env = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}
    real = Path("/usr/bin/python3")
    real_before = _site_listings(real, prefix) if real.exists() else {}
    args = ["--prefix", prefix, "--system-python", managed_system_python, "env", "install", "-t", "system"]
    refused = tljh(*args, "numpy==2.1.0", "--allow-system", "--yes", env=offline_env)
    assert refused.code == ExitCode.REFUSED and "externally managed" in refused.stderr
    done = tljh(*args, "numpy==2.1.0", "--allow-system", "--break-system-packages", "--yes", env=offline_env)
    assert done.code == 0, done.stderr
    system = inspect_environment("system", resolve_layout(prefix, managed_system_python))
    assert {d.name.lower(): d.version for d in system.distributions}["numpy"] == "2.1.0"
    assert all(site.startswith(str(managed_system_python.parent.parent)) for site in system.site_dirs)
    after = _site_listings(real, prefix) if real.exists() else {}
    assert {site: listing_diff(real_before[site], after[site]) for site in real_before} == {
        site: [] for site in real_before
    }


def test_a_system_python_that_is_no_python_is_broken(tljh, base_prefix, tmp_path):
    # `--system-python /usr/bin/true` beside a real /usr/lib/python3.X: runnable, and its
    # folder holds a standard library, but it is no interpreter; TLJH would make the hub
    # venv with it
    usr = tmp_path / "usr"
    (usr / "bin").mkdir(parents=True)
    (usr / "lib" / "python3.12").mkdir(parents=True)
    (usr / "lib" / "python3.12" / "os.py").write_text("")
    shutil.copy2("/bin/true", usr / "bin" / "true")
    shutil.copy2("/bin/true", usr / "bin" / "python3.12")  # named as one, for contrast
    listed = tljh("--prefix", base_prefix, "--system-python", usr / "bin" / "true", "env", "list", "--json")
    (system,) = [e for e in listed.json()["environments"] if e["name"] == "system"]
    assert system["status"] == "broken"
    assert "is not a Python interpreter" in system["reason"]
    assert listed.code != ExitCode.OK
    named = tljh(
        "--prefix", base_prefix, "--system-python", usr / "bin" / "python3.12", "env", "list", "--json"
    )
    (system,) = [e for e in named.json()["environments"] if e["name"] == "system"]
    assert system["status"] == "ok", system
