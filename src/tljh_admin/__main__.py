"""Entry point for the `tljh` console script and `python -m tljh_admin`.

The one place that turns errors into exit codes and one-line messages: TljhError subclasses
carry their code; click's usage errors become one line with a hint that names a command
that exists; Ctrl-C, end of input and a closed stdout end without a traceback.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    import os

    # Before anything writes: under an inherited umask 000 every file pip (a child, which
    # inherits the umask) writes into an environment is 0666 until normalisation runs, and
    # other users could plant code there that is then chowned to root and kept. 022 is
    # the usual default umask (Debian, Ubuntu), so files come out 0644/0755 whatever the caller had.
    os.umask(0o022)
    _open_standard_streams()
    args = sys.argv[1:] if argv is None else argv
    from tljh_admin.cli import render
    from tljh_admin.errors import Aborted, ExitCode, Stopped, TljhError

    try:
        try:
            code = _complete() or _refuse_repeated(args) or _refuse_shell_word(args) or _fast(args)
            if code is None:
                code = _typer(args)
        finally:
            sys.stdout.flush()  # a closed pipe shows here at the latest, not at exit
    except TljhError as error:
        render.print_error(error)
        code = int(error.exit_code)
    except KeyboardInterrupt:
        render.print_error(Stopped("interrupted"))
        code = int(ExitCode.INTERRUPTED)
    except EOFError:
        render.print_error(Aborted("end of input"))
        code = int(ExitCode.ABORTED)
    except (BrokenPipeError, render.PipeClosed):
        code = _pipe_closed()
    except PermissionError as error:
        # a file or folder this user may not read (a root umask of 077 leaves many): one line
        from tljh_admin.errors import PermissionDenied

        where = error.filename or "a file"
        render.print_error(PermissionDenied(f"this user cannot read {where}", hint="run with sudo"))
        code = int(PermissionDenied.exit_code)
    except OSError as error:  # stdout full (/dev/full), a failing disk: one line, no traceback
        import errno

        io = error.errno in (errno.EIO, errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        where = f" ({error.filename})" if isinstance(error.filename, str) else ""  # not an fd's number
        if io:
            message = f"input/output error: {error.strerror or error}{where}"
            hint = "free space or fix the disk (or where the output goes), then run it again"
        else:  # a file or folder in the wrong shape (state/ a file, a FIFO for a record)
            message = f"{error.strerror or error}{where}"
            hint = "`sudo tljh doctor` says what is damaged; move that aside, then run the command again"
        render.print_error(TljhError(message, hint=hint, exit_code=ExitCode.IO_ERROR))
        code = _discard_stdout(int(ExitCode.IO_ERROR))
    sys.exit(code)


def _open_standard_streams() -> None:
    """/dev/null on a standard descriptor the caller closed (`tljh ... >&-`): else the first
    file tljh-admin opens (a lock, a state file) would get that number, and what is printed,
    or an installer's output, would be written into it."""
    import os

    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdin is None:  # Python found fd 0 closed at start
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the process's own stdin)
    if sys.stdout is None:  # Python found fd 1 closed at start
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (the process's own stdout)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


def _refuse_repeated(args: list[str]) -> None:
    from tljh_admin.cli import spec

    found = spec.repeated_option(args)
    if found is not None:  # only then the message (cli.usage imports difflib)
        from tljh_admin.cli.usage import repeated

        raise repeated(found)


def _refuse_shell_word(args: list[str]) -> None:
    """Typer's --show-completion and --install-completion take no shell name: they use the
    shell they run in, and exit before a word after them is read. `--install-completion zsh`
    from bash wrote bash's script into ~/.bashrc."""
    options = args[: args.index("--")] if "--" in args else args  # after `--`, words are arguments
    for flag in ("--show-completion", "--install-completion"):
        if flag in options[:-1] and not options[options.index(flag) + 1].startswith("-") and _is_a_flag(flag):
            from tljh_admin.errors import UsageError

            word = options[options.index(flag) + 1]
            raise UsageError(
                f"{flag} takes no shell name ({word!r}): it uses the shell it runs in",
                hint=f"run it from that shell ({word} -c 'tljh {flag}'), or copy the script from"
                " completions/ (README: Shell completion)",
            )


def _is_a_flag(flag: str) -> bool:
    """Whether Typer's completion option takes no value: so where it detects the shell
    (with shellingham, which the `typer` package brings); without it, the option takes the
    shell's name, and the word is its value."""
    import typer.main

    from tljh_admin.cli.app import app

    for param in typer.main.get_command(app).params:
        if flag in param.opts:
            return bool(param.is_flag)
    return True


def _fast(args: list[str]) -> int | None:
    from tljh_admin.cli import fast

    return fast.try_run(args)


def _typer(args: list[str]) -> int:
    import typer

    from tljh_admin.cli.app import app
    from tljh_admin.errors import Aborted, ExitCode, Stopped, TljhError

    # click's exception base, reached through Typer's public BadParameter: Typer 0.24 uses
    # click, newer Typers a private copy of it
    click_exception = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    try:
        # standalone_mode=False: errors come back here, to be printed on one line
        result = app(args=args, prog_name="tljh", standalone_mode=False)
    except typer.Abort as error:  # click's prompts; ours raise Stopped or Aborted themselves
        if isinstance(error.__cause__ or error.__context__, KeyboardInterrupt):
            raise Stopped("interrupted") from None
        raise Aborted("aborted; nothing was changed") from None
    except click_exception as error:
        if error.exit_code == ExitCode.USAGE:
            from tljh_admin.cli.usage import explain

            raise explain(error, args) from None
        raise TljhError(error.format_message(), exit_code=ExitCode(error.exit_code)) from None
    if result is None:
        return int(ExitCode.OK)
    return int(result)


def _pipe_closed() -> int:
    """End with the code the shell gives a tool SIGPIPE ends."""
    from tljh_admin.errors import ExitCode

    return _discard_stdout(int(ExitCode.PIPE_CLOSED))


def _discard_stdout(code: int) -> int:
    """Send whatever is still buffered for stdout nowhere, so the interpreter's own flush at
    exit cannot fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return code


def _complete() -> int | None:
    """Answer a TAB from the extracted command tree (cli/completion.py) instead of Typer."""
    import os

    from tljh_admin.cli.fast import DISABLE_VAR

    instruction = os.environ.get("_TLJH_COMPLETE", "")
    if not instruction.startswith("complete_") or os.environ.get(DISABLE_VAR) == "0":
        return None
    from tljh_admin.cli.completion import answer

    code = answer(instruction, os.environ)
    if code is None:
        return None
    sys.exit(code)


if __name__ == "__main__":
    main()
