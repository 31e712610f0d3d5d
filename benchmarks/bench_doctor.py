"""Issue 11's targets, on the README sandbox, peers timed in the same run:

- `tljh doctor --json` (every default check, all three environments and the host: RECORD
  files of ~40,000 paths, permissions of every file, console scripts, .pth files...) vs
  `python -m pip check` on hub + user: at least 3x faster;
- the same vs `uv pip check --python` on hub + user: at most 3x its time;
- `tljh doctor --json` on an env of 5,000 distributions: at most 10x the time of 500.

    .venv/bin/python benchmarks/bench_doctor.py [--runs N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import REPO, TLJH, VENV, WORK, compare, report, sandbox_and_peers, verdict
from bench_env_list import SYSTEM_PYTHON, make_big_env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    sandbox, uv, hub_py, user_py = sandbox_and_peers()
    # pip byte-compiles tljh-admin when it installs its wheel, as it did the peers' pip in the
    # sandbox. This checkout is installed editable, and with PYTHONDONTWRITEBYTECODE set
    # every run would compile ~30 modules from source (~50-140 ms): compile them once.
    subprocess.run(
        [VENV / "bin" / "python", "-m", "compileall", "-q", REPO / "src" / "tljh_admin"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    medians = compare(
        {
            "tljh doctor --json (all checks, hub+user+system+host)": [
                [TLJH, "--prefix", sandbox, "doctor", "--json"]
            ],
            "python -m pip check (hub, then user)": [
                [hub_py, "-m", "pip", "check"],
                [user_py, "-m", "pip", "check"],
            ],
            "uv pip check --python (hub, then user)": [
                [uv, "pip", "check", "--python", hub_py],
                [uv, "pip", "check", "--python", user_py],
            ],
        },
        args.runs,
    )
    report("doctor vs pip check and uv pip check", medians)
    tool, pip_check, uv_check = medians.values()
    ok = verdict("pip check (hub+user) / tljh doctor", pip_check / tool, 3, lower_is_better=False)
    ok &= verdict("tljh doctor / uv pip check (hub+user)", tool / uv_check, 3)

    big = {n: make_big_env(WORK, n, SYSTEM_PYTHON) for n in (500, 5000)}
    medians = compare(
        {
            f"tljh doctor --json --target hub, {n} dists": [
                [TLJH, "--prefix", p, "doctor", "--json", "-t", "hub"]
            ]
            for n, p in big.items()
        },
        max(5, args.runs // 3),
    )
    report("doctor at 500 and 5,000 distributions", medians)
    small, large = medians.values()
    ok &= verdict("doctor 5,000 dists / 500 dists", large / small, 10)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
