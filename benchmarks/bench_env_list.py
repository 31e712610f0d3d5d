"""Issue 2's targets, on the README sandbox, peers timed in the same run:

- `tljh env list --json` (packages of every env) vs `python -m pip list --format=json` on
  hub + user (target: at least 5x faster) and `uv pip list --python` on hub + user (target:
  at most 1.5x uv's time);
- `tljh --help` vs `python -c 'import typer'` (target: at most 40 ms more);
- listing an env of 5,000 distributions vs one of 500 (target: at most 12x).

    .venv/bin/python benchmarks/bench_env_list.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import TLJH, VENV, WORK, compare, report, sandbox_and_peers, verdict

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
    for i in range(count):
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
    (prefix / ".complete").touch()
    return prefix


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

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
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
