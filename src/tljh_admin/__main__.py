"""Entry point for the `tljh` console script and `python -m tljh_admin`.

The one place that turns errors into exit codes and one-line messages.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    from tljh_admin.errors import ExitCode, TljhError

    try:
        from tljh_admin.cli import fast

        code = _complete() or fast.try_run(args)
        if code is None:
            from tljh_admin.cli.app import app

            # standalone_mode=False: usage errors come back here, to be printed on one line
            result = app(args=args, prog_name="tljh", standalone_mode=False)
            code = result if isinstance(result, int) else 0
    except TljhError as error:
        from tljh_admin.cli import render

        render.print_error(error)
        code = int(error.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("tljh: interrupted\n")
        code = int(ExitCode.INTERRUPTED)
    except Exception as error:
        if not _is_usage_error(error):
            raise
        from tljh_admin.cli import render

        render.print_error(TljhError(error.format_message(), hint=_usage_hint(args)))
        code = int(ExitCode.USAGE)
    sys.exit(code)


def _complete() -> int | None:
    """Answer a TAB from the completion table (cli/completion.py) instead of Typer."""
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


def _is_usage_error(error: Exception) -> bool:
    """Click's usage errors (Typer re-raises them with standalone_mode=False), told by shape
    so as not to import Typer's private click copy."""
    return hasattr(error, "format_message") and getattr(error, "exit_code", None) == 2


def _usage_hint(args: list[str]) -> str:
    words = [a for a in args if not a.startswith("-")][:2]
    return f"see `tljh {' '.join(words)} --help`".replace("  ", " ") if words else "see `tljh --help`"


if __name__ == "__main__":
    main()
