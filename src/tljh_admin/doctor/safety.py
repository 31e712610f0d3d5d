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

import contextlib
import os
import stat

from tljh_admin import permissions
from tljh_admin.doctor.context import Context
from tljh_admin.doctor.integrity import _examples, quoted
from tljh_admin.doctor.model import (
    CHANGES_FAIL,
    COSMETIC,
    FAILED,
    ROOT_CODE,
    SKIPPED,
    SKIPPED_NEEDS_ROOT,
    SPAWNS_FAIL,
    WARNING,
    Finding,
    Fix,
)
from tljh_admin.layout import HUB, USER

#: how many paths one check lists one by one before it sums the rest up in one finding
MAX_PATH_FINDINGS = 50

_FIX_READABLE = "sudo tljh doctor --fix users-can-read (adds a+r, and a+x on folders and executables)"

#: why others' write access to each environment is root's problem
_ROOT_RUNS = {
    HUB: "the hub runs as root",
    USER: "root runs the user env's pip and conda for every install",
}


def _unreadable_as_this_user(ctx: Context, name: str, users_view: bool = False) -> list[Finding]:
    errors = ctx.scan(name).errors
    if not errors or os.geteuid() == 0:
        return []
    if users_view:
        return [_users_cannot_either(f"{len(errors)} folders", f" ({errors[0]})", ctx.env(name).root)]
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
    try:
        return _users_can_read(ctx, name)
    except PermissionError as error:
        if os.geteuid() == 0:
            raise
        return [_users_cannot_either("what", "", error.filename or ctx.layout.env_root(name))]


def _users_cannot_either(what: str, detail: str, subject: str) -> Finding:
    """What a user who is not root cannot read, users' servers cannot either: for
    users-can-read, that is the finding itself, not a check to skip."""
    return Finding(
        FAILED,
        f"{what} uid {os.geteuid()} cannot read or enter, nor can users' servers{detail}",
        subject,
        _FIX_READABLE,
        None,
        SPAWNS_FAIL,
    )


def closed_to_users(ctx: Context, name: str) -> list[permissions.ScannedEntry]:
    """What of the env users' servers cannot read or enter, but for an installer's config
    an admin kept private (users' servers never read it)."""
    root = ctx.env(name).root
    return [
        e
        for e in ctx.scan(name).entries
        if permissions.users_cannot_use(e.mode, e.is_dir) and not permissions.private_config(e.path, root)
    ]


def _users_can_read(ctx: Context, name: str) -> list[Finding]:
    env = ctx.env(name)
    if not env.root or not os.path.isdir(env.root):
        return [Finding(SKIPPED, f"the {name} environment is missing", env.root, "")]
    entries = closed_to_users(ctx, name)
    try:  # users reach the env through PREFIX itself
        st = os.stat(ctx.layout.prefix)
        if permissions.users_cannot_use(stat.S_IMODE(st.st_mode), True):
            entries.insert(0, permissions.scanned_entry(ctx.layout.prefix, st, True))
    except OSError:
        pass
    found = _unreadable_as_this_user(ctx, name, users_view=True)
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
            _FIX_READABLE,
            Fix(
                f"add the read/enter bits users need to {len(entries)} paths in {env.root}",
                lambda: _apply_all(lambda entry: permissions.make_usable(entry, env.root), entries),
            ),
            SPAWNS_FAIL,
        )
    )
    return found


# -- nothing others can change -------------------------------------------------------------


def _unsafe_around(ctx: Context, name: str, world_writable: bool) -> list[Finding]:
    """Findings for the folders above an environment, and the way to its interpreter, that
    others could use to swap it for their own (permissions.unsafe_around): the world-writable
    ones for world-writable, the ones another uid owns or another group may write for
    stray-owners."""
    env = ctx.env(name)
    if not env.root or not os.path.isdir(env.root):
        return []
    found = []
    for path, why in permissions.unsafe_around(env.root, env.interpreter.path, ctx.code_owner):
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if permissions.world_writable(st.st_mode) != world_writable:
            continue
        found.append(
            Finding(
                FAILED,
                f"outside the {name} environment, on the way to it or its python: {why}; whoever can"
                f" change it can swap in their own, and {_ROOT_RUNS[name]}: a root-code-execution risk;"
                " tljh-admin changes nothing here until it is fixed",
                path,
                permissions.remedy(st, ctx.code_owner, path),
                None,
                ROOT_CODE,
            )
        )
    return found


def world_writable_files(ctx: Context, name: str) -> list[Finding]:
    entries = [e for e in ctx.scan(name).entries if permissions.world_writable(e.mode)]

    def make(entry) -> Finding:
        kind = "folder" if entry.is_dir else "file"
        return Finding(
            FAILED,
            f"world-writable {kind}: {_ROOT_RUNS[name]}, so any user who writes here runs code as root;"
            " tljh-admin changes nothing here until it is fixed",
            entry.path,
            f"sudo chmod o-w {quoted(entry.path)} (tljh doctor --fix does; `tljh doctor --deep` then"
            " shows whether installed files were changed meanwhile)",
            Fix(f"chmod o-w {entry.path}", lambda: permissions.drop_world_write(entry)),
            ROOT_CODE,
        )

    return (
        _unreadable_as_this_user(ctx, name) + _unsafe_around(ctx, name, True) + _path_findings(entries, make)
    )


def special_files(ctx: Context, name: str) -> list[Finding]:
    """FIFOs, sockets and devices in an env: no package installs one; pip, uv or conda
    opening one (as METADATA, RECORD, a .pth) waits forever, and a change refuses to start
    (its snapshot stops at it)."""
    entries = [e for e in ctx.scan(name).entries if e.special]

    def make(entry) -> Finding:
        return Finding(
            FAILED,
            "a FIFO, socket or device, which no package installs: an installer opening it waits forever,"
            " and tljh-admin changes nothing in this environment until it is gone",
            entry.path,
            f"sudo mv {quoted(entry.path)} /root/",
            None,
            CHANGES_FAIL,
        )

    return _path_findings(entries, make)


def stray_owners(ctx: Context, name: str) -> list[Finding]:
    uid, gid = ctx.code_owner
    entries = [e for e in ctx.scan(name).entries if (e.uid, e.gid) != (uid, gid)]

    def make(entry) -> Finding:
        # another uid owns it, or another group may write it: they can change it
        can_change = entry.uid != uid or bool(entry.mode & stat.S_IWGRP)
        owned = f"owned by {entry.uid}:{entry.gid}, not by {uid}:{gid} (who owns the code root runs)"
        if can_change:
            # no automatic chown: it would make root's whatever that user put there
            return Finding(
                FAILED,
                f"{owned}: that uid or group can change it, and {_ROOT_RUNS[name]}: a root-code-execution"
                " risk; tljh-admin changes nothing here until it is fixed",
                entry.path,
                f"check what it is: remove it if nobody installed it, else sudo chown {uid}:{gid}"
                f" {quoted(entry.path)}",
                None,
                ROOT_CODE,
            )
        return Finding(
            WARNING,
            f"{owned}: read-only for that group, but not how TLJH leaves files",
            entry.path,
            f"sudo chgrp {gid} {quoted(entry.path)} (tljh doctor --fix does)",
            Fix(
                f"chgrp {gid} {entry.path}",
                lambda: permissions.chown_scanned(entry, uid, gid, ctx.env(name).root),
            ),
            COSMETIC,
        )

    return _unsafe_around(ctx, name, False) + _path_findings(entries, make)


def acl_writers(ctx: Context, name: str) -> list[Finding]:
    """POSIX ACLs that let others write (`setfacl -m u:ubuntu:rwX`, to spare someone sudo):
    invisible in the owner and the mode, except as the group bits (the ACL's mask)."""
    owner = ctx.code_owner
    env = ctx.env(name)
    candidates = [e for e in ctx.scan(name).entries if e.mode & stat.S_IWGRP and (e.uid, e.gid) == owner]
    flagged = [(e, w) for e in candidates for w in [permissions.acl_writers(e.path, owner, e.is_dir)] if w]
    seen = {e.path for e in candidates}
    for folder, writers in (
        permissions.default_acl_writers(env.root, env.site_dirs, owner) if env.root else ()
    ):
        if folder not in seen:  # a default ACL leaves the folder's own mode alone: no scan picks it
            with contextlib.suppress(OSError):
                flagged.append((permissions.scanned_entry(folder, os.lstat(folder), True), writers))

    def make(item) -> Finding:
        entry, writers = item
        return Finding(
            FAILED,
            f"{permissions.acl_why(writers)}: {_ROOT_RUNS[name]}, so they can run code as"
            " root; tljh-admin changes nothing here until it is fixed",
            entry.path,
            f"sudo setfacl -b {quoted(entry.path)} (tljh doctor --fix does)",
            Fix(f"remove the ACLs of {entry.path}", lambda: permissions.drop_acls_scanned(entry)),
            ROOT_CODE,
        )

    return _path_findings(flagged, make)


def sys_path_folders(ctx: Context, name: str) -> list[Finding]:
    """`.pth` files in an environment's site folders must not put on sys.path a folder
    outside it that others could create, change or swap (root imports from it: the hub
    always, the user env whenever root installs a package), nor one inside it that others
    can write."""
    env = ctx.env(name)
    if not env.site_dirs:
        return [Finding(SKIPPED, f"the {name} environment has no site folder", env.root, "")]
    found = []
    for pth, folder, outside, why in permissions.sys_path_entries(env.root, env.site_dirs, ctx.code_owner):
        if outside:
            where = f"outside the {name} environment" + (f": {why}" if why else "")
        elif why:
            where = f"inside the {name} environment, and {why}"
        else:
            continue
        found.append(
            Finding(
                FAILED,
                f"{os.path.basename(pth)} puts {folder} on sys.path ({where}); {_ROOT_RUNS[name]} and"
                " imports from it: whoever can write there can run code as root",
                pth,
                f"sudo rm {quoted(pth)} (an editable or --user install made it? reinstall that package"
                " normally)",
                None,
                ROOT_CODE,
            )
        )
    return found


def hub_config(ctx: Context, name: str) -> list[Finding]:
    """TLJH's config folder: the hub runs its jupyterhub_config.d/*.py as root, and reads
    config.yaml (authenticator, admins). Nothing there, nor what a symlink there leads to,
    may be changeable by others. The folders above it are world-writable's and
    stray-owners' (PREFIX)."""
    folder = ctx.layout.config
    if not os.path.lexists(folder):
        return []
    owner = ctx.code_owner
    found: list[Finding] = []

    def judge(path: str) -> None:
        try:
            st = os.lstat(path)
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode):  # the hub follows it: judge where it leads
            real = os.path.realpath(path)
            why = permissions.others_reach(real, owner)
            why = why and f"it leads to {real}, and {why}"
            hint = f"sudo rm {quoted(path)} (as root, copy what it should hold into {folder} instead)"
        else:
            why = permissions.other_writer(st, owner, path)
            hint = permissions.remedy(st, owner, path)
        if why:
            found.append(
                Finding(
                    FAILED,
                    f"TLJH's config: {why}; the hub reads config.yaml and runs jupyterhub_config.d/*.py"
                    " as root: whoever can change it can run code as root",
                    path,
                    hint,
                    None,
                    ROOT_CODE,
                )
            )

    unreadable: list[OSError] = []
    judge(folder)
    for top, dirs, files in os.walk(folder, onerror=unreadable.append):  # never into a symlinked folder
        for entry in (*dirs, *files):
            if len(found) >= MAX_PATH_FINDINGS:
                return found
            judge(os.path.join(top, entry))
    if unreadable and os.geteuid() != 0:  # TLJH makes config/ 0700: only root sees into it
        found.append(Finding(SKIPPED, f"{SKIPPED_NEEDS_ROOT} ({unreadable[0]})", folder, "sudo tljh doctor"))
    return found
