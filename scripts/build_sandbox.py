"""Build a TLJH-shaped PREFIX in a local folder, the way TLJH's installer does, from the
package index.

- hub: a venv made by the system python (`python3 -m venv PREFIX/hub`, as bootstrap.py
  does), pip upgraded, then TLJH's hub requirements installed (tljh-admin's shipped copy of
  tljh/requirements-hub-env.txt; TLJH itself is not on the package index).
- user: a conda environment, as TLJH's Miniforge installation is: conda packages built on
  the fly (tests/support/conda_channel.py: `python` is a non-OS CPython build found on this
  machine, plus pip, conda, mamba, gdal) in a local channel named conda-forge, created by
  the conda/mamba stand-in (py-rattler; conda itself is not on PyPI), which the env's
  bin/conda and bin/mamba run; then jupyterhub at exactly the hub's version plus TLJH's
  user-env extras with pip. Without such a CPython build: a venv stand-in.
- TLJH's config/ (0700, with an empty config.yaml and jupyterhub_config.d/), state/ made
  0700, permissions normalised like TLJH does (chmod -R o-w).

Usage: python scripts/build_sandbox.py PREFIX [--fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import conda_channel  # noqa: E402
from tests.support.prefixes import find_standalone_cpython, find_system_python, newest_bundled_pip  # noqa: E402

DATA = REPO / "src" / "tljh_admin" / "data"


def say(message: str) -> None:
    print(f"[sandbox] {message}", file=sys.stderr, flush=True)


def pip(env: Path, *args: str) -> None:
    # The machine's own pip configuration (index, certificates) is kept: this is what an
    # admin's pip would use. Only variables that would redirect the install are dropped.
    child_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PIP_TARGET", "PIP_PREFIX", "PIP_USER", "VIRTUAL_ENV")
    }
    # -qq: this machine's extra file:// indexes make pip warn once per package otherwise
    cmd = [str(env / "bin" / "python3"), "-m", "pip", "install", "-qq", "--root-user-action=ignore", *args]
    say(" ".join(cmd[1:]))
    subprocess.run(cmd, check=True, env=child_env)


def hub_jupyterhub_version(prefix: Path) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tljh_admin",
            "--prefix",
            str(prefix),
            "env",
            "packages",
            "--target",
            "hub",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    versions = [p["version"] for p in json.loads(out)["packages"] if p["name"].lower() == "jupyterhub"]
    if len(versions) != 1:
        raise SystemExit(f"expected one jupyterhub in the hub env, found {versions}")
    return versions[0]


def make_conda_user_env(prefix: Path, cpython: Path) -> None:
    channels = prefix / "conda-channels"
    say(f"user: conda packages in a local channel at {channels} (python from {cpython})")
    conda_channel.build_test_channel(channels, cpython, None, newest_bundled_pip())
    user = prefix / "user"
    user.mkdir()
    # conda's own custom_channels setting sends `-c conda-forge` to the local channel
    (user / ".condarc").write_text(conda_channel.condarc_text(channels))
    # conda and mamba at TLJH 2.0's pins; gdal for a conda package with C libraries (libgdal,
    # proj) that nothing from PyPI depends on, so that pip never replaces it
    specs = ["python", "pip", "conda=24.7.1", "mamba=1.5.9", "gdal"]
    say(f"user: conda create --prefix {user} -c conda-forge {' '.join(specs)}")
    command = conda_channel.standin_command("conda", user, "create", "--yes", "--prefix", str(user))
    subprocess.run([*command, "-c", "conda-forge", *specs], check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(user / "pkgs")  # `conda clean --all`


def recipe() -> str:
    """A fingerprint of how the sandbox is built: this script, the requirement files and the
    test support that makes the conda channel and the user env. A sandbox built by another
    recipe is rebuilt, so that benchmarks never measure an outdated one."""
    import hashlib

    digest = hashlib.sha256()
    support = REPO / "tests" / "support"
    for path in (Path(__file__), *sorted(DATA.glob("requirements-*.txt")), *sorted(support.glob("*.py"))):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def build(prefix: Path, fresh: bool) -> None:
    if fresh and prefix.exists():
        shutil.rmtree(prefix)
    done = prefix / ".sandbox-complete"
    wanted = recipe()
    if done.exists() and done.read_text().strip() == wanted:
        say(f"{prefix} is already built (pass --fresh to rebuild)")
        return
    if done.exists():
        say(f"{prefix} was built by an older recipe: rebuilding")
    if prefix.exists():
        shutil.rmtree(prefix)  # a half-built sandbox from an interrupted run
    prefix.mkdir(parents=True)
    system_python = find_system_python()

    say(f"hub: {system_python} -m venv {prefix / 'hub'}")
    subprocess.run([str(system_python), "-m", "venv", str(prefix / "hub")], check=True)
    pip(prefix / "hub", "--upgrade", "pip")
    pip(prefix / "hub", "-r", str(DATA / "requirements-hub-env.txt"))

    cpython = find_standalone_cpython()
    if cpython is not None:
        make_conda_user_env(prefix, cpython)
    else:
        say("user: no separate CPython installation found; using a venv stand-in")
        subprocess.run([str(system_python), "-m", "venv", str(prefix / "user")], check=True)
    version = hub_jupyterhub_version(prefix)
    say(f"user: jupyterhub=={version} (the hub's) and TLJH's user-env extras")
    if cpython is None:  # in the conda env, pip is conda's package (pip over it is what doctor warns of)
        pip(prefix / "user", "--upgrade", "pip")
    pip(prefix / "user", f"jupyterhub=={version}", "-r", str(DATA / "requirements-user-env-extras.txt"))

    (prefix / "state").mkdir(mode=0o700, exist_ok=True)
    # tljh/installer.py ensure_config_yaml: config/ and config/jupyterhub_config.d made 0700
    # ("private"), then config.yaml written by yaml.dump of the config (empty here)
    for folder in (prefix / "config", prefix / "config" / "jupyterhub_config.d"):
        folder.mkdir(mode=0o700, exist_ok=True)
    (prefix / "config" / "config.yaml").write_text("{}\n")
    subprocess.run(["chmod", "-R", "o-w", str(prefix)], check=True)
    done.write_text(wanted + "\n")
    say(f"done: {prefix}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", type=Path)
    parser.add_argument("--fresh", action="store_true", help="rebuild from scratch")
    args = parser.parse_args()
    build(args.prefix.resolve(), args.fresh)


if __name__ == "__main__":
    main()
