"""The command line as people meet it: the prompt and Ctrl-C / Ctrl-D on a real terminal, a
closed pipe, usage errors that point at commands that exist, and output at 80 columns that
can be copied and pasted."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support import prefixes
from tests.support.cli import read_until_closed, start_at_prompt, tljh_argv
from tests.support.listing import file_listing, listing_diff
from tljh_admin.cli import spec
from tljh_admin.cli.fast import DISABLE_VAR
from tljh_admin.errors import ExitCode

# the whole module is in the floor run (scripts/test)
pytestmark = pytest.mark.floor


def _environments(prefix: Path) -> dict:
    """hub and user (state/ is tljh-admin's own: a lock file appears there while it asks)."""
    return {f"{env}/{k}": v for env in ("hub", "user") for k, v in file_listing(prefix / env).items()}


@pytest.mark.parametrize(("key", "code", "words"), [(b"\x03", 130, "interrupted"), (b"\x04", 1, "no answer")])
def test_ctrl_c_and_ctrl_d_at_the_prompt(prefix, wheelhouse, system_python, key, code, words):
    before = _environments(prefix)
    env = prefixes.hermetic_env(
        NO_COLOR="1", TLJH_SYSTEM_PYTHON=str(system_python), PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse)
    )
    args = ["env", "install", "-t", "user", "numpy==2.1.0"]
    proc, main, _ = start_at_prompt(prefix, args, env, controlling=True)
    try:
        os.write(main, key)
        assert proc.wait(timeout=60) == code
    finally:
        proc.kill()
    rest = read_until_closed(main).decode().replace("\r\n", "\n")
    os.close(main)
    # the terminal echoes the key as ^C / ^D, on a line of its own or, by timing, before ours
    lines = [line.removeprefix("^C").removeprefix("^D") for line in rest.splitlines()]
    lines = [line for line in lines if line.strip()]
    assert len(lines) == 1, rest
    assert lines[0].startswith("tljh: error: ") and words in lines[0] and "nothing was changed" in lines[0]
    assert listing_diff(before, _environments(prefix)) == []


@pytest.mark.parametrize("fastpath", ["1", "0"])
@pytest.mark.parametrize(
    "argv",
    [
        ["env", "list", "--json"],
        ["env", "list"],
        ["doctor", "--list"],
        ["env", "packages", "-t", "hub"],
        ["--help"],  # before: exit 1 (click's, for the eager options printed while parsing)
        ["--version"],
        ["env", "--help"],
    ],
    ids=" ".join,
)
def test_a_closed_stdout_ends_quietly(shared_prefix, system_python, argv, fastpath):
    # `tljh env list --json | head -c 10`, made certain: the reading end is closed before
    # tljh writes anything
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = prefixes.hermetic_env(NO_COLOR="1", TLJH_SYSTEM_PYTHON=str(system_python))
    env[DISABLE_VAR] = fastpath
    proc = subprocess.run(
        tljh_argv("--prefix", shared_prefix, *argv),
        stdout=write_end,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    os.close(write_end)
    assert (proc.returncode, proc.stderr) == (ExitCode.PIPE_CLOSED, "")


@pytest.mark.parametrize("fastpath", ["1", "0"])
def test_closed_or_full_standard_streams_are_no_traceback(
    shared_prefix, system_python, wheelhouse, tmp_path, fastpath
):
    """`tljh ... >&-`, `>/dev/full`, `2>&-`: never a traceback. A full stdout is one line and
    exit 74 (EX_IOERR); a closed stdout or stderr keeps the command's own exit code, and the
    descriptor is /dev/null, so no file tljh-admin opens becomes its stdout."""
    env = prefixes.hermetic_env(NO_COLOR="1", TLJH_SYSTEM_PYTHON=str(system_python))
    env[DISABLE_VAR] = fastpath

    def run(argv, close=(), **streams):
        streams.setdefault("stdout", subprocess.DEVNULL)
        streams.setdefault("stderr", subprocess.PIPE)
        return subprocess.run(
            tljh_argv(*argv), env=env, text=True, preexec_fn=lambda: [os.close(fd) for fd in close], **streams
        )

    listing = ["--prefix", shared_prefix, "env", "list", "--json"]
    with open("/dev/full", "w") as full:
        filled = run(listing, stdout=full)
    assert filled.returncode == ExitCode.IO_ERROR
    (line,) = filled.stderr.splitlines()
    assert line.startswith("tljh: error: input/output error: No space left on device. Hint: free space")
    closed = run(listing, close=[1])
    assert (closed.returncode, closed.stderr) == (ExitCode.OK, "")
    missing = ["--prefix", tmp_path / "nowhere", "env", "list"]
    for close in ([2], [1, 2]):
        assert run(missing, close=close, stderr=None).returncode == ExitCode.USAGE
    # stdin closed: no terminal to ask on, so a change without --yes is refused in one line
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse))
    asked = run(["--prefix", shared_prefix, "env", "install", "-t", "user", "oauthenticator"], close=[0])
    assert asked.returncode == ExitCode.USAGE and "--yes" in asked.stderr and "Traceback" not in asked.stderr


def _commands_named_in(hint: str) -> list[list[str]]:
    return [text.split()[1:] for text in re.findall(r"`(tljh[^`]*)`", hint)]


def _exists(words: list[str]) -> bool:
    node = spec.tree()
    for word in words:
        if word.startswith("-"):
            break
        if word not in node["commands"]:
            return not node["commands"]  # arguments after a leaf command
        node = node["commands"][word]
    return True


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["instal", "numpy"], "did you mean `tljh env install`?"),
        (["env", "instal"], "did you mean `tljh env install`?"),
        (["doctr"], "did you mean `tljh doctor`?"),
        (["env", "packages", "--target", "usr"], "did you mean --target user?"),
        (["env", "install", "-t", "hubb", "x", "--dry-run"], "did you mean --target hub?"),
        (["doctor", "--target=sytem"], "did you mean --target system?"),
        (["env", "packages", "-t=user", "--json"], "'=user' is not one of hub, user, system"),
        # a mistyped option among the packages, named before "no terminal to ask" (no tty here)
        (["env", "install", "-t", "user", "numpy", "--dry-rnu"], "did you mean --dry-run?"),
        (["env", "uninstall", "-t", "user", "numpy", "--yess"], "did you mean --yes?"),
        (["env", "packages"], "needs --target (one of: hub, user, system)"),
        (["env", "rollback", "-t", "user", "--to", "last"], "'last' is not a whole number"),
        (["env", "list", "--jsn"], "see `tljh env list --help`"),
        (["bogus"], "`tljh` has: doctor, plugins, upgrade, env"),
        ([], "`tljh` needs a command: doctor, plugins, upgrade, env"),  # not the help on one line
        (["env"], "`tljh env` needs a command: list, packages"),
    ],
)
def test_usage_errors_are_one_line_and_point_at_commands_that_exist(tljh, shared_prefix, argv, expected):
    result = tljh("--prefix", shared_prefix, *argv, env={DISABLE_VAR: "0"})
    assert result.code == ExitCode.USAGE
    (line,) = result.stderr.splitlines()
    assert line.startswith("tljh: error: ") and expected in line, line
    assert all(_exists(words) for words in _commands_named_in(line)), line
    assert "Value error" not in line and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("words", "flag", "shown"),
    [
        (["env", "uninstall", "-t", "hub", "numpy", "--target", "user"], "--target", "'hub', then 'user'"),
        (["env", "uninstall", "-thub", "--target=user", "numpy"], "--target", "'hub', then 'user'"),
        (["--prefix", "/nowhere", "env", "uninstall", "-t", "user", "numpy"], "--prefix", "then '/nowhere'"),
    ],
)
def test_an_option_given_twice_is_refused_not_the_last_one_taken(tljh, prefix, words, flag, shown):
    # click keeps the last value without a word: `-t hub ... -t user` would change the user env
    before = file_listing(prefix)
    result = tljh("--prefix", prefix, *words, "--yes")
    assert result.code == ExitCode.USAGE
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert f"got {flag} more than once" in line and shown in line and f"give {flag} once" in line
    assert listing_diff(before, file_listing(prefix)) == []


def test_repeated_option_reads_the_tree_as_click_does():
    # values that look like options, `--`, options that may repeat, and each command's own
    assert spec.repeated_option(["env", "install", "-t", "user", "--", "-t", "hub"]) is None
    assert spec.repeated_option(["doctor", "--target", "hub", "--target", "user"]) is None  # multiple
    assert spec.repeated_option(["env", "install", "--extra-index-url", "a", "--extra-index-url=b"]) is None
    assert spec.repeated_option(["env", "install", "-i", "a", "-t", "user", "--index-url=b"])[2] == ["a", "b"]
    found = spec.repeated_option(["--prefix", "a", "--prefix=b", "env", "list"])
    assert found is not None and found[1]["flags"][0] == "--prefix" and found[2] == ["a", "b"]


def test_targets_are_case_insensitive(tljh, shared_prefix):
    lower = tljh("--prefix", shared_prefix, "env", "packages", "--target", "user", "--json")
    for spelling in ("USER", "User"):
        for fastpath in ("1", "0"):
            other = tljh(
                "--prefix",
                shared_prefix,
                "env",
                "packages",
                "-t",
                spelling,
                "--json",
                env={DISABLE_VAR: fastpath},
            )
            assert (other.code, other.stdout) == (lower.code, lower.stdout)


CHANGE_COMMANDS = [["env", "install"], ["env", "uninstall"], ["env", "rollback"], ["upgrade"]]


@pytest.mark.parametrize("command", CHANGE_COMMANDS, ids=" ".join)
def test_change_commands_help_ends_with_examples(tljh, command):
    result = tljh(*command, "--help", env={"COLUMNS": "80"})
    assert result.code == 0
    tail = result.stdout.rstrip().split("Examples:")[-1].strip().splitlines()
    assert 2 <= len(tail) <= 3
    for example in tail:
        words = example.split()
        assert words[words[0] == "sudo"] == "tljh" and _exists(words[1 + (words[0] == "sudo") :])


@pytest.fixture
def faulty_prefix(prefix, wheelhouse) -> Path:
    """Faults doctor explains with a hint each: world-writable files, a leftover of a killed
    pip, a server package in the hub, no single-user server in the user env."""
    (site,) = (prefix / "user").glob("lib/python3.*/site-packages")
    prefixes.own(prefix / "hub" / "bin" / "activate").chmod(0o646)
    (prefix / "hub").chmod(0o757)
    (site / "~umpy").mkdir()
    prefixes.run(
        [prefix / "user" / "bin" / "python3", "-m", "pip", "uninstall", "-y", "jupyterlab", "notebook"]
    )
    prefixes.pip_install(prefix / "hub", wheelhouse, "--no-deps", "jupyter-server==2.14.2")
    return prefix


def test_every_doctor_hint_is_one_line_at_80_columns(tljh, faulty_prefix):
    doc = tljh("--prefix", faulty_prefix, "doctor", "--json").json()
    hints = {f["hint"] for c in doc["checks"] for f in c["findings"] if f["hint"] and f["status"] != "ok"}
    assert len(hints) >= 4, hints  # the faults above were all found
    human = tljh("--prefix", faulty_prefix, "doctor", env={"COLUMNS": "80"})
    lines = [line.strip() for line in human.stdout.splitlines()]
    for hint in hints:
        assert f"-> {hint}" in lines, hint  # whole, on its own line: select it and paste it
    assert any(len(line) > 80 for line in lines)  # long lines are left for the terminal to fold


@pytest.mark.parametrize(
    "argv", [["env", "list"], ["env", "packages", "-t", "user"], ["doctor", "--list"]], ids=" ".join
)
def test_tables_fit_80_columns_and_keep_ids_whole(tljh, shared_prefix, argv):
    result = tljh("--prefix", shared_prefix, *argv, env={"COLUMNS": "80"})
    assert result.code == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= 80 for line in table), result.stdout
    if argv == ["doctor", "--list"]:
        from tljh_admin.doctor import REGISTRY

        ids = {line.split("│")[1].strip() for line in table if line.startswith("│")}
        assert {check.id for check in REGISTRY} <= ids


def test_every_module_imports_and_plugins_runs(tljh, shared_prefix):
    """For the floor run (Python 3.10, Typer 0.24): modules whose scenarios it leaves out
    (rebuild, the conda installer) still import there, and `plugins` runs."""
    import importlib
    import pkgutil

    import tljh_admin

    names = [m.name for m in pkgutil.walk_packages(tljh_admin.__path__, "tljh_admin.")]
    assert {"tljh_admin.rebuild", "tljh_admin.plugins", "tljh_admin.conda"} <= set(names)
    for name in names:
        importlib.import_module(name)
    view = tljh("--prefix", shared_prefix, "plugins", "--json")
    assert view.code == 0, view.stderr
    assert view.json()["plugins"] == []


@pytest.mark.parametrize("words", [["upgrade"], ["env", "rebuild", "--target", "hub"]])
def test_plan_only_json_with_yes_is_refused(tljh, prefix, words):
    # `--json` prints the plan and stops: with --yes a script would read "changed": true for
    # a change that never ran (before: exit 0, nothing done)
    before = file_listing(prefix)
    result = tljh("--prefix", prefix, *words, "--yes", "--json")
    assert result.code == ExitCode.USAGE
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "prints the plan only" in line and "--dry-run" in line
    assert listing_diff(before, file_listing(prefix)) == []


@pytest.mark.parametrize(
    ("program", "words"), [("/bin/true", "not a Python interpreter"), ("/bin/false", "status 1")]
)
def test_rebuild_with_a_system_python_that_is_no_python(tljh, prefix, program, words):
    # before: /bin/true gave a JSONDecodeError traceback, /bin/false "does not run: ." (no reason)
    before = file_listing(prefix)
    result = tljh("--prefix", prefix, "--system-python", program, "env", "rebuild", "-t", "hub", "--dry-run")
    assert result.code == ExitCode.USAGE, result.stderr
    (line,) = result.stderr.splitlines()
    assert words in line and "Hint:" in line
    assert listing_diff(before, file_listing(prefix)) == []


def test_history_prints_control_characters_as_escapes(capsys, monkeypatch):
    # a recorded command line is text from a file: an ESC sequence in it (a prefix path, an
    # argument) must not reach the admin's terminal as one
    from tljh_admin.cli import render

    monkeypatch.setenv("COLUMNS", "200")
    entry = {
        "id": 1,
        "time": "2026-11-27T10:00:00Z",
        "who": "root",
        "target": "user",
        "command": "tljh --prefix /opt/\x1b]0;owned\x07tljh env install -t user numpy",
        "before": {"user": {}},
        "after": {"user": {"numpy": "2.1.0"}},
        "result": "ok",
    }
    render.history_table([entry])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;owned\\x07" in out


@pytest.mark.parametrize("flag", ["--install-completion", "--show-completion"])
def test_a_shell_name_after_the_completion_flags_is_refused_not_ignored(tljh, tmp_path, flag):
    """Before: the word was never read, and `tljh --install-completion zsh` run from bash
    wrote bash's script into ~/.bashrc."""
    home = tmp_path / "home"
    home.mkdir()
    result = tljh(flag, "zsh", env={"HOME": str(home), "SHELL": "/bin/bash"})
    assert result.code == ExitCode.USAGE and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert f"{flag} takes no shell name ('zsh')" in line and "Hint:" in line, line
    assert list(home.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "words"), [("١", "'١' is not a number"), ("nan", "nan is not a number of")]
)
def test_the_fast_path_and_typer_judge_a_lock_timeout_alike(tljh, shared_prefix, value, words):
    """Before: the fast path took "١" (Python's float() does) where Typer 0.29 did not, and
    the two worded nan and inf differently."""
    argv = ("--prefix", shared_prefix, "doctor", "--json", "--lock-timeout", value, "unfinished-change")
    fast, typer_path = (tljh(*argv, env={DISABLE_VAR: flag}) for flag in ("1", "0"))
    assert fast.code == typer_path.code == ExitCode.USAGE
    assert fast.stderr == typer_path.stderr and words in fast.stderr, (fast.stderr, typer_path.stderr)
    (line,) = fast.stderr.splitlines()
    assert line.endswith("Hint: see `tljh doctor --help`"), line
