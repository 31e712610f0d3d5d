"""The Typer application: the one definition of the command line.

Commands parse, call the logic, render, and return an exit code; nothing else. Completion,
the JSON fast path and docs/cli.md are derived from this file by scripts/generate.py: after
adding or changing a command or an option, run

    .venv/bin/python scripts/generate.py

and commit what it writes (cli/_spec.py, completions/, docs/cli.md). A test fails while they
are stale.
"""

from __future__ import annotations

import enum
import os
from typing import Annotated

import typer
import typer.core

from tljh_admin import __version__
from tljh_admin.cli import render, spec
from tljh_admin.cli.completion import for_typer
from tljh_admin.cli.reports import GlobalOptions
from tljh_admin.defaults import DEFAULT_INSTALLER, DEFAULT_LOCK_TIMEOUT, INSTALLERS, is_wait, not_a_wait
from tljh_admin.errors import Aborted, ExitCode, Stopped, refuse_empty
from tljh_admin.export import FORMATS as EXPORT_FORMATS
from tljh_admin.layout import (
    DEFAULT_PREFIX,
    DEFAULT_SYSTEM_PYTHON,
    ENV_NAMES,
    PREFIX_ENV_VAR,
    SYSTEM_PYTHON_ENV_VAR,
)

# Choices come from the shared lists: the values are the names the logic uses.
Target = enum.Enum("Target", {name: name for name in ENV_NAMES}, type=str)
InstallerChoice = enum.Enum("InstallerChoice", {name: name for name in INSTALLERS}, type=str)
DEFAULT_INSTALLER_CHOICE = InstallerChoice(DEFAULT_INSTALLER)


class Group(typer.core.TyperGroup):
    """Ctrl-C, end of input and a closed stdout inside any command end as one line (or
    quietly), the same on every Typer version: click would print a blank line and "Aborted!"
    or exit 1 for all three."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Stopped("interrupted") from None
        except EOFError:
            raise Aborted("end of input") from None
        except BrokenPipeError:
            raise render.PipeClosed() from None

    def parse_args(self, ctx, args):
        # the eager options (--help, --version) print while the arguments are parsed, before
        # invoke: click turns a closed pipe there into exit 1, not the 141 of SIGPIPE
        try:
            return super().parse_args(ctx, args)
        except BrokenPipeError:
            raise render.PipeClosed() from None


# rich_markup_mode=None keeps --help on click's plain formatter: no rich import on every
# `tljh --help`, and plain text that docs/cli.md is generated from.
app = typer.Typer(
    name="tljh",
    help="Inspect, change, upgrade and diagnose The Littlest JupyterHub's Python environments.",
    cls=Group,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=True,
)
env_app = typer.Typer(
    help="The hub, user and system environments: list, change, roll back.",
    cls=Group,
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
    from tljh_admin.cli import reports

    ctx.obj = reports.start(prefix, system_python, quiet)


def _options(ctx: typer.Context) -> GlobalOptions:
    return ctx.find_root().obj


def _examples(*lines: str) -> str:
    """An --help epilog of example command lines, kept as written (\\b stops click rewrapping)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


# -- options shared by several commands -----------------------------------------------------

JsonFlag = Annotated[bool, typer.Option("--json", help="Print a versioned JSON document (docs/json.md).")]
TargetOption = Annotated[
    Target,
    typer.Option(
        "--target", "-t", metavar="hub|user|system", case_sensitive=False, help="Which environment to change."
    ),
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
CondaFlag = Annotated[
    bool,
    typer.Option(
        "--conda",
        help="Conda packages, with the env's mamba (else conda), from conda-forge (a conda env only).",
    ),
]


def _seconds_text(text: str | float) -> float:
    """--lock-timeout read as the fast path reads it (spec.number). The default comes
    through here too, as a float already."""
    if isinstance(text, float):
        return text
    try:
        return spec.number(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number") from None


def _seconds(ctx: typer.Context, value: float) -> float:
    if not is_wait(value):
        raise not_a_wait(value, ctx.command_path)
    return value


LockTimeoutOption = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        metavar="SECONDS",
        help="Seconds to wait for another change to the same env.",
        parser=_seconds_text,
        callback=_seconds,
    ),
]


ChangeJsonFlag = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the plan (with --dry-run) or the outcome as a versioned JSON document (docs/json.md).",
    ),
]


def change_json(layout, command: str, prepared, *, dry_run: bool, yes: bool, notes: render.Notes) -> ExitCode:
    from tljh_admin.cli.exports import change_json as body

    return body(layout, command, prepared, dry_run=dry_run, yes=yes, notes=notes.said)


def _options_among_packages(packages, command: str) -> None:
    """A mistyped option (`--dry-rnu`) lands among the package words (these commands pass
    unknown options on as words): name it before "no terminal to ask", which would send the
    admin to add --yes to a command that then fails on it anyway."""
    from tljh_admin.cli.usage import _close
    from tljh_admin.errors import UsageError
    from tljh_admin.policy import ESCAPING_OPTIONS, parse_requirement

    flags = [f for o in spec.tree()["commands"]["env"]["commands"][command]["options"] for f in o["flags"]]
    for word in packages or ():
        if word.startswith("--") and word.split("=")[0] not in ESCAPING_OPTIONS:
            close = _close(word.split("=")[0], flags)[:1]
            if close:
                raise UsageError(
                    f"`tljh env {command}` has no option {word!r}", hint=f"did you mean {close[0]}?"
                )
        if word.startswith("-"):
            parse_requirement(word)  # raises what is wrong with it, as planning would


def _blocked(plan) -> ExitCode:
    """The refusal of a blocked upgrade on stderr too, one line, as any other refusal: a
    script reading stderr (Ansible's `msg`) sees why without parsing the plan."""
    from tljh_admin.errors import Refused

    first, more = plan.blockers[0], len(plan.blockers) - 1
    also = f" (and {more} more: see the plan)" if more else ""
    render.print_error(Refused(f"cannot upgrade: {first.message}{also}", hint=first.hint))
    return ExitCode.REFUSED


def _plans_only(dry_run: bool, json: bool, yes: bool) -> bool:
    """Whether the command can only show a plan: --dry-run, or --json without --yes
    (exports.change_json). Such a run writes nothing, not even a recovery."""
    return dry_run or (json and not yes)


def _command_line() -> str:
    import shlex
    import sys

    return "tljh " + shlex.join(sys.argv[1:])


# -- reports ----------------------------------------------------------------------------------


@env_app.command("list")
def env_list(ctx: typer.Context, json: JsonFlag = False) -> ExitCode:
    """One row per environment: kind, status, Python version, distributions."""
    from tljh_admin.cli import reports

    return reports.env_list(_options(ctx), json=json)


@env_app.command("packages")
def env_packages(
    ctx: typer.Context,
    target: Annotated[
        Target,
        typer.Option(
            "--target", "-t", metavar="hub|user|system", case_sensitive=False, help="Which environment."
        ),
    ],
    json: JsonFlag = False,
) -> ExitCode:
    """The distributions installed in one environment, read from its files."""
    from tljh_admin.cli import reports

    return reports.env_packages(_options(ctx), target=target.value, json=json)


@env_app.command("history")
def env_history(
    ctx: typer.Context,
    target: Annotated[
        Target | None,
        typer.Option(
            "--target", "-t", metavar="hub|user|system", case_sensitive=False, help="Only this environment."
        ),
    ] = None,
    json: JsonFlag = False,
) -> ExitCode:
    """Every change tljh-admin made: who, when, what, and how it ended."""
    from tljh_admin.cli import reports

    return reports.env_history(_options(ctx), target=target.value if target else None, json=json)


@app.command("doctor")
def doctor(
    ctx: typer.Context,
    check_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[CHECK]...",
            help="Run only these checks (see --list).",
            autocompletion=for_typer("check_ids", already="check_ids"),
        ),
    ] = None,
    target: Annotated[
        list[Target] | None,
        typer.Option(
            "--target",
            "-t",
            metavar="ENV",
            case_sensitive=False,
            help="Only these environments (repeatable).",
        ),
    ] = None,
    json: JsonFlag = False,
    list_checks: Annotated[bool, typer.Option("--list", help="List the checks and exit.")] = False,
    fix: Annotated[bool, typer.Option("--fix", help="Apply the safe fixes, then check again.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="With --fix: show the fixes only.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too.")] = False,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            help="Also hash every installed file, import jupyterhub with the hub's Python and run "
            "jupyterhub-singleuser --version as nobody (slower; starts processes).",
        ),
    ] = False,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
) -> ExitCode:
    """Diagnose the environments: every known way they break, with a fix hint each.
    Exit 0 when nothing failed, 1 when a check failed (or warned, with --strict)."""
    from tljh_admin.cli import reports

    return reports.doctor(
        _options(ctx),
        check_ids=check_ids,
        target=[t.value for t in target] if target else None,
        json=json,
        list_checks=list_checks,
        fix=fix,
        dry_run=dry_run,
        strict=strict,
        deep=deep,
        lock_timeout=lock_timeout,
    )


# -- changes ----------------------------------------------------------------------------------


@env_app.command(
    "install",
    context_settings={"ignore_unknown_options": True},  # option-like packages reach the policy check
    epilog=_examples(
        "sudo tljh env install --target user numpy 'pandas>=2'",
        "sudo tljh env install --target user -r requirements.txt --dry-run",
        "sudo tljh env install --target user --conda gdal",
    ),
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
        bool,
        typer.Option(
            "--force",
            help="Allow user-server packages in the hub env; let pip or conda replace the other's packages.",
        ),
    ] = False,
    allow_system: AllowSystemFlag = False,
    break_system_packages: BreakSystemFlag = False,
    installer: InstallerOption = DEFAULT_INSTALLER_CHOICE,
    conda: CondaFlag = False,
    channel: Annotated[
        list[str] | None,
        typer.Option(
            "--channel",
            metavar="CHANNEL",
            help="With --conda: another channel after conda-forge (repeatable).",
        ),
    ] = None,
    index_url: Annotated[
        str | None,
        typer.Option("--index-url", "-i", metavar="URL", help="The package index to install from."),
    ] = None,
    extra_index_url: Annotated[
        list[str] | None,
        typer.Option("--extra-index-url", metavar="URL", help="Another index to read (repeatable)."),
    ] = None,
    pre: Annotated[bool, typer.Option("--pre", help="Allow pre-releases and development versions.")] = False,
    no_deps: Annotated[bool, typer.Option("--no-deps", help="Do not install dependencies.")] = False,
    force_reinstall: Annotated[
        bool, typer.Option("--force-reinstall", help="Reinstall even when the version is already there.")
    ] = False,
    no_cache_dir: Annotated[
        bool, typer.Option("--no-cache-dir", help="Do not read or write the installer's cache.")
    ] = False,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
    json: ChangeJsonFlag = False,
) -> ExitCode:
    """Install packages into one environment, through its own interpreter, with a plan first,
    a snapshot, and an exact restore if anything fails. With --conda: conda packages, in a
    conda user env, with its own mamba (else conda), as TLJH installs them."""
    from tljh_admin import changes
    from tljh_admin.cli.apply import confirm_and_apply, plan_proposal, require_interaction
    from tljh_admin.installers import PipOptions

    refuse_empty(
        {
            "--requirement": requirement,
            "--constraint": constraint,
            "--channel": channel,
            "--index-url": index_url,
            "--extra-index-url": extra_index_url,
        }
    )
    _options_among_packages(packages, "install")
    require_interaction(yes, dry_run)
    options = PipOptions(
        index_url=index_url,
        extra_index_urls=tuple(extra_index_url or ()),
        pre=pre,
        no_deps=no_deps,
        force_reinstall=force_reinstall,
        no_cache_dir=no_cache_dir,
    )
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
        conda=conda,
        channels=tuple(channel or ()),
        options=options,
        lock_timeout=lock_timeout,
        command=_command_line(),
        dry_run=_plans_only(dry_run, json, yes),
    )
    layout = _options(ctx).layout()
    notes = render.Notes()
    with changes.prepare_install(layout, request, notes) as prepared:
        if json:
            return change_json(layout, "install", prepared, dry_run=dry_run, yes=yes, notes=notes)
        pin = f" (jupyterhub pinned to the hub's: {prepared.pin})" if prepared.pin else ""
        proposal = plan_proposal(prepared, f"install into {target.value}{pin}")
        return confirm_and_apply(proposal, dry_run=dry_run, yes=yes)


@env_app.command(
    "uninstall",
    context_settings={"ignore_unknown_options": True},
    epilog=_examples(
        "sudo tljh env uninstall --target user numpy",
        "sudo tljh env uninstall --target hub jupyterlab --dry-run",
        "sudo tljh env uninstall --target user --conda gdal",
    ),
)
def env_uninstall(
    ctx: typer.Context,
    target: TargetOption,
    packages: Annotated[
        list[str],
        typer.Argument(
            metavar="PKG...",
            help="Project names to remove.",
            autocompletion=for_typer("installed_packages", already="packages"),
        ),
    ],
    dry_run: DryRunFlag = False,
    yes: YesFlag = False,
    force: Annotated[bool, typer.Option("--force", help="Allow removing jupyterhub.")] = False,
    allow_system: AllowSystemFlag = False,
    break_system_packages: BreakSystemFlag = False,
    installer: InstallerOption = DEFAULT_INSTALLER_CHOICE,
    conda: CondaFlag = False,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
    json: ChangeJsonFlag = False,
) -> ExitCode:
    """Remove packages from one environment, with a snapshot to roll back to. With --conda:
    conda packages (conda also removes what depends on them; the plan shows it)."""
    from tljh_admin import changes
    from tljh_admin.cli.apply import confirm_and_apply, plan_proposal, require_interaction

    _options_among_packages(packages, "uninstall")
    require_interaction(yes, dry_run)
    request = changes.UninstallRequest(
        target=target.value,
        packages=tuple(packages),
        force=force,
        allow_system=allow_system,
        break_system_packages=break_system_packages,
        installer=installer.value,
        conda=conda,
        lock_timeout=lock_timeout,
        command=_command_line(),
        dry_run=_plans_only(dry_run, json, yes),
    )
    layout = _options(ctx).layout()
    notes = render.Notes()
    with changes.prepare_uninstall(layout, request, notes) as prepared:
        _warn_plugin_readds(layout, target.value, prepared.plan)
        if json:
            return change_json(layout, "uninstall", prepared, dry_run=dry_run, yes=yes, notes=notes)
        proposal = plan_proposal(prepared, f"uninstall from {target.value}")
        return confirm_and_apply(proposal, dry_run=dry_run, yes=yes)


def _warn_plugin_readds(layout, target: str, plan) -> None:
    from tljh_admin.envs import inspect_environment
    from tljh_admin.envs.sitepackages import canonical_name
    from tljh_admin.plugins import readd_warning

    warning = readd_warning(
        inspect_environment("hub", layout), target, {canonical_name(c.name) for c in plan}
    )
    if warning:
        render.message(f"warning: {warning}")


@env_app.command(
    "rollback",
    epilog=_examples(
        "tljh env history --target user",
        "sudo tljh env rollback --target user",
        "sudo tljh env rollback --target user --to 12 --dry-run",
    ),
)
def env_rollback(
    ctx: typer.Context,
    target: TargetOption,
    to: Annotated[
        int | None,
        typer.Option(
            "--to",
            metavar="ID",
            help="Restore the files from before this change (see history).",
            autocompletion=for_typer("history_ids"),
        ),
    ] = None,
    dry_run: DryRunFlag = False,
    yes: YesFlag = False,
    accept_drift: Annotated[
        bool,
        typer.Option("--accept-drift", help="Roll back even what changed outside tljh-admin since."),
    ] = False,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
    json: ChangeJsonFlag = False,
) -> ExitCode:
    """Put an environment back exactly as it was before a change, from the snapshot: no
    package index needed. When that change (`tljh upgrade`) moved jupyterhub in hub and
    user, both go back together."""
    from tljh_admin import changes
    from tljh_admin.cli.apply import confirm_and_apply, plan_proposal, require_interaction

    require_interaction(yes, dry_run)
    layout = _options(ctx).layout()
    notes = render.Notes()
    with changes.prepare_rollback(
        layout,
        target.value,
        to,
        lock_timeout,
        _command_line(),
        notes,
        accept_drift,
        dry_run=_plans_only(dry_run, json, yes),
    ) as prepared:
        if json:
            return change_json(layout, "rollback", prepared, dry_run=dry_run, yes=yes, notes=notes)
        proposal = plan_proposal(prepared, f"roll back {target.value}: {prepared.change.kind}")
        return confirm_and_apply(proposal, dry_run=dry_run, yes=yes)


# export.py defines the formats; it imports nothing heavy (json, os, the inspection model).
ExportFormat = enum.Enum("ExportFormat", {name: name for name in EXPORT_FORMATS}, type=str)
DEFAULT_EXPORT_FORMAT = ExportFormat(EXPORT_FORMATS[0])


@env_app.command(
    "export",
    epilog=_examples(
        "tljh env export --target user --format lock > user-env.lock.json",
        "tljh env export --target user --format requirements --requested",
        "tljh env export --target user --format repo2docker image/ --z2jh-chart 4.3.0",
        "tljh env export --target user --format z2jh-config config.yaml --z2jh-chart 4.3.0",
    ),
)
def env_export(
    ctx: typer.Context,
    target: Annotated[
        Target,
        typer.Option(
            "--target", "-t", metavar="hub|user|system", case_sensitive=False, help="Which environment."
        ),
    ],
    format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            help="lock (JSON: every package, version and source), requirements, environment.yml, "
            "repo2docker (a folder repo2docker builds), z2jh-config (z2jh's config.yaml from TLJH's).",
        ),
    ] = DEFAULT_EXPORT_FORMAT,
    dest: Annotated[
        str | None,
        typer.Argument(
            metavar="[DIR|FILE]",
            help="repo2docker: a new folder to write; the other formats: a file [default: stdout].",
        ),
    ] = None,
    requested: Annotated[
        bool,
        typer.Option(
            "--requested",
            help="requirements / environment.yml: only what was asked for by name, not its dependencies.",
        ),
    ] = False,
    z2jh_chart: Annotated[
        str | None,
        typer.Option(
            "--z2jh-chart",
            metavar="VERSION",
            help="repo2docker / z2jh-config: jupyterhub of this z2jh chart's hub [default: the hub's own].",
        ),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            "--image",
            metavar="NAME[:TAG]",
            help="z2jh-config: the user image [default: tljh-user-env:<hash of the repo2docker export>].",
        ),
    ] = None,
    include_secrets: Annotated[
        bool,
        typer.Option("--include-secrets", help="z2jh-config: also write client secrets and passwords."),
    ] = False,
) -> ExitCode:
    """Write an environment as a file: a lock to rebuild it exactly, a requirements.txt or
    environment.yml to hand on, a repo2docker folder for a z2jh user image, or z2jh's
    config.yaml translated from TLJH's (what has no z2jh counterpart is listed on stderr)."""
    from tljh_admin.cli.exports import env_export as body

    return body(
        _options(ctx),
        target=target.value,
        format=format.value,
        dest=dest,
        requested=requested,
        z2jh_chart=z2jh_chart,
        image=image,
        include_secrets=include_secrets,
    )


@env_app.command(
    "apply",
    epilog=_examples(
        "sudo tljh env apply user-env.lock.json --target user --dry-run",
        "sudo tljh env apply user-env.lock.json --target user --exact --yes",
        "sudo tljh env apply requirements.txt --target user --yes --json",
    ),
)
def env_apply(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(metavar="FILE", help="A lock (tljh env export), requirements.txt or environment.yml."),
    ],
    target: TargetOption,
    exact: Annotated[
        bool, typer.Option("--exact", help="Also remove what the file does not list (pip itself stays).")
    ] = False,
    dry_run: DryRunFlag = False,
    yes: YesFlag = False,
    json: ChangeJsonFlag = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Allow user-server packages in the hub, and --exact removing jupyterhub."
        ),
    ] = False,
    allow_system: AllowSystemFlag = False,
    break_system_packages: BreakSystemFlag = False,
    installer: InstallerOption = DEFAULT_INSTALLER_CHOICE,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
) -> ExitCode:
    """Make an environment match a file: install what is missing, change what differs (and
    with --exact remove the rest), as one change with a plan, a snapshot and history.
    Applying a file the environment already matches changes nothing."""
    from tljh_admin import apply_env
    from tljh_admin.cli.apply import Proposal, confirm_and_apply, require_interaction

    require_interaction(yes, dry_run)
    request = apply_env.ApplyRequest(
        target=target.value,
        file=file,
        exact=exact,
        force=force,
        allow_system=allow_system,
        break_system_packages=break_system_packages,
        installer=installer.value,
        lock_timeout=lock_timeout,
        command=_command_line(),
        dry_run=_plans_only(dry_run, json, yes),
    )
    layout = _options(ctx).layout()
    notes = render.Notes()
    with apply_env.prepare_apply(layout, request, notes) as prepared:
        if json:
            return change_json(layout, "apply", prepared, dry_run=dry_run, yes=yes, notes=notes)
        pin = f" (jupyterhub pinned to the hub's: {prepared.pin})" if prepared.pin else ""
        proposal = Proposal(
            prepared,
            show=lambda: (
                render.plan_table(f"apply {file} to {target.value}{pin}", prepared.plan)
                if prepared.plan
                else None
            ),
            doing=f"apply in the {target.value} environment",
            nothing_to_do=None if prepared.plan else f"the {target.value} environment already matches {file}",
        )
        return confirm_and_apply(proposal, dry_run=dry_run, yes=yes)


@env_app.command(
    "prune",
    epilog=_examples("sudo tljh env prune --keep 3", "sudo tljh env prune --keep 5 --save"),
)
def env_prune(
    ctx: typer.Context,
    keep: Annotated[
        int | None,
        typer.Option("--keep", metavar="N", help="Keep the newest N snapshots [default: the saved setting]."),
    ] = None,
    save: Annotated[
        bool, typer.Option("--save", help="Make --keep the number every later change keeps.")
    ] = False,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
) -> ExitCode:
    """Remove old rollback snapshots (they live in PREFIX/state, which TLJH's docs say to back up)."""
    from tljh_admin import changes

    result = changes.prune(_options(ctx).layout(), keep, lock_timeout, save)
    render.message(
        f"removed {len(result.removed)} snapshot(s), freed {result.freed_bytes / 2**20:.1f} MiB;"
        f" {len(result.kept)} kept"
        + (f" (changes {', '.join(map(str, result.kept))})" if result.kept else "")
    )
    return ExitCode.OK


RebuildTarget = enum.Enum("RebuildTarget", {name: name for name in ENV_NAMES if name != "system"}, type=str)


@env_app.command(
    "rebuild",
    epilog=_examples(
        "sudo tljh env rebuild --target hub --dry-run",
        "sudo tljh env rebuild --target hub --yes",
        "sudo tljh --system-python /usr/bin/python3.12 env rebuild --target hub",
        "sudo tljh env rollback --target hub   # the old venv back",
    ),
)
def env_rebuild(
    ctx: typer.Context,
    target: Annotated[
        RebuildTarget,
        typer.Option(
            "--target", "-t", metavar="hub|user", case_sensitive=False, help="Which venv to rebuild."
        ),
    ],
    dry_run: DryRunFlag = False,
    yes: YesFlag = False,
    json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON and stop.")] = False,
    installer: InstallerOption = DEFAULT_INSTALLER_CHOICE,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
) -> ExitCode:
    """Make the venv anew with the system python (after an OS upgrade moved it): the same
    packages at the same versions where they support the new Python (else the nearest that
    do, and why), from where each came (index, git commit, local path), plugins included;
    built beside the old one, checked, swapped in; `env rollback` puts the old one back."""
    from tljh_admin import rebuild
    from tljh_admin.cli.apply import ask, refuse_plan_only_with_yes, require_interaction

    refuse_plan_only_with_yes(f"tljh env rebuild --target {target.value}", json, yes, dry_run)
    require_interaction(yes, dry_run or json)
    layout = _options(ctx).layout()
    request = rebuild.RebuildRequest(
        target=target.value,
        installer=installer.value,
        lock_timeout=lock_timeout,
        command=_command_line(),
        resolve_first=not yes or dry_run or json,  # --yes: the install itself resolves (faster)
        dry_run=dry_run or json,
    )
    with rebuild.prepare_rebuild(layout, request, render.message) as prepared:
        for entry in prepared.recovered:
            render.message(f"restored change {entry['id']} left unfinished by a killed tljh")
        if json:
            from tljh_admin.report import rebuild_document

            render.print_json(rebuild_document(layout, prepared.plan))
            return ExitCode.OK
        if prepared.plan.resolved:
            render.rebuild_plan(prepared.plan)
        if dry_run:
            render.message("dry run: nothing was changed")
            return ExitCode.OK
        if not yes and not ask(f"Rebuild the {target.value} environment?"):
            render.message("nothing was changed")
            return ExitCode.OK
        assert prepared.apply is not None
        with render.progress(f"rebuilding the {target.value} environment") as progress:
            outcome = prepared.apply(progress)
    if yes:
        render.rebuild_plan(outcome.plan)
    changed = len(outcome.plan.changed)
    render.message(
        f"done: change {outcome.change_id}: the {target.value} env runs Python {outcome.plan.new_python}"
        f" ({changed} package{'s' if changed != 1 else ''} changed); the old env is the rollback"
        f" snapshot: sudo tljh env rollback --target {target.value}"
    )
    if target.value == "hub":
        render.message("restart the hub for it to take effect: sudo systemctl restart jupyterhub")
    return ExitCode.OK


@app.command("plugins", epilog=_examples("tljh plugins", "tljh plugins --json"))
def plugins_view(ctx: typer.Context, json: JsonFlag = False) -> ExitCode:
    """TLJH plugins in the hub (its `tljh` entry points) and what each makes TLJH's installer
    re-apply on every upgrade: hub and user packages, conda channels, apt packages."""
    from tljh_admin import plugins
    from tljh_admin.envs import inspect_environment

    layout = _options(ctx).layout()
    report = plugins.plugin_report(inspect_environment("hub", layout))
    if json:
        from tljh_admin.report import plugins_document

        render.print_json(plugins_document(layout, report))
    else:
        render.plugins_table(report)
    return ExitCode.OK


@app.command(
    "upgrade",
    epilog=_examples(
        "sudo tljh upgrade --dry-run",
        "sudo tljh upgrade --restart",
        "sudo tljh upgrade --hub-requirements hub-requirements.txt --json",
    ),
)
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
    installer: InstallerOption = DEFAULT_INSTALLER_CHOICE,
    restart: Annotated[bool, typer.Option("--restart", help="Restart the hub afterwards (systemd).")] = False,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            metavar="X",
            help="First move TLJH itself in the hub to X (a release, or a git tag/branch/commit when it "
            "came from git), then plan from X's own hub requirements.",
        ),
    ] = None,
    lock_timeout: LockTimeoutOption = DEFAULT_LOCK_TIMEOUT,
) -> ExitCode:
    """Upgrade as TLJH's installer does (hub from its requirements; in the user env only
    jupyterhub, to the hub's new version), with a plan first and all-or-nothing.
    Only the Python environments change: traefik, the systemd units and config migration
    stay with TLJH's installer (re-run its bootstrap.py for those)."""
    from tljh_admin import upgrade as up
    from tljh_admin.cli.apply import (
        Proposal,
        confirm_and_apply,
        refuse_plan_only_with_yes,
        require_interaction,
    )

    refuse_empty({"--hub-requirements": hub_requirements, "--version": version})
    refuse_plan_only_with_yes("tljh upgrade", json, yes, dry_run)
    require_interaction(yes, dry_run or json)
    layout = _options(ctx).layout()
    with up.prepare_upgrade(
        layout,
        hub_requirements,
        installer.value,
        lock_timeout,
        _command_line(),
        render.message,
        version,
        dry_run=dry_run or json,  # --json only plans (refuse_plan_only_with_yes)
    ) as (plan, prepared):
        if json:
            from tljh_admin.report import upgrade_document

            render.print_json(upgrade_document(layout, plan))
            return _blocked(plan) if plan.blockers else ExitCode.OK
        if plan.blockers:
            render.upgrade_plan(plan)
            return _blocked(plan)

        def after(_outcome) -> None:
            if restart:
                from tljh_admin.doctor.context import SYSTEMD_RUNTIME

                render.message(up.restart_hub(os.path.isdir(SYSTEMD_RUNTIME)))
            else:
                render.message(
                    "restart the hub for the upgrade to take effect: sudo systemctl restart jupyterhub"
                )

        proposal = Proposal(
            prepared,
            show=lambda: render.upgrade_plan(plan),
            doing="upgrading",
            nothing_to_do="everything is already up to date" if plan.empty else None,
            question="Upgrade?",
            after=after,
        )
        return confirm_and_apply(proposal, dry_run=dry_run, yes=yes)
