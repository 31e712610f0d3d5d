"""The Typer application. Commands parse, call the logic, render, and exit; nothing else."""

from __future__ import annotations

import enum
import os
from typing import Annotated, NamedTuple

import typer

from tljh_admin import __version__
from tljh_admin.cli import complete, render
from tljh_admin.errors import ExitCode
from tljh_admin.layout import (
    DEFAULT_PREFIX,
    DEFAULT_SYSTEM_PYTHON,
    PREFIX_ENV_VAR,
    SYSTEM_PYTHON_ENV_VAR,
    Layout,
    resolve_layout,
)


class Target(str, enum.Enum):
    hub = "hub"
    user = "user"
    system = "system"


class GlobalOptions(NamedTuple):
    # plain strings: layout.resolve_layout checks them, with the same messages on every path
    prefix: str | None
    system_python: str | None

    def layout(self) -> Layout:
        return resolve_layout(self.prefix, self.system_python)


# rich_markup_mode=None keeps --help on click's plain formatter: no rich import on every
# `tljh --help` or TAB, and plain text that docs/cli.md can be generated from.
app = typer.Typer(
    name="tljh",
    help="Inspect, change, upgrade and diagnose The Littlest JupyterHub's Python environments.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=True,
)
env_app = typer.Typer(
    help="The hub, user and system environments: list them and their packages.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(env_app, name="env")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"tljh-admin {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix",
            metavar="PATH",
            help=f"TLJH's install prefix [default: ${PREFIX_ENV_VAR}, else {DEFAULT_PREFIX}]",
            show_default=False,
        ),
    ] = None,
    system_python: Annotated[
        str | None,
        typer.Option(
            "--system-python",
            metavar="PATH",
            help=f"The OS interpreter [default: ${SYSTEM_PYTHON_ENV_VAR}, else {DEFAULT_SYSTEM_PYTHON}]",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", help="Show the version and exit.", callback=_show_version, is_eager=True),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors on stderr; data on stdout is unchanged.")
    ] = False,
) -> None:
    render.set_quiet(quiet)
    ctx.obj = GlobalOptions(prefix=prefix, system_python=system_python)


def _options(ctx: typer.Context) -> GlobalOptions:
    return ctx.find_root().obj


JsonFlag = Annotated[bool, typer.Option("--json", help="Print a versioned JSON document (docs/json.md).")]


@env_app.command("list")
def env_list(ctx: typer.Context, json: JsonFlag = False) -> None:
    """One row per environment: kind, status, Python version, distributions."""
    from tljh_admin.queries import list_environments

    layout = _options(ctx).layout()
    envs, code = list_environments(layout)
    if json:
        from tljh_admin.report import env_list_document

        render.print_json(env_list_document(layout, envs))
    else:
        render.environments_table(layout.prefix, envs)
    raise typer.Exit(int(code))


@env_app.command("packages")
def env_packages(
    ctx: typer.Context,
    target: Annotated[Target, typer.Option("--target", "-t", help="Which environment.")],
    json: JsonFlag = False,
) -> None:
    """The distributions installed in one environment, read from its files."""
    from tljh_admin.queries import environment_packages

    layout = _options(ctx).layout()
    env, code = environment_packages(layout, target.value)
    if json:
        from tljh_admin.report import env_packages_document

        render.print_json(env_packages_document(layout, env))
    else:
        render.packages_table(env)
    raise typer.Exit(int(code))


# -- completion: Typer's side of cli/complete.py ---------------------------------------------


def _root_paths(ctx: typer.Context) -> tuple[str | None, str | None]:
    root = ctx.find_root().params
    return root.get("prefix"), root.get("system_python")


def _target_of(ctx: typer.Context) -> str | None:
    target = ctx.params.get("target")
    if isinstance(target, list):
        target = target[-1] if target else None
    return getattr(target, "value", target)


def _complete_packages(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    already = list(ctx.params.get("packages") or ())
    return complete.installed_packages(*_root_paths(ctx), _target_of(ctx), already, incomplete)


def _complete_checks(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    return complete.check_ids(list(ctx.params.get("check_ids") or ()), incomplete)


def _complete_history(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    return complete.history_ids(*_root_paths(ctx), _target_of(ctx), incomplete)


class InstallerChoice(str, enum.Enum):
    pip = "pip"
    uv = "uv"


TargetOption = Annotated[
    Target, typer.Option("--target", "-t", metavar="hub|user|system", help="Which environment to change.")
]
YesFlag = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask; needed when not on a terminal.")]
DryRunFlag = Annotated[bool, typer.Option("--dry-run", help="Show the plan and stop.")]
AllowSystemFlag = Annotated[
    bool, typer.Option("--allow-system", help="Allow --target system (the OS python; normally refused).")
]
BreakSystemFlag = Annotated[
    bool,
    typer.Option(
        "--break-system-packages",
        help="With --allow-system on a PEP 668 python: change it anyway (apt owns it).",
    ),
]
InstallerOption = Annotated[
    InstallerChoice,
    typer.Option(
        "--installer",
        help="pip (TLJH's own, honours pip.conf) or uv (much faster; index settings from PIP_* variables).",
    ),
]
LockTimeoutOption = Annotated[
    float,
    typer.Option(
        "--lock-timeout", metavar="SECONDS", help="Seconds to wait for another change to the same env."
    ),
]


def _command_line() -> str:
    import shlex
    import sys

    return "tljh " + shlex.join(sys.argv[1:])


def _require_interaction(yes: bool, dry_run: bool) -> None:
    """A change asks first; without a terminal to ask on, --yes must say it."""
    import sys

    from tljh_admin.errors import TljhError

    if not yes and not dry_run and not sys.stdin.isatty():
        raise TljhError(
            "this command changes an environment and there is no terminal to ask for confirmation",
            hint="add --yes to go ahead, or --dry-run to see the plan",
        )


def _run_prepared(prepared, title: str, dry_run: bool, yes: bool) -> None:
    from tljh_admin import changes

    for entry in prepared.recovered:
        render.message(f"restored change {entry['id']} left unfinished by a killed tljh")
    if not prepared.plan:
        render.message(f"nothing to change in the {prepared.env.name} environment")
        raise typer.Exit(0)
    render.plan_table(title, prepared.plan)
    for drift in prepared.drift:
        render.message(
            f"changed outside tljh-admin since its last change: {drift.name} "
            f"{drift.before or '-'} -> {drift.after or '-'} (the rollback undoes this too)"
        )
    if dry_run:
        render.message("dry run: nothing was changed")
        raise typer.Exit(0)
    if not yes and not typer.confirm("Go ahead?", default=False, err=True):
        render.message("nothing was changed")
        raise typer.Exit(0)
    with render.progress(f"{prepared.kind} in the {prepared.env.name} environment") as progress:
        outcome = changes.apply(prepared, progress)
    fixed = ""
    if outcome.world_writable_fixed or outcome.owner_fixed:
        fixed = (
            f"; fixed {outcome.world_writable_fixed} world-writable"
            f" and {outcome.owner_fixed} wrongly owned paths"
        )
    render.message(f"done: change {outcome.change_id} ({render.summarize_changes(outcome.history)}){fixed}")
    if prepared.env.name == "hub":
        render.message("restart the hub for it to take effect: sudo systemctl restart jupyterhub")


@env_app.command(
    "install",
    context_settings={"ignore_unknown_options": True},  # option-like packages reach the policy check
)
def env_install(
    ctx: typer.Context,
    target: TargetOption,
    packages: Annotated[
        list[str] | None, typer.Argument(metavar="PKG...", help="Requirements, e.g. numpy 'pandas>=2'.")
    ] = None,
    requirement: Annotated[
        list[str] | None,
        typer.Option("--requirement", "-r", metavar="FILE", help="Install from a requirements file."),
    ] = None,
    constraint: Annotated[
        list[str] | None,
        typer.Option("--constraint", "-c", metavar="FILE", help="Constrain versions with this file."),
    ] = None,
    upgrade: Annotated[
        bool, typer.Option("--upgrade", "-U", help="Upgrade what is already installed.")
    ] = False,
    dry_run: DryRunFlag = False,
    yes: YesFlag = False,
    force: Annotated[
        bool, typer.Option("--force", help="Allow user-server packages in the hub env.")
    ] = False,
    allow_system: AllowSystemFlag = False,
    break_system_packages: BreakSystemFlag = False,
    installer: InstallerOption = InstallerChoice.pip,
    lock_timeout: LockTimeoutOption = 600.0,
) -> None:
    """Install packages into one environment, through its own interpreter, with a plan first,
    a snapshot, and an exact restore if anything fails."""
    from tljh_admin import changes

    _require_interaction(yes, dry_run)
    layout = _options(ctx).layout()
    request = changes.InstallRequest(
        target=target.value,
        packages=tuple(packages or ()),
        requirement_files=tuple(requirement or ()),
        constraint_files=tuple(constraint or ()),
        upgrade=upgrade,
        force=force,
        allow_system=allow_system,
        break_system_packages=break_system_packages,
        installer=installer.value,
        lock_timeout=lock_timeout,
        command=_command_line(),
    )
    with changes.prepare_install(layout, request, render.message) as prepared:
        pin = f" (jupyterhub pinned to the hub's: {prepared.pin})" if prepared.pin else ""
        _run_prepared(prepared, f"install into {target.value}{pin}", dry_run, yes)


@env_app.command("uninstall", context_settings={"ignore_unknown_options": True})
def env_uninstall(
    ctx: typer.Context,
    target: TargetOption,
    packages: Annotated[
        list[str],
        typer.Argument(metavar="PKG...", help="Project names to remove.", autocompletion=_complete_packages),
    ],
    dry_run: DryRunFlag = False,
    yes: YesFlag = False,
    force: Annotated[bool, typer.Option("--force", help="Allow removing jupyterhub.")] = False,
    allow_system: AllowSystemFlag = False,
    break_system_packages: BreakSystemFlag = False,
    installer: InstallerOption = InstallerChoice.pip,
    lock_timeout: LockTimeoutOption = 600.0,
) -> None:
    """Remove packages from one environment, with a snapshot to roll back to."""
    from tljh_admin import changes

    _require_interaction(yes, dry_run)
    layout = _options(ctx).layout()
    request = changes.UninstallRequest(
        target=target.value,
        packages=tuple(packages),
        force=force,
        allow_system=allow_system,
        break_system_packages=break_system_packages,
        installer=installer.value,
        lock_timeout=lock_timeout,
        command=_command_line(),
    )
    with changes.prepare_uninstall(layout, request, render.message) as prepared:
        _run_prepared(prepared, f"uninstall from {target.value}", dry_run, yes)


@env_app.command("rollback")
def env_rollback(
    ctx: typer.Context,
    target: TargetOption,
    to: Annotated[
        int | None,
        typer.Option(
            "--to",
            metavar="ID",
            help="Restore the files from before this change (see history).",
            autocompletion=_complete_history,
        ),
    ] = None,
    dry_run: DryRunFlag = False,
    yes: YesFlag = False,
    accept_drift: Annotated[
        bool,
        typer.Option("--accept-drift", help="Roll back even what changed outside tljh-admin since."),
    ] = False,
    lock_timeout: LockTimeoutOption = 600.0,
) -> None:
    """Put an environment back exactly as it was before a change, from the snapshot: no
    package index needed."""
    from tljh_admin import changes

    _require_interaction(yes, dry_run)
    layout = _options(ctx).layout()
    with changes.prepare_rollback(
        layout, target.value, to, lock_timeout, _command_line(), render.message, accept_drift
    ) as prepared:
        _run_prepared(prepared, f"roll back {target.value}: {prepared.change.kind}", dry_run, yes)


@env_app.command("history")
def env_history(
    ctx: typer.Context,
    target: Annotated[Target | None, typer.Option("--target", "-t", help="Only this environment.")] = None,
    json: JsonFlag = False,
) -> None:
    """Every change tljh-admin made: who, when, what, and how it ended."""
    from tljh_admin.queries import change_history

    layout = _options(ctx).layout()
    entries = change_history(layout, target.value if target else None)
    if json:
        from tljh_admin.report import history_document

        render.print_json(history_document(layout, entries))
    else:
        render.history_table(entries)
        held = [e["snapshot_bytes"] for e in entries if e.get("snapshot_bytes") is not None]
        if held:
            render.message(
                f"{len(held)} snapshot(s) for rollback hold {sum(held) / 2**20:.1f} MiB on their own;"
                " tljh env prune --keep N frees them"
            )


@env_app.command("prune")
def env_prune(
    ctx: typer.Context,
    keep: Annotated[
        int | None,
        typer.Option("--keep", metavar="N", help="Keep the newest N snapshots [default: the saved setting]."),
    ] = None,
    save: Annotated[
        bool, typer.Option("--save", help="Make --keep the number every later change keeps.")
    ] = False,
    lock_timeout: LockTimeoutOption = 600.0,
) -> None:
    """Remove old rollback snapshots (they live in PREFIX/state, which TLJH's docs say to back up)."""
    from tljh_admin import changes

    result = changes.prune(_options(ctx).layout(), keep, lock_timeout, save)
    render.message(
        f"removed {len(result.removed)} snapshot(s), freed {result.freed_bytes / 2**20:.1f} MiB;"
        f" {len(result.kept)} kept"
        + (f" (changes {', '.join(map(str, result.kept))})" if result.kept else "")
    )


@app.command("doctor")
def doctor(
    ctx: typer.Context,
    check_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[CHECK]...",
            help="Run only these checks (see --list).",
            autocompletion=_complete_checks,
        ),
    ] = None,
    target: Annotated[
        list[Target] | None,
        typer.Option("--target", "-t", metavar="ENV", help="Only these environments (repeatable)."),
    ] = None,
    json: JsonFlag = False,
    list_checks: Annotated[bool, typer.Option("--list", help="List the checks and exit.")] = False,
    fix: Annotated[bool, typer.Option("--fix", help="Apply the safe fixes, then check again.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="With --fix: show the fixes only.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too.")] = False,
    lock_timeout: LockTimeoutOption = 600.0,
) -> None:
    """Diagnose the environments: every known way they break, with a fix hint each.
    Exit 0 when nothing failed, 1 when a check failed (or warned, with --strict)."""
    from tljh_admin import doctor as doc
    from tljh_admin import report

    if list_checks:
        if json:
            render.print_json(report.doctor_checks_document())
        else:
            render.doctor_checks(doc.REGISTRY)
        raise typer.Exit(0)
    checks = doc.select_checks(list(check_ids or ()))
    layout = _options(ctx).layout()
    targets = [t.value for t in target] if target else None
    context = doc.Context(layout)
    result = doc.run_doctor(context, checks, targets)
    fixes: list = []
    if fix:
        from tljh_admin.cli.doctor_fix import fix_findings

        fixes, result = fix_findings(layout, context, result, checks, targets, dry_run, lock_timeout)
    if json:
        render.print_json(report.doctor_document(layout, result, strict, fixes))
    else:
        render.doctor_report(result, strict, fixes)
    raise typer.Exit(int(result.exit_code(strict)))


@app.command("upgrade")
def upgrade(
    ctx: typer.Context,
    hub_requirements: Annotated[
        str | None,
        typer.Option(
            "--hub-requirements",
            metavar="FILE",
            help="The hub's requirements, when TLJH itself is not installed in the hub env "
            "[default: the installed TLJH's list, else tljh-admin's copy of TLJH 2.0's].",
        ),
    ] = None,
    dry_run: DryRunFlag = False,
    yes: YesFlag = False,
    json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON and stop.")] = False,
    installer: InstallerOption = InstallerChoice.pip,
    restart: Annotated[bool, typer.Option("--restart", help="Restart the hub afterwards (systemd).")] = False,
    lock_timeout: LockTimeoutOption = 600.0,
) -> None:
    """Upgrade as TLJH's installer does (hub from its requirements; in the user env only
    jupyterhub, to the hub's new version), with a plan first and all-or-nothing."""
    from tljh_admin import changes
    from tljh_admin import upgrade as up

    _require_interaction(yes, dry_run or json)
    layout = _options(ctx).layout()
    with up.prepare_upgrade(
        layout, hub_requirements, installer.value, lock_timeout, _command_line(), render.message
    ) as (plan, prepared):
        if json:
            from tljh_admin.report import upgrade_document

            render.print_json(upgrade_document(layout, plan))
            raise typer.Exit(int(ExitCode.REFUSED) if plan.blockers else 0)
        render.upgrade_plan(plan)
        if plan.blockers:
            raise typer.Exit(int(ExitCode.REFUSED))
        if plan.empty:
            render.message("everything is already up to date")
            raise typer.Exit(0)
        if dry_run:
            render.message("dry run: nothing was changed")
            raise typer.Exit(0)
        if not yes and not typer.confirm("Upgrade?", default=False, err=True):
            render.message("nothing was changed")
            raise typer.Exit(0)
        with render.progress("upgrading") as progress:
            outcome = changes.apply(prepared, progress)
    render.message(f"done: change {outcome.change_id} ({render.summarize_changes(outcome.history)})")
    if restart:
        from tljh_admin.doctor.context import SYSTEMD_RUNTIME

        render.message(up.restart_hub(os.path.isdir(SYSTEMD_RUNTIME)))
    else:
        render.message("restart the hub for the upgrade to take effect: sudo systemctl restart jupyterhub")
