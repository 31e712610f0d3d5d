"""Issue 3's targets: installing TLJH's hub requirements (about 60 real wheels from a local
wheelhouse) into a fresh copy of the same hub venv, peers timed in the same run:

- `tljh env install --installer uv` (lock, plan, snapshot, bytecode, permissions, history)
  vs bare `python -m pip install` of the same wheels: target at least 2x faster;
- the same vs bare `uv pip install --compile-bytecode` (the installer it drives): target at
  most 15% overhead;
- `tljh env install --installer pip` vs bare pip, for reference.

    .venv/bin/python benchmarks/bench_install.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import HUB_REQUIREMENTS, TLJH, VENV, WORK, empty_hub, header, ms, verdict

REQUIREMENTS = HUB_REQUIREMENTS


def prepare() -> tuple[Path, Path]:
    template, wheels, fresh = empty_hub("install-template")
    if fresh:
        (template / ".complete").touch()
    return template, wheels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    template, wheels = prepare()
    run_prefix = WORK / "install-run"
    hub_python = run_prefix / "hub" / "bin" / "python3"
    uv = VENV / "bin" / "uv"
    offline = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
    offline["PIP_CONFIG_FILE"] = os.devnull
    cases = {
        "bare: python -m pip install -r requirements-hub-env.txt": [
            hub_python,
            "-m",
            "pip",
            "install",
            "-qq",
            "--no-index",
            "--find-links",
            wheels,
            "-r",
            REQUIREMENTS,
        ],
        "bare: uv pip install --compile-bytecode -r ...": [
            uv,
            "pip",
            "install",
            "-q",
            "--python",
            hub_python,
            "--no-index",
            "--find-links",
            wheels,
            "--compile-bytecode",
            "-r",
            REQUIREMENTS,
        ],
        **{
            f"tljh env install --installer {installer} -r ... --yes": [
                *(TLJH, "--prefix", run_prefix, "env", "install", "-t", "hub"),
                *("--installer", installer, "-r", REQUIREMENTS, "--yes"),
            ]
            for installer in ("uv", "pip")
        },
    }
    header(VENV / "bin" / "python")
    print(f"{len(list(wheels.glob('*.whl')))} wheels; each run installs into a fresh copy of {template}/hub")
    samples: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    shuffle = random.Random(0).shuffle  # a different order each round: no case always runs first
    for _ in range(args.runs):
        shuffle(order)
        for name in order:
            command = cases[name]
            shutil.rmtree(run_prefix, ignore_errors=True)
            shutil.copytree(template, run_prefix, symlinks=True)
            start = time.perf_counter()
            argv = [os.fspath(c) for c in command]
            subprocess.run(argv, check=True, env=offline, stdout=subprocess.DEVNULL)
            samples[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print("\n## install the hub requirements into a fresh hub venv (median)")
    for name, value in medians.items():
        print(f"  {name:<58} {ms(value)}")
    pip_bare, uv_bare, tljh_uv, tljh_pip = medians.values()
    ok = verdict("bare pip / tljh (uv)", pip_bare / tljh_uv, 2, lower_is_better=False)
    ok &= verdict("tljh (uv) overhead over bare uv", (tljh_uv / uv_bare - 1) * 100, 15, unit=" %")
    print(f"        (tljh --installer pip overhead over bare pip: {(tljh_pip / pip_bare - 1) * 100:.1f} %)")
    shutil.rmtree(run_prefix, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
