"""Entry point for the `tljh` console script and `python -m tljh_admin`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    from tljh_admin.errors import TljhError

    try:
        from tljh_admin.cli import fast

        code = fast.try_run(args)
        if code is None:
            from tljh_admin.cli.app import app

            app(args=args, prog_name="tljh")
            code = 0
    except TljhError as error:
        from tljh_admin.cli import render

        render.print_error(error)
        code = int(error.exit_code)
    except KeyboardInterrupt:
        from tljh_admin.errors import ExitCode

        sys.stderr.write("tljh: interrupted\n")
        code = int(ExitCode.INTERRUPTED)
    sys.exit(code)


if __name__ == "__main__":
    main()
