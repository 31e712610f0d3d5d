"""Build real TLJH-shaped prefixes: a hub venv made by the system python, and a user env
that is a separate, full CPython installation (a copy of one, which runs from its new place).
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

# Parts of a CPython standard library that nothing here imports; leaving them out of the
# copy keeps a per-session user env small.
_STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "__phello__", "site-packages"}


def hermetic_env(**extra: str) -> dict[str, str]:
    """The environment for pip runs that build fixtures: this machine's pip settings
    (find-links, extra indexes, constraints) and user site are kept out."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "CONDA"))
    }
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    env.update(extra)
    return env


def run(cmd: list[str | os.PathLike[str]], **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("env", hermetic_env())
    proc = subprocess.run([os.fspath(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def find_system_python() -> Path:
    """The OS interpreter TLJH's bootstrap would use."""
    for candidate in (os.environ.get("TLJH_SYSTEM_PYTHON"), "/usr/bin/python3"):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return Path(sys.base_prefix) / "bin" / "python3"


def _is_full_cpython(prefix: Path) -> str | None:
    """X.Y when `prefix` is a relocatable CPython installation (not the OS's /usr)."""
    if prefix in (Path("/usr"), Path("/")):
        return None
    for lib in sorted(prefix.glob("lib/python3.*"), reverse=True):
        short = lib.name.removeprefix("python")
        runnable = (lib / "os.py").is_file() and (prefix / "bin" / f"python{short}").is_file()
        if runnable and tuple(map(int, short.split("."))) >= (3, 9):
            return short
    return None


def relocatable_interpreter(cpython: Path, short: str) -> bytes:
    """bin/pythonX.Y of `cpython` with its RUNPATH pointed at `$ORIGIN/../lib`, as
    conda-build leaves a shared-library Python (patchelf --set-rpath). A pyenv build's RUNPATH
    names its own lib/ under root's home: as root the copy would load that libpython, and as
    any user (users' servers) fail to load one at all. patchelf is not here, so the string is
    replaced in place and padded with NULs, the way conda relocates prefixes in binaries."""
    binary = (cpython / "bin" / f"python{short}").read_bytes()
    built = os.fsencode(cpython / "lib") + b"\0"
    relocated = b"$ORIGIN/../lib"
    if binary.count(built) != 1 or len(relocated) >= len(built):
        return binary  # a static build, or a RUNPATH this cannot shorten: left as it is
    return binary.replace(built, relocated.ljust(len(built), b"\0"))


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def find_standalone_cpython() -> Path | None:
    """A full CPython installation to copy as the user env.

    TLJH's user env is Miniforge's CPython; any non-OS CPython build has the same shape.
    `TLJH_TEST_CPYTHON` names one; otherwise the newest of the running interpreter's base,
    /usr/local and pyenv's builds is taken (newest: its bundled pip meets TLJH's minimum).
    """
    if os.environ.get("TLJH_TEST_CPYTHON"):
        return Path(os.environ["TLJH_TEST_CPYTHON"])
    candidates = [sys.base_prefix, "/usr/local", *glob.glob(os.path.expanduser("~/.pyenv/versions/3.*"))]
    found = [
        (_version_key(_is_full_cpython(Path(c)) or ""), c) for c in candidates if _is_full_cpython(Path(c))
    ]
    return Path(max(found)[1]) if found else None


def newest_bundled_pip() -> Path | None:
    """The newest pip wheel some interpreter on this machine bundles for ensurepip: a real
    pip, offline, for tests that raise pip to TLJH's minimum."""
    patterns = [
        os.path.expanduser("~/.pyenv/versions/3.*/lib/python3.*/ensurepip/_bundled/pip-*.whl"),
        f"{sys.base_prefix}/lib/python3.*/ensurepip/_bundled/pip-*.whl",
        "/usr/share/python-wheels/pip-*.whl",
    ]
    wheels = [Path(p) for pattern in patterns for p in glob.glob(pattern)]
    return max(wheels, key=lambda w: _version_key(w.name.split("-")[1]), default=None)


def copy_cpython(source: Path, dest: Path, with_pip: bool = True) -> Path:
    """Copy a CPython installation (its interpreter, stdlib and headers) to `dest` and give it
    pip (not needed by one that only makes venvs: `-m venv` bootstraps the venv's own pip)."""
    short = _is_full_cpython(source)
    assert short, f"{source} is not a CPython installation"
    (dest / "bin").mkdir(parents=True)
    interpreter = dest / "bin" / f"python{short}"
    interpreter.write_bytes(relocatable_interpreter(source, short))
    shutil.copystat(source / "bin" / f"python{short}", interpreter)
    os.symlink(f"python{short}", dest / "bin" / "python3")
    os.symlink("python3", dest / "bin" / "python")
    shutil.copytree(
        source / "lib" / f"python{short}",
        dest / "lib" / f"python{short}",
        symlinks=True,
        ignore=lambda folder, names: [n for n in names if n in _STDLIB_SKIP],
    )
    (dest / "lib" / f"python{short}" / "site-packages").mkdir()
    for lib in source.glob("lib/libpython3*"):
        shutil.copy2(lib, dest / "lib" / lib.name, follow_symlinks=False)
    if (source / "include" / f"python{short}").is_dir():
        shutil.copytree(source / "include" / f"python{short}", dest / "include" / f"python{short}")
    # ensurepip installs the pip wheel bundled with the interpreter: offline, like TLJH's
    # Miniforge, which ships pip.
    if with_pip:
        run([dest / "bin" / "python3", "-m", "ensurepip", "--default-pip"])
    return dest


def make_venv(system_python: Path, dest: Path) -> Path:
    """A venv made the way TLJH's bootstrap makes the hub: `python3 -m venv PREFIX/hub`."""
    run([system_python, "-m", "venv", dest])
    return dest


def pip_install(env_root: Path, wheelhouse: Path, *args: str) -> subprocess.CompletedProcess:
    """Real pip, the env's own interpreter, only the session's wheels."""
    return run(
        [
            env_root / "bin" / "python3",
            "-m",
            "pip",
            "install",
            "--no-index",
            "--find-links",
            wheelhouse,
            *args,
        ]
    )


def pip_list(env_root: Path) -> set[tuple[str, str]]:
    """The oracle: what `python -m pip list --format=json` in that env says is installed."""
    import json

    from packaging.utils import canonicalize_name
    from packaging.version import Version

    out = run([env_root / "bin" / "python3", "-m", "pip", "list", "--format=json"]).stdout
    return {(canonicalize_name(p["name"]), str(Version(p["version"]))) for p in json.loads(out)}


# Files that something rewrites in place (open for writing, not unlink and create): these
# get a private copy in every per-test prefix. Tests edit pyvenv.cfg to fake an OS upgrade;
# conda appends a block to conda-meta/history on every change.
COPIED_ENDINGS = ("/pyvenv.cfg", "/conda-meta/history")


def _link_file(src: str, dst: str) -> None:
    if src.endswith(COPIED_ENDINGS):
        shutil.copy2(src, dst)
    else:
        os.link(src, dst)


def clone_tree(source: Path, dest: Path) -> None:
    """`cp -a` of a tree that is only read afterwards: hard links where `source` and `dest`
    share a file system (the copy costs nothing), a real copy where they cannot (scripts/test
    keeps its temporary files on tmpfs, pyenv's interpreters live on disk)."""
    same_device = os.stat(source).st_dev == os.stat(dest.parent).st_dev
    run(["cp", "-a", *(["-l"] if same_device else []), "--", source, dest])


def copy_prefix(source: Path, dest: Path) -> Path:
    """A private PREFIX made of hard links to `source` (new folders, the same files).

    The premise is the one tljh-admin's snapshots rely on: pip and uv unlink a file before
    writing it, pip's uninstall renames, and Python writes bytecode to a new file and renames
    it, so a change in the copy never reaches the base. What changes a file in place must own
    it first: a test that chmods, chowns or rewrites an existing file calls `own(path)`
    (the `prefix` fixture fails a test that changed the base anyway).
    """
    shutil.copytree(source, dest, symlinks=True, copy_function=_link_file)
    relocate_scripts(source, dest)
    return dest


def relocate_scripts(source: Path, dest: Path) -> None:
    """Point the copied envs' console scripts at their own interpreters, as a relocating
    copy does (conda's prefix replacement, pip's script rewriting): their `#!` lines (or
    pip's /bin/sh launcher line) name `dest` instead of `source`. Their RECORD hashes then
    differ, as on a relocated server. Each rewritten script gets its own inode (the base's
    stays as it was)."""
    old, new = os.fsencode(source), os.fsencode(dest)
    for script in dest.glob("*/bin/*"):
        if script.is_symlink() or not script.is_file():
            continue
        data = script.read_bytes()
        head, sep, body = data.partition(b"\n")
        second, sep2, rest = body.partition(b"\n")
        if head.startswith(b"#!") and (old in head or old in second):
            st = script.stat()
            private = script.with_name(f".{script.name}.relocated")
            private.write_bytes(head.replace(old, new) + sep + second.replace(old, new) + sep2 + rest)
            os.chown(private, st.st_uid, st.st_gid)
            os.chmod(private, stat.S_IMODE(st.st_mode))
            os.utime(private, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.replace(private, script)


def put_back(base: Path, listing: dict[str, tuple]) -> None:
    """Undo in-place changes of mode, owner and mtime to the files of `base` (a listing from
    tests.support.listing.file_listing), so one careless test does not fail all after it."""
    for rel, entry in listing.items():
        if entry[0] != "file":
            continue
        _, _size, mode, uid, gid, mtime_ns = entry[:6]
        path = base / rel
        os.chown(path, uid, gid, follow_symlinks=False)
        os.chmod(path, mode)
        os.utime(path, ns=(mtime_ns, mtime_ns))


def own(path: Path) -> Path:
    """Give `path` (a file, or every file under a folder) its own inode, with the same
    contents, mode, owner and times, so that changing it in place leaves the base alone."""
    if path.is_dir() and not path.is_symlink():
        for folder, _, files in os.walk(path):
            for name in files:
                own(Path(folder) / name)
        return path
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink == 1:
        return path
    private = path.with_name(f".{path.name}.own")
    shutil.copy2(path, private)
    os.chown(private, st.st_uid, st.st_gid)
    os.chmod(private, stat.S_IMODE(st.st_mode))  # chown may clear setuid bits
    os.replace(private, path)
    return path


def make_tljh_prefix(root: Path, wheelhouse: Path, system_python: Path, cpython: Path | None) -> Path:
    """PREFIX with hub and user environments holding TLJH-like packages, and state/."""
    root.mkdir(parents=True)
    make_venv(system_python, root / "hub")
    pip_install(
        root / "hub", wheelhouse, "jupyterhub==5.2.1", "oauthenticator==17.1.0", "jupyterhub-idle-culler"
    )
    if cpython is not None:
        copy_cpython(cpython, root / "user")
    else:  # a venv stand-in when no CPython installation is there to copy
        make_venv(system_python, root / "user")
    pip_install(root / "user", wheelhouse, "jupyterhub==5.2.1", "jupyterlab", "notebook", "numpy==1.26.4")
    (root / "state").mkdir(mode=0o700)
    run(["chmod", "-R", "o-w", root])
    return root


def world_runnable_tool(dest: Path, system_python: Path) -> Path:
    """A venv that uid 65534 can run tljh-admin from: this checkout's package and its
    dependencies, copied into a world-readable folder (the checkout itself, or /root, may be
    closed to other users). Returns the interpreter."""
    import sysconfig

    dest.mkdir(parents=True)
    os.chmod(dest, 0o755)
    run([system_python, "-m", "venv", "--without-pip", dest / "venv"])
    libs = dest / "libs"
    site = Path(sysconfig.get_paths()["purelib"])
    skip = {"pip", "setuptools", "_pytest", "pytest", "uv", "ruff", "hatchling"}
    shutil.copytree(
        site,
        libs,
        ignore=lambda folder, names: [n for n in names if n.split("-")[0] in skip or n.endswith(".pth")],
    )
    package = Path(__file__).resolve().parents[2] / "src" / "tljh_admin"
    shutil.rmtree(libs / "tljh_admin", ignore_errors=True)
    shutil.copytree(package, libs / "tljh_admin")
    (venv_site,) = (dest / "venv").glob("lib/python3.*/site-packages")
    (venv_site / "tljh_admin_tests.pth").write_text(str(libs) + "\n")
    run(["chmod", "-R", "a+rX", dest])
    return dest / "venv" / "bin" / "python3"


def stdlib_moved_away(env_root: Path) -> None:
    """Move an installation's standard library (lib/pythonX.Y holding os.py) aside."""
    (stdlib,) = [p for p in (env_root / "lib").glob("python3.*") if (p / "os.py").is_file()]
    stdlib.rename(stdlib.with_name(stdlib.name + ".moved"))


def assert_broken_and_unchanged(tljh, prefix: Path, reason: str) -> None:
    """The user env is listed `broken` for `reason`, and a change to it is refused (exit 4)
    with nothing under PREFIX changed."""
    listed = tljh("--prefix", prefix, "env", "list", "--json")
    (entry,) = [e for e in listed.json()["environments"] if e["name"] == "user"]
    assert listed.code == 1 and entry["status"] == "broken" and reason in entry["reason"], entry
    before = {str(p): p.lstat().st_mtime_ns for p in prefix.rglob("*")}
    refused = tljh("--prefix", prefix, "env", "install", "-t", "user", "tomli", "--yes")
    assert refused.code == 4 and reason in refused.stderr, refused.stderr
    assert {str(p): p.lstat().st_mtime_ns for p in prefix.rglob("*")} == before
