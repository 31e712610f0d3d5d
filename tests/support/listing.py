"""File listings that prove a command changed nothing (or exactly what it should)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def file_listing(root: Path, *, contents: bool = False) -> dict[str, tuple]:
    """path -> (type, size, mode, uid, gid, mtime_ns[, sha256]) for everything under `root`,
    symlinks recorded by target and never followed.

    Size, mode, owner and mtime are what a change leaves behind (writing a file sets its
    mtime; pip and uv write new files); hashing every file read the whole prefix again for
    each comparison and found nothing more, so `contents` is for the rare test about bytes."""
    listing: dict[str, tuple] = {}
    if not os.path.lexists(root):
        return listing
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                listing[rel] = ("link", os.readlink(path), st.st_uid, st.st_gid)
            elif stat.S_ISDIR(st.st_mode):
                listing[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
            else:
                entry = ("file", st.st_size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
                if contents:
                    entry += (hashlib.sha256(Path(path).read_bytes()).hexdigest(),)
                listing[rel] = entry
    return listing


def listing_diff(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    """Readable differences, for assertion messages."""
    lines = [f"- {p}" for p in sorted(before.keys() - after.keys())]
    lines += [f"+ {p}" for p in sorted(after.keys() - before.keys())]
    lines += [
        f"~ {p}: {before[p]} -> {after[p]}"
        for p in sorted(before.keys() & after.keys())
        if before[p] != after[p]
    ]
    return lines
