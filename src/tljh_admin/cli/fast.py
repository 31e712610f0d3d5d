"""A fast path for the read-only JSON reports that scripts and CI call in loops.

`tljh env list --json`, `tljh env packages --target X --json` and `tljh doctor --json
[--target X] [--strict] [CHECK]...` are answered here without importing Typer, click,
pydantic or rich (over 200 ms of imports on Typer 0.29, against a few ms of work). Only argv
of exactly those shapes is taken; anything else, including every mistake in the command
line, falls through to the Typer app, which stays the one definition of the CLI. A contract
test runs each shape both ways and requires identical output and exit codes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from tljh_admin.layout import ENV_NAMES

# Set to 0 to force the Typer app (the contract test does; so can anyone debugging).
DISABLE_VAR = "TLJH_ADMIN_FASTPATH"

_GLOBAL_VALUE_OPTIONS = ("--prefix", "--system-python")
_CHECK_ID = re.compile(r"^[a-z][a-z0-9-]*$")

# command words -> (flags it may have, whether --target may repeat / is required, positionals)
_SHAPES = {
    ("env", "list"): {"flags": (), "target": None, "positionals": False},
    ("env", "packages"): {"flags": (), "target": "one", "positionals": False},
    ("doctor",): {"flags": ("--strict",), "target": "many", "positionals": True},
}


def _take_value(args: list[str], i: int, names: Sequence[str]) -> tuple[str, str, int] | None:
    """(option, value, next index) when args[i] is one of `names` with a non-empty value."""
    arg = args[i]
    for name in names:
        if arg == name and i + 1 < len(args) and args[i + 1] and not args[i + 1].startswith("-"):
            return name, args[i + 1], i + 2
        if arg.startswith(name + "=") and len(arg) > len(name) + 1:
            return name, arg[len(name) + 1 :], i + 1
    return None


def parse(argv: Sequence[str]) -> tuple[tuple[str, ...], dict] | None:
    """(command words, options) for argv the fast path answers, else None."""
    args = list(argv)
    options: dict = {"targets": [], "flags": set(), "positionals": []}
    i = 0
    while i < len(args) and args[i].startswith("--"):
        taken = _take_value(args, i, _GLOBAL_VALUE_OPTIONS)
        if taken is None or taken[0] in options:
            return None
        options[taken[0]], i = taken[1], taken[2]
    words = next((w for w in _SHAPES if tuple(args[i : i + len(w)]) == w), None)
    if words is None:
        return None
    shape = _SHAPES[words]
    rest = args[i + len(words) :]
    seen_json = False
    j = 0
    while j < len(rest):
        arg = rest[j]
        if arg == "--json" and not seen_json:
            seen_json, j = True, j + 1
            continue
        if arg in shape["flags"] and arg not in options["flags"]:
            options["flags"].add(arg)
            j += 1
            continue
        if shape["positionals"] and _CHECK_ID.match(arg):
            options["positionals"].append(arg)
            j += 1
            continue
        taken = _take_value(rest, j, ("--target", "-t")) if shape["target"] else None
        if taken is None or taken[1] not in ENV_NAMES:
            return None
        if shape["target"] == "one" and options["targets"]:
            return None
        options["targets"].append(taken[1])
        j = taken[2]
    if not seen_json or (shape["target"] == "one" and not options["targets"]):
        return None
    return words, options


def try_run(argv: Sequence[str]) -> int | None:
    """The exit code when the fast path answered, None when the Typer app must."""
    if os.environ.get(DISABLE_VAR) == "0" or "_TLJH_COMPLETE" in os.environ:
        return None
    parsed = parse(argv)
    if parsed is None:
        return None
    words, options = parsed

    from tljh_admin import report
    from tljh_admin.cli import render
    from tljh_admin.layout import resolve_layout

    if words == ("doctor",):
        early: dict = {}
        if not options["positionals"]:
            # every check: start find on the environments' files before importing doctor
            from tljh_admin.permissions import start_env_scans

            layout = resolve_layout(options.get("--prefix"), options.get("--system-python"))
            early = start_env_scans(
                layout, [t for t in ("hub", "user") if t in (options["targets"] or ("hub", "user"))]
            )
        from tljh_admin import doctor

        checks = doctor.select_checks(options["positionals"])  # before the layout, as Typer does
        layout = resolve_layout(options.get("--prefix"), options.get("--system-python"))
        context = doctor.Context(layout)
        context.adopt(early)
        result = doctor.run_doctor(context, checks, options["targets"] or None)
        strict = "--strict" in options["flags"]
        render.print_json(report.doctor_document(layout, result, strict))
        return int(result.exit_code(strict))

    from tljh_admin import queries

    layout = resolve_layout(options.get("--prefix"), options.get("--system-python"))
    if words == ("env", "list"):
        envs, code = queries.list_environments(layout)
        render.print_json(report.env_list_document(layout, envs))
    else:
        env, code = queries.environment_packages(layout, options["targets"][0])
        render.print_json(report.env_packages_document(layout, env))
    return int(code)
