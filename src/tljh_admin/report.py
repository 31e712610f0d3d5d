"""JSON documents: the versioned contract scripts rely on (docs/json.md).

Every document carries `schema` (which document) and `version` (bumped only when a key is
removed or changes meaning; new keys may be added within a version). Building them is plain
data work, shared by the fast path and the Typer app so both print the same bytes.
"""

from __future__ import annotations

from tljh_admin.envs.backends import packages
from tljh_admin.envs.model import Environment, Package, SiteProblem
from tljh_admin.layout import Layout

SCHEMA_VERSION = 1


def _package(package: Package) -> dict:
    return {
        "name": package.name,
        "version": package.version,
        "installer": package.installer,
        "location": package.location,
        "metadata_dir": package.metadata_dir,
        "channel": package.channel,
        "build": package.build,
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
    rows = packages(env)
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
        "distribution_count": len(rows),
        "packages": [_package(p) for p in rows],
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
        "packages": [_package(p) for p in packages(env)],
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
    "snapshot_bytes",
)


def history_document(layout: Layout, entries: list[dict]) -> dict:
    return {
        "schema": "tljh-admin/history",
        "version": SCHEMA_VERSION,
        "prefix": str(layout.prefix),
        "changes": [{key: entry.get(key) for key in HISTORY_KEYS} for entry in entries],
    }


def _finding(finding) -> dict:
    return {
        "status": finding.status,
        "message": finding.message,
        "subject": finding.subject,
        "hint": finding.hint,
        "fixable": finding.fix is not None,
        "impact": finding.impact or None,
    }


def doctor_document(layout: Layout, report, strict: bool, fixes: list | None = None) -> dict:
    from tljh_admin.doctor.model import STATUSES

    return {
        "schema": "tljh-admin/doctor",
        "version": SCHEMA_VERSION,
        "prefix": str(layout.prefix),
        "checks": [
            {
                "id": r.check.id,
                "title": r.check.title,
                "env": r.env,
                "status": r.status,
                "findings": [_finding(f) for f in r.findings],
            }
            for r in report.results
        ],
        "summary": {status: report.count(status) for status in STATUSES},
        "fixes": [
            {
                "check": r.check.id,
                "env": r.env,
                "subject": f.subject,
                "action": f.fix.description,
                "applied": applied,
                "error": error,
            }
            for r, f, applied, error in (fixes or [])
        ],
        # --fix changed something (what Ansible's changed_when reads); false without --fix
        "changed": any(applied for _r, _f, applied, _e in (fixes or [])),
        "exit_code": int(report.exit_code(strict)),
    }


def doctor_checks_document(checks=None) -> dict:
    """The checks `tljh doctor --list` shows: `checks`, or every one."""
    if checks is None:
        from tljh_admin.doctor import REGISTRY as checks

    return {
        "schema": "tljh-admin/doctor-checks",
        "version": SCHEMA_VERSION,
        "checks": [
            {"id": c.id, "title": c.title, "envs": list(c.envs), "why": c.why, "fixable": c.fixable}
            for c in checks
        ],
    }


def _change(env: str, change) -> dict:
    return {
        "env": env,
        "package": change.name,
        "current": change.before,
        "target": change.after,
        "action": change.action,
        "channel": change.channel,
    }


def upgrade_document(layout: Layout, plan) -> dict:
    return {
        "schema": "tljh-admin/upgrade-plan",
        "version": SCHEMA_VERSION,
        "prefix": str(layout.prefix),
        "requirements": {"source": plan.source.kind, "path": plan.source.path, "detail": plan.source.detail},
        "blockers": [{"message": b.message, "hint": b.hint} for b in plan.blockers],
        "hub_jupyterhub_after": plan.hub_jupyterhub_after,
        "steps": [
            {"env": s.env, "description": s.description, "command": list(s.command)} for s in plan.steps
        ],
        "changes": [_change(env, c) for env, changes in plan.changes.items() for c in changes],
        "notes": list(plan.notes),
        # what `changed_when` in a playbook reads: the upgrade would change something
        "changed": not plan.empty and not plan.blockers,
    }


def _planned(change) -> dict:
    return {
        "package": change.name,
        "current": change.before,
        "target": change.after,
        "action": change.action,
        "requested": change.requested,
        "channel": change.channel,
    }


def change_document(
    layout: Layout,
    command: str,
    environment: str,
    plan: list,
    dry_run: bool,
    outcome=None,
    notes: tuple[str, ...] = (),
    also: dict | None = None,
) -> dict:
    """What a change command planned (`--dry-run --json`) or did (`--json`): `changed` says
    whether the environment changed (or, in a dry run, would change). `also`: {environment:
    plan} of the others the change takes along (a rollback of an upgrade: hub and user)."""
    return {
        "schema": "tljh-admin/change",
        "version": SCHEMA_VERSION,
        "prefix": str(layout.prefix),
        "command": command,
        "environment": environment,
        "dry_run": dry_run,
        "changed": bool(plan or any((also or {}).values())) and (dry_run or outcome is not None),
        "changes": [_planned(c) for c in plan],
        "change_id": outcome.change_id if outcome is not None else None,
        "result": outcome.result if outcome is not None else None,
        "notes": list(notes),
        "also": [{"environment": e, "changes": [_planned(c) for c in p]} for e, p in (also or {}).items()],
    }


def rebuild_document(layout: Layout, plan) -> dict:
    """`tljh env rebuild --json`: the plan (docs/json.md)."""
    return {
        "schema": "tljh-admin/rebuild-plan",
        "version": SCHEMA_VERSION,
        "prefix": str(layout.prefix),
        "target": plan.target,
        "root": plan.root,
        "kind": plan.kind,
        "old_python": plan.old_python,
        "new_python": plan.new_python,
        "python_command": plan.python_command,
        "installer": plan.installer,
        "resolved": plan.resolved,
        "packages": [
            {
                "name": i.name,
                "before": i.before,
                "after": i.after,
                "action": i.action,
                "requested": i.requested,
                "source": i.source,
                "reason": i.reason,
            }
            for i in plan.items
        ],
        "importable": list(plan.importable),
        "plugins": [p.name for p in plan.plugins],
        "notes": list(plan.notes),
    }


def plugins_document(layout: Layout, report) -> dict:
    """`tljh plugins --json` (docs/json.md)."""
    from tljh_admin.plugins import report_document

    return {"schema": "tljh-admin/plugins", "version": SCHEMA_VERSION, "prefix": str(layout.prefix)} | (
        report_document(report)
    )
