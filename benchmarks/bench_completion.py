"""Issue 6's targets, same run: a completion request and `tljh --help`, each at most 40 ms
above `python -c 'import typer'` (median). Typer's own completion path is timed too.

    .venv/bin/python benchmarks/bench_completion.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import statistics
import time

from _timing import TLJH, VENV, ensure_sandbox, header, ms, verdict


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    sandbox = ensure_sandbox()
    python = str(VENV / "bin" / "python")
    header(VENV / "bin" / "python")
    base = dict(os.environ)

    def tab(line: str, **extra: str) -> dict[str, str]:
        words = line.split(" ")
        return {
            **base,
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
            "_TLJH_COMPLETE": "complete_bash",
            **extra,
        }

    packages = f"tljh --prefix {sandbox} env uninstall --target user jupyterl"
    cases = {
        "python -c 'import typer'": ([python, "-c", "import typer"], base),
        "tljh --help": ([str(TLJH), "--help"], base),
        "TAB: tljh env uninstall --target user jupyterl<TAB>": ([str(TLJH)], tab(packages)),
        "TAB: tljh doctor world<TAB>": ([str(TLJH)], tab("tljh doctor world")),
        "TAB through Typer (reference): packages": ([str(TLJH)], tab(packages, TLJH_ADMIN_FASTPATH="0")),
    }
    for command, env in cases.values():
        timed(command, env)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (command, env) in cases.items():
            samples[name].append(timed(command, env))
    medians = {name: statistics.median(v) for name, v in samples.items()}
    print("\n## completion and --help (median)")
    for name, value in medians.items():
        print(f"  {name:<58} {ms(value)}")
    floor = medians["python -c 'import typer'"]
    ok = True
    for name in (
        "tljh --help",
        "TAB: tljh env uninstall --target user jupyterl<TAB>",
        "TAB: tljh doctor world<TAB>",
    ):
        ok &= verdict(f"{name} - import typer", (medians[name] - floor) * 1000, 40, unit=" ms")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
