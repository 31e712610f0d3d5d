"""Extract the command line from the Typer app as plain data (scripts/generate.py writes it
to cli/_spec.py; tests extract it from changed copies of the app).

The tree is what click parses, read from the command Typer builds (`typer.main.get_command`),
plus what only the command's signature says: the values of an Enum option, whether they are
case-sensitive, and which completer (cli/completion.py) answers a TAB for a parameter.
"""

from __future__ import annotations

import enum
import inspect
import typing

import typer
import typer.main
import typer.models

from tljh_admin.cli.spec import HELP


def extract(app: typer.Typer) -> dict:
    """The whole command tree of `app`, from its root."""
    command = typer.main.get_command(app)
    return _node(command, command.context_class(command, info_name="tljh"))


def _node(command, ctx) -> dict:
    hints = _hints(command.callback)
    help_names = set(command.get_help_option_names(ctx))
    options, arguments = [], []
    for param in command.get_params(ctx):
        if set(param.opts) & help_names:
            options.append(
                {**_option_defaults(), "name": HELP, "flags": tuple(param.opts), "eager": True}
            )
        elif param.param_type_name == "argument":
            info, base = hints.get(param.name, (None, None))
            arguments.append(
                {
                    "name": param.name,
                    "nargs": param.nargs,
                    "required": bool(param.required),
                    "type": _type_name(base),
                    "complete": _completer(info),
                }
            )
        else:
            options.append(_option(param, *hints.get(param.name, (None, None))))
    commands = {}
    for name in getattr(command, "commands", {}):
        sub = command.commands[name]
        commands[name] = _node(sub, command.context_class(sub, info_name=name, parent=ctx))
    return {"options": options, "arguments": arguments, "commands": commands}


def _option_defaults() -> dict:
    return {
        "name": "",
        "flags": (),
        "off_flags": (),
        "value": False,
        "multiple": False,
        "required": False,
        "hidden": False,
        "eager": False,
        "type": "bool",
        "choices": None,
        "case_sensitive": True,
        "default": None,
        "complete": None,
    }


def _option(param, info, base) -> dict:
    takes_value = not (param.is_flag or getattr(param, "count", False))
    choices = tuple(m.value for m in base) if isinstance(base, type) and issubclass(base, enum.Enum) else None
    return {
        **_option_defaults(),
        "name": param.name,
        "flags": tuple(param.opts),
        "off_flags": tuple(param.secondary_opts),
        "value": takes_value,
        "multiple": bool(param.multiple),
        "required": bool(param.required),
        "hidden": bool(param.hidden),
        "eager": bool(param.is_eager),
        "type": _type_name(base) if takes_value else "bool",
        "choices": choices,
        "case_sensitive": bool(getattr(info, "case_sensitive", True)),
        "default": _plain(param.default),
        "complete": _completer(info),
    }


def _hints(callback) -> dict[str, tuple]:
    """param name -> (Typer's ParameterInfo or None, the value's base type)."""
    if callback is None:
        return {}
    function = inspect.unwrap(callback)
    found = {}
    for name, hint in typing.get_type_hints(function, include_extras=True).items():
        info = None
        if typing.get_origin(hint) is typing.Union:  # Python 3.10 wraps `Annotated[...] = None` in Optional
            hint = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        if typing.get_origin(hint) is typing.Annotated:
            hint, *extras = typing.get_args(hint)
            info = next((e for e in extras if isinstance(e, typer.models.ParameterInfo)), None)
        found[name] = (info, _base_type(hint))
    for name, parameter in inspect.signature(function).parameters.items():
        if isinstance(parameter.default, typer.models.ParameterInfo):  # the older `= typer.Option()`
            found[name] = (parameter.default, found.get(name, (None, None))[1])
    return found


def _base_type(hint):
    """str for `list[str] | None`, the Enum for `Target | None`, ..."""
    while typing.get_origin(hint) is not None:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if not args:
            return None
        hint = args[0]
    return hint


def _type_name(base) -> str:
    if base in (int, float, bool):
        return base.__name__
    return "str"


def _completer(info) -> str | None:
    callback = getattr(info, "autocompletion", None)
    if callback is None:
        return None
    name = getattr(callback, "completer", None)
    assert name, f"{callback!r}: make completers with cli.completion.for_typer(name)"
    return name


def _plain(value):
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return None


def render_module(tree: dict, stamp: str) -> str:
    """cli/_spec.py: the tree as a Python literal, one parameter a line (it imports nothing
    and loads in about a millisecond)."""
    return f'"""{stamp}"""\n\n# fmt: off\nSPEC = {_literal(tree, "")}\n'


def _literal(node: dict, indent: str) -> str:
    inner = indent + "    "
    lines = ["{"]
    for key in ("options", "arguments"):
        lines.append(f"{inner}{key!r}: [")
        lines += [f"{inner}    {param!r}," for param in node[key]]
        lines.append(f"{inner}],")
    lines.append(f"{inner}'commands': {{")
    for name, child in node["commands"].items():
        lines.append(f"{inner}    {name!r}: {_literal(child, inner + '    ')},")
    lines.append(f"{inner}}},")
    lines.append(indent + "}")
    return "\n".join(lines)
