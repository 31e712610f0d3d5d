"""The Typer application. Commands parse, call the logic, render, and exit; nothing else."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated

import typer

from tljh_admin import __version__
from tljh_admin.cli import render
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


@dataclass(frozen=True)
class GlobalOptions:
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
) -> None:
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
