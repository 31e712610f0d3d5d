"""Scanning an environment's files for modes and owners, and changing them safely.

Shared by `tljh doctor` (which reports and, with --fix, repairs) and by anything that
normalises permissions after a change. Two rules from DESIGN.md 3b:
- a fix acts on what was scanned: the path is opened with O_NOFOLLOW and the open file is
  checked to be the very inode the scan saw before `fchmod`/`fchown` touch it, so a path
  swapped for a symlink (or another file) since the scan is refused, never followed;
- users' servers run as their own uid, never in root's group: what they need is the
  "other" bits (read for files, read+enter for folders, execute for executables).
"""

from __future__ import annotations

import errno
import os
import stat
from collections import namedtuple

from tljh_admin.files import open_text
from tljh_admin.layout import HUB, USER, system_program

# find's -printf: mode, uid, gid, type (d/f/...), device, inode, path. It follows the
# entry's path record (%P, relative: it never starts with "/"), and starts with "/": a
# name anyone plants in a walked folder can never pass for one
_DETAILS_FORMAT = "/%m %U %G %y %D %i %p\\0"


class ScannedEntry(namedtuple("ScannedEntry", "path mode uid gid is_dir dev ino special", defaults=(False,))):
    """One file or folder as a scan saw it (never a symlink). mode holds the permission
    bits; dev and ino identify the object, so that a fix can tell it is still the same;
    special: a FIFO, socket or device (no package installs one)."""

    __slots__ = ()


class Scan(namedtuple("Scan", "trees entries errors")):
    """trees: {folder: every path under it, relative to it} for the folders walked (an
    environment's root, and apart its site folders: RECORD paths are relative to a site
    folder, conda's to the root, so both look up as written); entries: the ScannedEntry of
    each path that matched the scan's question; errors: folders the scan could not read (as
    this user)."""

    __slots__ = ()

    def unseen(self, folder: str, names) -> set[str]:
        """Of `names` (paths relative to `folder`), those the scan did not see: one set
        difference, then a look into the trees nested in `folder`, and into the trees
        around it for `../` paths (RECORD writes scripts and data files
        `../../../bin/x` from lib/pythonX.Y/site-packages), for what is left."""
        folder = folder.rstrip("/")
        left = set(names).difference(self.trees.get(folder, ()))
        for other, tree in self.trees.items():
            if not left:
                break
            if other.startswith(folder + "/"):
                cut = other[len(folder) + 1 :] + "/"
                left = {n for n in left if not (n.startswith(cut) and n[len(cut) :] in tree)}
            elif folder.startswith(other + "/"):
                below = folder[len(other) + 1 :] + "/"  # `folder` seen from `other`
                up = "../" * below.count("/")
                cut = len(up)
                # inline, not a call per name: a hub's data files are thousands of `../` rows
                left = {n for n in left if not (n[cut:] in tree if n.startswith(up) else below + n in tree)}
        return left

    def saw(self, path: str) -> bool:
        """Whether the scan saw this absolute path (in the deepest tree that holds it)."""
        best = ""
        for folder in self.trees:
            if len(folder) > len(best) and (path == folder or path.startswith(folder + "/")):
                best = folder
        if not best:
            return False
        return path == best or path[len(best) + 1 :] in self.trees[best]


def users_cannot_use(mode: int, is_dir: bool) -> bool:
    """Whether a user other than the owner (and outside its group) cannot read this file,
    enter or list this folder, or run this executable."""
    if is_dir:
        return (mode & (stat.S_IROTH | stat.S_IXOTH)) != (stat.S_IROTH | stat.S_IXOTH)
    return not mode & stat.S_IROTH or bool(mode & 0o111 and not mode & stat.S_IXOTH)


# What an admin may keep private at an env's root: the installers' own configuration, which
# may hold index or channel credentials. pip reads $VIRTUAL_ENV/pip.conf ("site" config, pip's
# Configuration docs) and skips one it cannot read; conda reads $CONDA_PREFIX/.condarc,
# condarc and condarc.d/ (conda's "Searching for .condarc"). No user's server needs them.
PRIVATE_CONFIG = frozenset({"pip.conf", ".condarc", "condarc", "condarc.d"})


def private_config(path: str, env_root: str) -> bool:
    """Whether `path` is (or lies in) an installer configuration file at `env_root`."""
    top = env_root.rstrip("/") + "/"
    return path.startswith(top) and path[len(top) :].split("/", 1)[0] in PRIVATE_CONFIG


def usable_mode(mode: int, is_dir: bool) -> int:
    """The mode with the bits users need added: a+r, and a+x on folders and on files that
    anyone may already execute (TLJH's `chmod -R a+rX` semantics, never x on plain data)."""
    mode = stat.S_IMODE(mode) | 0o444
    if is_dir or mode & 0o111:
        mode |= 0o111
    return mode


def world_writable(mode: int) -> bool:
    return bool(mode & stat.S_IWOTH)


# -- scanning ------------------------------------------------------------------------------


def find_predicate(owner: tuple[int, int], unreadable: bool) -> list[str]:
    """A GNU find expression for entries that are world-writable, group-writable (an ACL
    may hide in the group bits), not owned by `owner` (uid, gid) or, when `unreadable`, not
    usable by other users."""
    uid, gid = owner
    expr = ["-perm", "-o+w", "-o", "!", "-uid", str(uid), "-o", "!", "-gid", str(gid), "-o", "-perm", "-g+w"]
    expr += ["-o", "-type", "p", "-o", "-type", "s", "-o", "-type", "b", "-o", "-type", "c"]  # d_type only
    if unreadable:
        expr += ["-o", "!", "-perm", "-o+r"]
        expr += ["-o", "(", "-type", "d", "!", "-perm", "-o+x", ")"]
        expr += ["-o", "(", "-type", "f", "-perm", "/111", "!", "-perm", "-o+x", ")"]
    return ["(", *expr, ")"]


class Find:
    """GNU find running in the background. Its output goes to anonymous in-memory files,
    not pipes: a pipe fills after 64 KiB and would stop find until Python reads it, where
    the point is that find walks 40,000 entries on one core while Python checks on the
    other. Spawned with os.posix_spawn (no `subprocess` import on doctor's hot path)."""

    def __init__(self, program: str, argv: list[str]):
        self.output = os.memfd_create("tljh-find-output", os.MFD_CLOEXEC)
        self.errors = os.memfd_create("tljh-find-errors", os.MFD_CLOEXEC)
        stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.pid = os.posix_spawn(
                program,
                argv,
                {**os.environ, "LC_ALL": "C"},  # complaints in one form; no locale files to load
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, stdin, 0),
                    (os.POSIX_SPAWN_DUP2, self.output, 1),
                    (os.POSIX_SPAWN_DUP2, self.errors, 2),
                ],
            )
        except BaseException:
            self.close()
            raise
        finally:
            os.close(stdin)

    def kill(self) -> None:
        import signal

        os.kill(self.pid, signal.SIGKILL)

    def result(self) -> tuple[bytes, bytes]:
        """Wait for find; its output and its complaints."""
        os.waitpid(self.pid, 0)
        try:
            return _read_all(self.output), _read_all(self.errors)
        finally:
            self.close()

    def close(self) -> None:
        for fd in (self.output, self.errors):
            if fd >= 0:
                os.close(fd)
        self.output = self.errors = -1


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


def _find_argv(top: str, owner: tuple[int, int], unreadable: bool, prune: list[str]) -> list[str]:
    """find over `top`, skipping the folders in `prune` (walked by finds of their own): it
    prints every path relative to `top` (%P), and the details of the entries the predicate
    picks."""
    argv = ["find", top]  # argv[0] names find's complaints, which are parsed by their `find: `
    if prune:
        argv += ["("]
        for folder in prune:
            argv += ["-path", glob_escaped(folder), "-o"]
        argv[-1:] = [")", "-prune", "-o"]
    argv += ["(", "-printf", "%P\\0"]
    argv += ["(", "!", "-type", "l", *find_predicate(owner, unreadable), ")", "-printf", _DETAILS_FORMAT, ")"]
    return argv


def glob_escaped(path: str) -> str:
    """`path` as a find -path pattern that matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in path)


def site_folders(root: str) -> list[str]:
    """ROOT/lib/pythonX.Y/site-packages folders, each part a real folder, not a symlink (a
    find started there must not walk outside the env, as the root's walk never does): where
    RECORD paths are relative to. Read before inspection, so that the scans start at once."""
    lib = os.path.join(root, "lib")
    if os.path.islink(lib):
        return []
    try:
        with os.scandir(lib) as it:
            names = [e.name for e in it if e.name.startswith("python") and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    found = []
    for name in sorted(names):
        site = os.path.join(lib, name, "site-packages")
        if os.path.isdir(site) and not os.path.islink(site):
            found.append(site)
    return found


class EnvScan:
    """The finds that scan one environment: one over the root without its site folders,
    one over each site folder. More processes than one walk, but they spread over the cores
    (a site-packages holds half an environment) and each prints paths in the form that the
    records look them up in."""

    def __init__(self, program: str, root: str, owner: tuple[int, int], unreadable: bool):
        self.root = root.rstrip("/") or "/"
        sites = site_folders(self.root)
        self.finds: dict[str, Find] = {}
        try:
            self.finds[self.root] = Find(program, _find_argv(self.root, owner, unreadable, sites))
            for site in sites:
                self.finds[site] = Find(program, _find_argv(site, owner, unreadable, []))
        except BaseException:
            self.kill()
            self.result()  # reaps the finds started, closes their files
            raise

    def kill(self) -> None:
        for proc in self.finds.values():
            proc.kill()

    def result(self) -> Scan:
        trees, entries, errors = {}, [], []
        for folder, proc in self.finds.items():
            trees[folder], found, complaints = _parse_find(folder, proc)
            entries += found
            errors += complaints
        self.finds = {}
        return Scan(trees, entries, tuple(errors))


def start_find(root: str, owner: tuple[int, int], unreadable: bool) -> EnvScan | None:
    """Start scanning an environment with GNU find. None where there is no find (the caller
    walks in Python instead)."""
    program = system_program("find")  # never PATH's: doctor runs as root
    if program is None:
        return None
    try:
        return EnvScan(program, root, owner, unreadable)
    except FileNotFoundError:
        return None


def start_env_scans(layout, names) -> dict:
    """{env: EnvScan} for the PREFIX environments among `names` that exist: the scans
    doctor's checks read (the user env's also picks what users cannot read). Started as
    early as possible, so that find walks while Python imports and inspects."""
    try:
        owner = code_owner(layout.prefix)
    except OSError:
        return {}  # the checks say what is wrong with PREFIX
    finds = {}
    for name in names:
        root = layout.env_root(name)
        if root and os.path.isdir(root):
            proc = start_find(root, owner, unreadable=name == USER)
            if proc is not None:
                finds[name] = proc
    return finds


def read_find(proc: EnvScan) -> Scan:
    return proc.result()


def _parse_find(top: str, proc: Find) -> tuple[set[str], list[ScannedEntry], list[str]]:
    raw, complaints = proc.result()
    output = os.fsdecode(raw)
    # one set() over the split output: C speed for 40,000 paths. A detail record starts
    # with "/", where no path record (%P) can; it always follows the path record of the
    # same entry, hence after a \0. The few there are leave the tree again.
    tree = set(output.split("\0"))
    entries = []
    details = []
    below = top if top.endswith("/") else top + "/"
    at = output.find("\0/")
    while at != -1:
        end = output.find("\0", at + 2)
        details.append(output[at + 1 : end])
        mode, uid, gid, kind, dev, ino, path = output[at + 2 : end].split(" ", 6)
        if path == top or path.startswith(below):  # what a fix acts on lies in the walk, always
            entry = ScannedEntry(
                path, int(mode, 8), int(uid), int(gid), kind == "d", int(dev), int(ino), kind in "psbc"
            )
            entries.append(entry)
        at = output.find("\0/", end)
    tree.difference_update(details)
    text = complaints.decode("utf-8", "replace")
    return tree, entries, [line for line in text.splitlines() if line.startswith("find: ")]


def walk(root: str, picks) -> Scan:
    """The same scan without find: os.scandir, one lstat per entry; one tree (the root)."""
    paths: set[str] = set()
    entries = []
    errors = []
    stack = [root]
    while stack:
        folder = stack.pop()
        paths.add(folder)
        try:
            st = os.lstat(folder)
            if picks(st.st_mode, st.st_uid, st.st_gid, True):
                entries.append(scanned_entry(folder, st, True))
            with os.scandir(folder) as it:
                for item in it:
                    paths.add(item.path)
                    if item.is_dir(follow_symlinks=False):
                        stack.append(item.path)
                    elif not item.is_symlink():
                        est = item.stat(follow_symlinks=False)
                        if picks(est.st_mode, est.st_uid, est.st_gid, False):
                            entries.append(scanned_entry(item.path, est, False))
        except OSError as error:
            errors.append(f"{folder}: {error.strerror}")
    cut = len(root.rstrip("/")) + 1
    return Scan({root.rstrip("/"): {p[cut:] for p in paths}}, entries, tuple(errors))


def scanned_entry(path: str, st: os.stat_result, is_dir: bool) -> ScannedEntry:
    special = not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode))
    return ScannedEntry(
        path, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, is_dir, st.st_dev, st.st_ino, special
    )


# -- what only root may change -------------------------------------------------------------
#
# Root runs an environment's code: its Python (pip, uv's target, plugins, `import
# jupyterhub`), conda and mamba. Anyone else who can change a file of it, or a folder a
# `.pth` puts on its sys.path, can run code as root; and a change's normalisation would
# then chown what they planted to the owner. So before root runs anything from an
# environment, nothing of it may be writable or owned by others.


def code_owner(prefix: str) -> tuple[int, int]:
    """(uid, gid) that should own the code root runs from PREFIX: root:root (TLJH's installer
    runs as root), or the owner of a developer's own sandbox when they run tljh-admin on it.
    A prefix another user owns is theirs to swap: what root would run from it is that
    user's, so it is flagged, never trusted."""
    st = os.stat(prefix)
    if st.st_uid == os.geteuid() != 0:
        return st.st_uid, st.st_gid
    return 0, 0  # root's own group too: a group an admin gave the prefix is no reason to trust it


def running_user() -> tuple[int, int]:
    """(uid, gid) of this process: the owner to judge by for what it alone runs (a local
    source, its own home and temporary folder)."""
    return os.geteuid(), os.getegid()


def trusted_uids(owner: tuple[int, int]) -> set[int]:
    """Who may own and write what root runs: root, and the code owner (code_owner)."""
    return {0, owner[0]}


def other_writer(st: os.stat_result, owner: tuple[int, int], at: str | int) -> str | None:
    """Who other than the trusted uids can change this object (`at`: its path, never
    followed, or an open descriptor on it), or None."""
    if st.st_uid not in trusted_uids(owner):
        return f"uid {st.st_uid} owns it"
    if stat.S_ISLNK(st.st_mode):
        return None
    if st.st_mode & stat.S_IWOTH:
        return "it is world-writable"
    if st.st_mode & stat.S_IWGRP:
        if st.st_gid not in (0, owner[1]):
            return f"group {st.st_gid} may write it"
        writers = acl_writers(at, owner, stat.S_ISDIR(st.st_mode))
        if writers:
            return acl_why(writers)
    return None


# linux/posix_acl_xattr.h: a POSIX ACL is stored as a version-2 header, then one
# (tag u16, perm u16, id u32) little-endian entry per line of `getfacl`. With an ACL, the
# mode's group bits are its mask: only a group-writable object can grant anyone write.
ACL_XATTRS = ("system.posix_acl_access", "system.posix_acl_default")  # default: folders only
_ACL_USER, _ACL_GROUP, _ACL_MASK, _ACL_WRITE = 0x02, 0x08, 0x10, 0x02


def acl_writers(at: str | int, owner: tuple[int, int], is_dir: bool) -> list[str]:
    """The users and groups besides the trusted ones that a POSIX ACL on this object (or,
    on a folder, its default ACL: what new files inherit) lets write it."""
    import struct

    found = []
    for name in ACL_XATTRS[: 2 if is_dir else 1]:
        try:
            # a path is never followed; a descriptor cannot be (Python refuses the flag for one)
            raw = os.getxattr(at, name, **({"follow_symlinks": False} if isinstance(at, str) else {}))
        except OSError:  # none, or a file system without ACLs
            continue
        entries = [struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw) - 7, 8)]
        mask = next((perm for tag, perm, _ in entries if tag == _ACL_MASK), _ACL_WRITE)
        trusted = {_ACL_USER: trusted_uids(owner), _ACL_GROUP: {0, owner[1]}}
        later = " (in new files)" if name != ACL_XATTRS[0] else ""
        found += [
            f"{'uid' if tag == _ACL_USER else 'group'} {who}{later}"
            for tag, perm, who in entries
            if perm & mask & _ACL_WRITE and tag in trusted and who not in trusted[tag]
        ]
    return found


def acl_why(writers: list[str]) -> str:
    return f"an ACL lets {', '.join(writers)} write it"


def default_acl_writers(root: str, site_dirs, owner: tuple[int, int]) -> list[tuple[str, list[str]]]:
    """(folder, writers) for the folders installers add entries to whose ACLs (a default one
    leaves the folder's own mode alone) let others write what they will hold."""
    found = []
    for folder in install_folders(root, site_dirs):
        writers = acl_writers(folder, owner, True)
        if writers:
            found.append((folder, writers))
    return found


def install_folders(root: str, site_dirs) -> list[str]:
    """The folders installers add entries to: where a default ACL (which leaves the folder's
    own mode alone) would pass write access on to everything they write."""
    names = [root, *(os.path.join(root, n) for n in ("bin", "lib", "share", "etc", "include")), *site_dirs]
    return [p for p in dict.fromkeys(names) if os.path.isdir(p) and not os.path.islink(p)]


def drop_acls(fd: int | str) -> None:
    """Remove the POSIX ACLs of an open object (its descriptor, or through() one): what is
    left is its mode."""
    import contextlib

    for name in ACL_XATTRS:
        with contextlib.suppress(OSError):  # it has none (or is no folder: no default ACL)
            os.removexattr(fd, name)


def remedy(st: os.stat_result, owner: tuple[int, int], path: str) -> str:
    """The command that takes others' access to `path` away, for what other_writer found."""
    import shlex

    quoted = shlex.quote(path)
    if st.st_uid not in trusted_uids(owner):
        return (
            f"check who made it theirs (remove it if nobody should have), then sudo chown root:root {quoted}"
        )
    if st.st_mode & stat.S_IWOTH:
        return f"sudo chmod o-w {quoted}"
    if st.st_gid not in (0, owner[1]):
        return f"sudo chmod g-w {quoted}"
    return f"sudo setfacl -b {quoted}"


def unsafe_ancestor(path: str, owner: tuple[int, int]) -> tuple[str, str] | None:
    """(folder, why) for the first of / and the folders down to `path` (resolved) that
    others could use to change or swap what lies there, or None. A sticky folder others may
    write (/tmp) is no way in above an entry a trusted uid owns: they cannot rename it."""
    real = os.path.realpath(path)
    chain = ["/"]
    for part in real.strip("/").split("/") if real != "/" else ():
        chain.append(os.path.join(chain[-1], part))
    for depth, current in enumerate(chain):
        try:
            st = os.lstat(current)
        except OSError:
            return None  # nothing below exists yet: the caller says what is missing
        why = other_writer(st, owner, current)
        if why is None:
            continue
        sticky_on_the_way = st.st_mode & stat.S_ISVTX and depth < len(chain) - 1
        if st.st_uid not in trusted_uids(owner) or not sticky_on_the_way:
            return current, why
    return None


def unsafe_around(root: str, interpreter: str, owner: tuple[int, int]) -> list[tuple[str, str]]:
    """(path, why) for what others could use to swap an environment from outside it: the
    first unsafe folder above its root, and the first unsafe part of the way to its
    interpreter's real file (a venv's python is the system's). What lies inside the root
    is the scans' (changeable_by_others, doctor's find): left out here."""
    real_root = os.path.realpath(root)
    # what lies in the root is the scans' (find starts there), unless the root is a symlink:
    # find does not follow one, so nothing in it would be judged
    scanned = real_root + "/" if real_root == root.rstrip("/") else None
    found = []
    for path in dict.fromkeys([os.path.dirname(real_root), real_root, os.path.realpath(interpreter)]):
        unsafe = unsafe_ancestor(path, owner)
        if unsafe and not (scanned and (unsafe[0] + "/").startswith(scanned)) and unsafe not in found:
            found.append(unsafe)
    return found


def changeable_by_others(root: str, owner: tuple[int, int], limit: int = 20) -> list[tuple[str, str]]:
    """(path, why) for up to `limit` files and folders under `root` that a user other than
    the trusted uids could change: world-writable, owned by another uid, or writable by
    another group. Symlinks are left out: their mode means nothing, and nothing here
    follows them. GNU find picks the candidates; without it, every path is a candidate."""
    found: list[tuple[str, str]] = []
    for path in _candidates_others_may_change(root, owner):
        try:
            why = other_writer(os.lstat(path), owner, path)
        except OSError:
            continue
        if why:
            found.append((path, why))
            if len(found) >= limit:
                break
    return found


def _candidates_others_may_change(root: str, owner: tuple[int, int]):
    program = system_program("find")  # never PATH's: this runs as root
    if program is None:
        for folder, _, files in os.walk(root):
            yield folder
            yield from (os.path.join(folder, n) for n in files)
        return
    uid = owner[0]
    # any group-writable entry: another group may write it, or an ACL (in the group bits) may
    test = ["(", "-perm", "-o+w", "-o", "!", "-uid", "0", "!", "-uid", str(uid), "-o", "-perm", "-g+w", ")"]
    raw, _ = Find(program, ["find", root, "!", "-type", "l", *test, "-printf", "%p\\0"]).result()
    yield from os.fsdecode(raw).split("\0")[:-1]


def pth_folders(site: str):
    """(pth file, folder) for each folder a .pth file in `site` names, the way
    site.addpackage reads it: `import` lines are run, not added; comments are skipped. The
    folders are not required to exist (site skips those, until someone creates them)."""
    try:
        names = sorted(n for n in os.listdir(site) if n.endswith(".pth"))
    except OSError:
        return
    for file_name in names:
        pth = os.path.join(site, file_name)
        try:
            with open_text(pth, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            if not line.strip() or line.startswith("#") or line.startswith(("import ", "import\t")):
                continue
            yield pth, os.path.normpath(os.path.join(site, line.rstrip()))


def sys_path_entries(root: str, site_dirs, owner: tuple[int, int]):
    """(pth file, folder, outside, why) for every folder a .pth file in `site_dirs` puts on
    sys.path: `outside` the environment `root` or not, and `why` others could create, change
    or swap it (None when they cannot)."""
    inside = os.path.realpath(root) + "/"
    for site in site_dirs:
        for pth, folder in pth_folders(site):
            real = os.path.realpath(folder)
            if (real + "/").startswith(inside):
                try:
                    why = other_writer(os.stat(real), owner, real)
                except OSError:
                    why = None  # not there: site skips it, and only root can create it here
                yield pth, folder, False, why
            else:
                yield pth, folder, True, others_reach(real, owner)


def others_reach(real: str, owner: tuple[int, int]) -> str | None:
    """Why others could create, change or swap `real`, a resolved path outside what the
    scans walk (where a .pth file or a symlink leads root), or None."""
    if not os.path.exists(real):
        return "it does not exist: whoever creates it first decides its code"
    unsafe = unsafe_ancestor(real, owner) or next(iter(changeable_by_others(real, owner, 1)), None)
    return f"{unsafe[0]}: {unsafe[1]}" if unsafe else None


#: environments this process found only root could change: others cannot gain write
#: access to them afterwards (only root can grant it), so a change checks once, not per step
_VOUCHED: set[tuple[str, str]] = set()


def others_can_change(env) -> list[tuple[str, str]]:
    """(path, why) for what users other than root could change of the code root runs from
    a PREFIX environment (hub or user): the folders above it, its files, its interpreter,
    and the folders its .pth files name. Empty for the system python (apt's)."""
    if env.name not in (HUB, USER) or not env.root or not os.path.isdir(env.root):
        return []
    key = (env.root, env.interpreter.path)
    if key in _VOUCHED:
        return []
    root = env.root.rstrip("/")
    owner = code_owner(os.path.dirname(root))
    found = unsafe_around(root, env.interpreter.path, owner)
    found += changeable_by_others(os.path.realpath(root), owner)
    seen = {path for path, _ in found}
    found += [(f, acl_why(w)) for f, w in default_acl_writers(root, env.site_dirs, owner) if f not in seen]
    found += [
        (pth, f"it names {folder}, and {why}")
        for pth, folder, outside, why in sys_path_entries(root, env.site_dirs, owner)
        if outside and why  # inside the env, changeable_by_others has looked already
    ]
    if not found:
        _VOUCHED.add(key)
    return found


def require_only_root_can_change(env) -> None:
    """Refuse to run code from `env` as root when others could have changed it."""
    found = others_can_change(env)
    if found:
        from tljh_admin.errors import Refused

        path, why = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise Refused(
            f"users other than root can change the {env.name} environment's code: {path}: {why}{more};"
            " tljh-admin does not run it as root",
            hint=f"sudo tljh doctor --target {env.name} lists them: remove what nobody installed, then"
            " take the others' access away (doctor --fix takes world-write and ACLs away)",
        )


# -- acting on what was scanned ------------------------------------------------------------


def open_scanned(entry: ScannedEntry) -> int:
    """An O_PATH descriptor on the scanned object itself: O_NOFOLLOW (a symlink now there is
    refused) and the same device and inode as the scan saw (anything swapped in is refused).
    O_PATH opens nothing: a socket (which cannot be opened) is reached too, and a device's
    open, which may act, never runs. Changes go through `through(fd)`."""
    flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
    if entry.is_dir:
        flags |= os.O_DIRECTORY
    fd = os.open(entry.path, flags)
    try:
        st = os.fstat(fd)
        if (
            (st.st_dev, st.st_ino) != (entry.dev, entry.ino)
            or stat.S_ISDIR(st.st_mode) != entry.is_dir
            or stat.S_ISLNK(st.st_mode)
        ):
            raise OSError(errno.ESTALE, "changed since it was scanned; not touched", entry.path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def through(fd: int) -> str:
    """The path that reaches an O_PATH descriptor's object (never a symlink: open_scanned
    refuses those) for chmod, chown and xattr calls, which take no O_PATH descriptor."""
    return f"/proc/self/fd/{fd}"


def _other_names(st: os.stat_result, path: str, env_root: str | None) -> bool:
    """Whether this file has names besides `path` that tljh-admin cannot vouch for. conda
    links a package's files from its cache: two names, the env's and pkgs/<dist>/<same
    path>. Any other hard link may be one a user planted to a file outside the env (where
    fs.protected_hardlinks is 0): granting bits or an owner through it would grant them there."""
    if not stat.S_ISREG(st.st_mode) or st.st_nlink == 1:
        return False
    if st.st_nlink == 2 and env_root and path.startswith(env_root.rstrip("/") + "/"):
        import glob

        rel = path[len(env_root.rstrip("/")) + 1 :]
        for twin in glob.glob(os.path.join(glob.escape(env_root), "pkgs", "*", glob.escape(rel))):
            try:
                twin_st = os.lstat(twin)
            except OSError:
                continue
            if (twin_st.st_dev, twin_st.st_ino) == (st.st_dev, st.st_ino):
                return False
    return True


def _refuse_other_names(entry: ScannedEntry) -> OSError:
    return OSError(
        errno.EMLINK, "it has another hard link, maybe to a file outside the env: not changed", entry.path
    )


def chmod_scanned(entry: ScannedEntry, new_mode, env_root: str | None = None) -> None:
    """Set the mode `new_mode(current_mode)` on the scanned object (its current mode, read
    from the open file, not the scan's). Taking bits away is always safe; adding them to a
    file with other names only where those are conda's (_other_names)."""
    fd = open_scanned(entry)
    try:
        st = os.fstat(fd)
        current = stat.S_IMODE(st.st_mode)
        wanted = new_mode(current)
        if wanted & ~current and _other_names(st, entry.path, env_root):
            raise _refuse_other_names(entry)
        if wanted != current:
            os.chmod(through(fd), wanted)
    finally:
        os.close(fd)


def chown_scanned(entry: ScannedEntry, uid: int, gid: int, env_root: str | None = None) -> None:
    fd = open_scanned(entry)
    try:
        if _other_names(os.fstat(fd), entry.path, env_root):
            raise _refuse_other_names(entry)
        os.chown(through(fd), uid, gid)
    finally:
        os.close(fd)


def make_usable(entry: ScannedEntry, env_root: str | None = None) -> None:
    chmod_scanned(entry, lambda mode: usable_mode(mode, entry.is_dir), env_root)


def drop_world_write(entry: ScannedEntry) -> None:
    chmod_scanned(entry, lambda mode: mode & ~stat.S_IWOTH)


def drop_acls_scanned(entry: ScannedEntry) -> None:
    """Remove the scanned object's ACLs: only takes access away, so other names are no risk."""
    fd = open_scanned(entry)
    try:
        drop_acls(through(fd))
    finally:
        os.close(fd)
