"""Issue 13's target, on the README sandbox, peers timed in the same run:

- `tljh env export --target user --format lock` vs `python -m pip freeze` in the user env
  (the env's own interpreter, as an admin would run it): target at least 3x faster;
- `pip inspect` (what pip offers for a full, machine-readable listing), for reference;
- `--format requirements` and `--format repo2docker` (which also reads every RECORD for the
  env's own kernelspecs and config), for reference.

    .venv/bin/python benchmarks/bench_export.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import TLJH, WORK, compare, report, sandbox_and_peers, verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    sandbox, _uv, _hub_py, user_py = sandbox_and_peers()
    export = [TLJH, "--prefix", sandbox, "env", "export", "--target", "user"]
    medians = compare(
        {
            "tljh env export --target user --format lock": [[*export, "--format", "lock"]],
            "python -m pip freeze (user)": [[user_py, "-m", "pip", "freeze"]],
            "python -m pip inspect (user)": [[user_py, "-m", "pip", "inspect"]],
            "tljh env export --target user --format requirements": [[*export, "--format", "requirements"]],
        },
        args.runs,
    )
    report("env export vs pip freeze", medians)
    lock, freeze, inspect, _ = medians.values()
    ok = verdict("pip freeze / tljh env export --format lock", freeze / lock, 3, lower_is_better=False)
    print(f"        (pip inspect / tljh env export --format lock: {inspect / lock:.2f}x)")

    folder = WORK / "export-repo2docker"
    rounds = []
    for _ in range(max(3, args.runs // 3)):
        shutil.rmtree(folder, ignore_errors=True)
        rounds.append(
            compare({"r2d": [[*export, "--format", "repo2docker", folder]]}, runs=1, warmup=0)["r2d"]
        )
    shutil.rmtree(folder, ignore_errors=True)
    report(
        "repo2docker folder (a new folder each round)",
        {"tljh env export --format repo2docker DIR": median(rounds)},
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
