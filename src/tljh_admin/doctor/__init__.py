"""`tljh doctor`: run the registered checks, isolate crashes, apply safe fixes."""

from __future__ import annotations

from dataclasses import dataclass

from tljh_admin.doctor.checks import BY_ID, REGISTRY
from tljh_admin.doctor.context import Context
from tljh_admin.doctor.model import (
    ERROR,
    FAILED,
    HOST,
    OK,
    SKIPPED,
    WARNING,
    Check,
    CheckResult,
    Finding,
    worst,
)
from tljh_admin.errors import ExitCode, TljhError
from tljh_admin.layout import ENV_NAMES

__all__ = ["REGISTRY", "Context", "DoctorReport", "apply_fixes", "run_doctor", "select_checks"]


@dataclass(frozen=True)
class DoctorReport:
    results: tuple[CheckResult, ...]

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def exit_code(self, strict: bool) -> ExitCode:
        bad = {FAILED, ERROR} | ({WARNING} if strict else set())
        return ExitCode.PROBLEMS_FOUND if any(r.status in bad for r in self.results) else ExitCode.OK

    @property
    def fixable(self) -> list[tuple[CheckResult, Finding]]:
        return [(r, f) for r in self.results for f in r.findings if f.fix is not None]


def select_checks(ids: list[str]) -> list[Check]:
    unknown = [i for i in ids if i not in BY_ID]
    if unknown:
        raise TljhError(
            f"unknown check {', '.join(unknown)}",
            hint="tljh doctor --list shows them: " + ", ".join(BY_ID),
        )
    return [BY_ID[i] for i in ids] if ids else list(REGISTRY)


def run_doctor(ctx: Context, checks: list[Check], targets: list[str] | None = None) -> DoctorReport:
    """Run each check on each environment it applies to; a check that raises becomes an
    `error` result and the others still run. Host checks run when no --target narrows."""
    results = []
    walked = {env for c in checks if c.id in ("world-writable", "stray-owners") for env in c.envs}
    ctx.prefetch(sorted(e for e in walked if not targets or e in targets))
    for check in checks:
        for env in check.envs:
            if targets and (env == HOST or env not in targets):
                continue
            try:
                findings = tuple(check.run(ctx, env))
            except Exception as crash:  # isolate: one broken check must not hide the others
                findings = (
                    Finding(
                        ERROR,
                        f"the check crashed: {type(crash).__name__}: {crash}",
                        check.id,
                        "please report this as a tljh-admin bug",
                    ),
                )
            status = worst(f.status for f in findings) if findings else OK
            results.append(CheckResult(check, env, status, findings))
    return DoctorReport(tuple(results))


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
