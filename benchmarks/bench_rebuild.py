"""Issue 12's target: `tljh env rebuild --target hub --yes` on a hub holding TLJH's hub
requirements (about 60 real wheels from a local wheelhouse) takes at most 1.2x what a bare
`python3 -m venv` + `pip install -r frozen.txt` of the very same frozen set takes; with
`--installer uv` for reference. Peers interleaved round by round, each on a fresh copy.

What the rebuild does on top of the bare install: reads the old env, makes the venv beside
it, checks that every top-level package imports and that requirements hold, compiles the
bytecode for the final path, fixes permissions, snapshots the old env and swaps.

    .venv/bin/python benchmarks/bench_rebuild.py [--runs N] [--no-uv]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import HUB_REQUIREMENTS, SYSTEM_PYTHON, TLJH, VENV, WORK, empty_hub, header, verdict

REQUIREMENTS = HUB_REQUIREMENTS
TARGET = 1.2  # issue 12: rebuild <= 1.2x a bare `pip install -r` of the same frozen set


def prepare() -> tuple[Path, Path, Path]:
    """A prefix whose hub holds TLJH's hub requirements, a wheelhouse, and the frozen set."""
    template, wheels, fresh = empty_hub("rebuild-template")
    frozen = WORK / "rebuild-frozen.txt"
    if fresh:
        pip = [template / "hub" / "bin" / "python3", "-m", "pip"]
        # the venv's own pip and setuptools, so that the frozen set resolves offline
        for wheel in glob.glob("/usr/share/python-wheels/*.whl"):
            shutil.copy2(wheel, wheels)
        subprocess.run(
            [*pip, "install", "-qq", "--no-index", "--find-links", wheels, "-r", REQUIREMENTS], check=True
        )
        out = subprocess.run([*pip, "freeze", "--all"], capture_output=True, text=True, check=True).stdout
        frozen.write_text(out)
        subprocess.run(["chmod", "-R", "o-w", template], check=True)
        (template / ".complete").touch()
    return template, wheels, frozen


def timed(cmd: list, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([os.fspath(c) for c in cmd], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {cmd}\n{proc.stderr[-3000:]}")
    return elapsed


def bare(frozen: Path, wheels: Path, env: dict[str, str]) -> float:
    fresh = WORK / "rebuild-bare"
    shutil.rmtree(fresh, ignore_errors=True)
    start = time.perf_counter()
    timed([SYSTEM_PYTHON, "-m", "venv", fresh], env)
    pip = [fresh / "bin" / "python3", "-m", "pip", "install", "-qq", "--no-index", "--find-links", wheels]
    timed([*pip, "-r", frozen], env)
    return time.perf_counter() - start


def rebuild(template: Path, installer: str, env: dict[str, str]) -> float:
    prefix = WORK / "rebuild-run"
    shutil.rmtree(prefix, ignore_errors=True)
    shutil.copytree(template, prefix, symlinks=True)
    return timed(
        [TLJH, "--prefix", prefix, "--system-python", SYSTEM_PYTHON, "env", "rebuild", "--target", "hub",
         "--yes", "--installer", installer],
        env,
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-uv", action="store_true", help="skip the --installer uv case")
    args = parser.parse_args()
    template, wheels, frozen = prepare()
    header(VENV / "bin" / "python")
    count = len([line for line in frozen.read_text().splitlines() if "==" in line])
    print(
        f"hub: {count} distributions (TLJH's hub requirements), wheels from {wheels};"
        f" system python {SYSTEM_PYTHON}"
    )
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels), "PIP_CONFIG_FILE": os.devnull}
    samples: dict[str, list[float]] = {"bare": [], "rebuild-pip": [], "rebuild-uv": []}
    for _ in range(args.runs):
        samples["bare"].append(bare(frozen, wheels, env))
        samples["rebuild-pip"].append(rebuild(template, "pip", env))
        if not args.no_uv:
            samples["rebuild-uv"].append(rebuild(template, "uv", env))
    medians = {name: statistics.median(values) for name, values in samples.items() if values}
    print(f"\n## medians of {args.runs} round(s)")
    labels = {
        "bare": "bare: python3 -m venv + pip install -r frozen.txt",
        "rebuild-pip": "tljh env rebuild --target hub --yes (pip)",
        "rebuild-uv": "tljh env rebuild --target hub --yes --installer uv",
    }
    for name, value in medians.items():
        print(f"  {labels[name]:<58} {value:8.2f} s")
    ok = verdict("rebuild (pip) / bare pip", medians["rebuild-pip"] / medians["bare"], TARGET)
    if "rebuild-uv" in medians:
        print(f"  info  rebuild (uv) / bare pip: {medians['rebuild-uv'] / medians['bare']:.2f}x")
    shutil.rmtree(WORK / "rebuild-run", ignore_errors=True)
    shutil.rmtree(WORK / "rebuild-bare", ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
