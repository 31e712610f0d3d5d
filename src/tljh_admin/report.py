"""JSON documents: the versioned contract scripts rely on (docs/json.md).

Every document carries `schema` (which document) and `version` (bumped only when a key is
removed or changes meaning; new keys may be added within a version). Building them is plain
data work, shared by the fast path and the Typer app so both print the same bytes.
"""

from __future__ import annotations

from tljh_admin.envs.model import Distribution, Environment, SiteProblem
from tljh_admin.layout import Layout

SCHEMA_VERSION = 1


def _package(dist: Distribution) -> dict:
    return {
        "name": dist.name,
        "version": dist.version,
        "installer": dist.installer,
        "location": dist.location,
        "metadata_dir": dist.metadata_dir,
    }


def _problem(problem: SiteProblem) -> dict:
    return {
        "kind": problem.kind,
        "project": problem.project,
        "paths": list(problem.paths),
        "detail": problem.detail,
    }


def environment_document(env: Environment) -> dict:
    base = env.venv_base
    return {
        "name": env.name,
        "kind": env.kind,
        "status": env.status,
        "reason": env.reason,
        "root": env.root,
        "interpreter": env.interpreter.path,
        "interpreter_target": env.interpreter.end,
        "python_version": env.python_version,
        "externally_managed": env.externally_managed,
        "venv_base": {"home": base[0], "version": base[1]} if base else None,
        "site_dirs": list(env.site_dirs),
        "distribution_count": len(env.distributions),
        "packages": [_package(d) for d in env.distributions],
        "problems": [_problem(p) for p in env.problems],
    }


def env_list_document(layout: Layout, envs: list[Environment]) -> dict:
    return {
        "schema": "tljh-admin/env-list",
        "version": SCHEMA_VERSION,
        "prefix": str(layout.prefix),
        "system_python": str(layout.system_python),
        "environments": [environment_document(env) for env in envs],
    }


def env_packages_document(layout: Layout, env: Environment) -> dict:
    return {
        "schema": "tljh-admin/env-packages",
        "version": SCHEMA_VERSION,
        "prefix": str(layout.prefix),
        "environment": env.name,
        "status": env.status,
        "reason": env.reason,
        "packages": [_package(d) for d in env.distributions],
        "problems": [_problem(p) for p in env.problems],
    }


HISTORY_KEYS = (
    "id",
    "time",
    "who",
    "target",
    "command",
    "kind",
    "installer",
    "before",
    "after",
    "result",
    "detail",
)


def history_document(layout: Layout, entries: list[dict]) -> dict:
    return {
        "schema": "tljh-admin/history",
        "version": SCHEMA_VERSION,
        "prefix": str(layout.prefix),
        "changes": [{key: entry.get(key) for key in HISTORY_KEYS} for entry in entries],
    }
