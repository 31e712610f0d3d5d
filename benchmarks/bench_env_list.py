"""Issue 2's targets, on the README sandbox, peers timed in the same run:

- `tljh env list --json` (packages of every env) vs `python -m pip list --format=json` on
  hub + user (target: at least 5x faster) and `uv pip list --python` on hub + user (target:
  at most 1.5x uv's time);
- `tljh --help` vs `python -c 'import typer'` (target: at most 40 ms more);
- listing an env of 5,000 distributions vs one of 500 (target: at most 12x);
- a conda user env of 300 conda records + 150 pip dists vs a pip-only env of 450 dists,
  `env packages` and `env list` (target: at most 1.2x). The conda env is made the way the
  tests make one: real conda packages in a local channel, linked by py-rattler.

    .venv/bin/python benchmarks/bench_env_list.py [--runs N] [--conda-only]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import REPO, TLJH, VENV, WORK, compare, report, sandbox_and_peers, verdict

SYSTEM_PYTHON = "/usr/bin/python3"


def make_big_env(root: Path, count: int, system_python: str) -> Path:
    """A PREFIX whose hub is a real venv holding `count` real dist-info folders (each with
    METADATA, WHEEL, INSTALLER, RECORD and a module), as pip would have left them."""
    prefix = root / f"prefix-{count}"
    if (prefix / ".complete").exists():
        return prefix
    shutil.rmtree(prefix, ignore_errors=True)
    prefix.mkdir(parents=True)
    subprocess.run([system_python, "-m", "venv", "--without-pip", prefix / "hub"], check=True)
    (site,) = (prefix / "hub").glob("lib/python3.*/site-packages")
    write_dists(site, count)
    (prefix / ".complete").touch()
    return prefix


def write_dists(site: Path, count: int, first: int = 0) -> None:
    for i in range(first, first + count):
        name, version = f"bench_pkg_{i:05d}", f"1.{i % 7}.{i % 13}"
        (site / name).mkdir()
        (site / name / "__init__.py").write_text(f'__version__ = "{version}"\n')
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: bench-pkg-{i:05d}\nVersion: {version}\n"
            f"Summary: benchmark filler\nRequires-Dist: bench-pkg-{(i + 1) % count:05d}\n\n"
        )
        (info / "WHEEL").write_text(
            "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        (info / "INSTALLER").write_text("pip\n")
        (info / "RECORD").write_text(f"{name}/__init__.py,,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


CONDA_RECORDS, CONDA_PIP_DISTS = 300, 150


def make_conda_pair(root: Path) -> tuple[Path, Path]:
    """Two PREFIXes with the same CPython as user env: one a conda env of 300 records
    (python, 99 Python packages with a dist-info, 200 C-library-like packages) plus 150
    pip-installed dists, the other the plain CPython with 450 pip-installed dists."""
    sys.path.insert(0, str(REPO))
    from tests.support import conda_channel, prefixes

    conda_prefix, pip_prefix = root / "conda-300+150", root / "pip-450"
    if (conda_prefix / ".complete").exists() and (pip_prefix / ".complete").exists():
        return conda_prefix, pip_prefix
    for path in (conda_prefix, pip_prefix, root / "conda-channels"):
        shutil.rmtree(path, ignore_errors=True)
    cpython = prefixes.find_standalone_cpython()
    if cpython is None:
        raise SystemExit("no CPython installation to make a conda env from")
    short = prefixes._is_full_cpython(cpython)
    channel = root / "conda-channels" / conda_channel.CHANNEL_NAME
    stage = root / "conda-channels" / ".stage"
    stage.mkdir(parents=True)
    specs = [conda_channel.python_spec(cpython)]
    specs += [
        conda_channel.python_package_spec(f"bench-py-{i:03d}", "1.0.0", short, f"bench_py_{i:03d}")
        for i in range(99)
    ]
    specs += [
        conda_channel.c_library_spec(f"libbench{i:03d}", "2.1.0", {f"lib/libbench{i:03d}.so.2": b"\x7fELF\n"})
        for i in range(CONDA_RECORDS - 100)
    ]
    for spec in specs:
        conda_channel.build_package(spec, channel, stage)
    conda_channel.index_channel(channel)
    user = conda_prefix / "user"
    user.mkdir(parents=True)
    (user / ".condarc").write_text(conda_channel.condarc_text(channel.parent))
    names = [s.name for s in specs]
    subprocess.run(
        conda_channel.standin_command("conda", user, "create", "--yes", "--prefix", str(user), *names),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    shutil.rmtree(user / "pkgs")
    write_dists(user / "lib" / f"python{short}" / "site-packages", CONDA_PIP_DISTS)
    prefixes.copy_cpython(cpython, pip_prefix / "user")
    write_dists(
        pip_prefix / "user" / "lib" / f"python{short}" / "site-packages", CONDA_RECORDS + CONDA_PIP_DISTS
    )
    (conda_prefix / ".complete").touch()
    (pip_prefix / ".complete").touch()
    return conda_prefix, pip_prefix


def conda_case(runs: int) -> bool:
    conda_prefix, pip_prefix = make_conda_pair(WORK)
    cases = {}
    for label, prefix in (("conda 300+150", conda_prefix), ("pip-only 450", pip_prefix)):
        cases[f"tljh env packages -t user --json, {label}"] = [
            [TLJH, "--prefix", prefix, "env", "packages", "-t", "user", "--json"]
        ]
        cases[f"tljh env list --json, {label}"] = [[TLJH, "--prefix", prefix, "env", "list", "--json"]]
    medians = compare(cases, runs)
    report("conda user env (300 records + 150 pip dists) vs pip-only (450 dists)", medians)
    conda_packages, conda_list, pip_packages, pip_list = medians.values()
    ok = verdict("env packages: conda / pip-only", conda_packages / pip_packages, 1.2)
    ok &= verdict("env list: conda / pip-only", conda_list / pip_list, 1.2)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--conda-only", action="store_true", help="only the conda case (no sandbox needed)")
    args = parser.parse_args()
    if args.conda_only:
        return 0 if conda_case(args.runs) else 1

    sandbox, uv, hub_py, user_py = sandbox_and_peers()
    ok = True

    medians = compare(
        {
            "tljh env list --json (hub+user+system, with packages)": [
                [TLJH, "--prefix", sandbox, "env", "list", "--json"]
            ],
            "python -m pip list --format=json (hub, then user)": [
                [hub_py, "-m", "pip", "list", "--format=json"],
                [user_py, "-m", "pip", "list", "--format=json"],
            ],
            "uv pip list --format json --python (hub, then user)": [
                [uv, "pip", "list", "--format", "json", "--python", hub_py],
                [uv, "pip", "list", "--format", "json", "--python", user_py],
            ],
            "floor: python3 -c pass (the tool's interpreter)": [[VENV / "bin" / "python", "-c", "pass"]],
        },
        args.runs,
    )
    report("env list vs pip list and uv pip list", medians)
    tool, pip_list, uv_list = list(medians.values())[:3]
    ok &= verdict("pip list (hub+user) / tljh env list", pip_list / tool, 5, lower_is_better=False)
    ok &= verdict("tljh env list / uv pip list (hub+user)", tool / uv_list, 1.5)

    medians = compare(
        {
            "tljh --help": [[TLJH, "--help"]],
            "python -c 'import typer'": [[VENV / "bin" / "python", "-c", "import typer"]],
        },
        args.runs,
    )
    report("--help vs import typer", medians)
    help_time, typer_time = medians.values()
    ok &= verdict("tljh --help - import typer", (help_time - typer_time) * 1000, 40, unit=" ms")

    big = {n: make_big_env(WORK, n, SYSTEM_PYTHON) for n in (500, 5000)}
    cases = {
        f"tljh env packages --json, {n} dists": [
            [TLJH, "--prefix", p, "env", "packages", "-t", "hub", "--json"]
        ]
        for n, p in big.items()
    }
    cases |= {
        f"uv pip list, {n} dists": [
            [uv, "pip", "list", "--format", "json", "--python", p / "hub" / "bin" / "python3"]
        ]
        for n, p in big.items()
    }
    medians = compare(cases, max(5, args.runs // 3))
    report("scaling: 500 vs 5,000 distributions", medians)
    values = list(medians.values())
    ok &= verdict("tljh 5,000 / 500", values[1] / values[0], 12)
    print(f"        (uv pip list 5,000 / 500: {values[3] / values[2]:.2f}x)")
    ok &= conda_case(args.runs)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
