"""`tljh doctor`: run the registered checks, isolate crashes, apply safe fixes."""

from __future__ import annotations

import os

from tljh_admin.doctor.checks import BY_ID, REGISTRY
from tljh_admin.doctor.context import Context
from tljh_admin.doctor.model import (
    ERROR,
    FAILED,
    HOST,
    OK,
    SKIPPED,
    SKIPPED_NEEDS_ROOT,
    WARNING,
    Check,
    CheckResult,
    Finding,
    worst,
)
from tljh_admin.errors import ExitCode, TljhError
from tljh_admin.layout import ENV_NAMES

__all__ = ["REGISTRY", "Context", "DoctorReport", "apply_fixes", "run_doctor", "select_checks"]


class DoctorReport:
    __slots__ = ("results",)

    def __init__(self, results: tuple[CheckResult, ...]):
        self.results = results

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def exit_code(self, strict: bool) -> ExitCode:
        bad = {FAILED, ERROR} | ({WARNING} if strict else set())
        return ExitCode.PROBLEMS_FOUND if any(r.status in bad for r in self.results) else ExitCode.OK

    @property
    def fixable(self) -> list[tuple[CheckResult, Finding]]:
        return [(r, f) for r in self.results for f in r.findings if f.fix is not None]


def select_checks(ids: list[str], deep: bool = False) -> list[Check]:
    """The checks named, or every check (the --deep ones only when `deep`)."""
    unknown = [i for i in ids if i not in BY_ID]
    if unknown:
        raise TljhError(
            f"unknown check {', '.join(unknown)}",
            hint="tljh doctor --list shows them: " + ", ".join(BY_ID),
        )
    return [BY_ID[i] for i in dict.fromkeys(ids)] if ids else [c for c in REGISTRY if deep or not c.deep]


def run_doctor(ctx: Context, checks: list[Check], targets: list[str] | None = None) -> DoctorReport:
    """Run each check on each environment it applies to; a check that raises becomes an
    `error` result and the others still run. Host checks run when no --target narrows."""
    results = []
    scanned = {env for c in checks if c.scans for env in c.envs}
    ctx.prefetch(sorted(e for e in scanned if not targets or e in targets))
    # the checks that read the scans last, so that find walks while the others run; the
    # results keep the checks' order
    order = {id(check): i for i, check in enumerate(checks)}
    for check in sorted(checks, key=lambda c: c.scans):
        for env in check.envs:
            if targets and (env == HOST or env not in targets):
                continue
            if check.deep and not ctx.deep:
                findings = (Finding(SKIPPED, "runs only with --deep (it starts interpreters)", check.id, ""),)
                results.append(CheckResult(check, env, SKIPPED, findings))
                continue
            try:
                findings = _with_impact(check, env, check.run(ctx, env))
            except Exception as crash:  # isolate: one broken check must not hide the others
                findings = (_crash_finding(check, env, crash),)
            status = worst(f.status for f in findings) if findings else OK
            results.append(CheckResult(check, env, status, findings))
    results.sort(key=lambda r: order[id(r.check)])  # stable: each check's envs keep their order
    return DoctorReport(tuple(results))


def _crash_finding(check: Check, env: str, crash: Exception) -> Finding:
    if isinstance(crash, PermissionError) and os.geteuid() != 0:
        # a file only root may read, met as another user: not a crash
        return Finding(SKIPPED, f"{SKIPPED_NEEDS_ROOT} ({crash})", check.id, "sudo tljh doctor")
    return Finding(
        ERROR,
        f"the check crashed: {type(crash).__name__}: {crash}",
        check.id,
        "please report this as a tljh-admin bug",
        None,
        check.impact_in(env),
    )


def _with_impact(check: Check, env: str, findings) -> tuple[Finding, ...]:
    """Every warning or failure says what it breaks: the check's own impact unless the
    finding names one."""
    default = check.impact_in(env)
    return tuple(
        f._replace(impact=default) if not f.impact and f.status in (WARNING, FAILED, ERROR) else f
        for f in findings
    )


def apply_fixes(report: DoctorReport) -> list[tuple[CheckResult, Finding, str | None]]:
    """Apply every safe fix; returns (result, finding, error or None) for each. Deepest
    paths first, so that a folder's fix never runs before its contents'."""
    done = []
    ordered = sorted(report.fixable, key=lambda pair: -len(pair[1].subject))
    for result, finding in ordered:
        try:
            finding.fix.apply()
            done.append((result, finding, None))
        except OSError as error:
            done.append((result, finding, str(error)))
    return done


ENV_ORDER = (*ENV_NAMES, HOST)
STATUS_ORDER = (OK, SKIPPED, WARNING, FAILED, ERROR)
