"""A fast path for the read-only JSON reports that scripts and CI call in loops.

`tljh env list --json`, `tljh env packages --target X --json`, `tljh env history --json`,
`tljh doctor --json ...` and `tljh env export` (the lock fleets fetch) are answered here
without importing Typer, pydantic or rich (about 200 ms of imports, against a few ms of
work). argv is parsed against the command tree extracted from the Typer app (cli/_spec.py),
and the same function the app calls (cli/reports.py) runs. Only argv whose meaning is
certain is taken: any unknown or repeated option, a value that does not convert, `--help`,
an eager option or a missing --json falls through to the Typer app, which owns every error
message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from tljh_admin.cli import exports, reports, spec

# Set to 0 to force the Typer app (the contract test does; so can anyone debugging).
DISABLE_VAR = "TLJH_ADMIN_FASTPATH"

#: the commands this path may answer, by the shared body that runs them
RUNNERS = {
    ("env", "list"): reports.env_list,
    ("env", "packages"): reports.env_packages,
    ("env", "history"): reports.env_history,
    ("doctor",): reports.doctor,
    ("env", "export"): exports.env_export,
}
#: commands whose output is data without --json: env export prints the exported file (a lock
#: is JSON already); with a DEST argument it falls through (this path takes no positionals)
DATA_WITHOUT_JSON = {("env", "export")}


def _accepts(function) -> set[str]:
    code = function.__code__
    return set(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])


def _parse_level(node: dict, args: list[str], i: int, values: dict, stop_at_command: bool):
    """Options (and, below the root, positionals) of one node from args[i:].
    Returns the next index, or None when the fast path must not answer."""
    while i < len(args):
        word = args[i]
        if word == "--":
            return None
        if word.startswith("-") and len(word) > 1:
            name, eq, inline = word.partition("=")
            if eq and not word.startswith("--"):
                return None  # `-t=user`: click reads the value as "=user"; Typer says so
            option = spec.find_option(node, name)
            if option is None or option["eager"] or option["name"] == spec.HELP:
                return None
            if option["name"] in values and not option["multiple"]:
                return None
            if option["value"]:
                if eq:
                    raw, i = inline, i + 1
                elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                    raw, i = args[i + 1], i + 2
                else:
                    return None
                if not raw:
                    return None
                try:
                    value = spec.convert(option, raw)
                except ValueError:
                    return None
                if option["multiple"]:
                    values.setdefault(option["name"], []).append(value)
                else:
                    values[option["name"]] = value
            else:
                if eq:
                    return None
                values[option["name"]] = name in option["flags"]
                i += 1
            continue
        if stop_at_command:
            return i
        arguments = node["arguments"]
        if len(arguments) != 1 or arguments[0]["nargs"] != -1 or arguments[0]["type"] != "str":
            return None
        values.setdefault(arguments[0]["name"], []).append(word)
        i += 1
    return None if stop_at_command else i


def parse(argv: Sequence[str], root: dict | None = None) -> tuple[tuple[str, ...], dict, dict] | None:
    """(command words, root values, command values) for argv the fast path answers, else None."""
    args = list(argv)
    node = spec.tree() if root is None else root
    root_values: dict = {}
    i = _parse_level(node, args, 0, root_values, stop_at_command=True)
    if i is None:
        return None
    path: list[str] = []
    while i < len(args) and node["commands"].get(args[i]) is not None:
        node = node["commands"][args[i]]
        path.append(args[i])
        i += 1
        if node["commands"]:  # a group: no options of its own besides --help
            continue
        break
    if tuple(path) not in RUNNERS or node["commands"]:
        return None
    values: dict = {}
    if _parse_level(node, args, i, values, stop_at_command=False) is None:
        return None
    if values.get("json") is not True and tuple(path) not in DATA_WITHOUT_JSON:
        return None
    for param in (*node["options"], *node["arguments"]):
        if param.get("required") and param["name"] not in values:
            return None
    return tuple(path), root_values, values


def try_run(argv: Sequence[str]) -> int | None:
    """The exit code when the fast path answered, None when the Typer app must."""
    if os.environ.get(DISABLE_VAR) == "0" or "_TLJH_COMPLETE" in os.environ:
        return None
    parsed = parse(argv)
    if parsed is None:
        return None
    words, root_values, values = parsed
    runner = RUNNERS[words]
    if not (root_values.keys() <= _accepts(reports.start) and values.keys() <= _accepts(runner)):
        return None  # an option added to the app that the shared body does not take yet
    options = reports.start(**root_values)
    return int(runner(options, **values))
