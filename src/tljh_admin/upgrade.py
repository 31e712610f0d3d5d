"""`tljh upgrade`: TLJH's upgrade semantics (tljh/installer.py; docs/topic/
installer-upgrade-actions.md) as a plan you can read, applied all-or-nothing.

- hub: `pip install --upgrade -r requirements-hub-env.txt`;
- user: only jupyterhub, set to exactly the version the hub will have *after* the upgrade
  (TLJH installs the hub's spec, e.g. `jupyterhub>=5.2.0,<6`; the exact pin is stronger and
  rules out drift), plus pip raised to TLJH's minimum; nothing else changes, unless pip
  must move something for the new jupyterhub;
- in a conda user env, first TLJH's conda steps with the env's own mamba (else conda):
  conda and mamba raised to TLJH's minimums, then TLJH 2.x's forced reinstall of its pinned
  conda and mamba (tljh/installer.py), planned by conda's own dry run;
- system: never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tljh_admin import conda, plugins, policy, tljh
from tljh_admin.changes import Prepared, _areas, _scratch_parent, recover_first
from tljh_admin.envs import inspect_environment
from tljh_admin.envs.model import Environment
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.errors import ExitCode, TljhError
from tljh_admin.installers import (
    InstallerFailed,
    PlannedChange,
    make_installer,
    plan_changes,
    resolution_error,
)
from tljh_admin.layout import HUB, USER, Layout, systemctl
from tljh_admin.transaction import Change, EnvState, StateDir, scratch_folder

# RequirementsSource.kind values
INSTALLED_TLJH, GIVEN_FILE, SHIPPED = "installed-tljh", "file", "shipped"
TLJH_VERSION = "tljh-version"  # --version X: that TLJH's own list
TLJH_DISTRIBUTION = "the-littlest-jupyterhub"  # TLJH's project name (its setup.py)


@dataclass(frozen=True)
class RequirementsSource:
    kind: str
    path: str
    detail: str


@dataclass(frozen=True)
class Blocker:
    message: str
    hint: str


@dataclass(frozen=True)
class Step:
    env: str
    description: str
    command: tuple[str, ...]


@dataclass
class UpgradePlan:
    source: RequirementsSource
    blockers: list[Blocker]
    changes: dict[str, list[PlannedChange]] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    hub_jupyterhub_after: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(self.changes.values())


def requirements_source(hub: Environment, given: str | None) -> tuple[RequirementsSource, list[str]]:
    """Where the hub's requirements come from: the installed TLJH's own copy, else the file
    given, else tljh-admin's shipped copy. Returns the source and notes for the admin."""
    notes = []
    for dist in hub.distributions:
        if canonical_name(dist.name) == TLJH_DISTRIBUTION:
            path = os.path.join(dist.location, "tljh", "requirements-hub-env.txt")
            if os.path.lexists(path):  # there but not a file (a FIFO) is refused when it is read
                if given:
                    notes.append(f"--hub-requirements {given} is not used: the installed TLJH's own list is")
                return RequirementsSource(
                    INSTALLED_TLJH, path, f"TLJH {dist.version} installed in the hub"
                ), notes
    if given:
        return RequirementsSource(GIVEN_FILE, os.path.abspath(given), "--hub-requirements"), notes
    return RequirementsSource(SHIPPED, tljh.HUB_REQUIREMENTS, "tljh-admin's copy of TLJH 2.0's list"), notes


def _version_requirements(hub: Environment, version: str, installer_name: str):
    from tljh_admin import tljh_version
    from tljh_admin.rebuild import _pip_spelling
    from tljh_admin.transaction import scratch_folder

    line, where = tljh_version.tljh_requirement(hub, version)
    folder = scratch_folder(None)
    try:
        child_env = policy.isolated_environment(os.environ, hub.root, folder)
        path = tljh_version.fetch_requirements(hub, line, child_env, folder)
        lines = policy.read_requirement_file(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    source = RequirementsSource(TLJH_VERSION, where, f"TLJH {version}'s own list, from {where}")
    return source, [_pip_spelling(line) if installer_name == "pip" else line, *lines]


def _blockers(hub: Environment, user: Environment) -> list[Blocker]:
    found = []
    for env in (hub, user):
        if not env.ok:
            found.append(
                Blocker(
                    f"the {env.name} environment is {env.status}: {env.reason}",
                    "run `tljh doctor` and repair it",
                )
            )
    if user.ok and user.python_version:
        have = tuple(int(p) for p in user.python_version.split(".")[:2])
        need = tuple(int(p) for p in tljh.MIN_USER_PYTHON.split("."))
        if have < need:
            found.append(
                Blocker(
                    f"the user environment runs Python {user.python_version}; "
                    f"TLJH needs at least {tljh.MIN_USER_PYTHON}",
                    "rebuild the user environment with a newer Python first",
                )
            )
    return found


def _below(version: str | None, minimum: str) -> bool:
    from packaging.version import Version

    return version is not None and Version(version) < Version(minimum)


def _refuse_user_server_packages(hub: Environment, after: dict[str, str], source: str) -> None:
    """Rule 5 holds for an upgrade too: the hub requirements (or a plugin's additions) may
    not bring JupyterLab & co. into the hub. What is there already is doctor's to report."""
    present = {canonical_name(d.name) for d in hub.distributions}
    brought = sorted(set(after) & policy.USER_SERVER_PACKAGES - present)
    if brought:
        raise TljhError(
            f"the upgrade would put {', '.join(brought)} into the hub env, from {source} or a plugin's"
            " tljh_extra_hub_pip_packages; they belong in the user environment",
            hint="remove them from the hub requirements (or the plugin); install them with"
            " `tljh env install --target user`",
            exit_code=ExitCode.REFUSED,
        )


@contextlib.contextmanager
def prepare_upgrade(
    layout: Layout,
    hub_requirements: str | None,
    installer_name: str,
    lock_timeout: float,
    command: str,
    notify: Callable[[str], None],
    version: str | None = None,
    dry_run: bool = False,
) -> Iterator[tuple[UpgradePlan, Prepared | None]]:
    """Recover any unfinished change to hub or user, resolve both steps with the real
    resolver, and yield the plan (and, when nothing blocks it, a Prepared change that
    applies it: apply() takes both locks and checks that neither env moved meanwhile)."""
    hub, user = inspect_environment(HUB, layout), inspect_environment(USER, layout)
    from tljh_admin.permissions import require_only_root_can_change

    for env in (hub, user):  # both run as root below: pip, conda, the plugins' evaluation
        require_only_root_can_change(env)
    source, notes = requirements_source(hub, hub_requirements)
    if version:  # TLJH itself moves to `version` first, and its own list is the plan's (tljh_version.py)
        source, requirement_lines = _version_requirements(hub, version, installer_name)
        notes = [n for n in notes if "--hub-requirements" not in n]
    else:
        requirement_lines = policy.read_requirement_file(source.path)
    plugin_lines, plugin_notes = plugins.upgrade_additions(hub)  # tljh/installer.py run_plugin_actions
    requirement_lines = [*requirement_lines, *plugin_lines]
    notes = [*notes, *plugin_notes]
    # no right to write is not a blocker to read about in a plan: it stops here, like install
    policy.require_write_access([*layout.change_writes(hub), *layout.change_writes(user)])
    blockers = _blockers(hub, user)
    plan = UpgradePlan(source, blockers, notes=notes)
    if blockers:
        yield plan, None
        return
    recovered = recover_first(layout, [HUB, USER], lock_timeout, notify, dry_run)
    state = StateDir.of(layout)
    if True:  # the block of the former lock, kept to keep this diff small
        hub, user = inspect_environment(HUB, layout), inspect_environment(USER, layout)
        workdir = scratch_folder(_scratch_parent(layout, dry_run))
        try:
            child_env = policy.isolated_environment(os.environ, user.root, workdir)
            hub_installer = make_installer(
                installer_name, hub, policy.isolated_environment(os.environ, hub.root, workdir), workdir
            )
            user_installer = make_installer(installer_name, user, child_env, workdir)
            hub_resolution = _resolve_step(HUB, hub_installer, requirement_lines, upgrade=True)
            plan.changes[HUB] = plan_changes(hub, hub_resolution, frozenset())
            after = {canonical_name(n): v for n, v in hub_resolution.install}
            _refuse_user_server_packages(hub, after, source.path)
            current_hub = [d.version for d in hub.distributions if canonical_name(d.name) == "jupyterhub"]
            plan.hub_jupyterhub_after = after.get("jupyterhub") or (current_hub[0] if current_hub else None)
            if plan.hub_jupyterhub_after is None:
                raise TljhError(
                    f"the hub requirements ({source.path}) do not install jupyterhub",
                    hint="pass the right --hub-requirements",
                    exit_code=ExitCode.REFUSED,
                )
            user_requirements = [f"jupyterhub=={plan.hub_jupyterhub_after}", f"pip>={tljh.MIN_USER_PIP}"]
            user_resolution = _resolve_step(USER, user_installer, user_requirements, upgrade=False)
            plan.changes[USER] = plan_changes(user, user_resolution, frozenset({"jupyterhub", "pip"}))
            hub_command = hub_installer.install_command(requirement_lines, None, upgrade=True)
            user_command = user_installer.install_command(user_requirements, None, upgrade=False)
            plan.steps = [
                Step(HUB, f"upgrade the hub from {source.path}", tuple(hub_command)),
                Step(
                    USER, f"set the user env's jupyterhub to {plan.hub_jupyterhub_after}", tuple(user_command)
                ),
            ]
            conda_installer = None
            if user.kind == "conda":
                conda_installer = conda.CondaInstaller(user, child_env, workdir)
                conda_installer.check_usable()
                conda_steps, conda_plan = _conda_steps(user, conda_installer)
                plan.steps[1:1] = conda_steps  # TLJH's order: conda and mamba before jupyterhub
                plan.changes[USER] = _merge_rows(conda_plan, plan.changes[USER])
            change = Change(layout, state, None, command, "upgrade", {}, installer_name)
            change.envs[HUB] = EnvState(hub, _areas(hub, layout))
            change.envs[USER] = EnvState(user, _areas(user, layout))
            installers = {HUB: hub_installer, USER: user_installer}

            def run(progress: Callable[[str], None]) -> None:
                log = change.state.path("logs", f"{change.change_id}.log")
                for step in plan.steps:
                    progress(step.description)
                    try:
                        by = installers[step.env]
                        if conda_installer is not None and step.command[0] == conda_installer.tool:
                            by = conda_installer
                        by.run(list(step.command), log, progress, tracker=change)
                    except InstallerFailed as failure:
                        raise InstallerFailed(
                            f"the {step.env} step ({step.description}) failed", failure.output
                        ) from None

            prepared = Prepared(
                "upgrade",
                hub,
                [],
                change,
                run,
                recovered,
                f"jupyterhub=={plan.hub_jupyterhub_after}",
                lock_timeout,
                notify,
            )
            yield plan, prepared
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _resolve_step(env: str, installer, requirements: list[str], upgrade: bool):
    try:
        return installer.resolve(requirements, None, upgrade=upgrade)
    except InstallerFailed as failure:
        raise resolution_error(failure, f"the {env} step cannot be resolved: {failure}") from None


def _conda_below_minimum(user: Environment) -> list[tuple[str, str, str]]:
    records = {canonical_name(r.name): r.version for r in user.conda_records}
    return [
        (name, records[name], minimum)
        for name, minimum in (("conda", tljh.MIN_CONDA), ("mamba", tljh.MIN_MAMBA))
        if name in records and _below(records[name], minimum)
    ]


def _conda_steps(user: Environment, installer: conda.CondaInstaller) -> tuple[list[Step], list]:
    """TLJH's conda steps (tljh/installer.py, tljh/conda.py) and their plan.

    1. conda and mamba below TLJH's minimums are raised (`mamba>=0.16.0`);
    2. TLJH 2.x force-reinstalls its pinned conda and mamba on every upgrade (against
       conda's "RemoveError: 'requests' is a dependency of conda").
    The plan is conda's dry run of step 2: its pins are above the minimums, so it shows
    where both steps end."""
    steps = []
    tool = os.path.basename(installer.tool or "conda")
    below = [f"{name}>={minimum}" for name, _, minimum in _conda_below_minimum(user)]
    if below:
        command = installer.install_command(below, None, False)
        steps.append(Step(USER, "raise " + " and ".join(below) + f" with {tool}", tuple(command)))
    pins = [f"conda=={tljh.PINNED_CONDA}", f"mamba=={tljh.PINNED_MAMBA}"]
    steps.append(
        Step(
            USER,
            f"reinstall TLJH's conda {tljh.PINNED_CONDA} and mamba {tljh.PINNED_MAMBA} with {tool}",
            tuple(installer.force_reinstall_command(pins)),
        )
    )
    try:
        resolution = installer.plan(pins, force_reinstall=True)
    except InstallerFailed as failure:
        raise conda.resolution_failed(failure) from None
    conda.refuse_conda_over_pip(user, resolution, force=False)
    return steps, conda.plan_changes(user, resolution, {"conda", "mamba"})


def _merge_rows(first: list, then: list) -> list:
    """One row per package: conda's rows, then the pip step's for packages conda leaves alone."""
    seen = {canonical_name(c.name) for c in first}
    return sorted(
        [*first, *(c for c in then if canonical_name(c.name) not in seen)],
        key=lambda c: canonical_name(c.name),
    )


def restart_hub(systemd_running: bool, run=subprocess.run) -> str:
    """`systemctl restart jupyterhub` where systemd runs; returns what happened, in words."""
    if not systemd_running:
        return "systemd is not running here: restart the hub yourself"
    proc = run([systemctl(), "restart", "jupyterhub"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise TljhError(
            f"systemctl restart jupyterhub failed: {(proc.stderr or proc.stdout).strip()}",
            hint="see sudo journalctl -u jupyterhub",
            exit_code=ExitCode.CHANGE_FAILED,
        )
    return "restarted jupyterhub"
