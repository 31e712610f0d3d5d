"""Read-only questions the CLI asks; each returns data and the exit code it implies."""

from __future__ import annotations

from tljh_admin.envs import inspect_all, inspect_environment
from tljh_admin.envs.model import Environment
from tljh_admin.errors import ExitCode
from tljh_admin.layout import ENV_NAMES, Layout, unknown_target


def list_environments(layout: Layout) -> tuple[list[Environment], ExitCode]:
    envs = inspect_all(layout, ENV_NAMES)
    code = ExitCode.OK if all(env.ok for env in envs) else ExitCode.PROBLEMS_FOUND
    return envs, code


def environment_packages(layout: Layout, target: str) -> tuple[Environment, ExitCode]:
    if target not in ENV_NAMES:
        raise unknown_target(target)
    env = inspect_environment(target, layout)
    return env, ExitCode.OK if env.ok else ExitCode.PROBLEMS_FOUND


def change_history(layout: Layout, target: str | None) -> list[dict]:
    from tljh_admin.transaction import StateDir

    if target is not None and target not in ENV_NAMES:
        raise unknown_target(target)
    state = StateDir.of(layout)
    entries = state.history()
    usage = state.snapshot_usage()  # bytes each kept snapshot holds on its own
    return [
        {**e, "snapshot_bytes": usage.get(e["id"])} for e in entries if target is None or target in e["envs"]
    ]
