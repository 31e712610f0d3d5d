"""Usage errors in words a person can act on: one line, a "did you mean" from the command
tree, and a hint that names a command that exists (`tljh instal` is told about `tljh install`,
never to run `tljh instal --help`)."""

from __future__ import annotations

import difflib

from tljh_admin.cli import spec
from tljh_admin.errors import UsageError


def _close(word: str, candidates: list[str]) -> list[str]:
    by_folded = {c.lower(): c for c in candidates}
    found = difflib.get_close_matches(word.lower(), list(by_folded), n=3, cutoff=0.6)
    found += [c for c in by_folded if c.startswith(word.lower()) and word and c not in found]
    return [by_folded[f] for f in found]


def _values_given(args: list[str], node: dict, option: dict) -> list[str]:
    values = []
    for i, word in enumerate(args):
        name, eq, inline = word.partition("=")
        if word.startswith("--") and name in option["flags"]:
            if eq:
                values.append(inline)
            elif i + 1 < len(args):
                values.append(args[i + 1])
        elif not word.startswith("--") and word[:2] in option["flags"]:
            # a short flag takes the rest of its word as click does: `-tuser`, `-t=user` ("=user")
            values.append(word[2:] if len(word) > 2 else args[i + 1] if i + 1 < len(args) else "")
    return values


def _bad_value(error, args: list[str], node: dict, where: str) -> UsageError | None:
    name = getattr(getattr(error, "param", None), "name", None)
    option = next((o for o in node["options"] if o["name"] == name and o["value"]), None)
    if option is None:
        return None
    flag = option["flags"][0]
    for value in _values_given(args, node, option):
        try:
            spec.convert(option, value)
            continue
        except ValueError:
            pass
        if option["choices"] is not None:
            choices = ", ".join(option["choices"])
            close = _close(value, list(option["choices"]))
            hint = f"did you mean {flag} {close[0]}?" if close else f"choose one of: {choices}"
            return UsageError(f"invalid value for {flag}: {value!r} is not one of {choices}", hint=hint)
        kind = {"int": "a whole number", "float": "a number"}.get(option["type"])
        if kind:
            return UsageError(
                f"invalid value for {flag}: {value!r} is not {kind}", hint=f"see `{where} --help`"
            )
    return None


def _commands_below(node: dict, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    """Every command path under `node`, by its last word."""
    found = {}
    for name, child in node["commands"].items():
        found[(*path, name)] = name
        found.update(_commands_below(child, (*path, name)))
    return found


def _no_such_command(node: dict, where: str, unknown: str) -> UsageError:
    below = _commands_below(node)
    # the nearest level first: `tljh env instal` -> install; then deeper: `tljh instal` -> env install
    close = _close(unknown, list(node["commands"]))[:1]
    if close:
        suggestions = [f"{where} {close[0]}"]
    else:
        words = _close(unknown, sorted(set(below.values())))[:1]
        suggestions = [f"{where} {' '.join(p)}" for p, last in below.items() if words and last == words[0]]
    if suggestions:
        hint = "did you mean " + " or ".join(f"`{s}`" for s in suggestions[:2]) + "?"
    else:
        hint = f"`{where}` has: {', '.join(node['commands'])}"
    return UsageError(f"`{where}` has no command {unknown!r}", hint=hint)


def _missing(error, node: dict, where: str) -> UsageError | None:
    name = getattr(getattr(error, "param", None), "name", None)
    if type(error).__name__ != "MissingParameter" or name is None:
        return None
    option = next((o for o in node["options"] if o["name"] == name), None)
    if option is not None:
        choices = f" (one of: {', '.join(option['choices'])})" if option["choices"] else ""
        return UsageError(f"`{where}` needs {option['flags'][0]}{choices}", hint=f"see `{where} --help`")
    argument = next((a for a in node["arguments"] if a["name"] == name), None)
    if argument is not None:
        return UsageError(f"`{where}` needs {name.replace('_', ' ')}", hint=f"see `{where} --help`")
    return None


def explain(error, args: list[str]) -> UsageError:
    path, node, unknown = spec.command_path(args)
    where = " ".join(["tljh", *path])
    if unknown is not None and node["commands"]:
        return _no_such_command(node, where, unknown)
    missing_command = error.format_message().strip().rstrip(".") == "Missing command"
    if node["commands"] and (type(error).__name__ == "NoArgsIsHelpError" or missing_command):
        # `tljh`, `tljh env`: click's message is the whole help, or says no more than this
        return UsageError(
            f"`{where}` needs a command: {', '.join(node['commands'])}", hint=f"see `{where} --help`"
        )
    message = " ".join(error.format_message().split()).rstrip(".")
    return (
        _bad_value(error, args, node, where)
        or _missing(error, node, where)
        or UsageError(message, hint=f"see `{where} --help`")
    )


def repeated(found: tuple[list[str], dict, list[str]]) -> UsageError:
    """The error for an option that takes one value, given twice (`-t hub ... -t user`, as
    spec.repeated_option found it): refused rather than acting on whichever came last."""
    path, option, values = found
    flag = option["flags"][0]
    shown = ", then ".join(repr(v) for v in values)
    where = " ".join(["tljh", *path])
    return UsageError(f"`{where}` got {flag} more than once ({shown})", hint=f"give {flag} once")
