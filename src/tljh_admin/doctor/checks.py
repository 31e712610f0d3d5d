"""Every known way a TLJH server's environments break, one check each.

A check is a plain function `(context, env) -> [Finding]`; REGISTRY lists them. Fixes are
offered only where they are safe and exact (removing pip's leftovers, chmod o-w, chown to
the prefix's owner, restoring an interrupted change).
"""

from __future__ import annotations

import os
import shutil
import stat

from tljh_admin import tljh
from tljh_admin.doctor.context import Context, world_writable
from tljh_admin.doctor.model import FAILED, HOST, OK, SKIPPED, WARNING, Check, Finding, Fix
from tljh_admin.envs.model import BROKEN, DUPLICATE, LEFTOVER, MISSING
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.layout import HUB, SYSTEM, USER
from tljh_admin.policy import USER_SERVER_PACKAGES

ENVS = (HUB, USER, SYSTEM)
PREFIX_ENVS = (HUB, USER)
#: how many paths one check lists before summing up the rest
MAX_PATH_FINDINGS = 50


def _skipped(why: str, subject: str = "") -> list[Finding]:
    return [Finding(SKIPPED, why, subject, "")]


def _version_key(text: str) -> tuple[int, ...]:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text).release
    except InvalidVersion:
        return ()


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
        hint = (
            "the venv's Python is gone (an OS upgrade?): re-run TLJH's installer to rebuild the hub venv"
            if env.kind == "venv"
            else f"reinstall the {name} environment's Python"
        )
        return [
            Finding(FAILED, f"the {name} environment cannot run: {env.reason}", env.interpreter.path, hint)
        ]
    return []


def hub_venv_base(ctx: Context, name: str) -> list[Finding]:
    hub = ctx.env(HUB)
    if hub.kind != "venv" or not hub.venv_base:
        return _skipped("the hub is not a venv", hub.root)
    home, version = hub.venv_base
    short = ".".join(version.split(".")[:2])
    candidates = [os.path.join(home, f"python{short}"), os.path.join(home, "python3")]
    base = next((c for c in candidates if os.path.isfile(c) and os.access(c, os.X_OK)), None)
    if base is None:
        return [
            Finding(
                FAILED,
                f"the hub venv was made by Python {version} in {home}, which is no longer there",
                os.path.join(hub.root, "pyvenv.cfg"),
                "an OS upgrade removed it: re-run TLJH's installer to rebuild the hub venv",
            )
        ]
    system = ctx.env(SYSTEM)
    system_short = ".".join((system.python_version or "").split(".")[:2])
    if system.ok and system_short and system_short != short:
        return [
            Finding(
                WARNING,
                f"the hub venv runs Python {short}, the system python3 is {system_short}",
                os.path.join(hub.root, "pyvenv.cfg"),
                "rebuild the hub venv with the system python3 before the old one is removed",
            )
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


def _hub_only_packages() -> frozenset[str]:
    names = set(tljh.requirement_names(tljh.HUB_REQUIREMENTS)) - {"jupyterhub", "pycurl"}
    return frozenset(names | {"dockerspawner", "jupyterhub-dummyauthenticator", "the-littlest-jupyterhub"})


def misplaced_packages(ctx: Context, name: str) -> list[Finding]:
    env = ctx.env(name)
    names = {canonical_name(d.name): d for d in env.distributions}
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
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)

    return remove


def leftovers(ctx: Context, name: str) -> list[Finding]:
    found = []
    for problem in ctx.env(name).problems:
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


def _path_findings(entries, make) -> list[Finding]:
    found = [make(e) for e in entries[:MAX_PATH_FINDINGS]]
    if len(entries) > MAX_PATH_FINDINGS:
        rest = entries[MAX_PATH_FINDINGS:]
        first = make(rest[0])
        found.append(
            Finding(
                first.status,
                f"and {len(rest)} more like it",
                f"{len(rest)} more paths",
                first.hint,
                Fix(f"the same for {len(rest)} more paths", lambda: [make(e).fix.apply() for e in rest])
                if first.fix
                else None,
            )
        )
    return found


def world_writable_files(ctx: Context, name: str) -> list[Finding]:
    entries = [e for e in ctx.suspicious_files(name) if world_writable(e)]

    def make(entry) -> Finding:
        kind = "folder" if entry.is_dir else "file"

        def chmod(entry=entry) -> None:
            os.chmod(entry.path, stat.S_IMODE(os.lstat(entry.path).st_mode) & ~stat.S_IWOTH)

        return Finding(
            FAILED,
            f"world-writable {kind}: the hub runs as root, so anyone who can write here can run code as root"
            if name == HUB
            else f"world-writable {kind}: any user can change what every other user's server imports",
            entry.path,
            f"sudo chmod o-w '{entry.path}' (tljh doctor --fix does)",
            Fix(f"chmod o-w {entry.path}", chmod),
        )

    return _path_findings(entries, make)


def stray_owners(ctx: Context, name: str) -> list[Finding]:
    uid, gid = ctx.prefix_owner
    entries = [e for e in ctx.suspicious_files(name) if (e.uid, e.gid) != (uid, gid)]

    def make(entry) -> Finding:
        return Finding(
            WARNING,
            f"owned by {entry.uid}:{entry.gid}, not by the prefix's owner {uid}:{gid}",
            entry.path,
            f"sudo chown {uid}:{gid} '{entry.path}' (tljh doctor --fix does)",
            Fix(f"chown {uid}:{gid} {entry.path}", lambda p=entry.path: os.lchown(p, uid, gid)),
        )

    return _path_findings(entries, make)


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


def unfinished_change(ctx: Context, name: str) -> list[Finding]:
    """Unfinished changes, and the state they would be recovered from: an unsafe state
    folder, untrusted journals set aside, and the disk space snapshots hold."""
    from tljh_admin.errors import PermissionDenied
    from tljh_admin.transaction import StateDir

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
        usage = state.snapshot_usage()
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
        if journal.get("reserved"):
            continue
        envs = sorted(journal["envs"])
        if state.in_progress(journal):
            found.append(
                Finding(OK, f"change {journal['id']} is running right now", f"change {journal['id']}", "")
            )
            continue

        def restore(envs=envs) -> None:
            # the caller (tljh doctor --fix) holds every environment's lock
            from tljh_admin.transaction import recover_unfinished

            recover_unfinished(state, envs)

        found.append(
            Finding(
                FAILED,
                f"change {journal['id']} ({journal['command']}, started {journal['started']}) "
                "never finished: "
                f"the {' and '.join(envs)} environment{'s are' if len(envs) > 1 else ' is'} half changed",
                f"change {journal['id']}",
                "restore it (tljh doctor --fix, or any tljh env install/uninstall on that env, does)",
                Fix(f"restore the files from before change {journal['id']}", restore),
            )
        )
    if usage:
        total = sum(usage.values())
        found.append(
            Finding(OK, f"{len(usage)} snapshot(s) for rollback hold {total / 2**20:.1f} MiB on their own",
                    state.path("snapshots"), "tljh env prune --keep N frees them")
        )  # fmt: skip
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
    free = shutil.disk_usage(ctx.layout.prefix).free
    if free >= tljh.DISK_WARNING_BYTES:
        return []
    status = FAILED if free < tljh.DISK_FAILED_BYTES else WARNING
    return [
        Finding(
            status,
            f"only {free / 1024**2:.0f} MiB free under {ctx.layout.prefix}: "
            "installs and upgrades may fail half way",
            ctx.layout.prefix,
            "free some space (sudo conda clean --all, sudo journalctl --vacuum-size=200M)",
        )
    ]


REGISTRY: tuple[Check, ...] = (
    Check(
        "env-present",
        "environment present and runnable",
        ENVS,
        env_present,
        "every other check, and every spawn, needs the environments' interpreters",
    ),
    Check(
        "hub-venv-base",
        "hub venv's base Python",
        (HUB,),
        hub_venv_base,
        "an OS upgrade removes the Python the hub venv was made from (TLJH#613, #957, #1036)",
    ),
    Check(
        "jupyterhub-present",
        "jupyterhub installed",
        PREFIX_ENVS,
        jupyterhub_present,
        "the hub runs jupyterhub; users' servers need jupyterhub-singleuser and a server",
    ),
    Check(
        "jupyterhub-versions",
        "hub and user jupyterhub match",
        (USER,),
        jupyterhub_versions,
        "spawns fail when the user env's jupyterhub differs from the hub's (TLJH#736, #894)",
    ),
    Check(
        "misplaced-packages",
        "packages in the right environment",
        PREFIX_ENVS,
        misplaced_packages,
        "the hub never imports JupyterLab; users' servers never import authenticators",
    ),
    Check(
        "broken-requirements",
        "requirements satisfied (pip check)",
        PREFIX_ENVS,
        broken_requirements,
        "a missing or conflicting dependency fails at import time, often only when a user logs in",
    ),
    Check(
        "leftovers",
        "no leftovers of an interrupted pip",
        ENVS,
        leftovers,
        "pip warns about `~` folders forever and may trip over them",
        fixable=True,
    ),
    Check(
        "duplicate-dist-info",
        "one metadata folder per project",
        ENVS,
        duplicate_dist_info,
        "pip shows one of two versions, maybe not the one whose files are installed",
        fixable=True,
    ),
    Check(
        "world-writable",
        "nothing world-writable",
        PREFIX_ENVS,
        world_writable_files,
        "the hub runs as root: a writable file there is a root shell for any user",
        fixable=True,
    ),
    Check(
        "stray-owners",
        "files owned by the prefix's owner",
        PREFIX_ENVS,
        stray_owners,
        "files owned by a user can be changed by that user, under root's hub",
        fixable=True,
    ),
    Check(
        "stray-system-installs",
        "nothing pip-installed into the system python",
        (SYSTEM,),
        stray_system_installs,
        "`sudo pip install` lands here and not where users need it (TLJH#406, #824)",
    ),
    Check(
        "root-user-site",
        "nothing in root's user site",
        (HOST,),
        root_user_site,
        "packages in ~root/.local shadow the environments' own when root runs Python (TLJH#824)",
    ),
    Check(
        "minimum-versions",
        "TLJH's minimum versions",
        (USER,),
        minimum_versions,
        "TLJH needs Python >= 3.9, pip >= 23.1.2, conda >= 4.10, mamba >= 0.16.0 in the user env",
    ),
    Check(
        "pip-over-conda",
        "no pip installs over conda packages",
        (USER,),
        pip_over_conda,
        "conda cannot update or remove a package pip replaced (RemoveError, TLJH#918)",
    ),
    Check(
        "unfinished-change",
        "no unfinished tljh-admin change",
        (HOST,),
        unfinished_change,
        "a change killed half way leaves an environment neither before nor after",
        fixable=True,
    ),
    Check(
        "systemd-units",
        "jupyterhub and traefik running",
        (HOST,),
        systemd_units,
        "TLJH runs the hub and its proxy as systemd units",
    ),
    Check(
        "disk-space",
        "free disk space under PREFIX",
        (HOST,),
        disk_space,
        "installs and upgrades that run out of space stop half way",
    ),
)

BY_ID = {check.id: check for check in REGISTRY}
__all__ = ["BY_ID", "OK", "REGISTRY"]
