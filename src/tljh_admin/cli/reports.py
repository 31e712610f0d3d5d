"""The read-only commands, without Typer: the Typer app (cli/app.py) calls these with parsed
values, and so does the JSON fast path (cli/fast.py) when argv is simple enough to parse from
the extracted command tree. One body per command, so both paths print the same bytes.

Each function takes the global options and then exactly the command's parameters, by the
names they have in the app, with plain values (strings for choices, lists for repeatable
options); it returns the exit code.
"""

from __future__ import annotations

from collections import namedtuple

from tljh_admin.cli import render
from tljh_admin.defaults import DEFAULT_LOCK_TIMEOUT, is_wait, not_a_wait
from tljh_admin.errors import ExitCode, UsageError


class GlobalOptions(namedtuple("GlobalOptions", "prefix system_python")):
    """--prefix and --system-python as given: layout.resolve_layout checks them, with the
    same messages on every path."""

    __slots__ = ()

    def layout(self):
        from tljh_admin.layout import resolve_layout

        return resolve_layout(self.prefix, self.system_python)


def start(prefix: str | None = None, system_python: str | None = None, quiet: bool = False) -> GlobalOptions:
    """The root command's options."""
    render.set_quiet(quiet)
    return GlobalOptions(prefix, system_python)


def env_list(options: GlobalOptions, json: bool = False) -> ExitCode:
    from tljh_admin.queries import list_environments

    layout = options.layout()
    envs, code = list_environments(layout)
    if json:
        from tljh_admin.report import env_list_document

        render.print_json(env_list_document(layout, envs))
    else:
        render.environments_table(layout.prefix, envs)
    return code


def env_packages(options: GlobalOptions, target: str, json: bool = False) -> ExitCode:
    from tljh_admin.queries import environment_packages

    layout = options.layout()
    env, code = environment_packages(layout, target)
    if json:
        from tljh_admin.report import env_packages_document

        render.print_json(env_packages_document(layout, env))
    else:
        render.packages_table(env)
    return code


def env_history(options: GlobalOptions, target: str | None = None, json: bool = False) -> ExitCode:
    from tljh_admin.queries import change_history

    layout = options.layout()
    entries = change_history(layout, target)
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
    return ExitCode.OK


def doctor(
    options: GlobalOptions,
    check_ids: list[str] | None = None,
    target: list[str] | None = None,
    json: bool = False,
    list_checks: bool = False,
    fix: bool = False,
    dry_run: bool = False,
    strict: bool = False,
    deep: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> ExitCode:
    if not is_wait(lock_timeout):  # the fast path's check; Typer's callback (app._seconds) is the other
        raise not_a_wait(lock_timeout, "tljh doctor")
    if dry_run and not fix:
        raise UsageError("--dry-run applies to --fix", hint="tljh doctor --fix --dry-run shows the fixes")
    if list_checks and (fix or target):
        raise UsageError("--list lists the checks and runs none", hint="drop --fix and --target, or --list")
    early: dict = {}
    if not list_checks and not check_ids:
        # every check: find starts walking the environments' files before doctor is imported
        from tljh_admin.permissions import start_env_scans

        early = start_env_scans(
            options.layout(), [t for t in ("hub", "user") if t in (target or ("hub", "user"))]
        )
    from tljh_admin import doctor as doc
    from tljh_admin import report

    if list_checks:
        # `--list ID...` lists those checks; an unknown one is named as when running them
        listed = doc.select_checks(list(check_ids), deep=True) if check_ids else list(doc.REGISTRY)
        if json:
            render.print_json(report.doctor_checks_document(listed))
        else:
            render.doctor_checks(listed)
        return ExitCode.OK
    checks = doc.select_checks(list(check_ids or ()), deep)  # before the layout: a typo is named first
    if check_ids and target and not any(env in c.envs for c in checks for env in target):
        looks_at = ", ".join(sorted({env for c in checks for env in c.envs}))
        raise UsageError(
            f"{', '.join(c.id for c in checks)} looks at {looks_at}, not at {', '.join(target)}",
            hint=f"use --target {looks_at.split(',')[0]}, or drop --target",
        )
    layout = options.layout()
    targets = list(target) if target else None
    context = doc.Context(layout, deep=deep)
    context.adopt(early)
    result = doc.run_doctor(context, checks, targets)
    fixes: list = []
    if fix:
        from tljh_admin.cli.doctor_fix import fix_findings

        fixes, result = fix_findings(layout, context, result, checks, targets, dry_run, lock_timeout)
    if json:
        render.print_json(report.doctor_document(layout, result, strict, fixes))
    else:
        render.doctor_report(result, strict, fixes)
    return result.exit_code(strict)
