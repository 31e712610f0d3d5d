"""Opening the files tljh-admin reads from environments and its state: metadata, records,
.pth and config files, journals. By the time one is read it may be anything (a FIFO or a
symlink to a device, put there by whoever may write a folder it sits in, or left by a
damaged server): only regular files are read. A FIFO is opened without blocking, so it
never hangs a command; a symlink is looked through before its target is opened, since
opening some devices acts (a watchdog, a tape), and a device node not behind a symlink can
only be made by root."""

from __future__ import annotations

import errno
import os
import stat


def not_regular(path, st: os.stat_result) -> OSError:
    if stat.S_ISDIR(st.st_mode):
        return IsADirectoryError(errno.EISDIR, "is a folder, not a file", path)
    return OSError(errno.EINVAL, "not a regular file", path)


def open_regular(
    path: str,
    flags: int = os.O_RDONLY,
    mode: int = 0o600,
    dir_fd: int | None = None,
    follow_symlinks: bool = True,
) -> int:
    """A descriptor on the regular file at `path` (`flags`: O_RDONLY, or O_RDWR/O_APPEND/
    O_CREAT... for a state file); OSError for anything else. `follow_symlinks=False`: a
    symlink is refused too (ELOOP), as for state files and a file to hash."""
    flags |= os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
    except OSError as error:
        if error.errno != errno.ELOOP or not follow_symlinks:
            raise
        fd = _open_through_symlink(path, flags, dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(path, st)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_through_symlink(path: str, flags: int, dir_fd: int | None) -> int:
    """Open what the symlink at `path` leads to, after seeing that it is a regular file:
    the same object, reopened through /proc/self/fd (no second lookup to race)."""
    handle = os.open(path, os.O_PATH | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(handle)
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(path, st)
        return os.open(f"/proc/self/fd/{handle}", flags & ~os.O_CREAT)
    finally:
        os.close(handle)


#: the most read of one metadata, record, config or state file. The largest real ones (a
#: RECORD or conda record of a package of 50,000 files, years of history.jsonl) are a few
#: MiB; a larger one is damage, and a 20 GB sparse file read whole would bring the
#: out-of-memory killer to a live server (which may pick the hub).
READ_LIMIT = 64 * 1024**2


def too_large(path: str, limit: int = READ_LIMIT) -> OSError:
    return OSError(errno.EFBIG, f"larger than {limit // 1024**2} MiB, which no such file is", path)


def _read_fd(fd: int, path: str, limit: int) -> bytes:
    """The rest of an open regular file, refused (OSError EFBIG) beyond `limit` bytes,
    judged before reading and again while reading (it may grow meanwhile)."""
    size = os.fstat(fd).st_size
    if size > limit:
        raise too_large(path, limit)
    data = os.read(fd, size + 1)
    if len(data) > size:  # it grew since fstat: read on to the end, or to the limit
        parts, total = [data], len(data)
        while chunk := os.read(fd, 1 << 16):
            parts.append(chunk)
            total += len(chunk)
            if total > limit:
                raise too_large(path, limit)
        data = b"".join(parts)
    return data


def read_bytes(path: str, limit: int = READ_LIMIT, follow_symlinks: bool = True) -> bytes:
    """A whole regular file of at most `limit` bytes, with os.read: no buffered file
    object, no isatty or seek (a third of the cost of open() for the thousands of small
    files doctor and `env list` read). `follow_symlinks=False`: a symlink is refused
    (ELOOP), as for tljh-admin's own state files."""
    fd = open_regular(path, follow_symlinks=follow_symlinks)
    try:
        return _read_fd(fd, path, limit)
    finally:
        os.close(fd)


def utf8_text(path: str) -> tuple[str | None, str | None]:
    """(text, None) for a regular UTF-8 file of at most READ_LIMIT bytes, else (None, why
    it is not one: "is not UTF-8 text (byte N)", "cannot be read (...)"). (None, None) when
    this user may not read it: root's alone is no damage, and another user cannot tell."""
    try:
        return read_bytes(path).decode("utf-8"), None
    except PermissionError:
        return None, None
    except FileNotFoundError:
        return None, "leads nowhere (a dangling symlink)"
    except OSError as error:
        return None, f"cannot be read ({error.strerror})"
    except UnicodeDecodeError as error:
        return None, f"is not UTF-8 text (byte {error.start + 1})"


def open_text(
    path: str,
    encoding: str = "utf-8",
    errors: str = "strict",
    newline: str | None = None,
    limit: int = READ_LIMIT,
):
    """open(path, encoding=...) for a regular file of at most `limit` bytes only."""
    fd = open_regular(path)
    try:
        if os.fstat(fd).st_size > limit:
            raise too_large(path, limit)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "r", encoding=encoding, errors=errors, newline=newline)


def open_binary(path: str):
    """open(path, "rb") for a regular file only."""
    return os.fdopen(open_regular(path), "rb")
