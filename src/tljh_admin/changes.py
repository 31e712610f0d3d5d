"""Install, uninstall and roll back, with every guarantee: the isolation rules first, then
the environment's lock, recovery of a killed change, a plan, a snapshot, the installer,
permission normalisation, the jupyterhub pin check, and history. Returns data; the CLI
renders the plan, asks, and reports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from tljh_admin import conda, policy, snapshot
from tljh_admin.defaults import DEFAULT_INSTALLER, DEFAULT_LOCK_TIMEOUT
from tljh_admin.envs import inspect_environment
from tljh_admin.envs.backends import package_versions
from tljh_admin.envs.model import Environment
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.errors import ExitCode, PermissionDenied, Refused, TljhError, UsageError
from tljh_admin.installers import (
    NO_OPTIONS,
    REMOVE,
    InstallerFailed,
    PipOptions,
    PlannedChange,
    make_installer,
    plan_changes,
    resolution_error,
    write_constraints,
)
from tljh_admin.layout import ENV_NAMES, HUB, USER, Layout, unknown_target
from tljh_admin.permissions import require_only_root_can_change
from tljh_admin.transaction import (
    FAILED,
    INTERRUPTED,
    OK,
    Change,
    EnvState,
    Interrupted,
    StateDir,
    allowed_areas,
    change_areas,
    env_locks,
    env_owner,
    locked_and_recovered,
    normalize_permissions,
    scratch_folder,
    signals_deferred,
    sigterm_raises,
    state_error,
)

Notify = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


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
    #: only plan: nothing under PREFIX is written, not even a recovery (recover_first)
    dry_run: bool = False


@dataclass(frozen=True, kw_only=True)
class InstallRequest(ChangeRequest):
    packages: tuple[str, ...] = ()
    requirement_files: tuple[str, ...] = ()
    constraint_files: tuple[str, ...] = ()
    upgrade: bool = False
    #: conda packages (conda match specs) with the env's mamba/conda, from conda-forge + channels
    conda: bool = False
    channels: tuple[str, ...] = ()
    #: --index-url, --pre, --no-deps ... for pip (or uv's equivalents)
    options: PipOptions = NO_OPTIONS


@dataclass(frozen=True, kw_only=True)
class UninstallRequest(ChangeRequest):
    packages: tuple[str, ...]
    conda: bool = False


@dataclass
class Prepared:
    """A change that passed every rule and has a plan. No lock is held while it waits for
    a person to confirm: apply() takes the locks, recovers, checks that the environments
    are still what the plan was made from, and only then changes them."""

    kind: str
    env: Environment
    plan: list[PlannedChange]
    change: Change | None = None
    run: Callable[[Callable[[str], None]], None] | None = None
    recovered: list[dict] = field(default_factory=list)
    pin: str | None = None
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    notify: Notify = _quiet
    #: rollback: what changed outside tljh-admin since its last change, which the rollback undoes
    drift: list[PlannedChange] = field(default_factory=list)
    accept_drift: bool = True
    #: uninstall: installed packages that require what is removed (name, requirement)
    breaks: list[tuple[str, str]] = field(default_factory=list)
    #: rollback: the other environments the same change moved, rolled back with this one so
    #: that hub and user keep one jupyterhub (each with its plan and drift)
    also: list[Companion] = field(default_factory=list)

    @property
    def env_names(self) -> list[str]:
        return [self.env.name, *(c.env.name for c in self.also)]

    @property
    def changes_anything(self) -> bool:
        return bool(self.plan) or any(c.plan for c in self.also)


@dataclass(frozen=True)
class Companion:
    env: Environment
    plan: list[PlannedChange]
    drift: list[PlannedChange]
    #: later tljh-admin changes to this env that going back undoes too: (id, command)
    later: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    change_id: int
    result: str
    history: dict
    world_writable_fixed: int
    owner_fixed: int
    acl_removed: int = 0


def _check_target(target: str) -> None:
    if target not in ENV_NAMES:
        raise unknown_target(target)


def _common_guards(layout: Layout, env: Environment, allow_system: bool, break_system: bool) -> None:
    policy.require_system_allowed(env, allow_system, break_system)
    policy.require_runnable(env)
    policy.require_write_access(layout.change_writes(env))
    # before anything is written (the installers check again, right before they run); an
    # env a killed change left half done is judged after recover_first puts it back (the
    # restore runs no code from it): what the killed installer left (uv's 0666 `.lock`)
    # must not block the recovery itself
    from tljh_admin.queries import unfinished_changes

    if env.name not in unfinished_changes(layout):
        require_only_root_can_change(env)


def _areas(env: Environment, layout: Layout) -> snapshot.Areas:
    return change_areas(layout, env)


def recover_first(
    layout: Layout, targets: list[str], timeout: float, notify: Notify, dry_run: bool = False
) -> list[dict]:
    """Before planning: recover every unfinished change touching `targets` (taking the
    locks only for that). Without the right to, refuse when there is one to recover.

    Only reads when there is nothing to recover, so that a command refused later leaves
    the state folder as it was (or absent); a dry run never recovers (it changes nothing):
    it stops at a change left unfinished, which it cannot plan from."""
    state = StateDir.of(layout)
    may_write = _can_write_state(layout)
    if may_write:
        # nothing in a state folder someone else controls is read, nor is work done there
        # (the installers' scratch): refused before planning, whatever the folder holds
        state.check_safe()
    if not os.path.lexists(state.path("journal")):
        return []  # no change was ever journalled here
    if dry_run:
        _refuse_dry_run_over_unfinished(state, targets, timeout, notify)
        return []
    if may_write:
        if not _anything_to_recover(state):
            return []
        with locked_and_recovered(layout, targets, timeout, notify) as (_, recovered):
            pass
        for name in targets if recovered else ():  # _common_guards' check, after the restore
            require_only_root_can_change(inspect_environment(name, layout))
        return recovered
    try:
        unfinished = [j for j in state.journals() if set(j["envs"]) & set(targets)]
    except PermissionDenied:
        return []  # cannot see them; a change needs root anyway and recovers them then
    if unfinished:
        raise PermissionDenied(
            f"change {unfinished[0]['id']} to the {' and '.join(unfinished[0]['envs'])} environment "
            "never finished; restoring it needs root",
            hint="run with sudo (any change command, or tljh doctor --fix, restores it)",
        )
    return []


def _anything_to_recover(state: StateDir) -> bool:
    """A journal in the state folder (or a reservation a killed command left): what
    locked_and_recovered would act on. Untrusted journals count, to be set aside."""
    try:
        names = os.listdir(state.path("journal"))
    except OSError:
        return True  # let the locked pass say what is wrong
    return any(n.endswith(".json") or n.startswith(".reserve-") for n in names)


def _refuse_dry_run_over_unfinished(state: StateDir, targets: list[str], timeout: float, notify: Notify):
    """A dry run plans from the environments as they are; one a killed change left half
    done is no state to plan from, and restoring it is a change. A change running right
    now is waited for (--lock-timeout), as a real command waits, reading only."""
    said_untrusted = False
    while True:
        try:
            valid, bad = state.scan_journals()
        except PermissionDenied:
            return  # this user cannot read them; the real run (as root) recovers first
        for journal in bad if not said_untrusted else ():
            notify(
                f"an untrusted journal ({journal.reason}) is in {state.path('journal')}; a real run sets"
                " it aside as " + journal.name + ".invalid"
            )
        said_untrusted = True
        closed = {e["id"] for e in state.history()} if valid else set()
        running = None
        for journal in valid:
            if not set(journal["envs"]) & set(targets) or journal["id"] in closed:
                continue  # another env's; or one that ended, only its journal left to drop
            if state.in_progress(journal):
                running = journal
                break
            if not os.path.lexists(state.path("journal", f"{journal['id']}.json")):
                continue  # it ended between the scan and now
            envs = " and ".join(journal["envs"])
            envs += " environments" if len(journal["envs"]) > 1 else " environment"
            raise Refused(
                f"change {journal['id']} to the {envs} never finished (tljh was killed); a dry"
                " run changes nothing, so it cannot restore it first and has no state to plan from",
                hint="restore it: sudo tljh doctor --fix (or run the command without --dry-run, which"
                " restores it first)",
            )
        if running is None:
            return
        with env_locks(state, running["envs"], timeout, notify):  # its lock files exist: none is made
            pass


def _scratch_parent(layout: Layout, dry_run: bool) -> StateDir | None:
    """Where a command's scratch folder goes. A change that plans (its input judged) works
    in the state folder, made now if need be: on PREFIX's disk, since the scratch folder is
    also conda's package cache and pip's build folder (a tmpfs /tmp would hold them in
    memory, and conda would copy where it can hard-link). A dry run, which writes nothing
    under PREFIX, and a user who may not write the state work in the temporary folder."""
    return None if dry_run or not _can_write_state(layout) else StateDir.of(layout)


def _can_write_state(layout: Layout) -> bool:
    probe = layout.admin_state
    while not os.path.exists(probe) and probe != os.path.dirname(probe):
        probe = os.path.dirname(probe)
    return os.access(probe, os.W_OK | os.X_OK)


@contextlib.contextmanager
def _installer_for(request: ChangeRequest, env: Environment, layout: Layout) -> Iterator:
    """The request's installer on `env`, with a private scratch folder for its plan and
    constraints (removed afterwards; by the next command if this one is killed)."""
    workdir = scratch_folder(_scratch_parent(layout, request.dry_run))
    try:
        child_env = policy.isolated_environment(os.environ, env.root, workdir)
        yield make_installer(request.installer, env, child_env, workdir), workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _installer_change(
    layout: Layout, request: ChangeRequest, kind: str, env: Environment, installer, command
) -> tuple[Change, Callable[[Callable[[str], None]], None]]:
    """The Change record for one environment, and the step that runs the installer for it."""
    change = Change(layout, StateDir.of(layout), None, request.command, kind, {}, installer.name)
    change.envs[env.name] = EnvState(env, _areas(env, layout))

    def run(progress: Callable[[str], None]) -> None:
        log = change.state.path("logs", f"{change.change_id}.log")
        installer.run(command, log, progress, tracker=change)

    return change, run


@contextlib.contextmanager
def prepare_install(layout: Layout, request: InstallRequest, notify: Notify) -> Iterator[Prepared]:
    if request.conda:
        with _prepare_conda_install(layout, request, notify) as prepared:
            yield prepared
        return
    if request.channels:
        raise UsageError("--channel is for conda packages", hint="add --conda, or drop --channel")
    _check_target(request.target)
    env = inspect_environment(request.target, layout)
    _common_guards(layout, env, request.allow_system, request.break_system_packages)
    wanted = policy.validate_requirements(
        request.packages, request.requirement_files, request.constraint_files, request.options
    )
    policy.refuse_user_server_packages_in_hub(env, wanted.names, request.force)
    policy.refuse_direct_jupyterhub_change(env, wanted.names)
    recovered = recover_first(layout, [env.name], request.lock_timeout, notify, request.dry_run)
    env = inspect_environment(env.name, layout)  # as it is now, after any recovery
    pin = policy.jupyterhub_pin(inspect_environment(HUB, layout)) if env.name == USER else None
    with _installer_for(request, env, layout) as (installer, workdir):
        constraints = [*wanted.constraints, *([pin] if pin else [])]
        constraint_file = write_constraints(workdir, constraints)
        wanted = _with_hashed_file(wanted, workdir)
        resolution = _resolve_pinned(installer, wanted, constraint_file, request, pin, workdir)
        plan = plan_changes(env, resolution, wanted.names)
        if env.name == HUB:
            policy.refuse_user_server_packages_in_hub(
                env, {canonical_name(c.name) for c in plan if c.action != REMOVE}, request.force
            )
            policy.refuse_moving_hub_jupyterhub(plan, resolution.requires)
        conda.refuse_pip_over_conda(env, plan, request.force)
        command = installer.install_command(
            wanted.requirements, constraint_file, request.upgrade, wanted.options
        )
        change, run = _installer_change(layout, request, "install", env, installer, command)
        yield Prepared("install", env, plan, change, run, recovered, pin, request.lock_timeout, notify)


def _with_hashed_file(wanted: policy.RequirementSet, workdir: str) -> policy.RequirementSet:
    """Requirements with `--hash` options reach pip only in a requirements file: tljh writes
    its own, of the validated lines, so that the plan and the run read the same thing."""
    if not wanted.hashed:
        return wanted
    path = os.path.join(workdir, "hashed-requirements.txt")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(wanted.hashed) + "\n")
    return replace(wanted, requirements=(*wanted.requirements, "-r", path))


def _resolve_pinned(installer, wanted, constraint_file, request, pin, workdir):
    try:
        return installer.resolve(wanted.requirements, constraint_file, request.upgrade, wanted.options)
    except InstallerFailed as failure:
        if pin and not failure.unreachable:
            _explain_pin_conflict(installer, wanted, request, pin, workdir)
        error = resolution_error(failure)
        if installer.env.kind == "conda" and not failure.unreachable:
            # TLJH's docs: C libraries (gdal...) come from conda-forge
            names = " ".join(sorted(wanted.names))
            error.hint = (
                f"for a conda package: tljh env install --target {installer.env.name} --conda {names}; "
                + error.hint
            )
        raise error from None


def _explain_pin_conflict(installer, wanted, request, pin, workdir) -> None:
    """The pinned resolve failed: resolve without the pin to name who wants which jupyterhub."""
    unpinned_file = write_constraints(workdir, list(wanted.constraints))
    try:
        free = installer.resolve(wanted.requirements, unpinned_file, request.upgrade, wanted.options)
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
    if request.conda:
        with _prepare_conda_uninstall(layout, request, notify) as prepared:
            yield prepared
        return
    _check_target(request.target)
    env = inspect_environment(request.target, layout)
    _common_guards(layout, env, request.allow_system, request.break_system_packages)
    names = policy.validate_package_names(request.packages)
    policy.refuse_removing_essentials(env, names, request.force)
    recovered = recover_first(layout, [env.name], request.lock_timeout, notify, request.dry_run)
    env = inspect_environment(env.name, layout)
    installed = {canonical_name(d.name): d for d in env.distributions}
    missing = sorted(names - installed.keys())
    if missing:
        raise TljhError(
            f"not installed in the {env.name} environment: {', '.join(missing)}",
            hint=f"see what is: tljh env packages --target {env.name}",
        )
    plan = [PlannedChange(installed[n].name, installed[n].version, None, REMOVE, True) for n in sorted(names)]
    breaks = policy.reverse_dependencies(env, names)
    plan += [
        PlannedChange(name, installed[canonical_name(name)].version, installed[canonical_name(name)].version,
                      f"breaks: requires {requirement}", False)
        for name, requirement in breaks
    ]  # fmt: skip
    policy.refuse_breaking_spawns(env, breaks, request.force)
    conda.refuse_pip_over_conda(env, plan, request.force)
    with _installer_for(request, env, layout) as (installer, _):
        command = installer.uninstall_command([installed[n].name for n in sorted(names)])
        change, run = _installer_change(layout, request, "uninstall", env, installer, command)
        yield Prepared(
            "uninstall", env, plan, change, run, recovered, None, request.lock_timeout, notify, breaks=breaks
        )


def _packages(env: Environment) -> dict[str, str]:
    return package_versions(env)


# -- conda packages ----------------------------------------------------------------------------


@contextlib.contextmanager
def _conda_installer_for(request: ChangeRequest, env: Environment, layout: Layout, channels=()) -> Iterator:
    """The env's own mamba (else conda), in a private scratch folder that is also conda's
    package cache for this change (see conda.CondaInstaller)."""
    workdir = scratch_folder(_scratch_parent(layout, request.dry_run))
    try:
        child_env = policy.isolated_environment(os.environ, env.root, workdir)
        installer = conda.CondaInstaller(env, child_env, workdir, channels)
        installer.check_usable()
        yield installer
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _conda_plan(installer, specs, *, remove: bool = False, update: bool = False):
    try:
        return installer.plan(specs, remove=remove, update=update)
    except InstallerFailed as failure:
        raise conda.resolution_failed(failure) from None


@contextlib.contextmanager
def _prepare_conda_install(layout: Layout, request: InstallRequest, notify: Notify) -> Iterator[Prepared]:
    """`tljh env install --conda SPEC...`: TLJH's own conda command (tljh/conda.py), planned
    by conda's solver, guarded both ways, with the jupyterhub pin."""
    _check_target(request.target)
    if request.requirement_files or request.constraint_files:
        raise UsageError("--conda takes conda package specs, not -r or -c files", hint="name the packages")
    if request.options != NO_OPTIONS:
        raise UsageError(
            "--index-url, --pre, --no-deps and the like are pip's options, not conda's",
            hint="drop them, or drop --conda (conda channels: --channel)",
        )
    _refuse_other_installer(request)
    env = inspect_environment(request.target, layout)
    _common_guards(layout, env, request.allow_system, request.break_system_packages)
    specs = conda.validate_specs(request.packages)
    channels = conda.validate_channels(request.channels)
    names = {conda.spec_name(s) for s in specs}
    policy.refuse_direct_jupyterhub_change(env, names)
    recovered = recover_first(layout, [env.name], request.lock_timeout, notify, request.dry_run)
    env = inspect_environment(env.name, layout)
    pin = policy.jupyterhub_pin(inspect_environment(HUB, layout)) if env.name == USER else None
    with _conda_installer_for(request, env, layout, channels) as installer:
        specs = (*specs, *conda.jupyterhub_pin_specs(env, pin))
        resolution = _conda_plan(installer, specs, update=request.upgrade)
        conda.refuse_conda_over_pip(env, resolution, request.force)
        conda.refuse_jupyterhub_move(resolution, pin)
        policy.refuse_removing_essentials(env, conda.removed_names(resolution), request.force)
        plan = conda.plan_changes(env, resolution, names)
        command = installer.install_command(specs, None, request.upgrade)
        change, run = _installer_change(layout, request, "install", env, installer, command)
        yield Prepared("install", env, plan, change, run, recovered, pin, request.lock_timeout, notify)


def _refuse_other_installer(request: ChangeRequest) -> None:
    if request.installer != DEFAULT_INSTALLER:
        raise UsageError(
            f"--installer {request.installer} is for Python packages; --conda uses the env's mamba or conda",
            hint="drop --installer, or drop --conda",
        )


@contextlib.contextmanager
def _prepare_conda_uninstall(layout: Layout, request: UninstallRequest, notify: Notify) -> Iterator[Prepared]:
    """`tljh env uninstall --conda NAME...`: `conda remove`, which also removes what depends
    on NAME; the plan shows all of it, and what pip installed that needs it."""
    _check_target(request.target)
    _refuse_other_installer(request)
    env = inspect_environment(request.target, layout)
    _common_guards(layout, env, request.allow_system, request.break_system_packages)
    names = [conda.spec_name(s) for s in conda.validate_specs(request.packages)]
    if any(n != s for n, s in zip(names, request.packages, strict=True)):
        raise UsageError("uninstall takes package names only", hint=f"use {' '.join(names)}")
    policy.refuse_removing_essentials(env, names, request.force)
    recovered = recover_first(layout, [env.name], request.lock_timeout, notify, request.dry_run)
    env = inspect_environment(env.name, layout)
    missing = sorted(set(names) - {r.name for r in env.conda_records})
    if missing:
        pip_ones = sorted(set(missing) & {canonical_name(d.name) for d in env.distributions})
        raise UsageError(
            f"not a conda package in the {env.name} environment: {', '.join(missing)}",
            hint=f"pip installed {', '.join(pip_ones)}: drop --conda"
            if pip_ones
            else f"see what is: tljh env packages --target {env.name}",
        )
    pin = policy.jupyterhub_pin(inspect_environment(HUB, layout)) if env.name == USER else None
    with _conda_installer_for(request, env, layout) as installer:
        resolution = _conda_plan(installer, names, remove=True)
        conda.refuse_conda_over_pip(env, resolution, request.force)
        if not request.force:
            conda.refuse_jupyterhub_move(resolution, pin)
        # conda removes what depends on a name too: removing openssl takes python with it
        policy.refuse_removing_essentials(env, conda.removed_names(resolution), request.force)
        plan = conda.plan_changes(env, resolution, names)
        removed = conda.removed_distributions(env, resolution)
        breaks = policy.reverse_dependencies(env, removed)
        plan += [
            PlannedChange(name, version, version, f"breaks: requires {requirement}", False)
            for name, requirement in breaks
            for version in [next(d.version for d in env.distributions if d.name == name)]
        ]
        policy.refuse_breaking_spawns(env, breaks, request.force)
        command = installer.uninstall_command(names)
        change, run = _installer_change(layout, request, "uninstall", env, installer, command)
        yield Prepared(
            "uninstall", env, plan, change, run, recovered, None, request.lock_timeout, notify, breaks=breaks
        )


def apply(prepared: Prepared, progress: Callable[[str], None]) -> Outcome:
    """Lock, recover, check that nothing changed since the plan, snapshot, run, normalise,
    verify, record; restore exactly on any failure. One change may span several
    environments (an upgrade): they succeed or are restored together."""
    change = prepared.change
    assert change is not None and prepared.run is not None
    for env, drift in [(prepared.env, prepared.drift), *((c.env, c.drift) for c in prepared.also)]:
        if drift and not prepared.accept_drift:
            raise Refused(
                f"the {env.name} environment changed outside tljh-admin since its last change: "
                + ", ".join(f"{c.name} {c.before or '-'} -> {c.after or '-'}" for c in drift)
                + "; the rollback would undo that too",
                hint="check the plan, then pass --accept-drift to roll back anyway",
            )
    for companion in prepared.also:
        if companion.later and not prepared.accept_drift:
            raise Refused(
                f"taking the {companion.env.name} environment back with it also undoes later changes to it: "
                + "; ".join(f"{i} ({command})" for i, command in companion.later),
                hint="check the plan, then pass --accept-drift to roll back anyway",
            )
    layout = change.layout
    names = list(change.envs)
    with locked_and_recovered(layout, names, prepared.lock_timeout, prepared.notify) as (state, recovered):
        prepared.recovered.extend(recovered)
        for name, planned in list(change.envs.items()):
            now = inspect_environment(name, layout)
            if _packages(now) != planned.packages:
                raise Refused(
                    f"the {name} environment changed since the plan was made; nothing was changed",
                    hint="run the command again to see a new plan",
                )
            change.envs[name] = EnvState(now, change_areas(layout, now))
        change.state = state
        state.check_writable()
        return _apply_locked(prepared, change, names, progress)


def _apply_locked(prepared: Prepared, change: Change, names: list[str], progress) -> Outcome:
    where = " and ".join(names)
    plural = "s were" if len(names) > 1 else " was"
    with sigterm_raises():
        try:
            change.begin()
        except (OSError, KeyboardInterrupt, Interrupted, snapshot.SpecialFileInEnv) as error:
            with signals_deferred():
                _abandon(change, error)
            if isinstance(error, snapshot.SpecialFileInEnv):
                raise error from None
            if isinstance(error, OSError):
                raise state_error(error, "could not take the snapshot, nothing was changed") from None
            raise TljhError(
                "interrupted before anything was changed", exit_code=ExitCode.INTERRUPTED
            ) from None
        try:
            revisions = _conda_revisions(change)
            prepared.run(progress)
            after: dict[str, Environment] = {}
            world_writable_fixed = owner_fixed = acl_removed = 0
            for name in names:
                # one inspection: chmod and chown do not change what is installed
                after[name] = env = inspect_environment(name, change.layout)
                fixed = normalize_permissions(change_areas(change.layout, env), env_owner(change.layout, env))
                world_writable_fixed += fixed.world_writable_fixed
                owner_fixed += fixed.owner_fixed
                acl_removed += fixed.acl_removed
            _verify_pin(prepared, after)
        except (KeyboardInterrupt, Interrupted):
            with signals_deferred():
                change.restore()
                change.finish(INTERRUPTED, None, "interrupted; restored")
            raise TljhError(
                f"interrupted: the {where} environment{plural} restored to how they were",
                exit_code=ExitCode.INTERRUPTED,
            ) from None
        except InstallerFailed as failure:
            with signals_deferred():
                change.restore()
                entry = change.finish(FAILED, None, f"{failure}\n{failure.output}")
            raise TljhError(
                f"{failure}; the {where} environment{plural} restored to how they were "
                f"(change {entry['id']})",
                hint=f"the installer said:\n{failure.output}" if failure.output else "",
                exit_code=ExitCode.CHANGE_FAILED,
            ) from None
        except BaseException as error:
            with signals_deferred():
                change.restore()
                change.finish(FAILED, None, f"{type(error).__name__}: {error}")
            if isinstance(error, OSError):
                raise state_error(
                    error, f"the change failed; the {where} environment{plural} restored"
                ) from None
            raise
    packages = {name: _packages(env) for name, env in after.items()}
    try:
        entry = change.finish(OK, packages, _revision_detail(change, revisions))
    except OSError as error:  # a full disk at the history line: unrecorded, so not kept
        raise state_error(
            error,
            f"the change to the {where} environment{'s' if len(names) > 1 else ''} was made"
            " but could not be recorded; the next tljh command undoes it",
        ) from None
    return Outcome(change.change_id, OK, entry, world_writable_fixed, owner_fixed, acl_removed)


def _conda_revisions(change: Change) -> dict[str, int | None]:
    return {n: conda.current_revision(s.env.root) for n, s in change.envs.items() if s.env.kind == "conda"}


def _revision_detail(change: Change, before: dict[str, int | None]) -> str:
    """conda's own revision number of each conda env the change moved (conda list --revisions)."""
    moved = []
    for name, old in before.items():
        new = conda.current_revision(change.envs[name].env.root)
        if new is not None and new != old:
            moved.append(f"{name}: conda revision {new}")
    return "; ".join(moved)


def _abandon(change: Change, error: BaseException) -> None:
    """The snapshot could not be completed: the environments were not touched. Record
    that if the disk allows; remove the partial snapshot and the journal regardless."""
    if change.change_id is None:
        return
    try:
        change.abandon(f"{type(error).__name__}: {error}")
    except OSError:
        snapshot.discard(change.state.path("snapshots", str(change.change_id)))
        change.state.drop_journal(change.change_id)


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


def _diff(now: dict[str, str], then: dict[str, str], requested: bool = False) -> list[PlannedChange]:
    """What turns `now` into `then`, by canonical name."""
    now_k = {canonical_name(n): (n, v) for n, v in now.items()}
    then_k = {canonical_name(n): (n, v) for n, v in then.items()}
    changes = []
    for key in sorted(now_k.keys() | then_k.keys()):
        old, new = now_k.get(key), then_k.get(key)
        if old != new:
            action = "install" if old is None else REMOVE if new is None else "change"
            changes.append(PlannedChange((new or old)[0], old and old[1], new and new[1], action, requested))
    return changes


def drift_since_last_change(state: StateDir, target: str, now: dict[str, str]) -> list[PlannedChange]:
    """Packages that differ from what tljh-admin recorded after its last change to `target`:
    someone ran pip (or conda) by hand since. Shown as last-recorded -> now."""
    for entry in reversed(state.history()):
        recorded = entry.get("after", {}).get(target) if isinstance(entry.get("after"), dict) else None
        if target in entry["envs"] and isinstance(recorded, dict):
            return _diff(recorded, now)
    return []


@contextlib.contextmanager
def prepare_rollback(
    layout: Layout,
    target: str,
    to: int | None,
    lock_timeout: float,
    command: str,
    notify: Notify,
    accept_drift: bool = False,
    dry_run: bool = False,
) -> Iterator[Prepared]:
    _check_target(target)
    if to is not None and to < 1:
        raise UsageError(
            f"--to takes the id of a change, 1 or more, not {to}",
            hint=f"tljh env history --target {target} lists them",
        )
    env = inspect_environment(target, layout)
    policy.require_write_access(layout.change_writes(env))
    require_only_root_can_change(env)  # normalisation would make root's what others planted
    recovered = recover_first(layout, [target], lock_timeout, notify, dry_run)
    state = StateDir.of(layout)
    candidates = rollback_candidates(layout, target)
    if not candidates:
        raise TljhError(
            f"no change to the {target} environment can be rolled back",
            hint="see tljh env history; only the last few changes keep a snapshot",
        )
    last = next((e for e in reversed(state.history()) if e["result"] == OK and target in e["envs"]), None)
    if to is None and last is not None and last["id"] != candidates[0]["id"]:
        # the newest change's snapshot was removed or damaged: going further back silently
        # would undo it too, unasked
        raise Refused(
            f"change {last['id']}, the last to the {target} environment, has no usable snapshot (removed or"
            f" damaged); rolling back further would undo it too",
            hint=f"tljh env rollback --target {target} --to {candidates[0]['id']} undoes both, if that is"
            " what you want",
        )
    chosen = candidates[0] if to is None else next((c for c in candidates if c["id"] == to), None)
    if chosen is None:
        raise TljhError(
            f"change {to} to the {target} environment cannot be rolled back",
            hint="choose one of: " + ", ".join(str(c["id"]) for c in candidates),
        )
    # the snapshot is read (and its paths checked) before a plan is shown: a dry run of a
    # rollback that would then stop at a damaged manifest promises what cannot be done
    snapshot.read_manifest(state.snapshot_dir(chosen["id"], target), *allowed_areas(layout, target))
    env = inspect_environment(target, layout)
    now = _packages(env)
    plan = _diff(now, chosen["before"][target])
    drift = drift_since_last_change(state, target, now)
    change = Change(layout, state, None, command, f"rollback to before {chosen['id']}", {}, "-")
    change.envs[target] = EnvState(env, _areas(env, layout))
    also = []
    for other in _companions(layout, state, chosen, target, now, lock_timeout, notify, recovered, dry_run):
        snapshot.read_manifest(state.snapshot_dir(chosen["id"], other), *allowed_areas(layout, other))
        other_env = inspect_environment(other, layout)
        policy.require_write_access(layout.change_writes(other_env))
        require_only_root_can_change(other_env)
        other_now = _packages(other_env)
        other_drift = drift_since_last_change(state, other, other_now)
        later = [
            (e["id"], e.get("command", ""))
            for e in state.history()
            if e["id"] > chosen["id"] and other in e["envs"] and e["result"] == OK
        ]
        also.append(Companion(other_env, _diff(other_now, chosen["before"][other]), other_drift, later))
        change.envs[other] = EnvState(other_env, _areas(other_env, layout))

    def run(progress: Callable[[str], None]) -> None:
        for name in change.envs:
            progress(f"restoring the {name} environment's files from before change {chosen['id']}")
            root, areas = allowed_areas(layout, name)
            snapshot.restore(state.snapshot_dir(chosen["id"], name), root, areas)

    yield Prepared(
        "rollback",
        env,
        plan,
        change,
        run,
        recovered,
        None,
        lock_timeout,
        notify,
        drift,
        accept_drift,
        also=also,
    )


def _jupyterhub_in(packages: dict[str, str]) -> str | None:
    """The jupyterhub version in a package listing; conda-forge's `jupyterhub-base` holds
    jupyterhub's files where the `jupyterhub` metapackage is not installed."""
    found = {canonical_name(n): v for n, v in packages.items()}
    return found.get("jupyterhub") or found.get("jupyterhub-base")


def _companions(
    layout: Layout,
    state: StateDir,
    chosen: dict,
    target: str,
    now: dict[str, str],
    lock_timeout: float,
    notify: Notify,
    recovered: list[dict],
    dry_run: bool,
) -> list[str]:
    """The other environment a rollback of `target` to before `chosen` must take along, so
    that hub and user keep one jupyterhub (rule 4): only when the rollback moves the
    target's jupyterhub away from the other's. That other environment goes back to before
    `chosen` too, which needs `chosen` to have changed it (an upgrade); otherwise the
    rollback is refused."""
    if target not in (HUB, USER):
        return []
    other = USER if target == HUB else HUB
    restored, current = _jupyterhub_in(chosen["before"].get(target, {})), _jupyterhub_in(now)
    if restored is None or restored == current:
        return []
    recovered += recover_first(layout, [other], lock_timeout, notify, dry_run)
    beside = _jupyterhub_in(_packages(inspect_environment(other, layout)))
    if beside is None or beside == restored:
        return []
    manifest = os.path.join(state.snapshot_dir(chosen["id"], other), snapshot.MANIFEST)
    if other in chosen["envs"] and os.path.exists(manifest):
        return [other]
    later = rollback_candidates(layout, target)  # newest first
    both = [c["id"] for c in later if other in c["envs"] and c["id"] > chosen["id"]]
    hint = "bring both to one version with `sudo tljh upgrade`"
    if both:
        hint = f"roll back to before change {both[-1]}, which moved both (--to {both[-1]}), or " + hint
    raise Refused(
        f"rolling back the {target} environment to before change {chosen['id']} would leave jupyterhub "
        f"{restored} there and {beside} in the {other} environment",
        hint=hint,
    )


# -- snapshot space -------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneResult:
    removed: tuple[int, ...]
    freed_bytes: int
    kept: tuple[int, ...]


def prune(layout: Layout, keep: int | None, lock_timeout: float, save: bool = False) -> PruneResult:
    """Remove all but the newest `keep` snapshots (settings.json's keep_snapshots when
    None) under every environment's lock; with `save`, make `keep` the setting that every
    later change prunes to."""
    from tljh_admin.transaction import prune_snapshots

    if keep is not None and keep < 0:
        raise TljhError("--keep must be 0 or more", hint="tljh env prune --keep 3")
    if save and keep is None:
        raise UsageError("--save saves the number given with --keep", hint="tljh env prune --keep 3 --save")
    policy.require_write_access([layout.state if os.path.isdir(layout.state) else layout.prefix])
    state = StateDir.of(layout)
    if not save and not os.path.lexists(state.path("snapshots")):
        return PruneResult((), 0, ())  # no change was ever made here: nothing to write either
    state.ensure()
    with env_locks(state, ENV_NAMES, lock_timeout):
        if save and keep is not None:
            snapshot.write_json_atomic(
                state.path("settings.json"), {**state.settings(), "keep_snapshots": keep}
            )
        usage = state.snapshot_usage()
        removed = prune_snapshots(state, keep)
    kept = tuple(sorted(set(usage) - set(removed)))
    return PruneResult(tuple(removed), sum(usage.get(i, 0) for i in removed), kept)
