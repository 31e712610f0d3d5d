"""Install, uninstall and roll back, with every guarantee: the isolation rules first, then
the environment's lock, recovery of a killed change, a plan, a snapshot, the installer,
permission normalisation, the jupyterhub pin check, and history. Returns data; the CLI
renders the plan, asks, and reports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tljh_admin import policy, snapshot
from tljh_admin.defaults import DEFAULT_INSTALLER, DEFAULT_LOCK_TIMEOUT
from tljh_admin.envs import inspect_environment
from tljh_admin.envs.model import Environment
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.errors import ExitCode, TljhError
from tljh_admin.installers import (
    REMOVE,
    InstallerFailed,
    PlannedChange,
    make_installer,
    plan_changes,
    write_constraints,
)
from tljh_admin.layout import ENV_NAMES, HUB, SYSTEM, USER, Layout, unknown_target
from tljh_admin.transaction import (
    FAILED,
    INTERRUPTED,
    OK,
    Change,
    EnvState,
    Interrupted,
    StateDir,
    env_locks,
    env_owner,
    normalize_permissions,
    recover_unfinished,
    sigterm_raises,
)

Notify = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class ChangeRequest:
    """What every change to one environment is asked with."""

    target: str
    force: bool = False
    allow_system: bool = False
    break_system_packages: bool = False
    installer: str = DEFAULT_INSTALLER
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    command: str = ""


@dataclass(frozen=True, kw_only=True)
class InstallRequest(ChangeRequest):
    packages: tuple[str, ...] = ()
    requirement_files: tuple[str, ...] = ()
    constraint_files: tuple[str, ...] = ()
    upgrade: bool = False


@dataclass(frozen=True, kw_only=True)
class UninstallRequest(ChangeRequest):
    packages: tuple[str, ...]


@dataclass
class Prepared:
    """A change that passed every rule and has a plan; the environment is locked."""

    kind: str
    env: Environment
    plan: list[PlannedChange]
    change: Change | None = None
    run: Callable[[Callable[[str], None]], None] | None = None
    recovered: list[dict] = field(default_factory=list)
    pin: str | None = None


@dataclass(frozen=True)
class Outcome:
    change_id: int
    result: str
    history: dict
    world_writable_fixed: int
    owner_fixed: int


def _check_target(target: str) -> None:
    if target not in ENV_NAMES:
        raise unknown_target(target)


def _write_paths(layout: Layout, env: Environment) -> list[str]:
    paths = [env.root, *env.site_dirs] if env.name != SYSTEM else list(env.site_dirs[:1])
    return [*paths, layout.state if os.path.isdir(layout.state) else layout.prefix]


def _common_guards(layout: Layout, env: Environment, allow_system: bool, break_system: bool) -> None:
    policy.require_system_allowed(env, allow_system, break_system)
    policy.require_runnable(env)
    policy.require_write_access(_write_paths(layout, env))


def _areas(env: Environment) -> snapshot.Areas:
    return snapshot.install_areas(env.root, env.site_dirs, system=env.name == SYSTEM)


@contextlib.contextmanager
def _locked(
    layout: Layout, targets: list[str], timeout: float, notify: Notify
) -> Iterator[tuple[StateDir, list]]:
    state = StateDir.of(layout)
    state.ensure()
    with env_locks(state, targets, timeout, notify):
        recovered = recover_unfinished(state, targets, notify)
        yield state, recovered


@contextlib.contextmanager
def _installer_for(request: ChangeRequest, env: Environment) -> Iterator:
    """The request's installer on `env`, with a scratch folder for its plan and constraints."""
    workdir = tempfile.mkdtemp(prefix="tljh-admin-")
    try:
        yield (
            make_installer(request.installer, env, policy.scrubbed_environment(os.environ), workdir),
            workdir,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _installer_change(
    layout: Layout, state: StateDir, request: ChangeRequest, kind: str, env: Environment, installer, command
) -> tuple[Change, Callable[[Callable[[str], None]], None]]:
    """The Change record for one environment, and the step that runs the installer for it."""
    change = Change(layout, state, state.next_id(), request.command, kind, {}, installer.name)
    change.envs[env.name] = EnvState(env, _areas(env))

    def run(progress: Callable[[str], None]) -> None:
        installer.run(command, state.path("logs", f"{change.change_id}.log"), progress)

    return change, run


@contextlib.contextmanager
def prepare_install(layout: Layout, request: InstallRequest, notify: Notify) -> Iterator[Prepared]:
    _check_target(request.target)
    env = inspect_environment(request.target, layout)
    _common_guards(layout, env, request.allow_system, request.break_system_packages)
    wanted = policy.validate_requirements(
        request.packages, request.requirement_files, request.constraint_files
    )
    policy.refuse_user_server_packages_in_hub(env, wanted.names, request.force)
    policy.refuse_direct_jupyterhub_change(env, wanted.names)
    pin = policy.jupyterhub_pin(inspect_environment(HUB, layout)) if env.name == USER else None

    with _locked(layout, [env.name], request.lock_timeout, notify) as (state, recovered):
        env = inspect_environment(env.name, layout)  # as it is now, after any recovery
        with _installer_for(request, env) as (installer, workdir):
            constraints = [*wanted.constraints, *([pin] if pin else [])]
            constraint_file = write_constraints(workdir, constraints)
            resolution = _resolve_pinned(installer, wanted, constraint_file, request, pin, workdir)
            plan = plan_changes(env, resolution, wanted.names)
            if env.name == HUB:
                policy.refuse_user_server_packages_in_hub(
                    env, {canonical_name(c.name) for c in plan if c.action != REMOVE}, request.force
                )
            command = installer.install_command(wanted.requirements, constraint_file, request.upgrade)
            change, run = _installer_change(layout, state, request, "install", env, installer, command)
            yield Prepared("install", env, plan, change, run, recovered, pin)


def _resolve_pinned(installer, wanted, constraint_file, request, pin, workdir):
    try:
        return installer.resolve(wanted.requirements, constraint_file, request.upgrade)
    except InstallerFailed as failure:
        if pin:
            _explain_pin_conflict(installer, wanted, request, pin, workdir)
        raise TljhError(
            f"{failure}: {failure.output.splitlines()[-1] if failure.output else 'no output'}",
            hint=f"the installer said:\n{failure.output}" if failure.output else "",
            exit_code=ExitCode.REFUSED,
        ) from None


def _explain_pin_conflict(installer, wanted, request, pin, workdir) -> None:
    """The pinned resolve failed: resolve without the pin to name who wants which jupyterhub."""
    unpinned_file = write_constraints(workdir, list(wanted.constraints))
    try:
        free = installer.resolve(wanted.requirements, unpinned_file, request.upgrade)
    except InstallerFailed:
        return  # fails without the pin too: not the pin's fault
    wanted_hub = [v for n, v in free.install if canonical_name(n) == "jupyterhub"]
    if not wanted_hub:
        return
    hub_version = pin.split("==", 1)[1]
    needers = sorted(
        name
        for name, requires in free.requires.items()
        if any(canonical_name(r.split(";")[0]).startswith("jupyterhub") for r in requires)
        and name != "jupyterhub"
    ) or sorted(wanted.names)
    raise TljhError(
        f"{', '.join(needers)} need{'s' if len(needers) == 1 else ''} jupyterhub {wanted_hub[0]}, "
        f"but the hub runs jupyterhub {hub_version}; the user env's jupyterhub must match the hub's",
        hint="choose a version that works with the hub's jupyterhub, or upgrade both with `tljh upgrade`",
        exit_code=ExitCode.REFUSED,
    )


@contextlib.contextmanager
def prepare_uninstall(layout: Layout, request: UninstallRequest, notify: Notify) -> Iterator[Prepared]:
    _check_target(request.target)
    env = inspect_environment(request.target, layout)
    _common_guards(layout, env, request.allow_system, request.break_system_packages)
    names = policy.validate_package_names(request.packages)
    if "jupyterhub" in names and env.name in (HUB, USER) and not request.force:
        raise TljhError(
            f"removing jupyterhub from the {env.name} environment breaks TLJH",
            hint="pass --force if that is really what you want",
            exit_code=ExitCode.REFUSED,
        )
    with _locked(layout, [env.name], request.lock_timeout, notify) as (state, recovered):
        env = inspect_environment(env.name, layout)
        installed = {canonical_name(d.name): d for d in env.distributions}
        missing = sorted(names - installed.keys())
        if missing:
            raise TljhError(
                f"not installed in the {env.name} environment: {', '.join(missing)}",
                hint=f"see what is: tljh env packages --target {env.name}",
            )
        plan = [
            PlannedChange(installed[n].name, installed[n].version, None, REMOVE, True) for n in sorted(names)
        ]
        with _installer_for(request, env) as (installer, _):
            command = installer.uninstall_command([installed[n].name for n in sorted(names)])
            change, run = _installer_change(layout, state, request, "uninstall", env, installer, command)
            yield Prepared("uninstall", env, plan, change, run, recovered)


def apply(prepared: Prepared, progress: Callable[[str], None]) -> Outcome:
    """Snapshot, run, normalise, verify, record; restore exactly on any failure. One change
    may span several environments (an upgrade): they succeed or are restored together."""
    change = prepared.change
    assert change is not None and prepared.run is not None
    names = list(change.envs)
    where = " and ".join(names)
    plural = "s were" if len(names) > 1 else " was"
    with sigterm_raises():
        try:
            change.take_snapshots()
            prepared.run(progress)
            after: dict[str, Environment] = {}
            world_writable_fixed = owner_fixed = 0
            for name in names:
                # one inspection: chmod and chown do not change what is installed
                after[name] = env = inspect_environment(name, change.layout)
                fixed = normalize_permissions(_areas(env), env_owner(change.layout, env))
                world_writable_fixed += fixed.world_writable_fixed
                owner_fixed += fixed.owner_fixed
            _verify_pin(prepared, after)
        except (KeyboardInterrupt, Interrupted):
            change.restore()
            change.finish(INTERRUPTED, None, "interrupted; restored")
            raise TljhError(
                f"interrupted: the {where} environment{plural} restored to how they were",
                exit_code=ExitCode.INTERRUPTED,
            ) from None
        except InstallerFailed as failure:
            change.restore()
            entry = change.finish(FAILED, None, f"{failure}\n{failure.output}")
            raise TljhError(
                f"{failure}; the {where} environment{plural} restored to how they were "
                f"(change {entry['id']})",
                hint=f"the installer said:\n{failure.output}" if failure.output else "",
                exit_code=ExitCode.CHANGE_FAILED,
            ) from None
        except BaseException as error:
            change.restore()
            change.finish(FAILED, None, f"{type(error).__name__}: {error}")
            raise
    packages = {name: {d.name: d.version for d in env.distributions} for name, env in after.items()}
    entry = change.finish(OK, packages)
    return Outcome(change.change_id, OK, entry, world_writable_fixed, owner_fixed)


def _verify_pin(prepared: Prepared, after: dict[str, Environment]) -> None:
    """Rule 4, checked on the result: the user env's jupyterhub is the pinned version."""
    if not prepared.pin or USER not in after:
        return
    expected = prepared.pin.split("==", 1)[1]
    found = [d.version for d in after[USER].distributions if canonical_name(d.name) == "jupyterhub"]
    if found != [expected]:
        raise InstallerFailed(
            "the change moved the user environment's jupyterhub away from the hub's",
            f"expected jupyterhub {expected}, found {', '.join(found) or 'none'}",
        )


# -- rollback ------------------------------------------------------------------------------


def rollback_candidates(layout: Layout, target: str) -> list[dict]:
    """Finished changes to `target` whose pre-change snapshot is still kept, newest first."""
    state = StateDir.of(layout)
    kept = []
    for entry in reversed(state.history()):
        manifest = os.path.join(state.snapshot_dir(entry["id"], target), snapshot.MANIFEST)
        if entry["result"] == OK and target in entry["envs"] and os.path.exists(manifest):
            kept.append(entry)
    return kept


@contextlib.contextmanager
def prepare_rollback(
    layout: Layout, target: str, to: int | None, lock_timeout: float, command: str, notify: Notify
) -> Iterator[Prepared]:
    _check_target(target)
    env = inspect_environment(target, layout)
    policy.require_write_access(_write_paths(layout, env))
    with _locked(layout, [target], lock_timeout, notify) as (state, recovered):
        candidates = rollback_candidates(layout, target)
        if not candidates:
            raise TljhError(
                f"no change to the {target} environment can be rolled back",
                hint="see tljh env history; only the last few changes keep a snapshot",
            )
        chosen = candidates[0] if to is None else next((c for c in candidates if c["id"] == to), None)
        if chosen is None:
            raise TljhError(
                f"change {to} to the {target} environment cannot be rolled back",
                hint="choose one of: " + ", ".join(str(c["id"]) for c in candidates),
            )
        env = inspect_environment(target, layout)
        now = {canonical_name(d.name): (d.name, d.version) for d in env.distributions}
        then = {canonical_name(n): (n, v) for n, v in chosen["before"][target].items()}
        plan = []
        for key in sorted(now.keys() | then.keys()):
            old = now.get(key)
            new = then.get(key)
            if old != new:
                action = "install" if old is None else REMOVE if new is None else "change"
                plan.append(PlannedChange((new or old)[0], old and old[1], new and new[1], action, False))
        source = state.snapshot_dir(chosen["id"], target)
        change = Change(
            layout, state, state.next_id(), command, f"rollback to before {chosen['id']}", {}, "-"
        )
        change.envs[target] = EnvState(env, _areas(env))

        def run(progress: Callable[[str], None]) -> None:
            progress(f"restoring the files from before change {chosen['id']}")
            snapshot.restore(source)

        yield Prepared("rollback", env, plan, change, run, recovered)
