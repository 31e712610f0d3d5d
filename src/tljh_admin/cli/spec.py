"""The command line as plain data, for the code that must not import Typer: shell completion
(cli/completion.py), the JSON fast path (cli/fast.py) and usage hints (__main__).

The data (cli/_spec.py) is extracted from the Typer app by scripts/generate.py, never written
by hand: the app in cli/app.py is the one definition. A node is
    {"options": [option, ...], "arguments": [argument, ...], "commands": {name: node}}
an option
    {"name", "flags", "off_flags", "value" (takes one), "multiple", "required", "hidden",
     "eager", "type", "choices", "case_sensitive", "default", "complete"}
an argument
    {"name", "nargs", "required", "type", "complete"}
where "complete" names a completer in cli/completion.py.
"""

from __future__ import annotations

#: the name the help option has in the tree (click calls it differently across versions)
HELP = "help"


def tree() -> dict:
    from tljh_admin.cli._spec import SPEC

    return SPEC


def find_option(node: dict, word: str) -> dict | None:
    for option in node["options"]:
        if word in option["flags"] or word in option["off_flags"]:
            return option
    return None


def choose(option: dict, value: str) -> str | None:
    """The choice `value` means (case-folded when the option allows), None if none."""
    for choice in option["choices"]:
        if value == choice or (not option["case_sensitive"] and value.lower() == choice.lower()):
            return choice
    return None


def convert(option: dict, value: str):
    """A value of the option's type, or ValueError, as click would decide."""
    if option["choices"] is not None:
        chosen = choose(option, value)
        if chosen is None:
            raise ValueError(value)
        return chosen
    if option["type"] in ("int", "float"):
        return number(value, int if option["type"] == "int" else float)
    return value


def number(value: str, kind=float):
    """A number as written on a command line, or ValueError: ASCII digits only (`int("١")`
    is 1 to Python, and Typer 0.24's click agreed; 0.29 does not), on both paths alike."""
    if not value.isascii():
        raise ValueError(value)
    return kind(value)


def _read(args: list[str], root: dict | None):
    """`args` as click reads them, one event per word up to `--`: ("option", path, node,
    option or None when unknown, its value or None), ("word", path, node, word) for a word
    that is no command of the node it meets (commands are descended into), and last ("end",
    path, node). `path` is the commands so far, `node` the last one's."""
    node = tree() if root is None else root
    path: list[str] = []
    i = 0
    while i < len(args) and args[i] != "--":
        word = args[i]
        if word.startswith("-") and len(word) > 1:
            option, value, value_next = _value_option(node, word)
            if value_next:
                value = args[i + 1] if i + 1 < len(args) else None
                i += 1
            yield "option", path, node, option, value
        elif node["commands"] and word in node["commands"]:
            path = [*path, word]
            node = node["commands"][word]
        else:
            yield "word", path, node, word
        i += 1
    yield "end", path, node


def command_path(args: list[str], root: dict | None = None) -> tuple[list[str], dict, str | None]:
    """(the commands that exist along `args`, their node, the first word that is not a command
    where one was expected, or None). Option values are skipped as click skips them."""
    for kind, path, node, *rest in _read(args, root):
        if kind == "word":
            return path, node, rest[0] if node["commands"] else None
        if kind == "end":
            return path, node, None
    raise AssertionError("_read always ends with an end event")


def _value_option(node: dict, word: str) -> tuple[dict | None, str | None, bool]:
    """(the option `word` names, its value when `word` carries it (`--target=hub`, `-thub`),
    whether the value is the next word)."""
    name, eq, inline = word.partition("=")
    option = find_option(node, name)
    if option is not None:
        if option["value"] and not eq:
            return option, None, True
        return option, inline if eq else None, False
    if not word.startswith("--") and len(word) > 2:  # a short option with its value attached
        option = find_option(node, word[:2])
        if option is not None and option["value"]:
            return option, word[2:], False
    return None, None, False


def repeated_option(args: list[str], root: dict | None = None) -> tuple[list[str], dict, list[str]] | None:
    """The first option that takes one value and was given more than once, as (the commands
    along `args`, the option, its values), or None. click keeps the last value without a word;
    for `--target hub ... --target user` that is an environment the admin may not mean."""
    given: dict[str, list[str]] = {}
    for kind, path, _, *rest in _read(args, root):
        if kind != "option":
            continue
        option, value = rest
        if option is not None and option["value"] and not option["multiple"] and value is not None:
            values = given.setdefault(" ".join([*path, option["name"]]), [])
            values.append(value)
            if len(values) > 1:
                return path, option, values
    return None
