"""Dynamic completion values, shared by Typer's completion (wrappers in cli/app.py) and the
fast completion table (cli/completion.py). Every answer is read from files: nothing here
writes, locks, spawns an interpreter or touches the network, and any error means "no
suggestions". No Typer import: this runs on every TAB."""

from __future__ import annotations

import contextlib

from tljh_admin.envs.sitepackages import canonical_name


def _layout(prefix: str | None, system_python: str | None):
    from tljh_admin.layout import resolve_layout

    return resolve_layout(prefix, system_python)


def installed_packages(
    prefix: str | None, system_python: str | None, target: str | None, already: list[str], incomplete: str
) -> list[tuple[str, str]]:
    """`tljh env uninstall --target user <TAB>`: what is installed in *that* env."""
    from tljh_admin.envs import inspect_environment

    if target is None:
        return []
    with contextlib.suppress(Exception):
        env = inspect_environment(target, _layout(prefix, system_python))
        wanted = canonical_name(incomplete)
        names = {d.name: d.version for d in env.distributions}
        return sorted(
            ((name, version) for name, version in names.items()
             if canonical_name(name).startswith(wanted) and name not in already),
            key=lambda item: item[0].lower(),
        )  # fmt: skip
    return []


def check_ids(already: list[str], incomplete: str) -> list[tuple[str, str]]:
    """`tljh doctor <TAB>`: check ids, with their titles for shells that show them."""
    from tljh_admin.doctor.checks import REGISTRY

    return [(c.id, c.title) for c in REGISTRY if c.id.startswith(incomplete) and c.id not in already]


def history_ids(
    prefix: str | None, system_python: str | None, target: str | None, incomplete: str
) -> list[tuple[str, str]]:
    """`tljh env rollback --to <TAB>`: changes that can still be rolled back."""
    from tljh_admin.changes import rollback_candidates

    with contextlib.suppress(Exception):
        layout = _layout(prefix, system_python)
        targets = [target] if target else ["hub", "user", "system"]
        found = [
            (str(e["id"]), f"{e['target']}: {e['command']}")
            for t in targets
            for e in rollback_candidates(layout, t)
        ]
        return [(i, text) for i, text in found if i.startswith(incomplete)]
    return []
