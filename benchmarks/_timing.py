"""Shared helpers for the benchmark scripts: same-run medians and ratios.

These machines are noisy, so every figure is a median over several runs, peers are timed
in the same run, interleaved round by round, and the verdicts are ratios.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "benchmarks" / ".work"
VENV = REPO / ".venv"
TLJH = VENV / "bin" / "tljh"
Command = Sequence[str | os.PathLike[str]]


def run_quiet(cmd: Command, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(
        [os.fspath(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    if proc.returncode not in (0, 1):  # 1: a report that found problems still did its work
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {cmd}\n{proc.stderr.decode()}")


def time_once(commands: Sequence[Command], env: dict[str, str] | None = None) -> float:
    """Seconds for running `commands` one after another (e.g. pip list on hub, then user)."""
    start = time.perf_counter()
    for cmd in commands:
        run_quiet(cmd, env)
    return time.perf_counter() - start


def compare(cases: dict[str, Sequence[Command]], runs: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per case, with the cases interleaved round by round."""
    for _ in range(warmup):
        for commands in cases.values():
            time_once(commands)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, commands in cases.items():
            samples[name].append(time_once(commands))
    return {name: statistics.median(values) for name, values in samples.items()}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def report(title: str, medians: dict[str, float]) -> None:
    print(f"\n## {title}")
    for name, value in medians.items():
        print(f"  {name:<58} {ms(value)}")


def verdict(label: str, value: float, limit: float, unit: str = "x", lower_is_better: bool = True) -> bool:
    ok = value <= limit if lower_is_better else value >= limit
    sign = "<=" if lower_is_better else ">="
    print(f"  {'PASS' if ok else 'MISS'}  {label}: {value:.2f}{unit} (target {sign} {limit}{unit})")
    return ok


def ensure_sandbox() -> Path:
    sandbox = Path(os.environ.get("TLJH_BENCH_SANDBOX", REPO / "sandbox" / "opt-tljh"))
    # always asked: the builder returns at once when the sandbox is its recipe's, and
    # rebuilds one an older recipe built (benchmarks once timed a pip-only user env so)
    subprocess.run([sys.executable, REPO / "scripts" / "build_sandbox.py", sandbox], check=True)
    return sandbox


def ensure_uv() -> Path:
    """uv, installed for the benchmarks only, into benchmarks/.work."""
    uv = WORK / "uv-venv" / "bin" / "uv"
    if not uv.exists():
        subprocess.run([sys.executable, "-m", "venv", WORK / "uv-venv"], check=True)
        subprocess.run([WORK / "uv-venv" / "bin" / "python", "-m", "pip", "install", "-qq", "uv"], check=True)
    return uv


def header(tool_python: Path) -> None:
    real = os.path.realpath(tool_python)
    version = subprocess.run([tool_python, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"tljh-admin runs on {tool_python} -> {real} ({version}); {os.cpu_count()} cores")


def sandbox_and_peers() -> tuple[Path, Path, Path, Path]:
    """The sandbox, uv, and the hub's and user env's own interpreters (what the peers run
    with), after printing which interpreter runs the tool."""
    sandbox = ensure_sandbox()
    uv = ensure_uv()
    header(VENV / "bin" / "python")
    print(f"sandbox: {sandbox}; peers run with each env's own bin/python3; uv: {uv}")
    return sandbox, uv, sandbox / "hub" / "bin" / "python3", sandbox / "user" / "bin" / "python3"


# TLJH's hub requirements (tljh-admin's shipped copy of tljh/requirements-hub-env.txt), the
# install benchmarks' workload, and the system python that makes the hub venv (bootstrap.py).
HUB_REQUIREMENTS = REPO / "src" / "tljh_admin" / "data" / "requirements-hub-env.txt"
SYSTEM_PYTHON = os.environ.get("TLJH_SYSTEM_PYTHON", "/usr/bin/python3")


def empty_hub(name: str) -> tuple[Path, Path, bool]:
    """WORK/<name>: a PREFIX with an empty hub venv (made by the system python) and state/,
    plus the wheelhouse of the hub requirements shared by the install benchmarks. Returns
    (prefix, wheelhouse, fresh): fresh when the prefix was made now, so the caller can fill it
    and then touch <prefix>/.complete."""
    import shutil

    template = WORK / name
    wheels = WORK / "install-wheels"
    if (template / ".complete").exists():
        return template, wheels, False
    shutil.rmtree(template, ignore_errors=True)
    template.mkdir(parents=True)
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", template / "hub"], check=True)
    (template / "state").mkdir(mode=0o700)
    wheels.mkdir(exist_ok=True)
    if not any(wheels.glob("jupyterhub-*.whl")):
        # `pip wheel`, not `download`: sdists (onetimepass) become wheels once, so no run builds
        pip = [template / "hub" / "bin" / "python3", "-m", "pip"]
        subprocess.run([*pip, "wheel", "-qq", "-w", wheels, "-r", HUB_REQUIREMENTS], check=True)
    return template, wheels, True
