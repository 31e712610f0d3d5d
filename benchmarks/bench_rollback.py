"""Issue 10's rollback target: undoing a ~60-package change.

The hub venv holds TLJH's hub requirements (about 60 wheels). The change removes all of
them (`tljh env uninstall`, which snapshots first). The way back, timed in the same run:

- `tljh env rollback -t hub --yes` (hard links from the snapshot, no index);
- what an admin without snapshots runs: `python -m pip install` of the previous versions
  (`pip freeze` of before), from a local wheelhouse, the best case for pip (no network).

Target: rollback at least 10x faster.

    .venv/bin/python benchmarks/bench_rollback.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import TLJH, VENV, WORK, header, ms, verdict
from bench_install import REQUIREMENTS, prepare


def installed_template(template: Path, wheels: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """The hub with the requirements installed, and its `pip freeze` (the previous versions)."""
    full = WORK / "rollback-template"
    freeze = WORK / "rollback-freeze.txt"
    if not (full / ".complete").exists():
        shutil.rmtree(full, ignore_errors=True)
        shutil.copytree(template, full, symlinks=True)
        python = full / "hub" / "bin" / "python3"
        subprocess.run(
            [python, "-m", "pip", "install", "-qq", "--no-index", "--find-links", wheels, "-r", REQUIREMENTS],
            check=True,
            env=env,
        )
        frozen = subprocess.run(
            [python, "-m", "pip", "freeze", "--exclude", "pip"], check=True, capture_output=True, text=True
        ).stdout
        freeze.write_text(frozen)
        (full / ".complete").touch()
    return full, freeze


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    template, wheels = prepare()
    offline = {
        **os.environ,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "PIP_CONFIG_FILE": os.devnull,
    }
    full, freeze = installed_template(template, wheels, offline)
    names = [line.split("==")[0] for line in freeze.read_text().splitlines() if "==" in line]
    run_prefix = WORK / "rollback-run"
    python = run_prefix / "hub" / "bin" / "python3"
    cases = {
        "tljh env rollback -t hub --yes": [
            TLJH,
            "--prefix",
            run_prefix,
            "env",
            "rollback",
            "-t",
            "hub",
            "--yes",
        ],
        "bare: python -m pip install -r previous-freeze.txt": [
            *(python, "-m", "pip", "install", "-qq", "--no-index", "--find-links", wheels, "-r", freeze),
        ],
    }
    header(VENV / "bin" / "python")
    print(f"{len(names)} packages removed by one change, then brought back")
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(args.runs):
        for name in cases if round_ % 2 == 0 else reversed(list(cases)):
            shutil.rmtree(run_prefix, ignore_errors=True)
            shutil.copytree(full, run_prefix, symlinks=True)
            remove = [
                TLJH,
                "--prefix",
                run_prefix,
                "env",
                "uninstall",
                "-t",
                "hub",
                *names,
                "--force",
                "--yes",
            ]
            subprocess.run([os.fspath(c) for c in remove], check=True, env=offline, stdout=subprocess.DEVNULL)
            start = time.perf_counter()
            argv = [os.fspath(c) for c in cases[name]]
            subprocess.run(
                argv, check=True, env=offline, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            samples[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print("\n## undo a change that removed every hub package (median)")
    for name, value in medians.items():
        print(f"  {name:<58} {ms(value)}")
    rollback, reinstall = medians.values()
    ok = verdict("pip reinstall / tljh rollback", reinstall / rollback, 10, lower_is_better=False)
    shutil.rmtree(run_prefix, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
