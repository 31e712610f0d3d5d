"""`tljh env export` and the JSON side of change commands, without Typer: the Typer app calls
these with parsed values, and so does the JSON fast path for `--format lock` (a lock is what
scripts and fleets ask for in loops). One body per command, so both paths print the same bytes.
"""

from __future__ import annotations

import contextlib
import os

from tljh_admin.cli import render
from tljh_admin.errors import ExitCode, UsageError, refuse_empty

# A z2jh config always holds the hub's settings (and with --include-secrets credentials):
# owner-only either way.
SECRET_FILE_MODE = 0o600
FILE_MODE = 0o644


def _write_file(path: str, text: str, mode: int) -> None:
    """Write `path` whole or not at all (temp file beside it, fsync, rename), working inside
    its folder by descriptor: the folder is opened without following a symlink, and what
    sits at `path` is replaced only when it is a regular file. A symlink there is refused,
    neither followed (it may lead anywhere) nor replaced (/dev/stdout is one); so is a
    device, fifo, socket or folder."""
    import secrets
    import stat

    from tljh_admin.export import write_error

    if path.endswith(("/", "/.", "/..")) or path in (".", ".."):
        raise UsageError(f"{path} names a folder", hint="name a file to write (DIR/NAME)")
    # split as written, not normalised: `link/../x` is where the kernel (and `>`) puts it
    folder, name = os.path.split(path)
    folder = folder or "."
    try:
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UsageError(f"{folder} does not exist", hint="create the folder first") from None
    except OSError as error:
        if os.path.islink(folder):  # O_NOFOLLOW|O_DIRECTORY on a symlink: ENOTDIR or ELOOP
            raise UsageError(f"{folder} is a symlink", hint="name the folder it points to") from None
        if isinstance(error, NotADirectoryError):
            raise UsageError(f"{folder} is not a folder", hint="name a file in a folder") from None
        raise write_error(path, error) from None
    temp = None
    try:
        try:
            existing = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and stat.S_ISLNK(existing.st_mode):
            raise UsageError(
                f"{path} is a symlink; tljh-admin neither follows nor replaces one",
                hint="name the file it leads to, or leave DEST out (or `-`) for standard output",
            )
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            what = "a folder" if stat.S_ISDIR(existing.st_mode) else "not a regular file"
            raise UsageError(f"{path} is {what}", hint="name a new or regular file to write")
        temp = f".tljh-export-{secrets.token_hex(8)}"
        fd = os.open(
            temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder_fd
        )
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if existing is not None:  # replaced as it was: never more open, nor someone else's
                mode &= stat.S_IMODE(existing.st_mode)
                if os.geteuid() == 0 and _owner_placed(existing, os.fstat(folder_fd)):
                    os.fchown(f.fileno(), existing.st_uid, existing.st_gid)
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(temp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        temp = None
        os.fsync(folder_fd)
    except OSError as error:
        raise write_error(path, error) from None
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=folder_fd)
        os.close(folder_fd)


def _owner_placed(existing: os.stat_result, folder: os.stat_result) -> bool:
    """Whether the file being replaced is one its owner was given, not one anyone could have
    planted: the folder is its owner's, or only its owner (and root) may add to it. In a
    folder others may write (/tmp), whoever made the file first would get what root wrote
    (a z2jh export with its secrets): the file stays root's."""
    import stat

    return existing.st_uid == folder.st_uid or not folder.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _emit(text: str, dest: str | None, mode: int = FILE_MODE) -> None:
    import sys

    if dest in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
    elif not dest.strip():
        raise UsageError("an empty file name", hint="name a file, or leave DEST out for standard output")
    else:
        _write_file(dest, text, mode)
        render.message(f"wrote {_shown(dest)}")


def _not_an_option(path: str) -> str:
    """`-img` read back by a program would be an option: `./-img` is the same folder."""
    return "./" + path if path.startswith("-") else path


def _shown(path: str) -> str:
    """A path as one shell word, for messages meant to be pasted; a line break or an ESC in
    it written as an escape, so that the message stays one line and the terminal its own."""
    import shlex

    return render.printable(shlex.quote(path))


def _refuse_inside_prefix(layout, dest: str | None) -> None:
    """An export is never written into TLJH's state or its environments: `tljh env export
    ... PREFIX/state/tljh-admin/history.jsonl` wiped the history."""
    if dest in (None, "-") or not dest.strip():
        return
    where = os.path.realpath(os.path.dirname(dest) or ".")  # `link/..` as the kernel reads it
    for guarded in (layout.state, *(layout.env_root(n) for n in ("hub", "user"))):
        if guarded and (
            where == os.path.realpath(guarded) or where.startswith(os.path.realpath(guarded) + "/")
        ):
            raise UsageError(
                f"{dest} is inside {guarded}; exports are not written into TLJH's own folders",
                hint="write it elsewhere, such as /root or the current folder",
            )


def env_export(
    options,
    target: str,
    format: str = "lock",
    dest: str | None = None,
    requested: bool = False,
    z2jh_chart: str | None = None,
    image: str | None = None,
    include_secrets: bool = False,
) -> ExitCode:
    import json

    from tljh_admin import export

    refuse_empty({"--z2jh-chart": z2jh_chart, "--image": image})  # an empty DEST: _emit says it
    layout = options.layout()
    _refuse_inside_prefix(layout, dest)
    # which formats read each format-specific option (repo2docker writes no image name, no secret)
    formats_of = {
        "--requested": ((export.REQUIREMENTS, export.ENVIRONMENT_YML), requested),
        "--z2jh-chart": ((export.REPO2DOCKER, export.Z2JH_CONFIG), z2jh_chart),
        "--image": ((export.Z2JH_CONFIG,), image),
        "--include-secrets": ((export.Z2JH_CONFIG,), include_secrets),
    }
    for flag, (formats, value) in formats_of.items():
        if value and format not in formats:
            raise UsageError(
                f"{flag} applies to --format {' and '.join(formats)}, not {format}", hint=f"drop {flag}"
            )
    if format == export.LOCK:
        _emit(json.dumps(export.export_lock(layout, target), indent=2) + "\n", dest)
    elif format in (export.REQUIREMENTS, export.ENVIRONMENT_YML):
        text = export.export_text(layout, target, format, requested)
        for note in text.notes:
            render.message(note)
        _emit(text.text, dest)
    elif format == export.REPO2DOCKER:
        if not dest or dest == "-":
            raise UsageError("--format repo2docker needs a folder to write", hint="add DIR: a new folder")
        exported = export.export_repo2docker(layout, target, dest, z2jh_chart)
        for note in exported.notes:
            render.message(note)
        image_name = f"{export.DEFAULT_IMAGE_NAME}:{exported.image_tag}"
        render.message(
            f"wrote {_shown(dest)} ({exported.buildpack} buildpack); build the image with:\n"
            f"  jupyter-repo2docker --no-run --image-name {_shown(image_name)} {_shown(_not_an_option(dest))}"
        )
    elif format == export.Z2JH_CONFIG:
        text, translation = export.export_z2jh_config(layout, target, z2jh_chart, image, include_secrets)
        for item in translation.unmapped:
            render.message(f"not carried to z2jh: {item.key} ({item.reason})")
        _emit(text, dest, SECRET_FILE_MODE)
    else:
        raise UsageError(
            f"unknown export format {format!r}", hint=f"choose one of: {', '.join(export.FORMATS)}"
        )
    return ExitCode.OK


def change_json(layout, command: str, prepared, *, dry_run: bool, yes: bool, notes: list[str]) -> ExitCode:
    """A change command with --json: the plan (dry run, or nothing to do) or the outcome as a
    `tljh-admin/change` document on stdout; progress and messages stay on stderr."""
    from tljh_admin import changes
    from tljh_admin.report import change_document

    for entry in prepared.recovered:
        render.message(f"restored change {entry['id']} left unfinished by a killed tljh")
    name = prepared.env.name
    also = {c.env.name: c.plan for c in prepared.also}
    if not prepared.changes_anything or dry_run:
        document = change_document(
            layout, command, name, prepared.plan, dry_run, notes=tuple(notes), also=also
        )
        render.print_json(document)
        return ExitCode.OK
    if not yes:
        raise UsageError("--json changes nothing without --yes", hint="add --yes, or --dry-run for the plan")
    with render.progress(f"{prepared.kind} in the {render.environments(prepared.env_names)}") as progress:
        outcome = changes.apply(prepared, progress)
    document = change_document(layout, command, name, prepared.plan, False, outcome, tuple(notes), also)
    render.print_json(document)
    return ExitCode.OK
