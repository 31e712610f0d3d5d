"""The one place that writes to the terminal: data to stdout, messages to stderr.

JSON and error lines are written without rich, so scripts and the fast path never pay for
it; rich is imported only to draw tables for people.

Lines are never wrapped by us (soft wrap: the terminal folds them for the eye, a copy gets
the whole line), so a path, a hint or a command can always be pasted. Tables drop their
least useful columns until they fit the terminal; ids and paths in them are never folded.
"""

from __future__ import annotations

import sys

from tljh_admin.errors import TljhError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the fast path
if TYPE_CHECKING:
    from rich.console import Console

    from tljh_admin.envs.model import Environment

_QUIET = False


class PipeClosed(Exception):
    """The reader of stdout went away (`| head`): stop quietly, as tools ended by SIGPIPE do."""


def set_quiet(quiet: bool) -> None:
    """--quiet: messages and progress are dropped; data on stdout and errors are not."""
    global _QUIET
    _QUIET = quiet


_STATUS_STYLE = {"ok": "green", "missing": "yellow", "broken": "bold red"}


def environments(names: list[str]) -> str:
    """`hub environment`, `user and hub environments`."""
    return " and ".join(names) + (" environments" if len(names) > 1 else " environment")


def print_json(document: dict) -> None:
    import json  # not at import: `re` and json's decoder cost a few ms before doctor's finds start

    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def error_line(error: TljhError) -> str:
    """One line: what went wrong and what to do. Longer installer output, when there is
    some, follows on the next lines, indented."""
    hint, _, details = error.hint.partition("\n")
    hint = f" Hint: {printable(hint)}" if hint else ""
    # a path with a line break or an ESC in it must not break the one line, nor the terminal
    message = printable(error.message.rstrip("."))
    stop = "" if message.endswith(("?", "!")) else "."
    line = f"tljh: error: {message}{stop}{hint}"
    if details:
        line += "\n" + "\n".join(f"    {printable(d)}" for d in details.splitlines())
    return line


def print_error(error: TljhError) -> None:
    try:
        sys.stderr.write(error_line(error) + "\n")
        sys.stderr.flush()
    except OSError:
        pass  # stderr closed or full: the exit code still says what happened


def _plain() -> bool:
    """NO_COLOR (no-color.org: set and not empty) means no escape codes at all: rich alone
    would drop colours but keep bold."""
    import os

    return bool(os.environ.get("NO_COLOR"))


def _console(stderr: bool) -> Console:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich would exit 1 itself; __main__ ends every closed pipe the same way
            self.quiet = True
            raise PipeClosed()

    options = {"color_system": None} if _plain() else {}
    return _Console(stderr=stderr, highlight=False, soft_wrap=True, **options)


def stdout_console() -> Console:
    return _console(stderr=False)


def stderr_console() -> Console:
    return _console(stderr=True)


def _fit(console: Console, columns: list[tuple[str, dict]], rows: list[list[str]], drop: tuple[str, ...]):
    """A rich Table of the columns that fit `console.width`: the columns named in `drop` go,
    in that order, until the table's natural width fits (each column: its widest cell plus
    rich's padding and rule)."""
    from rich.table import Table
    from rich.text import Text

    def natural(index: int) -> int:
        header = len(columns[index][0])
        return max([header, *(Text.from_markup(row[index]).cell_len for row in rows)]) + 3

    kept = list(range(len(columns)))
    for name in drop:
        if sum(natural(i) for i in kept) + 1 <= console.width:
            break
        kept = [i for i in kept if columns[i][0] != name]
    table = Table()
    for i in kept:
        table.add_column(columns[i][0], **columns[i][1])
    for row in rows:
        table.add_row(*(row[i] for i in kept))
    return table


def _relative(path: str, base: str) -> str:
    base = base.rstrip("/") + "/"
    return path[len(base) :] if base != "/" and path.startswith(base) else path


def _interpreter_cell(env: Environment) -> str:
    link = env.interpreter
    base = env.root if env.kind != "system" else ""
    shown = _relative(link.path, base) if base else link.path
    end = _relative(link.end, base) if base else link.end
    return shown if link.end == link.path else f"{shown} -> {end}"


def environments_table(prefix: str, envs: list[Environment]) -> None:
    from tljh_admin.envs.backends import packages

    columns = [
        ("env", {"no_wrap": True}),
        ("kind", {"no_wrap": True}),
        ("status", {"no_wrap": True}),
        ("python", {"no_wrap": True}),
        ("dists", {"justify": "right", "no_wrap": True}),
        ("prefix", {"no_wrap": True}),
        ("interpreter", {"no_wrap": True}),
    ]
    rows = []
    for env in envs:
        style = _STATUS_STYLE.get(env.status, "")
        rows.append(
            [
                env.name,
                env.kind or "-",
                f"[{style}]{env.status}[/]",
                env.python_version or "?",
                str(len(packages(env))),
                _shown(_relative(env.root, prefix) if env.root else "-"),
                _shown(_interpreter_cell(env)),
            ]
        )
    out = stdout_console()
    out.print(f"TLJH environments in {_shown(prefix)}")
    # the interpreter and the env's folder are in `tljh env packages` and --json too
    out.print(_fit(out, columns, rows, drop=("interpreter", "prefix", "kind")), soft_wrap=False)
    _notes(out, envs)


def _notes(out: Console, envs: list[Environment]) -> None:
    for env in envs:
        if env.reason:
            out.print(f"[bold]{env.name}[/]: {_shown(env.reason)}")
        if env.externally_managed:
            out.print(f"[bold]{env.name}[/]: externally managed (PEP 668): install with apt, not pip")
        for problem in env.problems:
            out.print(f"[bold]{env.name}[/]: [yellow]{problem.kind}[/] {_shown(problem.detail)}")
            for path in problem.paths:
                out.print(f"    {_shown(path)}")


def packages_table(env: Environment) -> None:
    out = stdout_console()
    out.print(f"{env.name}: {_shown(env.root or env.interpreter.path)}")
    from tljh_admin.envs.backends import packages

    columns = [
        ("package", {"no_wrap": True}),
        ("version", {"no_wrap": True}),
        ("installer", {"no_wrap": True}),
    ]
    conda = env.kind == "conda"
    if conda:  # as `conda list` shows them
        columns += [("build", {"no_wrap": True}), ("channel", {"no_wrap": True})]
    rows = [
        [_shown(p.name), _shown(p.version), _shown(p.installer or "-")]
        + ([_shown(p.build or "-"), _shown(p.channel or "-")] if conda else [])
        for p in packages(env)
    ]
    out.print(_fit(out, columns, rows, drop=("build", "channel", "installer")), soft_wrap=False)
    _notes(out, [env])


_ACTION_STYLE = {
    "install": "green",
    "upgrade": "cyan",
    "downgrade": "yellow",
    "reinstall": "",
    "remove": "red",
    "change": "cyan",
}


def plan_table(title: str, plan) -> None:
    """The plan as aligned plain columns: rich's table layout costs 150 ms for a 60-package
    plan, a tenth of a typical uv install, and a plan needs no boxes."""
    channels = any(getattr(c, "channel", "") for c in plan)  # a conda plan says where from
    rows = [("package", "now", "after", *(("channel",) if channels else ()), "action")]
    rows += [
        (
            f"{c.name}{' *' if c.requested else ''}",
            c.before or "-",
            c.after or "-",
            *((c.channel or "-",) if channels else ()),
            c.action,
        )
        for c in plan
    ]
    columns = len(rows[0]) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(columns)]
    lines = [title]
    for row in rows:
        lines.append(
            "  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:columns])) + "  " + row[-1]
        )
    lines.append("  (* requested)")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def message(text: str) -> None:
    """A message for people, on stderr."""
    if not _QUIET:
        stderr_console().print(printable(text, keep="\n"), markup=False, highlight=False)


class Notes:
    """A notify callback: each note goes to stderr as a message, and is kept for the
    `notes` of a --json document."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def __call__(self, text: str) -> None:
        self.said.append(text)
        message(text)


def printable(text: str, keep: str = "") -> str:
    """`text` with control characters (an ESC sequence in a file name a user made, or in a
    recorded command line) written as escapes instead of sent to the terminal; `keep`: the
    ones to leave (a message's own line breaks)."""
    if any((ord(c) < 32 or 127 <= ord(c) < 160) and c not in keep for c in text):
        text = "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)
    return text


def _shown(text: str) -> str:
    """Text from a file, for a table cell: control characters escaped, markup escaped."""
    from rich.markup import escape as markup_escaped

    return markup_escaped(printable(text))


def history_table(entries: list[dict]) -> None:
    columns = [
        ("id", {"no_wrap": True}),
        ("time", {"no_wrap": True}),
        ("who", {"no_wrap": True}),
        ("target", {"no_wrap": True}),
        ("command", {"overflow": "fold"}),
        ("changes", {}),
        ("result", {"no_wrap": True}),
    ]
    rows = [
        [
            str(entry["id"]),
            _shown(entry["time"]),
            _shown(entry["who"]),
            _shown(entry["target"]),
            _shown(entry["command"]),
            _shown(summarize_changes(entry, limit=3)),
            _shown(entry["result"]),
        ]
        for entry in entries
    ]
    out = stdout_console()
    out.print("tljh-admin history")
    out.print(_fit(out, columns, rows, drop=("who", "time")), soft_wrap=False)


def summarize_changes(entry: dict, limit: int = 6) -> str:
    """`numpy 1.26.4 -> 2.1.0, ...`, cut to `limit` items and a count of the rest."""
    parts = []
    for env, before in entry["before"].items():
        after = entry["after"].get(env, {})
        for name in sorted(before.keys() | after.keys(), key=str.lower):
            old, new = before.get(name), after.get(name)
            if old != new:
                parts.append(f"{name} {old or '-'} -> {new or '-'}")
    if len(parts) > limit:
        parts = [*parts[:limit], f"and {len(parts) - limit} more"]
    return ", ".join(parts) or "no change"


class progress:
    """A spinner on stderr showing the installer's latest line; silent when stderr is not a
    terminal (scripts get the final message only; the full output is in the change's log)."""

    def __init__(self, title: str):
        self.title = title
        self.status = None

    def __enter__(self):
        console = stderr_console()
        if console.is_terminal and not _QUIET and not _plain():
            self.status = console.status(self.title)
            self.status.__enter__()
        return self.update

    def update(self, line: str) -> None:
        if self.status is not None:
            self.status.update(f"{self.title}: {_shown(line[:100])}")

    def __exit__(self, *exc):
        if self.status is not None:
            self.status.__exit__(*exc)
        return False


_MARK = {
    "ok": "[green]✔[/]",
    "skipped": "[dim]-[/]",
    "warning": "[yellow]![/]",
    "failed": "[red]✘[/]",
    "error": "[bold red]?[/]",
}
_MAX_FINDINGS_SHOWN = 10


def doctor_checks(registry) -> None:
    columns = [
        ("id", {"no_wrap": True}),
        ("envs", {"no_wrap": True}),
        ("fix", {"no_wrap": True}),
        ("checks that", {}),
        ("why", {}),
    ]
    rows = [
        [
            check.id,
            ",".join(check.envs),
            "yes" if check.fixable else "",
            _shown(check.title),
            _shown(check.why),
        ]
        for check in registry
    ]
    out = stdout_console()
    out.print("tljh doctor checks")
    out.print(_fit(out, columns, rows, drop=("why", "envs")), soft_wrap=False)


def doctor_report(report, strict: bool, fixes) -> None:
    from tljh_admin.doctor import ENV_ORDER

    out = stdout_console()
    for env in ENV_ORDER:
        results = [r for r in report.results if r.env == env]
        if not results:
            continue
        out.print(f"[bold]{env}[/]")
        for result in results:
            out.print(f"  {_MARK[result.status]} {result.check.id:<22} {_shown(result.check.title)}")
            shown = [f for f in result.findings if f.status != "ok" or f.message]
            for finding in shown[:_MAX_FINDINGS_SHOWN]:
                subject = f"{_shown(finding.subject)}: " if finding.subject else ""
                impact = f" [bold]\\[{finding.impact}][/]" if finding.impact else ""
                out.print(f"      {_MARK[finding.status]} {subject}{_shown(finding.message)}{impact}")
                if finding.hint:
                    out.print(f"        [dim]-> {_shown(finding.hint)}[/]")
            if len(shown) > _MAX_FINDINGS_SHOWN:
                out.print(f"      ... and {len(shown) - _MAX_FINDINGS_SHOWN} more (see --json)")
    for _result, finding, applied, error in fixes:
        verb = "fixed" if applied else ("could not fix" if error else "would fix")
        out.print(f"{verb}: {_shown(finding.fix.description)}" + (f" ({_shown(error)})" if error else ""))
    counts = {s: report.count(s) for s in ("ok", "warning", "failed", "error", "skipped")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    from tljh_admin.doctor.model import SKIPPED_NEEDS_ROOT

    needs_root = any(SKIPPED_NEEDS_ROOT in f.message for r in report.results for f in r.findings)
    if report.exit_code(strict):
        verdict = "problems found"
    elif needs_root:
        verdict = "nothing wrong in what this user can read; run with sudo for the rest"
    else:
        verdict = "healthy"
    out.print(f"[bold]{len(report.results)} checks: {summary} -- {verdict}[/]")


def upgrade_plan(plan) -> None:
    out = stdout_console()
    out.print(f"hub requirements: {_shown(plan.source.path)} ({_shown(plan.source.detail)})")
    for note in plan.notes:
        message(note)
    for blocker in plan.blockers:
        out.print(f"[red]cannot upgrade:[/] {_shown(blocker.message)}")
        out.print(f"  [dim]-> {_shown(blocker.hint)}[/]")
    if plan.blockers:
        return
    columns = [(name, {"no_wrap": True}) for name in ("env", "package", "current", "target", "action")]
    rows = []
    for env, changes in plan.changes.items():
        for change in changes:
            style = _ACTION_STYLE.get(change.action, "")
            action = f"[{style}]{change.action}[/]" if style else change.action
            rows.append(
                [env, _shown(change.name), _shown(change.before or "-"), _shown(change.after or "-"), action]
            )
    out.print("upgrade plan")
    out.print(_fit(out, columns, rows, drop=()), soft_wrap=False)
    out.print(
        f"the user env's jupyterhub follows the hub's: {plan.hub_jupyterhub_after}; "
        "nothing else there changes unless pip must; the system env is not touched"
    )


def rebuild_plan(plan) -> None:
    """A rebuild's plan: every distribution of the old env, what it becomes, and why."""
    out_lines = [
        f"rebuild {plan.target} ({plan.root}): Python {plan.old_python or '?'} -> {plan.new_python}"
        f" ({plan.python_command}), installer {plan.installer}"
    ]
    if not plan.resolved:
        out_lines.append("  (--yes: the installer resolves the same pins directly; the plan follows it)")
    rows = [("package", "now", "after", "action", "from / why")]
    for item in plan.items:
        why = item.reason or (item.source if item.source != "index" else "")
        rows.append(
            (
                f"{item.name}{' *' if item.requested else ''}",
                item.before or "-",
                item.after or "-",
                item.action,
                why,
            )
        )
    if plan.items:
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            out_lines.append(
                "  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
            )
        out_lines.append("  (* requested)")
    for plugin in plan.plugins:
        hooks = ", ".join(plugin.hooks) or "no hooks found in its source"
        out_lines.append(f"  plugin {plugin.name} ({plugin.dist} {plugin.version}) is reinstalled: {hooks}")
    sys.stdout.write("\n".join(out_lines) + "\n")
    sys.stdout.flush()
    for note in plan.notes:
        message(note)


def plugins_table(report) -> None:
    """TLJH plugins in the hub and what each gives TLJH's installer to re-apply."""
    lines = []
    if not report.plugins:
        lines.append("no TLJH plugins (tljh entry points) in the hub environment")
    for plugin in report.plugins:
        lines.append(f"{plugin.name}: {plugin.dist} {plugin.version} ({plugin.target})")
        lines.append(f"  hooks: {', '.join(plugin.hooks) or 'none found in its source'}")
        for hook, values in sorted(report.per_plugin.get(plugin.name, {}).items()):
            lines.append(f"  {hook}: {' '.join(values) or '-'}")
        if plugin.name in report.errors:
            lines.append(f"  error: {report.errors[plugin.name]}")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    if report.plugins and not report.evaluated:
        message(f"what the plugins contribute is unknown: {report.reason}")
