"""A fast path for the read-only JSON reports that scripts call in loops.

`tljh env list --json` and `tljh env packages --target X --json` are answered here without
importing Typer, click or rich (about 90 ms of imports against a few ms of work). Only argv
of exactly those shapes is taken; anything else, including every error in the command line,
falls through to the Typer app, which stays the one definition of the CLI. A contract test
runs each shape both ways and requires identical output and exit codes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from tljh_admin.layout import ENV_NAMES

_GLOBAL_VALUE_OPTIONS = ("--prefix", "--system-python")
# Set to 0 to force the Typer app (the contract test does; so can anyone debugging).
DISABLE_VAR = "TLJH_ADMIN_FASTPATH"


def _take_value(args: list[str], i: int, names: Sequence[str]) -> tuple[str, str, int] | None:
    """(option, value, next index) when args[i] is one of `names` with a non-empty value."""
    arg = args[i]
    for name in names:
        if arg == name and i + 1 < len(args) and args[i + 1] and not args[i + 1].startswith("-"):
            return name, args[i + 1], i + 2
        if arg.startswith(name + "=") and len(arg) > len(name) + 1:
            return name, arg[len(name) + 1 :], i + 1
    return None


def parse(argv: Sequence[str]) -> tuple[str, dict[str, str]] | None:
    """('list'|'packages', options) for argv the fast path answers, else None."""
    args = list(argv)
    options: dict[str, str] = {}
    i = 0
    while i < len(args) and args[i].startswith("--"):
        taken = _take_value(args, i, _GLOBAL_VALUE_OPTIONS)
        if taken is None or taken[0] in options:
            return None
        options[taken[0]], i = taken[1], taken[2]
    if args[i : i + 1] != ["env"] or len(args) < i + 2:
        return None
    command = args[i + 1]
    if command not in ("list", "packages"):
        return None
    rest = args[i + 2 :]
    seen_json = False
    j = 0
    while j < len(rest):
        if rest[j] == "--json" and not seen_json:
            seen_json, j = True, j + 1
            continue
        taken = _take_value(rest, j, ("--target", "-t")) if command == "packages" else None
        if taken is None or "--target" in options or taken[1] not in ENV_NAMES:
            return None
        options["--target"], j = taken[1], taken[2]
    if not seen_json or (command == "packages") != ("--target" in options):
        return None
    return command, options


def try_run(argv: Sequence[str]) -> int | None:
    """The exit code when the fast path answered, None when the Typer app must."""
    if os.environ.get(DISABLE_VAR) == "0" or "_TLJH_COMPLETE" in os.environ:
        return None
    parsed = parse(argv)
    if parsed is None:
        return None
    command, options = parsed

    from tljh_admin import queries, report
    from tljh_admin.cli import render
    from tljh_admin.layout import resolve_layout

    layout = resolve_layout(options.get("--prefix"), options.get("--system-python"))
    if command == "list":
        envs, code = queries.list_environments(layout)
        render.print_json(report.env_list_document(layout, envs))
    else:
        env, code = queries.environment_packages(layout, options["--target"])
        render.print_json(report.env_packages_document(layout, env))
    return int(code)
