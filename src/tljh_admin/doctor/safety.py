"""Who can read and who can change the environments' files.

- users' servers run as each user's own uid: they must be able to read every file of the
  user env and enter every folder (a root umask of 077 or 027 at install time breaks this);
- the hub runs as root: anything another uid can change there (a world-writable file, a
  file another uid owns, a folder a `.pth` file puts on sys.path) lets that user run code
  as root.

Findings come from the environment scan (context.scan); fixes act on the scanned objects
(tljh_admin.permissions), never on a path that may have become a symlink since.
"""

from __future__ import annotations

import os
import stat

from tljh_admin import permissions
from tljh_admin.doctor.context import Context
from tljh_admin.doctor.integrity import _examples, quoted
from tljh_admin.doctor.model import (
    COSMETIC,
    FAILED,
    ROOT_CODE,
    SKIPPED,
    SKIPPED_NEEDS_ROOT,
    SPAWNS_FAIL,
    USER_CODE,
    WARNING,
    Finding,
    Fix,
)
from tljh_admin.layout import HUB

#: how many paths one check lists one by one before it sums the rest up in one finding
MAX_PATH_FINDINGS = 50


def _unreadable_as_this_user(ctx: Context, name: str) -> list[Finding]:
    errors = ctx.scan(name).errors
    if not errors or os.geteuid() == 0:
        return []
    return [
        Finding(
            SKIPPED,
            f"{SKIPPED_NEEDS_ROOT}: {len(errors)} folders could not be read as uid {os.geteuid()} "
            f"({errors[0]})",
            ctx.env(name).root,
            f"sudo tljh doctor --target {name}",
        )
    ]


def _apply_all(action, entries) -> None:
    """Apply `action` to every entry; raise the first failure after trying them all."""
    failures = []
    for entry in entries:
        try:
            action(entry)
        except OSError as error:
            failures.append(error)
    if failures:
        first = failures[0]
        raise OSError(
            first.errno, f"{len(failures)} of {len(entries)} not changed: {first.strerror}", first.filename
        )


def _path_findings(entries, make) -> list[Finding]:
    found = [make(e) for e in entries[:MAX_PATH_FINDINGS]]
    if len(entries) > MAX_PATH_FINDINGS:
        rest = entries[MAX_PATH_FINDINGS:]
        first = make(rest[0])
        found.append(
            first._replace(
                message=f"and {len(rest)} more like it",
                subject=f"{len(rest)} more paths",
                fix=Fix(f"the same for {len(rest)} more paths", lambda: [make(e).fix.apply() for e in rest])
                if first.fix
                else None,
            )
        )
    return found


# -- readable by users ---------------------------------------------------------------------


def users_can_read(ctx: Context, name: str) -> list[Finding]:
    env = ctx.env(name)
    if not env.root or not os.path.isdir(env.root):
        return [Finding(SKIPPED, f"the {name} environment is missing", env.root, "")]
    entries = [e for e in ctx.scan(name).entries if permissions.users_cannot_use(e.mode, e.is_dir)]
    try:  # users reach the env through PREFIX itself
        st = os.stat(ctx.layout.prefix)
        if permissions.users_cannot_use(stat.S_IMODE(st.st_mode), True):
            entries.insert(0, permissions.scanned_entry(ctx.layout.prefix, st, True))
    except OSError:
        pass
    found = _unreadable_as_this_user(ctx, name)
    if not entries:
        return found
    folders = sum(e.is_dir for e in entries)
    root = env.root.rstrip("/") + "/"
    shown = [e.path[len(root) :] if e.path.startswith(root) else e.path for e in entries]
    entries = sorted(entries, key=lambda e: -len(e.path))
    found.append(
        Finding(
            FAILED,
            f"{len(entries) - folders} files and {folders} folders users' servers cannot read or enter "
            f"({_examples(shown)}): a root umask of 077 or 027 at install time does this",
            env.root,
            "sudo tljh doctor --fix users-can-read (adds a+r, and a+x on folders and executables)",
            Fix(
                f"add the read/enter bits users need to {len(entries)} paths in {env.root}",
                lambda: _apply_all(permissions.make_usable, entries),
            ),
            SPAWNS_FAIL,
        )
    )
    return found


# -- nothing others can change -------------------------------------------------------------


def world_writable_files(ctx: Context, name: str) -> list[Finding]:
    entries = [e for e in ctx.scan(name).entries if permissions.world_writable(e.mode)]

    def make(entry) -> Finding:
        kind = "folder" if entry.is_dir else "file"
        return Finding(
            FAILED,
            f"world-writable {kind}: the hub runs as root, so any user who writes here runs code as root"
            if name == HUB
            else f"world-writable {kind}: any user can change what every other user's server imports",
            entry.path,
            f"sudo chmod o-w {quoted(entry.path)} (tljh doctor --fix does)",
            Fix(f"chmod o-w {entry.path}", lambda: permissions.drop_world_write(entry)),
            ROOT_CODE if name == HUB else USER_CODE,
        )

    return _unreadable_as_this_user(ctx, name) + _path_findings(entries, make)


def stray_owners(ctx: Context, name: str) -> list[Finding]:
    uid, gid = ctx.prefix_owner
    entries = [e for e in ctx.scan(name).entries if (e.uid, e.gid) != (uid, gid)]

    def make(entry) -> Finding:
        # another uid owns it, or another group may write it: they can change it
        can_change = entry.uid != uid or bool(entry.mode & stat.S_IWGRP)
        if name == HUB and can_change:
            status, impact = FAILED, ROOT_CODE
            why = "its owner can change code the hub runs as root: a root-code-execution risk"
        elif can_change:
            status, impact = WARNING, USER_CODE
            why = "its owner can change what every user's server imports"
        else:
            status, impact, why = WARNING, COSMETIC, "read-only for that group, but not how TLJH leaves files"
        return Finding(
            status,
            f"owned by {entry.uid}:{entry.gid}, not by the prefix's owner {uid}:{gid}: {why}",
            entry.path,
            f"sudo chown {uid}:{gid} {quoted(entry.path)} (tljh doctor --fix does)",
            Fix(f"chown {uid}:{gid} {entry.path}", lambda: permissions.chown_scanned(entry, uid, gid)),
            impact,
        )

    return _path_findings(entries, make)


def _pth_folders(site: str):
    """(pth file, folder) for each folder a .pth file in `site` puts on sys.path, the way
    site.addpackage reads it: `import` lines are run, not added; comments and folders
    that do not exist are skipped."""
    try:
        names = sorted(n for n in os.listdir(site) if n.endswith(".pth"))
    except OSError:
        return
    for file_name in names:
        pth = os.path.join(site, file_name)
        try:
            with open(pth, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            if not line.strip() or line.startswith("#") or line.startswith(("import ", "import\t")):
                continue
            folder = os.path.normpath(os.path.join(site, line.rstrip()))
            if os.path.exists(folder):
                yield pth, folder


def _writable_by_others(path: str, owner_uid: int) -> str | None:
    """Who other than root (or the prefix's owner) can write `path`, or None."""
    st = os.stat(path)
    if st.st_uid not in (0, owner_uid):
        return f"uid {st.st_uid} owns it"
    if st.st_mode & stat.S_IWOTH:
        return "it is world-writable"
    if st.st_mode & stat.S_IWGRP and st.st_gid != 0:
        return f"group {st.st_gid} may write it"
    return None


def hub_sys_path(ctx: Context, name: str) -> list[Finding]:
    """`.pth` files in the hub's site folders must not put on sys.path a folder outside the
    hub, or one that a non-root user can write: the hub imports from it as root."""
    env = ctx.env(HUB)
    if not env.site_dirs:
        return [Finding(SKIPPED, "the hub environment has no site folder", env.root, "")]
    root = os.path.realpath(env.root) + "/"
    owner_uid = ctx.prefix_owner[0]
    found = []
    for site in env.site_dirs:
        for pth, folder in _pth_folders(site):
            real = os.path.realpath(folder)
            outside = not (real + "/").startswith(root)
            try:
                writer = _writable_by_others(real, owner_uid)
            except OSError:
                continue
            if not outside and writer is None:
                continue
            where = "outside the hub environment" if outside else "inside the hub"
            if writer:
                where += f", and {writer}"
            found.append(
                Finding(
                    FAILED,
                    f"{os.path.basename(pth)} puts {folder} on the hub's sys.path ({where}); the hub "
                    "imports from it as root: whoever can write there can run code as root",
                    pth,
                    f"sudo rm {quoted(pth)} (an editable or --user install made it? reinstall that package "
                    "normally)",
                    None,
                    ROOT_CODE,
                )
            )
            if writer:
                found.append(
                    Finding(
                        FAILED,
                        f"on the hub's sys.path (through {os.path.basename(pth)}) and {writer}: "
                        "a root-code-execution risk",
                        folder,
                        f"sudo chown -R root:root {quoted(folder)} && sudo chmod -R go-w {quoted(folder)}",
                        None,
                        ROOT_CODE,
                    )
                )
    return found
