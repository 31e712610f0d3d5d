"""Dynamic shell completion. Every answer is read from files: nothing here writes, locks,
spawns an interpreter or touches the network, and any error means "no suggestions"."""

from __future__ import annotations

import contextlib

import typer

from tljh_admin.envs.sitepackages import canonical_name


def _layout(ctx: typer.Context):
    from tljh_admin.layout import resolve_layout

    root = ctx.find_root().params
    return resolve_layout(root.get("prefix"), root.get("system_python"))


def _target(ctx: typer.Context) -> str | None:
    target = ctx.params.get("target")
    if isinstance(target, list):
        target = target[-1] if target else None
    return getattr(target, "value", target)


def installed_packages(ctx: typer.Context, incomplete: str) -> list[str]:
    """`tljh env uninstall --target user <TAB>`: what is installed in *that* env."""
    from tljh_admin.envs import inspect_environment

    target = _target(ctx)
    if target is None:
        return []
    with contextlib.suppress(Exception):
        env = inspect_environment(target, _layout(ctx))
        prefix = canonical_name(incomplete)
        already = set(ctx.params.get("packages") or ())
        return sorted(
            {
                d.name
                for d in env.distributions
                if canonical_name(d.name).startswith(prefix) and d.name not in already
            },
            key=str.lower,
        )
    return []


def check_ids(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """`tljh doctor <TAB>`: check ids, with their titles for shells that show them."""
    from tljh_admin.doctor.checks import REGISTRY

    chosen = set(ctx.params.get("check_ids") or ())
    return [(c.id, c.title) for c in REGISTRY if c.id.startswith(incomplete) and c.id not in chosen]


def history_ids(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """`tljh env rollback --to <TAB>`: changes that can still be rolled back."""
    from tljh_admin.changes import rollback_candidates

    target = _target(ctx)
    with contextlib.suppress(Exception):
        layout = _layout(ctx)
        targets = [target] if target else ["hub", "user", "system"]
        found = [
            (str(e["id"]), f"{e['target']}: {e['command']}")
            for t in targets
            for e in rollback_candidates(layout, t)
        ]
        return [(i, help_text) for i, help_text in found if i.startswith(incomplete)]
    return []
