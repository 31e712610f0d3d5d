"""Read-only questions the CLI asks; each returns data and the exit code it implies."""

from __future__ import annotations

from tljh_admin.envs import inspect_all, inspect_environment
from tljh_admin.envs.model import BROKEN, Environment
from tljh_admin.errors import ExitCode
from tljh_admin.layout import ENV_NAMES, Layout, unknown_target


def unfinished_changes(layout: Layout) -> dict[str, str]:
    """{env: why} for each environment a tljh-admin change is changing right now, or left
    half changed when it was killed: what its files say is no state anyone chose. Empty
    when nothing was journalled, or this user may not read the journals (root's alone)."""
    import os

    try:
        names = os.listdir(os.path.join(layout.admin_state, "journal"))
    except OSError:
        return {}
    if not any(name.endswith(".json") for name in names):
        return {}  # the usual case: no change machinery imported
    from tljh_admin.errors import PermissionDenied
    from tljh_admin.transaction import StateDir

    state = StateDir.of(layout)
    try:
        if state.problems(owner=0):
            return {}  # doctor reports the state folder; nothing in it is read
        journals = state.journals()
    except (PermissionDenied, OSError):
        return {}
    found = {}
    for journal in journals:
        if state.in_progress(journal):
            why = f"change {journal['id']} is changing it right now"
        else:
            why = (
                f"change {journal['id']} ({journal['command']}) never finished: it is half changed; any tljh"
                " change to it, or tljh doctor --fix, restores it"
            )
        for env in journal["envs"]:
            found.setdefault(env, why)
    return found


def _as_found(env: Environment, unfinished: dict[str, str]) -> Environment:
    if env.name in unfinished and env.status != BROKEN:
        return env._replace(status=BROKEN, reason=unfinished[env.name])
    return env


def list_environments(layout: Layout) -> tuple[list[Environment], ExitCode]:
    unfinished = unfinished_changes(layout)
    envs = [_as_found(env, unfinished) for env in inspect_all(layout, ENV_NAMES)]
    code = ExitCode.OK if all(env.ok for env in envs) else ExitCode.PROBLEMS_FOUND
    return envs, code


def environment_packages(layout: Layout, target: str) -> tuple[Environment, ExitCode]:
    if target not in ENV_NAMES:
        raise unknown_target(target)
    env = _as_found(inspect_environment(target, layout), unfinished_changes(layout))
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
