"""Show a change, ask, apply it, report: the one path every change command takes
(install, uninstall, rollback, upgrade, and any command that changes an environment)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from tljh_admin.cli import render
from tljh_admin.errors import Aborted, ExitCode, Stopped, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tljh_admin.changes import Outcome, Prepared


@dataclass(frozen=True)
class Proposal:
    """A prepared change and how to present it."""

    prepared: Prepared
    #: prints the plan (stdout); called whether or not there is anything to do
    show: Callable[[], None]
    #: what was being done, for the progress line: "install in the user environment"
    doing: str
    #: the message when there is nothing to do; None when there is something
    nothing_to_do: str | None = None
    question: str = "Go ahead?"
    #: extra lines after "done" (e.g. the restart hint), given the outcome
    after: Callable[[Outcome], None] | None = None


def require_interaction(yes: bool, dry_run: bool) -> None:
    """A change asks first; without a terminal to ask on, --yes must say it."""
    if not yes and not dry_run and not sys.stdin.isatty():
        raise UsageError(
            "this command changes an environment and there is no terminal to ask for confirmation",
            hint="add --yes to go ahead, or --dry-run to see the plan",
        )


def refuse_plan_only_with_yes(command: str, json: bool, yes: bool, dry_run: bool) -> None:
    """`--json` prints the plan and stops: with --yes (and no --dry-run) a script would read
    `"changed": true` and believe it happened."""
    if json and yes and not dry_run:
        raise UsageError(
            f"`{command} --json` prints the plan only; with --yes nothing would be changed",
            hint=f"run `{command} --yes` to go ahead (its exit code says how it went), or add --dry-run",
        )


def ask(question: str) -> bool:
    """y/N on the terminal. Ctrl-C is Stopped (exit 130), Ctrl-D is Aborted (exit 1): one
    line each, never a traceback. (click's confirm turns both into the same Abort.)"""
    while True:
        try:
            # the prompt is written inside the try: a Ctrl-C typed the moment it shows can
            # land before readline() starts, and is still an interruption at the prompt
            sys.stderr.write(f"{question} [y/N]: ")
            sys.stderr.flush()
            line = sys.stdin.readline()
        except KeyboardInterrupt:
            sys.stderr.write("\n")
            raise Stopped("interrupted at the prompt; nothing was changed") from None
        if not line:
            sys.stderr.write("\n")
            raise Aborted("no answer (end of input); nothing was changed", hint="answer y or n")
        answer = line.strip().lower()
        if answer in ("y", "yes"):
            return True
        if answer in ("", "n", "no"):
            return False
        sys.stderr.write("please answer y or n\n")


def summary(outcome: Outcome) -> str:
    fixed = ""
    if outcome.world_writable_fixed or outcome.owner_fixed:
        fixed = (
            f"; fixed {outcome.world_writable_fixed} world-writable"
            f" and {outcome.owner_fixed} wrongly owned paths"
        )
    if outcome.acl_removed:
        fixed += f"; removed the ACLs that let others write {outcome.acl_removed} new paths"
    return f"done: change {outcome.change_id} ({render.summarize_changes(outcome.history)}){fixed}"


def confirm_and_apply(proposal: Proposal, *, dry_run: bool, yes: bool) -> ExitCode:
    from tljh_admin import changes

    prepared = proposal.prepared
    for entry in prepared.recovered:
        render.message(f"restored change {entry['id']} left unfinished by a killed tljh")
    proposal.show()
    if proposal.nothing_to_do is not None:
        render.message(proposal.nothing_to_do)
        return ExitCode.OK
    if dry_run:
        render.message("dry run: nothing was changed")
        return ExitCode.OK
    if not yes and not ask(proposal.question):
        render.message("nothing was changed")
        return ExitCode.OK
    with render.progress(proposal.doing) as progress:
        outcome = changes.apply(prepared, progress)
    render.message(summary(outcome))
    if proposal.after is not None:
        proposal.after(outcome)
    return ExitCode.OK


def plan_proposal(prepared: Prepared, title: str) -> Proposal:
    """The proposal of a one-environment change (install, uninstall, rollback)."""
    env = prepared.env.name
    envs = prepared.env_names

    def after(_outcome: Outcome) -> None:
        if "hub" in envs:
            render.message("restart the hub for it to take effect: sudo systemctl restart jupyterhub")

    def show() -> None:
        if prepared.plan:
            render.plan_table(title, prepared.plan)
        for companion in prepared.also:
            render.message(
                f"the same change moved the {companion.env.name} environment too: it is rolled back "
                "with it, so that hub and user keep one jupyterhub"
            )
            if companion.plan:
                render.plan_table(f"roll back {companion.env.name}", companion.plan)
        for drift in [*prepared.drift, *(d for c in prepared.also for d in c.drift)]:
            render.message(
                f"changed outside tljh-admin since its last change: {drift.name} "
                f"{drift.before or '-'} -> {drift.after or '-'} (the rollback undoes this too)"
            )

    return Proposal(
        prepared,
        show=show,
        doing=f"{prepared.kind} in the {render.environments(envs)}",
        nothing_to_do=None if prepared.changes_anything else f"nothing to change in the {env} environment",
        after=after,
    )
