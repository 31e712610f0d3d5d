"""Shell completion, the generated files, and the scripting contract."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support import prefixes
from tests.support.cli import read_until_closed, tljh_argv
from tests.support.listing import file_listing, listing_diff
from tljh_admin.cli import spec
from tljh_admin.cli.fast import DISABLE_VAR

# the whole module is in the floor run (scripts/test)
pytestmark = pytest.mark.floor

BIN = str(Path(sys.executable).parent)


def _bash_request(words: str, prefix: Path | None) -> dict[str, str]:
    import shlex

    line = f"tljh --prefix {prefix} {words}" if prefix else f"tljh {words}"
    cword = len(shlex.split(line)) - (0 if line.endswith(" ") else 1)
    return {"COMP_WORDS": line, "COMP_CWORD": str(cword), "_TLJH_COMPLETE": "complete_bash"}


def complete_bash(words: str, prefix: Path | None = None, typer: bool = False) -> list[str]:
    """One TAB through the protocol the bash script uses. `words` ends with a space when the
    word being completed is empty."""
    env = prefixes.hermetic_env(**_bash_request(words, prefix), PATH=os.environ["PATH"])
    if typer:
        env[DISABLE_VAR] = "0"
    proc = subprocess.run(tljh_argv(), capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return sorted(v for v in proc.stdout.split("\n") if v)


def _corpus() -> list[str]:
    """Every command path, its options, and every option's values."""
    lines = []

    def walk(node: dict, path: list[str]) -> None:
        here = " ".join(path) + (" " if path else "")
        lines.extend([here, here + "-", here + "--"])
        for option in node["options"]:
            if option["choices"] or option["complete"]:
                lines.append(f"{here}{option['flags'][0]} ")
        for name, child in node["commands"].items():
            lines.append(here + name[:1])
            walk(child, [*path, name])

    walk(spec.tree(), [])
    return [
        *lines,
        "doctor world",
        "doctor leftovers ",
        "doctor --target=u",
        "doctor --target U",
        "env install -t hub --installer ",
        "env install --target user --dry-run -",
        "env uninstall --target user jupy",
        "env uninstall --target hub ",
        "env uninstall --target user numpy ",
        "env rollback --target user --to ",
        "env packages -t ",
    ]


@pytest.fixture(scope="module")
def prefix_with_history(tmp_path_factory, base_prefix, wheelhouse):
    prefix = prefixes.copy_prefix(base_prefix, tmp_path_factory.mktemp("completion") / "opt tljh")
    env = prefixes.hermetic_env(
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(wheelhouse),
        TLJH_SYSTEM_PYTHON=str(prefixes.find_system_python()),
    )
    subprocess.run(
        tljh_argv("--prefix", prefix, "env", "install", "-t", "user", "oauthenticator", "-y"),
        check=True,
        capture_output=True,
        env=env,
    )
    return prefix


def test_fast_completion_answers_what_typer_answers(prefix_with_history, capsys, monkeypatch):
    """Both answers for every command, option and value, in this process: a Typer completion
    in a child costs a quarter of a second, and the child's entry point is tested below."""
    from tljh_admin.cli.app import app
    from tljh_admin.cli.completion import answer

    spaced = Path(str(prefix_with_history).replace(" ", "\\ "))
    monkeypatch.setenv("TLJH_SYSTEM_PYTHON", str(prefixes.find_system_python()))
    for words in _corpus():
        request = _bash_request(words, spaced)
        assert answer("complete_bash", request) == 0
        ours = sorted(v for v in capsys.readouterr().out.split("\n") if v)
        for name, value in request.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(SystemExit):
            app(args=[], prog_name="tljh")
        theirs = sorted(v for v in capsys.readouterr().out.split("\n") if v)
        assert ours == theirs, words


def test_dynamic_completions(prefix_with_history):
    spaced = Path(str(prefix_with_history).replace(" ", "\\ "))
    assert complete_bash("env uninstall --target user oauth", spaced) == ["oauthenticator"]
    assert "jupyterhub-idle-culler" in complete_bash("env uninstall --target hub ", spaced)
    assert "jupyterlab" not in complete_bash("env uninstall --target hub ", spaced)  # per env
    assert complete_bash("doctor world", spaced) == ["world-writable"]
    assert complete_bash("env rollback --target user --to ", spaced) == ["1"]
    assert complete_bash("env install --target ", spaced) == ["hub", "system", "user"]
    # bash splits `--target=user` at `=`; `--target USER` is accepted by the command
    assert complete_bash("env uninstall --target = user oauth", spaced) == ["oauthenticator"]
    assert complete_bash("env uninstall --target USER oauth", spaced) == ["oauthenticator"]
    assert complete_bash("env install --target = ", spaced) == ["hub", "system", "user"]


def test_completion_never_writes_or_locks(prefix_with_history, tmp_path):
    before = file_listing(prefix_with_history)
    spaced = Path(str(prefix_with_history).replace(" ", "\\ "))
    for words in ("env uninstall --target user ", "env rollback --target user --to ", "doctor "):
        assert complete_bash(words, spaced)
    assert listing_diff(before, file_listing(prefix_with_history)) == []
    # a prefix that is not there: no suggestions, no error, nothing created
    assert complete_bash("env uninstall --target user ", tmp_path / "nowhere") == []
    assert not (tmp_path / "nowhere").exists()


def test_generated_files_are_fresh():
    from importlib.metadata import version

    recorded = (REPO / "docs" / "cli.md").read_text().splitlines()[0]
    proc = subprocess.run(
        [sys.executable, REPO / "scripts" / "generate.py", "--check"], capture_output=True, text=True
    )
    if f"(Typer {version('typer')})" in recorded:
        assert proc.returncode == 0, f"run scripts/generate.py:\n{proc.stdout}"
    else:  # generated with another Typer: the words may differ, the commands may not
        docs = (REPO / "docs" / "cli.md").read_text()
        for command in ("tljh env install", "tljh env rollback", "tljh doctor", "tljh upgrade"):
            assert f"`{command}`" in docs


def _bash_complete(words: list[str], prefix: Path) -> list[str]:
    """Source the generated script in a real bash and call its function as bash would."""
    import shlex

    all_words = ["tljh", "--prefix", str(prefix), *words]
    script = (
        f"source {shlex.quote(str(REPO / 'completions' / 'tljh.bash'))}\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in all_words)})\n"
        f"COMP_CWORD={len(all_words) - 1}\n"
        "_tljh_completion tljh\n"
        "printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop(DISABLE_VAR, None)
    proc = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return sorted(v for v in proc.stdout.split("\n") if v)


def test_real_bash_loads_the_script_and_completes(base_prefix, tmp_path):
    link = tmp_path / "prefix"  # no spaces: bash's word splitting is not what is tested here
    link.symlink_to(base_prefix)
    assert _bash_complete(["e"], link) == ["env"]
    assert _bash_complete(["env", "install", "--target", ""], link) == ["hub", "system", "user"]
    assert _bash_complete(["env", "uninstall", "--target", "user", "jupyterl"], link) == ["jupyterlab"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is installed by scripts/test (apt)")
def test_zsh_script_parses():
    proc = subprocess.run(["zsh", "-n", REPO / "completions" / "_tljh"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is installed by scripts/test (apt)")
def test_real_fish_loads_the_script_and_completes(base_prefix, tmp_path):
    script = REPO / "completions" / "tljh.fish"
    assert subprocess.run(["fish", "--no-execute", script], capture_output=True).returncode == 0
    link = tmp_path / "prefix"
    link.symlink_to(base_prefix)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    env.pop(DISABLE_VAR, None)
    for line, expected in (
        ("tljh doctor world", "world-writable"),
        (f"tljh --prefix {link} env uninstall --target user jupyterl", "jupyterlab"),
    ):
        proc = subprocess.run(
            ["fish", "--no-config", "-c", f"source {script}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert expected in proc.stdout.split(), (line, proc.stdout)


def test_install_completion_keeps_working(tmp_path):
    # Typer detects the shell (a shell name after the flag is refused: test_cli.py)
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    proc = subprocess.run(tljh_argv("--install-completion"), env=env)
    assert proc.returncode == 0
    assert "tljh" in (tmp_path / ".bashrc").read_text()


# -- the scripting contract --------------------------------------------------------------------

REPORTS = [
    ["env", "list", "--json"],
    ["env", "packages", "--target", "user", "--json"],
    ["env", "history", "--json"],
    ["doctor", "--json"],
    ["doctor", "--list", "--json"],
]


def _run_in_pty(argv: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """stdout on a pseudo-terminal (as when an admin pipes nothing), stderr on a pipe."""
    main, child = pty.openpty()
    proc = subprocess.Popen(argv, stdout=child, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    os.close(child)
    out = read_until_closed(main)
    _, err = proc.communicate()
    os.close(main)
    return proc.returncode, out, err


@pytest.mark.parametrize("argv", REPORTS, ids=" ".join)
@pytest.mark.parametrize("fastpath", ["1", "0"])
def test_json_on_stdout_only_even_on_a_colour_terminal(prefix_with_history, argv, fastpath):
    import json

    env = prefixes.hermetic_env(
        NO_COLOR="",
        TERM="xterm-256color",
        FORCE_COLOR="",
        TLJH_SYSTEM_PYTHON=str(prefixes.find_system_python()),
    )
    env[DISABLE_VAR] = fastpath
    code, out, _ = _run_in_pty(tljh_argv("--prefix", prefix_with_history, *argv), env)
    assert code == 0
    text = out.decode().replace("\r\n", "\n")
    assert "\x1b" not in text
    doc = json.loads(text)
    assert {"schema", "version"} <= set(doc)


def test_quiet_keeps_data_and_errors(tljh, prefix, wheelhouse):
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}
    loud = tljh(
        "--prefix", prefix, "env", "install", "-t", "user", "oauthenticator", "--dry-run", env=offline
    )
    quiet = tljh(
        "--prefix", prefix, "-q", "env", "install", "-t", "user", "oauthenticator", "--dry-run", env=offline
    )
    assert loud.stderr and not quiet.stderr
    assert loud.stdout == quiet.stdout and "oauthenticator" in quiet.stdout
    error = tljh("--prefix", prefix / "nope", "-q", "env", "list")
    assert error.code == 2 and error.stderr.startswith("tljh: error:")


@pytest.mark.parametrize("no_color", ["1", ""])
def test_no_color_means_no_escape_codes(base_prefix, no_color):
    env = prefixes.hermetic_env(TERM="xterm-256color", TLJH_SYSTEM_PYTHON=str(prefixes.find_system_python()))
    env["NO_COLOR"] = no_color
    code, out, _ = _run_in_pty(tljh_argv("--prefix", base_prefix, "env", "list"), env)
    assert code == 0
    # on a colour terminal the table has escape codes; NO_COLOR removes every one of them
    assert ("\x1b[" in out.decode()) is (no_color == "")


# -- one definition: the data completion and the fast path read follow the app ----------------

# What a helper adding a command would write into app.py (a new command with a choice, a
# repeatable option and a completer), and one option added to an existing command.
_NEW_COMMAND = """

@env_app.command("rebuild")
def env_rebuild(
    ctx: typer.Context,
    target: TargetOption,
    mode: Annotated[Target, typer.Option("--mode", "-m", case_sensitive=False, help="test")] = Target.hub,
    keep: Annotated[list[str] | None, typer.Option("--keep", help="test")] = None,
    to: Annotated[int | None, typer.Option("--to", autocompletion=for_typer("history_ids"))] = None,
    dry_run: DryRunFlag = False,
) -> ExitCode:
    return ExitCode.OK
"""
_STRICT = '    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too.")] = False,\n'
_DEEP = '    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="test")] = False,\n'


def _branch_of_the_app(tmp_path: Path) -> dict:
    """app.py edited as a helper would, imported as its own module, and its tree extracted and
    written out by the same code scripts/generate.py runs."""
    import importlib.util

    from tljh_admin.cli import specgen

    source = (REPO / "src" / "tljh_admin" / "cli" / "app.py").read_text()
    assert source.count(_STRICT) == 1
    (tmp_path / "branch_app.py").write_text(source.replace(_STRICT, _STRICT + _DEEP) + _NEW_COMMAND)
    found = importlib.util.spec_from_file_location("branch_app", tmp_path / "branch_app.py")
    module = importlib.util.module_from_spec(found)
    sys.modules["branch_app"] = module  # typing.get_type_hints resolves names through it
    try:
        found.loader.exec_module(module)
        written = specgen.render_module(specgen.extract(module.app), "test")
    finally:
        del sys.modules["branch_app"]
    namespace: dict = {}
    exec(written, namespace)
    return namespace["SPEC"]


def test_options_added_to_the_app_reach_completion_and_the_fast_path(tmp_path):
    from tljh_admin.cli import fast
    from tljh_admin.cli.completion import completions

    tree = _branch_of_the_app(tmp_path)
    assert completions(["doctor"], "--pro", root=tree) == ["--probe"]
    assert completions(["doctor"], "--no-p", root=tree) == ["--no-probe"]
    assert "rebuild" in completions(["env"], "", root=tree)
    assert completions(["env", "rebuild"], "-", root=tree) == [
        "--target", "-t", "--mode", "-m", "--keep", "--to", "--dry-run", "--help"
    ]  # fmt: skip
    assert completions(["env", "rebuild", "--mode"], "U", root=tree) == ["user"]
    assert completions(["env", "rebuild", "--keep", "a"], "--k", root=tree) == ["--keep"]  # repeatable
    (to,) = [o for o in tree["commands"]["env"]["commands"]["rebuild"]["options"] if o["name"] == "to"]
    assert (to["type"], to["complete"]) == ("int", "history_ids")
    # the fast path parses the new option from the tree; the shared body does not take it yet,
    # so the Typer app answers
    parsed = fast.parse(["doctor", "--json", "--probe", "-t", "USER"], root=tree)
    assert parsed == (("doctor",), {}, {"json": True, "probe": True, "target": ["user"]})
    assert "probe" not in fast._accepts(fast.RUNNERS[("doctor",)])
    # and the real tree does not know --probe: nothing leaks from the branch
    assert fast.parse(["doctor", "--json", "--probe"]) is None
    assert spec.find_option(spec.tree()["commands"]["doctor"], "--probe") is None


@pytest.mark.parametrize(
    "request_env",
    [
        {"COMP_WORDS": 'tljh env apply "my\\', "COMP_CWORD": "3", "_TLJH_COMPLETE": "complete_bash"},
        {"_TYPER_COMPLETE_ARGS": "tljh env apply 'it\\'s", "_TLJH_COMPLETE": "complete_fish"},
        {"_TYPER_COMPLETE_ARGS": "tljh env apply 'it\\'s", "_TLJH_COMPLETE": "complete_zsh"},
    ],
)
def test_a_tab_inside_an_open_quote_never_prints_a_traceback(request_env):
    # before: shlex's "No closing quotation" traceback, printed at the admin's prompt
    env = prefixes.hermetic_env(**request_env, PATH=os.environ["PATH"])
    proc = subprocess.run(tljh_argv(), capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
