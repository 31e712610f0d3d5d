"""Will the environments' programs really run: the hub's interpreter is the Python its
venv was made with, console scripts point at an interpreter that is there and theirs, and
(--deep, the only checks that start processes) jupyterhub imports in the hub and
`jupyterhub-singleuser` starts for an unprivileged user."""

from __future__ import annotations

import os
import re

from tljh_admin.doctor.context import Context
from tljh_admin.doctor.integrity import _examples, _full_path, _relevant, quoted
from tljh_admin.doctor.model import (
    FAILED,
    HUB_FAILS,
    SKIPPED,
    SKIPPED_NEEDS_ROOT,
    SPAWNS_FAIL,
    WARNING,
    Finding,
)
from tljh_admin.envs.backends import binary_version
from tljh_admin.envs.sitepackages import canonical_name, read_record_paths
from tljh_admin.files import open_binary
from tljh_admin.layout import HUB, SYSTEM, USER, system_program

REBUILD_HUB = "sudo tljh env rebuild --target hub"
FIX_READABLE = "sudo tljh doctor --fix users-can-read"

# pip/distlib's launcher for interpreter paths with spaces or over 127 bytes:
#   #!/bin/sh
#   '''exec' "/opt tljh/user/bin/python3" "$0" "$@"
_TRAMPOLINE = re.compile(rb"'''exec' (\"[^\"]+\"|\S+)")
_SCRIPT_HEAD = 1024

# Debian's base-passwd gives `nobody` uid and gid 65534; tests/conftest.py's NOBODY too
NOBODY_ID = 65534
# long enough for a cold import of jupyterhub (hundreds of modules) on a slow disk
DEEP_TIMEOUT_SECONDS = 120


def _short(version: str | None) -> str:
    return ".".join((version or "").split(".")[:2])


def hub_venv_base(ctx: Context, name: str) -> list[Finding]:
    hub = ctx.env(HUB)
    if hub.kind != "venv" or not hub.venv_base:
        return [Finding(SKIPPED, "the hub is not a venv", hub.root, "")]
    home, version = hub.venv_base
    made_with = _short(version)
    cfg = os.path.join(hub.root, "pyvenv.cfg")
    link = hub.interpreter
    base = [os.path.join(home, f"python{made_with}"), os.path.join(home, "python3")]
    if not any(os.path.isfile(c) and os.access(c, os.X_OK) for c in base):
        message = f"the hub venv was made by Python {version} in {home}, which is no longer there"
        return [Finding(FAILED, message + ": the hub cannot start", cfg, REBUILD_HUB, None, HUB_FAILS)]
    if not link.runnable:
        message = f"the hub venv's {link.path} cannot run ({link.end} is not an interpreter)"
        return [Finding(FAILED, message + ": the hub cannot start", link.path, REBUILD_HUB, None, HUB_FAILS)]
    script = _script_line(link.end)
    if script:
        return [
            Finding(
                WARNING,
                f"the hub venv's {link.path} is a script ({script}), not a Python: which Python the hub"
                " runs, and whether it starts, is not known without starting it (tljh doctor --deep)",
                link.path,
                REBUILD_HUB,
                None,
                HUB_FAILS,
            )
        ]
    runs = binary_version(link.end)
    if runs is None:
        return [Finding(SKIPPED, f"cannot tell which Python {link.end} is", link.path, "")]
    package_dirs = sorted({os.path.basename(os.path.dirname(d.location)) for d in hub.distributions})
    problems = []
    if made_with and runs != made_with:
        problems.append(f"pyvenv.cfg says the venv was made by Python {version}")
    if package_dirs and f"python{runs}" not in package_dirs:
        problems.append(
            f"its packages are in lib/{', lib/'.join(package_dirs)}, which Python {runs} does not read: "
            "the hub cannot import jupyterhub"
        )
    if problems:
        return [
            Finding(
                FAILED,
                f"{link.path} runs Python {runs} ({link.end}), but "
                + "; and ".join(problems)
                + " (the OS Python moved on under the venv)",
                link.path,
                REBUILD_HUB,
                None,
                HUB_FAILS,
            )
        ]
    system = ctx.env(SYSTEM)
    system_short = _short(system.python_version)
    if system.ok and system_short and system_short != made_with:
        return [
            Finding(
                WARNING,
                f"the hub venv runs Python {made_with}, the system python3 is {system_short}: the next OS "
                f"upgrade that removes Python {made_with} stops the hub",
                cfg,
                REBUILD_HUB,
                None,
                HUB_FAILS,
            )
        ]
    return []


# -- console scripts -----------------------------------------------------------------------


def script_interpreter(head: bytes) -> str | None:
    """The interpreter a script's `#!` line names (through pip's /bin/sh launcher)."""
    if not head.startswith(b"#!"):
        return None
    first, _, rest = head.partition(b"\n")
    words = first[2:].split()
    if not words:
        return None
    if words[0] in (b"/bin/sh", b"/usr/bin/sh") and rest.startswith(b"'''exec'"):
        match = _TRAMPOLINE.match(rest)
        return os.fsdecode(match.group(1).strip(b'"')) if match else None
    return os.fsdecode(words[0])


def _bad_scripts(root: str) -> dict[tuple[str, str], list[str]]:
    """{(interpreter, what is wrong): [script paths]} for bin/ scripts whose #! names a Python
    that is missing or outside the environment (`#!/usr/bin/env python3` is left alone)."""
    bad: dict[tuple[str, str], list[str]] = {}
    inside = root.rstrip("/") + "/"
    try:
        entries = list(os.scandir(os.path.join(root, "bin")))
    except OSError:
        return bad
    for entry in entries:
        if not entry.is_file(follow_symlinks=False):
            continue  # bin/python* are symlinks (mode 777 by nature): not scripts
        try:
            with open_binary(entry.path) as f:
                head = f.read(_SCRIPT_HEAD)
        except OSError:
            continue
        interpreter = script_interpreter(head)
        if not interpreter or not os.path.basename(interpreter).startswith("python"):
            continue
        interpreter = os.path.normpath(interpreter)
        if not (os.path.isfile(interpreter) and os.access(interpreter, os.X_OK)):
            bad.setdefault((interpreter, "missing"), []).append(entry.path)
        elif not interpreter.startswith(inside):
            bad.setdefault((interpreter, "outside"), []).append(entry.path)
    return bad


def _owners(ctx: Context, name: str, scripts: set[str]) -> list[str]:
    """NAME==VERSION of the distributions whose RECORD lists these scripts (only the rows
    that can name a script are made full paths)."""
    owners = []
    for dist in _relevant(ctx, name):
        rows = read_record_paths(dist) or ()
        if any(_full_path(dist.location, path) in scripts for path in rows if "bin/" in path):
            owners.append(f"{dist.name}=={dist.version}")
    return sorted(owners, key=canonical_name)


def _script_line(path: str) -> str:
    """The `#!` line of `path` when it is a script (a venv's bin/python3 is a link to a
    Python binary, or a copy of one), else ""."""
    try:
        with open_binary(path) as f:
            head = f.read(_SCRIPT_HEAD)
    except OSError:
        return ""
    if not head.startswith(b"#!"):
        return ""
    return head.split(b"\n", 1)[0].decode("utf-8", "replace").strip()


def pth_files(ctx: Context, name: str) -> list[Finding]:
    """The env's Python reads every .pth file of its site folders at each start
    (site.addpackage): one it cannot read as UTF-8 text stops it, in every CPython from 3.11
    to 3.13 under a UTF-8 locale (what systemd's C locale becomes, PEP 538); a FIFO hangs
    it (opened without O_NONBLOCK); a huge one is read whole. A folder, or a symlink that
    leads nowhere, is skipped by site.py and harmless."""
    env = ctx.env(name)
    if not env.site_dirs:
        return [Finding(SKIPPED, f"the {name} environment has no site folder", env.root, "")]
    found = []
    for site in env.site_dirs:
        try:
            # site.py skips hidden ones (CPython 3.13's addsitedir; older ones read them too,
            # so those are looked at all the same)
            names = sorted(n for n in os.listdir(site) if n.endswith(".pth"))
        except OSError:
            continue  # users-can-read and env-present say why
        for file_name in names:
            path = os.path.join(site, file_name)
            problem = _pth_problem(path)
            if problem:
                found.append(
                    Finding(
                        FAILED,
                        f"{file_name} {problem}; {_STARTS[name]} reads every .pth file at start",
                        path,
                        f"sudo mv {quoted(path)} /root/ (then reinstall the package that wrote it:"
                        f" tljh env install --target {name} --force-reinstall NAME)",
                    )
                )
    return found


_STARTS = {HUB: "the hub's Python (the hub itself)", USER: "the user env's Python (every user server)"}


def _pth_problem(path: str) -> str | None:
    import stat

    from tljh_admin.files import utf8_text

    try:
        st = os.stat(path)
    except OSError:
        return None  # leads nowhere, or not ours to see: site.py skips what it cannot open
    if stat.S_ISFIFO(st.st_mode):
        return "is a FIFO: opening it waits for a writer, so Python hangs at start"
    if stat.S_ISDIR(st.st_mode):
        return None
    if not stat.S_ISREG(st.st_mode):
        return "is a device, not a file"
    _, why = utf8_text(path)  # over READ_LIMIT too: Python reads it whole at every start
    if why and why.startswith("is not UTF-8"):
        return f"{why}: Python stops at start with a UnicodeDecodeError"
    return why


def script_shebangs(ctx: Context, name: str) -> list[Finding]:
    env = ctx.env(name)
    if not env.root or not os.path.isdir(env.root):
        return [Finding(SKIPPED, f"the {name} environment is missing", env.root, "")]
    found = []
    for (interpreter, wrong), scripts in sorted(_bad_scripts(env.root).items()):
        names = sorted(os.path.basename(s) for s in scripts)
        owners = _owners(ctx, name, set(scripts))
        what = (
            "which is missing"
            if wrong == "missing"
            else "outside this environment (a prefix copied or moved by hand?)"
        )
        effect = (
            "users' servers that start them fail"
            if name == USER
            else "they fail, or run another Python as root"
        )
        found.append(
            Finding(
                FAILED,
                f"{len(scripts)} scripts in bin/ start {interpreter}, {what}: {_examples(names)}; {effect}",
                interpreter,
                f"sudo tljh env install --target {name} --force-reinstall " + " ".join(owners)
                if owners
                else f"reinstall the packages that own them: sudo tljh env install --target {name} "
                "--force-reinstall PACKAGE",
                None,
                SPAWNS_FAIL if name == USER else HUB_FAILS,
            )
        )
    return found


# -- --deep: start them for real ------------------------------------------------------------


def _clean_env(env_root: str) -> dict[str, str]:
    # nothing from the caller's environment (PYTHONPATH, VIRTUAL_ENV...) may steer the child
    return {
        "PATH": f"{env_root}/bin:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/nonexistent",
    }


def _run(argv: list[str], env_root: str) -> tuple[int | None, str]:
    """(exit status or None on timeout, the last lines of its output)."""
    import signal
    import subprocess

    try:
        # its own process group: on a timeout, what it started (and that holds its pipes)
        # is ended with it, so that reading its output cannot wait on a grandchild
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=_clean_env(env_root),
            cwd="/",
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as error:
        return 127, str(error)
    try:
        out, err = proc.communicate(timeout=DEEP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, f"no answer in {DEEP_TIMEOUT_SECONDS} s"
    lines = (err.strip() or out.strip()).splitlines()
    return proc.returncode, " | ".join(lines[-3:])


def hub_imports(ctx: Context, name: str) -> list[Finding]:
    hub = ctx.env(HUB)
    if not hub.interpreter.runnable:  # a hub that starts but cannot see its packages is tried
        return [Finding(SKIPPED, f"the hub environment is {hub.status}", hub.root, "")]
    from tljh_admin.permissions import others_can_change

    others = others_can_change(hub)
    if others:
        path, why = others[0]
        return [
            Finding(
                SKIPPED,
                f"not started as root: users other than root can change the hub's code ({path}: {why})",
                hub.root,
                f"sudo tljh doctor --target {HUB}",
            )
        ]
    code, output = _run([hub.interpreter.path, "-I", "-c", "import jupyterhub"], hub.root)
    if code == 0:
        return []
    return [
        Finding(
            FAILED,
            f"`{hub.interpreter.path} -c 'import jupyterhub'` "
            + (f"exits {code}: {output}" if code is not None else output),
            hub.interpreter.path,
            f"{REBUILD_HUB} (or, when the interpreter is right: "
            "sudo tljh env install --target hub --force-reinstall jupyterhub)",
            None,
            HUB_FAILS,
        )
    ]


def _singleuser_hint(output: str, unreadable: int, install: str, python: str) -> str:
    if unreadable or "Permission denied" in output:
        return FIX_READABLE
    if "error while loading shared libraries" in output:
        # the interpreter itself cannot start as a user: show which library it cannot reach
        ids = str(NOBODY_ID)
        return f"sudo setpriv --reuid {ids} --regid {ids} --clear-groups ldd {quoted(python)}"
    return install


def singleuser_runs(ctx: Context, name: str) -> list[Finding]:
    env = ctx.env(USER)
    if not env.ok:
        return [Finding(SKIPPED, f"the user environment is {env.status}", env.root, "")]
    if os.geteuid() != 0:
        return [
            Finding(
                SKIPPED,
                f"{SKIPPED_NEEDS_ROOT} (it runs as uid {NOBODY_ID})",
                env.root,
                "sudo tljh doctor --deep",
            )
        ]
    setpriv = system_program("setpriv")  # never PATH's: doctor runs as root
    if setpriv is None:
        return [
            Finding(
                SKIPPED,
                "needs setpriv (util-linux) to run as nobody",
                env.root,
                "sudo apt install util-linux",
            )
        ]
    script = os.path.join(env.root, "bin", "jupyterhub-singleuser")
    hub_versions = [d.version for d in ctx.env(HUB).distributions if canonical_name(d.name) == "jupyterhub"]
    install = "sudo tljh env install --target user --force-reinstall jupyterhub" + (
        f"=={hub_versions[0]}" if len(hub_versions) == 1 else ""
    )
    if not os.path.lexists(script):
        return [
            Finding(
                FAILED,
                f"no {script}: the spawner has nothing to start",
                script,
                install,
                None,
                SPAWNS_FAIL,
            )
        ]
    ids = str(NOBODY_ID)
    argv = [setpriv, "--reuid", ids, "--regid", ids, "--clear-groups", script, "--version"]
    code, output = _run(argv, env.root)
    if code == 0:
        return []
    from tljh_admin.doctor.safety import closed_to_users

    unreadable = len(closed_to_users(ctx, USER))
    cause = f"; {unreadable} paths of the user env are closed to users (users-can-read)" if unreadable else ""
    return [
        Finding(
            FAILED,
            f"`jupyterhub-singleuser --version` as uid {NOBODY_ID} (nobody) "
            + (f"exits {code}: {output}" if code is not None else output)
            + cause,
            script,
            _singleuser_hint(output, unreadable, install, env.interpreter.path),
            None,
            SPAWNS_FAIL,
        )
    ]
