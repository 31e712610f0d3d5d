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
import os
import statistics
import subprocess
import sys
import time
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
    where_the_time_goes(sandbox, uv_check, args.runs)

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


def _cpu_and_wall(cmd) -> tuple[float, float]:
    """Seconds of CPU (the process and the children it waited for: doctor's finds) and of
    wall time, for one run."""
    start = time.perf_counter()
    proc = subprocess.Popen([os.fspath(c) for c in cmd], stdout=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped here: keep Popen from waiting again
    return usage.ru_utime + usage.ru_stime, time.perf_counter() - start


def _finds_alone(sandbox: Path) -> tuple[float, float]:
    """Seconds of wall time and of CPU for the finds doctor starts (same programs, arguments
    and start points), run from here with no doctor around them: the file walk on its own."""
    from tljh_admin.layout import Layout
    from tljh_admin.permissions import start_env_scans

    start = time.perf_counter()
    scans = start_env_scans(Layout(os.fspath(sandbox), "/usr/bin/python3"), ["hub", "user"])
    finds = [find for scan in scans.values() for find in scan.finds.values()]
    cpu = 0.0
    for find in finds:
        _, _, usage = os.wait4(find.pid, 0)
        cpu += usage.ru_utime + usage.ru_stime
    elapsed = time.perf_counter() - start
    for find in finds:
        find.close()
    return elapsed, cpu


def where_the_time_goes(sandbox: Path, uv_check: float, runs: int) -> None:
    """What bounds doctor on this machine, in the same run: the interpreter starts before
    any find can, and then no schedule beats doctor's CPU time spread over every core."""
    cores = os.cpu_count() or 1
    doctor = [TLJH, "--prefix", sandbox, "doctor", "--json"]
    samples: dict[str, list[float]] = {"cpu": [], "start": [], "walk": [], "walk cpu": []}
    for _ in range(runs):
        samples["cpu"].append(_cpu_and_wall(doctor)[0])
        samples["start"].append(_cpu_and_wall([VENV / "bin" / "python", "-c", "pass"])[1])
        walk, walk_cpu = _finds_alone(sandbox)
        samples["walk"].append(walk)
        samples["walk cpu"].append(walk_cpu)
    cpu, start, walk, walk_cpu = (statistics.median(v) for v in samples.values())
    bound = start + (cpu - start) / cores
    report(
        f"where doctor's time goes ({cores} cores)",
        {
            "doctor's CPU time: its finds and Python": cpu,
            "  of which the finds (the file walk)": walk_cpu,
            "the finds alone, started together, wall time": walk,
            "the interpreter's start (python -c pass)": start,
            "start + the rest of doctor's CPU over every core": bound,
        },
    )
    print(f"  the finds alone take {walk / uv_check:.2f}x uv pip check; no schedule of doctor's")
    print(f"  CPU time beats {bound / uv_check:.2f}x (measured above: doctor's own ratio)")


if __name__ == "__main__":
    raise SystemExit(main())
