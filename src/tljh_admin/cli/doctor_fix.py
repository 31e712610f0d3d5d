"""`tljh doctor --fix`: the steps between the two runs, kept out of the command itself."""

from __future__ import annotations

import os

from tljh_admin import doctor as doc
from tljh_admin.errors import PermissionDenied
from tljh_admin.layout import ENV_NAMES


def fix_findings(layout, context, result, checks, targets, dry_run: bool, lock_timeout: float):
    """Apply (or with dry_run, list) every safe fix under all environments' locks, then run
    the checks again. Returns ([(result, finding, applied, error)], the new report)."""
    fixable = result.fixable
    if dry_run or not fixable:
        return [(r, f, False, None) for r, f in fixable], result
    from tljh_admin.policy import require_write_access
    from tljh_admin.transaction import StateDir, env_locks

    require_write_access([layout.prefix])
    state = StateDir.of(layout)
    state.ensure()
    with env_locks(state, list(ENV_NAMES), lock_timeout):
        done = doc.apply_fixes(result)
    denied = [
        error for _, _, error in done if error and ("Permission denied" in error or "not permitted" in error)
    ]
    if denied and os.geteuid() != 0:
        raise PermissionDenied("the fixes need root", hint="run with sudo")
    context.forget()
    again = doc.run_doctor(context, checks, targets)
    return [(r, f, error is None, error) for r, f, error in done], again
