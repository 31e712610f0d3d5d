"""A hub venv cut off from the Python that made it: the OS-upgrade breakage, made of real parts.

An older CPython (pyenv's 3.10, the way scripts/test finds its floor interpreter) is linked
into a temporary folder and makes the hub venv; the hub gets real wheels, TLJH itself from
a local git repository at a commit, a package from a local wheel file and a TLJH plugin.
Then the "distribution upgrade": the old interpreter and its standard library go, and its
`python3` becomes the system python (3.11 here), so the hub's `bin/python3` resolves to the
newer Python and no longer sees `lib/python3.10/site-packages`.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

from tests.support.prefixes import clone_tree, hermetic_env, run

OLD_SHORT = "3.10"


def find_old_cpython() -> Path | None:
    """A CPython older than the system python with venv and ensurepip, as scripts/test finds
    its floor interpreter (/usr/bin/python3.10, else pyenv's 3.10)."""
    for candidate in [
        "/usr/bin/python3.10",
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*"))),
    ]:
        python = (
            candidate if candidate.endswith("python3.10") else os.path.join(candidate, "bin", "python3.10")
        )
        prefix = Path(python).resolve().parent.parent
        if (
            os.access(python, os.X_OK)
            and prefix != Path("/usr")
            and (prefix / "lib/python3.10/ensurepip").is_dir()
        ):
            return prefix
    return None


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_wheel(
    dest: Path,
    name: str,
    version: str,
    files: dict[str, bytes | str],
    *,
    requires: tuple[str, ...] = (),
    requires_python: str | None = None,
    tag: str = "py3-none-any",
    entry_points: str = "",
    purelib: bool = True,
) -> Path:
    """A wheel with the fields the shared builder leaves out: Requires-Python, a platform tag,
    entry points of any group."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python:
        meta.append(f"Requires-Python: {requires_python}")
    meta += [f"Requires-Dist: {r}" for r in requires]
    contents = {p: (d.encode() if isinstance(d, str) else d) for p, d in files.items()}
    contents[f"{info}/METADATA"] = ("\n".join(meta) + "\n\n").encode()
    root_is_purelib = "true" if purelib else "false"
    contents[f"{info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: tljh-admin-tests\nRoot-Is-Purelib: {root_is_purelib}\nTag: {tag}\n"
    ).encode()
    if entry_points:
        contents[f"{info}/entry_points.txt"] = entry_points.encode()
    record = [f"{p},{_hash(d)},{len(d)}" for p, d in contents.items()] + [f"{info}/RECORD,,"]
    contents[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for p, d in contents.items():
            zf.writestr(p, d)
    return path


def repackage_installed(dest: Path, project: str) -> Path:
    """A wheel of a pure-Python project installed in the running interpreter (pluggy, which
    TLJH's hooks need): its real files, repackaged, so the hub gets the real thing offline."""
    dist = importlib.metadata.distribution(project)
    files = {}
    for path in dist.files or ():
        text = str(path)
        if "__pycache__" in text or text.endswith(("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")):
            continue
        if ".dist-info/" in text:
            continue
        files[text] = Path(dist.locate_file(path)).read_bytes()
    requires_python = dist.metadata.get("Requires-Python")
    return write_wheel(
        dest,
        dist.metadata["Name"],
        dist.version,
        files,
        requires=tuple(dist.requires or ()),
        requires_python=requires_python,
    )


# TLJH's hook specifications (tljh/hooks.py, TLJH 2.0): the names plugins implement.
TLJH_HOOKS_PY = '''\
import pluggy

hookspec = pluggy.HookspecMarker("tljh")
hookimpl = pluggy.HookimplMarker("tljh")


@hookspec
def tljh_extra_user_conda_packages():
    """Extra conda packages for the user environment."""


@hookspec
def tljh_extra_user_conda_channels():
    """Extra conda channels for the user environment."""


@hookspec
def tljh_extra_user_pip_packages():
    """Extra pip packages for the user environment."""


@hookspec
def tljh_extra_hub_pip_packages():
    """Extra pip packages for the hub environment."""


@hookspec
def tljh_extra_apt_packages():
    """Extra apt packages."""


@hookspec
def tljh_custom_jupyterhub_config(c):
    """Traitlets config for JupyterHub."""


@hookspec
def tljh_config_post_install(config):
    """Change tljh-config after install."""


@hookspec
def tljh_post_install():
    """Run after install."""


@hookspec
def tljh_new_user_create(username):
    """Run after a user is made."""
'''

# A PEP 517 backend that lives in the repository (backend-path), so that pip builds TLJH from
# git offline: no setuptools or wheel from an index.
_BACKEND = """\
import base64, hashlib, os, zipfile

NAME = "the-littlest-jupyterhub"
with open("VERSION") as f:
    VERSION = f.read().strip()
DIST = "the_littlest_jupyterhub"
INFO = f"{DIST}-{VERSION}.dist-info"


def _hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _metadata():
    lines = ["Metadata-Version: 2.1", f"Name: {NAME}", f"Version: {VERSION}", "Requires-Dist: pluggy>=1"]
    return ("\\n".join(lines) + "\\n\\n").encode()


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    contents = {}
    for folder, _, names in os.walk("tljh"):
        for name in names:
            if "__pycache__" not in folder:
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    contents[path] = f.read()
    contents[f"{INFO}/METADATA"] = _metadata()
    contents[f"{INFO}/WHEEL"] = (
        b"Wheel-Version: 1.0\\nGenerator: in-tree\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    )
    contents[f"{INFO}/top_level.txt"] = b"tljh\\n"
    record = [f"{p},{_hash(d)},{len(d)}" for p, d in contents.items()] + [f"{INFO}/RECORD,,"]
    contents[f"{INFO}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    wheel = f"{DIST}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as zf:
        for path, data in contents.items():
            zf.writestr(path, data)
    return wheel
"""


def make_tljh_repo(dest: Path) -> tuple[Path, str]:
    """A git repository holding TLJH (its hooks and hub requirements); returns it and HEAD."""
    (dest / "tljh").mkdir(parents=True)
    (dest / "tljh" / "__init__.py").write_text("")
    (dest / "tljh" / "hooks.py").write_text(TLJH_HOOKS_PY)
    (dest / "tljh" / "requirements-hub-env.txt").write_text(
        "jupyterhub>=5.2.0,<5.3\noauthenticator>=17.1.0,<18\n"
    )
    (dest / "backend.py").write_text(_BACKEND)
    (dest / "VERSION").write_text("2.0.1\n")
    (dest / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    git = ["git", "-C", str(dest), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    run(["git", "init", "-q", dest])
    run([*git, "add", "-A"])
    run([*git, "commit", "-q", "-m", "TLJH 2.0.1"])
    commit = run(["git", "-C", dest, "rev-parse", "HEAD"]).stdout.strip()
    # a later commit: the rebuild must install the recorded one, not the branch head
    (dest / "tljh" / "later.py").write_text("LATER = True\n")
    run([*git, "add", "-A"])
    run([*git, "commit", "-q", "-m", "later"])
    # a later release, tagged, with its own hub requirements: what `tljh upgrade --version` moves to
    (dest / "VERSION").write_text("2.0.2\n")
    (dest / "tljh" / "requirements-hub-env.txt").write_text(
        "jupyterhub>=5.3,<6\noauthenticator>=17.1.0,<18\n"
    )
    run([*git, "commit", "-q", "-am", "TLJH 2.0.2"])
    run([*git, "tag", "v2.0.2"])
    return dest, commit


PLUGIN_PY = """\
from tljh.hooks import hookimpl


@hookimpl
def tljh_extra_hub_pip_packages():
    return ["oauthenticator"]


@hookimpl
def tljh_extra_user_pip_packages():
    return ["numpy"]


@hookimpl
def tljh_extra_user_conda_packages():
    return ["xarray"]


@hookimpl
def tljh_extra_user_conda_channels():
    return ["bioconda"]


@hookimpl
def tljh_extra_apt_packages():
    return ["sl"]


@hookimpl
def tljh_post_install():
    raise RuntimeError("tljh_post_install must not run when tljh-admin only asks")


def tljh_extra_user_pip_packages_unmarked():
    return ["never"]
"""


def build_rebuild_wheels(dest: Path) -> dict[str, Path]:
    """Wheels only this scenario needs; returns the notable ones by role."""
    linux_tag = f"cp310-cp310-linux_{os.uname().machine}"
    wheels = {
        # 1.0 declares it stops at 3.10; 1.1 and 2.0 install anywhere: nearest is 1.1
        "oldonly-1.0": write_wheel(
            dest, "oldonly", "1.0", {"oldonly/__init__.py": "V = '1.0'\n"}, requires_python=">=3.8,<3.11"
        ),
        "oldonly-1.1": write_wheel(dest, "oldonly", "1.1", {"oldonly/__init__.py": "V = '1.1'\n"}),
        "oldonly-2.0": write_wheel(dest, "oldonly", "2.0", {"oldonly/__init__.py": "V = '2.0'\n"}),
        # 1.0 exists only as a CPython 3.10 build
        "cext-1.0": write_wheel(
            dest, "cext", "1.0", {"cext.py": "V = '1.0'\n"}, tag=linux_tag, purelib=False
        ),
        "cext-1.1": write_wheel(dest, "cext", "1.1", {"cext.py": "V = '1.1'\n"}),
        "plugin": write_wheel(
            dest,
            "tljh-plugin-demo",
            "1.0",
            {"tljh_plugin_demo.py": PLUGIN_PY},
            requires=("the-littlest-jupyterhub",),
            entry_points="[tljh]\ndemo = tljh_plugin_demo\n",
        ),
        "fragile": write_wheel(dest, "fragile", "1.0", {"fragile/__init__.py": ""}),
        "pluggy": repackage_installed(dest, "pluggy"),
    }
    local = dest.parent / "local-wheels"
    wheels["localpkg"] = write_wheel(
        local,
        "localpkg",
        "1.0",
        {"localpkg/__init__.py": "def main():\n    print('hello from localpkg')\n"},
        entry_points="[console_scripts]\nlocalpkg-hello = localpkg:main\n",
    )
    return wheels


def broken_fragile(dest: Path) -> Path:
    """fragile 1.0 as a broken mirror would serve it now: its data file is named like the
    env's lib/ folder, so pip fails after writing its modules (a package that fails to install)."""
    dest.mkdir(parents=True, exist_ok=True)
    return write_wheel(
        dest,
        "fragile",
        "1.0",
        {"fragile/__init__.py": "", "fragile-1.0.data/data/lib": "not a folder\n"},
    )


HUB_PACKAGES = (
    "jupyterhub==5.2.1",
    "oauthenticator==17.1.0",
    "jupyterhub-idle-culler==1.4.0",
    "oldonly==1.0",
    "cext==1.0",
    "tljh-plugin-demo==1.0",
    "fragile==1.0",
    "bigpkg==1.0.0",
)


def make_old_hub(
    prefix: Path,
    old_cpython: Path,
    system_python: Path,
    find_links: list[Path],
    wheels: dict[str, Path],
    tljh_repo: Path,
    tljh_commit: str,
) -> Path:
    """PREFIX/hub made by a copy of the old CPython, filled, then cut off from it."""
    oldpy = prefix.parent / "oldpy"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    clone_tree(old_cpython, oldpy)
    prefix.mkdir()
    run([oldpy / "bin" / "python3", "-m", "venv", prefix / "hub"])
    links = [arg for folder in find_links for arg in ("--find-links", str(folder))]
    run([
        prefix / "hub" / "bin" / "python3", "-m", "pip", "install", "--no-index", *links,
        *HUB_PACKAGES,
        # the form the old pip takes for a repository without a host (packaging < 22 wants one)
        f"git+file://{tljh_repo}@{tljh_commit}#egg=the-littlest-jupyterhub",
        wheels["localpkg"],
    ])  # fmt: skip
    # what the old interpreter could import from its site folder: the oracle for the rebuild
    listing = "import json, pkgutil, sys; names = [m.name for m in pkgutil.iter_modules([sys.argv[1]])]; "
    listing += "print(json.dumps(sorted(names)))"
    site = prefix / "hub" / "lib" / f"python{OLD_SHORT}" / "site-packages"
    importable = run([prefix / "hub" / "bin" / "python3", "-c", listing, site]).stdout
    (prefix.parent / "importable.json").write_text(importable)
    (prefix / "state").mkdir(mode=0o700)
    run(["chmod", "-R", "o-w", prefix])
    os_upgrade(oldpy, system_python)
    return prefix


def os_upgrade(oldpy: Path, system_python: Path) -> None:
    """What `do-release-upgrade` does to the venv's base: the old interpreter and standard
    library go, and `python3` is the new system python."""
    for name in os.listdir(oldpy / "bin"):
        if name.startswith("python"):
            os.unlink(oldpy / "bin" / name)
    os.symlink(os.path.realpath(system_python), oldpy / "bin" / "python3")
    os.symlink("python3", oldpy / "bin" / f"python{OLD_SHORT}")
    shutil.rmtree(oldpy / "lib" / f"python{OLD_SHORT}")


def hub_python_version(hub: Path) -> str:
    proc = subprocess.run(
        [hub / "bin" / "python3", "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True, text=True, env=hermetic_env(),
    )  # fmt: skip
    return proc.stdout.strip() or proc.stderr.strip()
