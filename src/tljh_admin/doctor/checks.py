"""Every known way a TLJH server's environments break, one check each.

A check is a plain function `(context, env) -> [Finding]`; REGISTRY lists them. Fixes are
offered only where they are safe and exact (removing pip's leftovers, chmod o-w, a+r/a+rX
for users, chgrp to the code owner's group, restoring an interrupted change). The checks about
files are in integrity.py, about who may read or change them in safety.py, about whether
programs really run in runtime.py.
"""

from __future__ import annotations

import os
import re
import stat

from tljh_admin import tljh
from tljh_admin.doctor import integrity, runtime, safety
from tljh_admin.doctor.conda_checks import CONDA_CHECKS
from tljh_admin.doctor.context import Context
from tljh_admin.doctor.model import (
    CHANGES_FAIL,
    COSMETIC,
    FAILED,
    HOST,
    HUB_FAILS,
    OK,
    ROOT_CODE,
    SKIPPED,
    SPAWNS_FAIL,
    WARNING,
    Check,
    Finding,
    Fix,
)
from tljh_admin.envs.backends import VENV
from tljh_admin.envs.model import BROKEN, DUPLICATE, INVALID_METADATA, LEFTOVER, MISSING
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.files import open_text
from tljh_admin.layout import HUB, SYSTEM, USER

ENVS = (HUB, USER, SYSTEM)
PREFIX_ENVS = (HUB, USER)
#: what a broken hub, user or system environment breaks
BY_ENV = {HUB: HUB_FAILS, USER: SPAWNS_FAIL, SYSTEM: HUB_FAILS}


def _skipped(why: str, subject: str = "") -> list[Finding]:
    return [Finding(SKIPPED, why, subject, "")]


_RELEASE = re.compile(r"\d+(?:\.\d+)*")


def _version_key(text: str) -> tuple[int, ...]:
    """The release numbers of a version (packaging's Version.release, for the X.Y.Z that
    minimums and same-minor comparisons need), without importing packaging."""
    match = _RELEASE.match(text.strip().lstrip("vV"))
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def _versions_of(ctx: Context, env: str, project: str) -> list[str]:
    return [d.version for d in ctx.env(env).distributions if canonical_name(d.name) == project]


# -- environments ------------------------------------------------------------------------


def env_present(ctx: Context, name: str) -> list[Finding]:
    env = ctx.env(name)
    if env.status == MISSING:
        hint = (
            "the system python3 is TLJH's base: sudo apt install python3 python3-venv"
            if name == SYSTEM
            else "re-run TLJH's installer (bootstrap.py) to recreate it"
        )
        return [
            Finding(
                FAILED,
                f"the {name} environment is missing: {env.reason}",
                env.root or env.interpreter.path,
                hint,
            )
        ]
    if env.status == BROKEN:
        if not env.site_dirs and env.kind == VENV:
            # nothing left to rebuild from: what it held comes back from a snapshot or TLJH
            hint = f"sudo tljh env rollback --target {name}, or re-run TLJH's installer (bootstrap.py)"
        elif name == HUB:
            hint = runtime.REBUILD_HUB + " (the venv's Python is gone: an OS upgrade?)"
        else:
            hint = f"reinstall the {name} environment's Python"
        return [
            Finding(FAILED, f"the {name} environment cannot run: {env.reason}", env.interpreter.path, hint)
        ]
    return []


def jupyterhub_present(ctx: Context, name: str) -> list[Finding]:
    env = ctx.env(name)
    if not env.ok:
        return _skipped(f"the {name} environment is {env.status}")
    found = []
    if not _versions_of(ctx, name, "jupyterhub"):
        found.append(
            Finding(
                FAILED,
                f"jupyterhub is not installed in the {name} environment",
                "jupyterhub",
                "run `tljh upgrade` to install the hub's jupyterhub in both environments",
            )
        )
    if name == USER and not any(_versions_of(ctx, USER, p) for p in ("jupyterlab", "notebook")):
        found.append(
            Finding(
                FAILED,
                "no single-user server (jupyterlab or notebook) in the user environment: "
                "servers cannot start",
                "jupyterlab",
                "sudo tljh env install --target user jupyterlab",
            )
        )
    return found


def jupyterhub_versions(ctx: Context, name: str) -> list[Finding]:
    hub_versions, user_versions = _versions_of(ctx, HUB, "jupyterhub"), _versions_of(ctx, USER, "jupyterhub")
    if len(hub_versions) != 1 or len(user_versions) != 1:
        return _skipped("jupyterhub is not installed once in each of hub and user", "jupyterhub")
    hub, user = hub_versions[0], user_versions[0]
    if hub == user:
        return []
    same_minor = _version_key(hub)[:2] == _version_key(user)[:2]
    return [
        Finding(
            WARNING if same_minor else FAILED,
            f"jupyterhub is {hub} in the hub and {user} in the user environment"
            + ("" if same_minor else ": spawns fail across minor versions"),
            "jupyterhub",
            "run `tljh upgrade`: it sets the user env's jupyterhub to the hub's",
        )
    ]


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def _requirement_names(path: str) -> set[str]:
    """Project names in a requirements file: PEP 508 names start every requirement line (a
    regex, so that doctor does not pay for importing packaging's parser)."""
    with open_text(path, encoding="utf-8") as f:
        return {canonical_name(m.group(1)) for m in map(_REQUIREMENT_NAME.match, f) if m}


def _hub_only_packages() -> frozenset[str]:
    names = _requirement_names(tljh.HUB_REQUIREMENTS) - {"jupyterhub", "pycurl"}
    return frozenset(names | {"dockerspawner", "jupyterhub-dummyauthenticator", "the-littlest-jupyterhub"})


def misplaced_packages(ctx: Context, name: str) -> list[Finding]:
    env = ctx.env(name)
    names = {canonical_name(d.name): d for d in env.distributions}
    from tljh_admin.placement import USER_SERVER_PACKAGES

    if name == HUB:
        wrong, where, why = USER_SERVER_PACKAGES, USER, "users' servers run from the user environment"
    else:
        wrong, where, why = _hub_only_packages(), HUB, "only the hub imports it"
    return [
        Finding(
            WARNING,
            f"{dist.name} {dist.version} is in the {name} environment; {why}",
            dist.name,
            f"sudo tljh env uninstall --target {name} {dist.name}; then install it with --target {where}",
        )
        for key, dist in sorted(names.items())
        if key in wrong
    ]


def broken_requirements(ctx: Context, name: str) -> list[Finding]:
    from tljh_admin.envs.requirements import MISSING as REQ_MISSING
    from tljh_admin.envs.requirements import broken_requirements as find_broken

    env = ctx.env(name)
    if env.status == MISSING:
        return _skipped(f"the {name} environment is missing")
    found = []
    for broken in find_broken(env):
        if broken.kind == REQ_MISSING:
            message = (
                f"{broken.dist.name} {broken.dist.version} requires {broken.requirement}, "
                "which is not installed"
            )
        else:
            message = (
                f"{broken.dist.name} {broken.dist.version} requires {broken.requirement}, "
                f"but {broken.required} {broken.installed} is installed"
            )
        found.append(
            Finding(
                FAILED,
                message,
                f"{broken.dist.name} {broken.dist.version}",
                f"sudo tljh env install --target {name} '{broken.requirement.split(';')[0].strip()}'",
            )
        )
    return found


def _remover(path: str):
    def remove() -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            import shutil

            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)

    return remove


def leftovers(ctx: Context, name: str) -> list[Finding]:
    found = []
    for problem in ctx.env(name).problems:
        if problem.kind == INVALID_METADATA:  # what an install cut short (or damage) leaves
            (path,) = problem.paths
            found.append(
                Finding(
                    WARNING,
                    problem.detail + ": pip and tljh-admin do not see it, nor uninstall what it installed",
                    path,
                    f"look at what it holds; if it installed nothing: sudo rm -r {integrity.quoted(path)}",
                )
            )
            continue
        if problem.kind != LEFTOVER:
            continue
        (path,) = problem.paths
        found.append(
            Finding(
                WARNING,
                problem.detail,
                path,
                "remove it (tljh doctor --fix does)",
                Fix(f"remove {path}", _remover(path)),
            )
        )
    return found


def duplicate_dist_info(ctx: Context, name: str) -> list[Finding]:
    from tljh_admin.envs.sitepackages import stale_duplicates

    found = []
    for problem in ctx.env(name).problems:
        if problem.kind != DUPLICATE:
            continue
        stale = stale_duplicates(problem)
        fix = None
        if stale:
            fix = Fix(
                "remove the metadata whose files are gone: " + ", ".join(stale),
                lambda stale=stale: [_remover(p)() for p in stale],
            )
        found.append(
            Finding(
                FAILED,
                problem.detail + "; pip shows only one of them",
                ", ".join(problem.paths),
                f"reinstall it: sudo tljh env install --target {name} --upgrade {problem.project}"
                if not stale
                else "remove the stale metadata folder (tljh doctor --fix does)",
                fix,
            )
        )
    return found


_SHIPPED_WITH_PYTHON = frozenset({"pip", "setuptools", "wheel"})


def stray_system_installs(ctx: Context, name: str) -> list[Finding]:
    env = ctx.env(SYSTEM)
    if not env.site_dirs:
        return _skipped("no site folder found for the system python", env.interpreter.path)
    debian = any(site.endswith("/dist-packages") for site in env.site_dirs)
    found = []
    for dist in env.distributions:
        if debian:
            # apt installs into /usr/lib/python3/dist-packages; pip as root into /usr/local
            stray = dist.location == env.site_dirs[0] and "/local/" in dist.location
        else:
            stray = dist.installer in ("pip", "uv") and canonical_name(dist.name) not in _SHIPPED_WITH_PYTHON
        if stray:
            found.append(
                Finding(
                    WARNING,
                    f"{dist.name} {dist.version} was pip-installed into the system python ({dist.location}): "
                    "the footprint of `sudo pip install`",
                    dist.name,
                    f"sudo {env.interpreter.path} -m pip uninstall --break-system-packages {dist.name}; "
                    f"then: sudo tljh env install --target user {dist.name}",
                )
            )
    return found


def root_user_site(ctx: Context, name: str) -> list[Finding]:
    versions = set()
    for env_name in ENVS:
        env = ctx.env(env_name)
        if env.kind not in (None, "venv") and env.python_version:  # venvs ignore the user site
            versions.add(".".join(env.python_version.split(".")[:2]))
    found = []
    for short in sorted(versions):
        site = os.path.join(ctx.home_of_root, ".local", "lib", f"python{short}", "site-packages")
        if not os.path.isdir(site):
            continue
        from tljh_admin.envs.sitepackages import scan_site_dir

        dists, _ = scan_site_dir(site)
        found += [
            Finding(
                WARNING,
                f"{d.name} {d.version} is in root's user site {site}: it shadows the environments' own "
                f"packages whenever root runs Python {short}",
                os.path.join(site, d.metadata_dir),
                f"sudo python{short} -m pip uninstall {d.name}; install it with tljh env install instead",
            )
            for d in dists
        ]
    return found


def minimum_versions(ctx: Context, name: str) -> list[Finding]:
    env = ctx.env(USER)
    if not env.ok:
        return _skipped(f"the user environment is {env.status}")
    found = []
    if env.python_version and _version_key(env.python_version)[:2] < _version_key(tljh.MIN_USER_PYTHON):
        found.append(
            Finding(
                FAILED,
                f"the user environment runs Python {env.python_version}; "
                f"TLJH needs at least {tljh.MIN_USER_PYTHON}",
                "python",
                "rebuild the user environment with a newer Python (TLJH's upgrade stops here)",
            )
        )
    minimums = {"pip": tljh.MIN_USER_PIP}
    if env.kind == "conda":
        minimums |= {"conda": tljh.MIN_CONDA, "mamba": tljh.MIN_MAMBA}
    have = {canonical_name(d.name): d.version for d in env.distributions}
    have |= {canonical_name(r.name): r.version for r in env.conda_records}
    for project, minimum in minimums.items():
        version = have.get(project)
        if version is not None and _version_key(version) < _version_key(minimum):
            found.append(
                Finding(
                    WARNING,
                    f"{project} {version} in the user environment is older than TLJH's minimum {minimum}",
                    project,
                    "run `tljh upgrade`, which raises it",
                )
            )
    return found


def pip_over_conda(ctx: Context, name: str) -> list[Finding]:
    env = ctx.env(USER)
    if env.kind != "conda":
        return _skipped("the user environment is not a conda environment")
    by_name = {canonical_name(d.name): d for d in env.distributions}
    found = []
    for record in env.conda_records:
        dist = by_name.get(canonical_name(record.name))
        if dist is None or record.dist_info is None:
            continue
        if dist.installer != "conda" and os.path.basename(record.dist_info) != dist.metadata_dir:
            found.append(
                Finding(
                    WARNING,
                    f"{dist.name}: conda installed {record.version}, "
                    f"then pip replaced it with {dist.version}; "
                    "conda will fail to update or remove it (RemoveError, TLJH#918)",
                    dist.name,
                    f"sudo {env.interpreter.path} -m pip uninstall {dist.name}; "
                    f"then reinstall it with conda or tljh env install --target user {dist.name}",
                )
            )
    return found


#: transaction.SUBFOLDERS' folders whose contents doctor reports on (a test keeps them in step)
_JOURNALS, _SNAPSHOTS = "journal", "snapshots"


def _private_folder(path: str) -> bool:
    """A real folder, root's, that neither group nor others may write (StateDir's rule)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o022


def _never_changed(ctx: Context) -> bool:
    """tljh-admin never changed anything here, or left nothing to report: PREFIX/state a
    root-only folder, and either no folder of its own in it, or one whose entries are all
    root-only folders, with no journal and no snapshot. Then there is nothing to recover or
    distrust, and doctor need not import the change machinery to say so; anything else
    (a file, a journal, a folder others could write) takes the full look."""
    if not os.path.lexists(ctx.layout.state):
        return not os.path.lexists(ctx.layout.admin_state)
    if not _private_folder(ctx.layout.state):
        return False
    if not os.path.lexists(ctx.layout.admin_state):
        return True
    if not _private_folder(ctx.layout.admin_state):
        return False
    try:
        names = os.listdir(ctx.layout.admin_state)
    except OSError:
        return False
    if not all(_private_folder(os.path.join(ctx.layout.admin_state, n)) for n in names):
        return False
    for held in (_JOURNALS, _SNAPSHOTS):
        if held in names:
            try:
                if os.listdir(os.path.join(ctx.layout.admin_state, held)):
                    return False
            except OSError:
                return False
    return True


def unfinished_change(ctx: Context, name: str) -> list[Finding]:
    """Unfinished changes, and the state they would be recovered from: an unsafe state
    folder, untrusted journals set aside, and the disk space snapshots hold."""
    if _never_changed(ctx):
        return []  # nothing to recover or distrust, and no need to import the change machinery
    from tljh_admin.errors import PermissionDenied
    from tljh_admin.snapshot import SnapshotUnusable
    from tljh_admin.transaction import SNAPSHOTTING, StateDir, usable_snapshots

    state = StateDir.of(ctx.layout)
    found = [
        Finding(FAILED, f"tljh-admin's state folder is not safe: {why}", state.root,
                "make it root-owned and private (sudo chown root:root; sudo chmod 700); check who changed it")
        for why in state.problems(owner=0)
    ]  # fmt: skip
    if found:
        return found  # nothing in it is read while it is unsafe
    try:
        valid, bad = state.scan_journals()
    except PermissionDenied:
        return _skipped("tljh-admin's state is readable by root only; run with sudo")
    for journal in bad:
        found.append(
            Finding(FAILED, f"journal {journal.name} is not trusted ({journal.reason}); it is not acted on",
                    state.path("journal", journal.name),
                    "check the environments by hand (tljh env packages), then remove that file")
        )  # fmt: skip
    for quarantined in state.quarantined():
        found.append(
            Finding(WARNING, f"an untrusted journal was set aside: {quarantined}",
                    state.path("journal", quarantined),
                    "check the environments by hand (tljh env packages), then remove that file")
        )  # fmt: skip
    for journal in valid:
        envs = sorted(journal["envs"])
        if state.in_progress(journal):
            found.append(
                Finding(OK, f"change {journal['id']} is running right now", f"change {journal['id']}", "")
            )
            continue

        def restore(envs=envs) -> None:
            # the caller (tljh doctor --fix) holds every environment's lock
            from tljh_admin.transaction import clean_stale_scratch, recover_unfinished

            recover_unfinished(state, envs)
            clean_stale_scratch(state)  # what the killed command worked in, as a change cleans it

        started = f"change {journal['id']} ({journal['command']}, started {journal['started']})"
        if journal.get("phase") == SNAPSHOTTING:
            found.append(
                Finding(
                    WARNING,
                    f"{started} was killed while taking its snapshot, before anything changed",
                    f"change {journal['id']}",
                    "tljh doctor --fix (or any tljh change to that env) records it as abandoned",
                    Fix(f"record change {journal['id']} as abandoned", restore),
                )
            )
            continue
        try:
            usable_snapshots(state, journal)
        except SnapshotUnusable as error:  # no --fix: nothing to restore from
            found.append(Finding(FAILED, error.message, f"change {journal['id']}", error.hint))
            continue
        found.append(
            Finding(
                FAILED,
                f"{started} never finished: "
                f"the {' and '.join(envs)} environment{'s are' if len(envs) > 1 else ' is'} half changed",
                f"change {journal['id']}",
                "restore it (tljh doctor --fix, or any tljh env install/uninstall on that env, does)",
                Fix(f"restore the files from before change {journal['id']}", restore),
            )
        )
    try:
        unreadable = state.unreadable_history_lines()
    except PermissionDenied:
        unreadable = []  # said above: the journals could not be read either
    if unreadable:
        history = integrity.quoted(state.path("history.jsonl"))
        lines = integrity._examples([str(n) for n in unreadable])
        found.append(
            Finding(
                WARNING,
                f"{len(unreadable)} lines of tljh-admin's history are no change record (line {lines}: a"
                " write cut short by a crash, or an edit); env history and env rollback do not see them",
                state.path("history.jsonl"),
                f"look at those lines (sudo sed -n {unreadable[0]}p {history});"
                " the environments are as tljh env packages shows",
                None,
                CHANGES_FAIL,
            )
        )
    return found


def systemd_units(ctx: Context, name: str) -> list[Finding]:
    if not ctx.systemd_running:
        return _skipped("systemd is not running on this machine; cannot tell whether the hub runs")
    found = []
    for unit in tljh.SYSTEMD_UNITS:
        state = ctx.is_active(unit)
        if state != "active":
            found.append(
                Finding(
                    FAILED,
                    f"{unit}.service is {state or 'unknown'}, not active",
                    f"{unit}.service",
                    f"sudo systemctl restart {unit}; see sudo journalctl -u {unit}",
                )
            )
    return found


def disk_space(ctx: Context, name: str) -> list[Finding]:
    found = _refused_changes(ctx) + _snapshot_space(ctx)
    fs = os.statvfs(ctx.layout.prefix)  # what shutil.disk_usage reads, without importing shutil
    free = fs.f_bavail * fs.f_frsize
    if free >= tljh.DISK_WARNING_BYTES:
        return found
    status = FAILED if free < tljh.DISK_FAILED_BYTES else WARNING
    return [
        Finding(
            status,
            f"only {free / 1024**2:.0f} MiB free under {ctx.layout.prefix}: "
            "installs and upgrades may fail half way",
            ctx.layout.prefix,
            "free some space (sudo tljh env prune --keep 3, sudo conda clean --all, "
            "sudo journalctl --vacuum-size=200M)",
        ),
        *found,
    ]


def _refused_changes(ctx: Context) -> list[Finding]:
    """Where a change writes and even root cannot (a file system the kernel remounted
    read-only after disk errors, an immutable folder): every install, upgrade and rollback
    is refused there, with these same words (policy.write_refusal)."""
    if os.geteuid() != 0:
        return []  # another user cannot write root's environments: that is how it should be
    paths = []
    for name in PREFIX_ENVS:
        env = ctx.env(name)
        if env.status != MISSING:
            paths += ctx.layout.change_writes(env)  # its folders, then the state folder
    paths.append(ctx.layout.state if os.path.isdir(ctx.layout.state) else ctx.layout.prefix)
    found = []
    for path in dict.fromkeys(paths):
        if not os.path.exists(path) or os.access(path, os.W_OK | os.X_OK):
            continue
        from tljh_admin.policy import write_refusal  # only now: policy imports the installers

        refusal = write_refusal(path)
        if refusal is not None:
            found.append(
                Finding(FAILED, f"{refusal.message}: every install, upgrade and rollback there is refused",
                        path, refusal.hint)
            )  # fmt: skip
    return found


def _snapshot_space(ctx: Context) -> list[Finding]:
    """The space tljh-admin's rollback snapshots hold on their own (in PREFIX/state, which
    TLJH's docs tell admins to back up)."""
    if _never_changed(ctx):
        return []  # no snapshot
    from tljh_admin.errors import PermissionDenied
    from tljh_admin.transaction import StateDir

    state = StateDir.of(ctx.layout)
    if state.problems(owner=0):
        return []  # reported by unfinished-change; nothing in it is read
    try:
        usage = state.snapshot_usage()
    except PermissionDenied:
        return []
    if not usage:
        return []
    total = sum(usage.values())
    return [
        Finding(OK, f"{len(usage)} rollback snapshot(s) hold {total / 2**20:.1f} MiB on their own",
                state.path("snapshots"), "sudo tljh env prune --keep N frees them")
    ]  # fmt: skip


_CONDA_IMPACT = {"conda-files": SPAWNS_FAIL, "conda-history": CHANGES_FAIL, "conda-tools": CHANGES_FAIL}

REGISTRY: tuple[Check, ...] = (
    Check(
        "env-present",
        "environment present and runnable",
        ENVS,
        env_present,
        "every other check, and every spawn, needs the environments' interpreters",
        impact=BY_ENV,
    ),
    Check(
        "hub-venv-base",
        "hub runs the Python its venv was made with",
        (HUB,),
        runtime.hub_venv_base,
        "an OS upgrade moves python3 on under the hub venv (TLJH#613, #957, #1036): the hub cannot start",
        impact=HUB_FAILS,
    ),
    Check(
        "jupyterhub-present",
        "jupyterhub installed",
        PREFIX_ENVS,
        jupyterhub_present,
        "the hub runs jupyterhub; users' servers need jupyterhub-singleuser and a server",
        impact=BY_ENV,
    ),
    Check(
        "jupyterhub-versions",
        "hub and user jupyterhub match",
        (USER,),
        jupyterhub_versions,
        "spawns fail when the user env's jupyterhub differs from the hub's (TLJH#736, #894)",
        impact=SPAWNS_FAIL,
    ),
    Check(
        "misplaced-packages",
        "packages in the right environment",
        PREFIX_ENVS,
        misplaced_packages,
        "the hub never imports JupyterLab; users' servers never import authenticators",
        impact=COSMETIC,
    ),
    Check(
        "broken-requirements",
        "requirements satisfied (pip check)",
        PREFIX_ENVS,
        broken_requirements,
        "a missing or conflicting dependency fails at import time, often only when a user logs in",
        impact=BY_ENV,
    ),
    Check(
        "record-files",
        "installed files present (RECORD; --deep: hashes)",
        ENVS,
        integrity.record_files,
        "a package whose files were deleted imports half, or not at all",
        impact=BY_ENV,
        scans=True,
    ),
    Check(
        "pth-files",
        "every .pth file can be read at start",
        PREFIX_ENVS,
        runtime.pth_files,
        "Python reads every .pth file at each start: one that is not UTF-8 text stops it, a FIFO"
        " hangs it (the hub, or every user server)",
        impact=BY_ENV,
    ),
    Check(
        "script-shebangs",
        "console scripts start this environment's Python",
        PREFIX_ENVS,
        runtime.script_shebangs,
        "a prefix copied or moved by hand leaves scripts (jupyterhub-singleuser) pointing elsewhere",
        impact=BY_ENV,
    ),
    Check(
        "leftovers",
        "no leftovers of an interrupted pip",
        ENVS,
        leftovers,
        "pip warns about `~` folders forever and may trip over them; a metadata folder without a"
        " Name and Version is a package nothing can see",
        fixable=True,
        impact=COSMETIC,
    ),
    Check(
        "duplicate-dist-info",
        "one metadata folder per project",
        ENVS,
        duplicate_dist_info,
        "pip shows one of two versions, maybe not the one whose files are installed",
        fixable=True,
        impact=BY_ENV,
    ),
    Check(
        "users-can-read",
        "users' servers can read the user env",
        (USER,),
        safety.users_can_read,
        "servers run as each user: a file or folder only root can read fails their imports "
        "(a root umask of 077 or 027 at install time)",
        fixable=True,
        impact=SPAWNS_FAIL,
        scans=True,
    ),
    Check(
        "special-files",
        "no FIFO, socket or device in the environment",
        PREFIX_ENVS,
        safety.special_files,
        "no package installs one; pip, uv or conda opening it (as METADATA, RECORD, a .pth) waits"
        " forever, and a change stops at it",
        impact=CHANGES_FAIL,
        scans=True,
    ),
    Check(
        "world-writable",
        "nothing world-writable",
        PREFIX_ENVS,
        safety.world_writable_files,
        "the hub runs as root, and root runs the user env's pip and conda: a writable file in "
        "either is a root shell for any user",
        fixable=True,
        impact=ROOT_CODE,
        scans=True,
    ),
    Check(
        "stray-owners",
        "files owned by root (or the prefix's owner, when that runs tljh)",
        PREFIX_ENVS,
        safety.stray_owners,
        "a file another uid owns can be changed by that uid: code root runs (the hub; the user "
        "env's pip and conda)",
        fixable=True,
        impact=ROOT_CODE,
        scans=True,
    ),
    Check(
        "acl-writers",
        "no ACL lets others write",
        PREFIX_ENVS,
        safety.acl_writers,
        "a POSIX ACL can let a user write a root-owned file whose mode looks safe: code root runs"
        " (the hub; the user env's pip and conda)",
        fixable=True,
        impact=ROOT_CODE,
        scans=True,
    ),
    Check(
        "hub-sys-path",
        "sys.path holds only what root controls",
        PREFIX_ENVS,
        safety.sys_path_folders,
        ".pth files that put on sys.path a folder outside the env (even one not there yet) or one "
        "users can write: root imports from both envs",
        impact=ROOT_CODE,
    ),
    Check(
        "hub-config",
        "TLJH's config is root's",
        (HUB,),
        safety.hub_config,
        "the hub reads PREFIX/config/config.yaml and runs PREFIX/config/jupyterhub_config.d/*.py as"
        " root (tljh/jupyterhub_config.py): others' write access there is a root shell",
        impact=ROOT_CODE,
    ),
    Check(
        "stray-system-installs",
        "nothing pip-installed into the system python",
        (SYSTEM,),
        stray_system_installs,
        "`sudo pip install` lands here and not where users need it (TLJH#406, #824)",
        impact=COSMETIC,
    ),
    Check(
        "root-user-site",
        "nothing in root's user site",
        (HOST,),
        root_user_site,
        "packages in ~root/.local shadow the environments' own when root runs Python (TLJH#824)",
        impact=HUB_FAILS,
    ),
    Check(
        "minimum-versions",
        "TLJH's minimum versions",
        (USER,),
        minimum_versions,
        "TLJH needs Python >= 3.9, pip >= 23.1.2, conda >= 4.10, mamba >= 0.16.0 in the user env",
        impact=CHANGES_FAIL,
    ),
    Check(
        "pip-over-conda",
        "no pip installs over conda packages",
        (USER,),
        pip_over_conda,
        "conda cannot update or remove a package pip replaced (RemoveError, TLJH#918)",
        impact=CHANGES_FAIL,
    ),
    # h9's conda checks (conda_checks.py); conda-files is record-files for conda packages
    *(c._replace(impact=_CONDA_IMPACT.get(c.id, COSMETIC)) for c in CONDA_CHECKS),
    Check(
        "unfinished-change",
        "no unfinished tljh-admin change",
        (HOST,),
        unfinished_change,
        "a change killed half way leaves an environment neither before nor after",
        fixable=True,
        impact=SPAWNS_FAIL,
    ),
    Check(
        "systemd-units",
        "jupyterhub and traefik running",
        (HOST,),
        systemd_units,
        "TLJH runs the hub and its proxy as systemd units",
        impact=HUB_FAILS,
    ),
    Check(
        "disk-space",
        "free space under PREFIX, and root can write where changes do",
        (HOST,),
        disk_space,
        "installs and upgrades that run out of space stop half way; where root cannot write"
        " (a read-only file system, an immutable folder) every change is refused",
        impact=CHANGES_FAIL,
    ),
    Check(
        "hub-imports",
        "the hub's Python imports jupyterhub (--deep)",
        (HUB,),
        runtime.hub_imports,
        "what the hub's systemd unit does first: `python3 -m jupyterhub`",
        impact=HUB_FAILS,
        deep=True,
    ),
    Check(
        "singleuser-runs",
        "jupyterhub-singleuser starts as nobody (--deep)",
        (USER,),
        runtime.singleuser_runs,
        "what every spawn runs, as an unprivileged user like the users themselves",
        impact=SPAWNS_FAIL,
        deep=True,
    ),
)

BY_ID = {check.id: check for check in REGISTRY}
__all__ = ["BY_ID", "OK", "REGISTRY"]
