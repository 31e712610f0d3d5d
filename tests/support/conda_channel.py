"""Build real conda packages and a local conda channel in the test session.

A conda package is an archive holding the package's files and an `info/` folder
(`index.json`, `files`, `paths.json`, and `link.json` for `noarch: python`). conda's own
packaging library (`conda-package-handling`) writes the archive in the `.conda` format and
py-rattler's indexer writes the channel's `repodata.json`, so what the stand-in solves and
links is what a conda-forge mirror would serve, only smaller.

This lives in tests/support, next to the wheel builder, because two places build from it:
the test session and scripts/build_sandbox.py (which already takes its CPython copy from
tests/support/prefixes.py). It is not in src: tljh-admin never builds conda packages on a
server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

# The channel the stand-in resolves `-c conda-forge` to: its folder is named like the real
# one, so that records say `conda-forge` as they do on a real server.
CHANNEL_NAME = "conda-forge"
LINUX_64, NOARCH = "linux-64", "noarch"
# conda-build's fixed timestamp unit is milliseconds (info/index.json "timestamp").
_TIMESTAMP_MS = 1_700_000_000_000
# Parts of a CPython installation nothing here runs (same list as prefixes._STDLIB_SKIP).
_STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "__phello__", "site-packages"}
STANDIN = Path(__file__).resolve().with_name("conda_standin.py")
_REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CondaSpec:
    """One conda package.

    files: {path relative to the prefix: bytes}; noarch python packages give paths under
    `site-packages/`, as conda-build does. copied: {path: source file on disk} (large
    payloads such as a Python installation). symlinks: {path: link target}.
    """

    name: str
    version: str
    build: str
    subdir: str = LINUX_64
    depends: tuple[str, ...] = ()
    files: dict[str, bytes] = field(default_factory=dict)
    copied: dict[str, Path] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    executable: frozenset[str] = frozenset()
    noarch_python: bool = False
    #: console scripts of a noarch python package ("name = module:function"), made by the linker
    entry_points: tuple[str, ...] = ()

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.conda"


def dist_info(name: str, version: str, base: str) -> dict[str, bytes]:
    """The dist-info conda-build leaves in a Python package (its build ran pip): INSTALLER
    says conda, and a RECORD lists the files, so pip sees the package and can replace it."""
    folder = f"{name.replace('-', '_')}-{version}.dist-info"
    return {
        f"{base}/{folder}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode(),
        f"{base}/{folder}/INSTALLER": b"conda\n",
    }


def with_record(files: dict[str, bytes], base: str) -> dict[str, bytes]:
    """`files` plus a RECORD in each dist-info under `base`, listing the package's files
    below `base` as pip's installer writes it."""
    import base64

    folders = {p[len(base) + 1 :].split("/", 1)[0] for p in files if p.startswith(base + "/")}
    out = dict(files)
    for folder in (f for f in folders if f.endswith(".dist-info")):
        rows = []
        for path, data in sorted(files.items()):
            if path.startswith(base + "/") and not path.endswith(f"{folder}/RECORD"):
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                rows.append(f"{path[len(base) + 1 :]},sha256={digest},{len(data)}")
        rows.append(f"{folder}/RECORD,,")
        out[f"{base}/{folder}/RECORD"] = ("\n".join(rows) + "\n").encode()
    return out


def build_package(spec: CondaSpec, channel: Path, stage_root: Path) -> Path:
    """Write `name-version-build.conda` into channel/subdir and return its path."""
    import shutil

    from conda_package_handling import api

    stage = stage_root / f"{spec.name}-{spec.version}-{spec.build}"
    entries: list[dict] = []
    for rel, data in spec.files.items():
        target = stage / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if rel in spec.executable:
            target.chmod(0o755)
        entries.append(_hardlink_entry(rel, data))
    for rel, source in spec.copied.items():
        target = stage / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)  # the payload is only read: linking saves copying 100 MB
        except OSError:
            shutil.copy2(source, target)
        entries.append(_hardlink_entry(rel, source.read_bytes()))
    for rel, link_target in spec.symlinks.items():
        target = stage / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(link_target, target)
        entries.append({"_path": rel, "path_type": "softlink", "size_in_bytes": 0})
    entries.sort(key=lambda e: e["_path"])
    info = stage / "info"
    info.mkdir(parents=True, exist_ok=True)
    number = spec.build.rsplit("_", 1)[-1]
    index = {
        "name": spec.name,
        "version": spec.version,
        "build": spec.build,
        "build_number": int(number) if number.isdigit() else 0,
        "depends": list(spec.depends),
        "license": "BSD-3-Clause",
        "subdir": spec.subdir,
        "timestamp": _TIMESTAMP_MS,
    }
    if spec.subdir == LINUX_64:
        index.update(arch="x86_64", platform="linux")
    if spec.noarch_python:
        index["noarch"] = "python"
    (info / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True))
    (info / "files").write_text("".join(e["_path"] + "\n" for e in entries))
    (info / "paths.json").write_text(json.dumps({"paths": entries, "paths_version": 1}, indent=2))
    info_files = ["info/index.json", "info/files", "info/paths.json"]
    if spec.noarch_python:
        noarch = {"type": "python", "entry_points": list(spec.entry_points)}
        (info / "link.json").write_text(json.dumps({"noarch": noarch, "package_metadata_version": 1}))
        info_files.append("info/link.json")
    out = channel / spec.subdir
    out.mkdir(parents=True, exist_ok=True)
    payload = [e["_path"] for e in entries]
    # zstd level 3 (zstd's own default): conda-forge's 19 costs a minute on a Python payload
    api.create(str(stage), payload + info_files, spec.file_name, out_folder=str(out), compression_level=3)
    shutil.rmtree(stage)
    return out / spec.file_name


def _hardlink_entry(rel: str, data: bytes) -> dict:
    return {
        "_path": rel,
        "path_type": "hardlink",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_in_bytes": len(data),
    }


def index_channel(channel: Path) -> None:
    """repodata.json for every subdir, written by rattler's indexer (as conda-index would)."""
    from rattler.index import index_fs

    for subdir in (LINUX_64, NOARCH):
        (channel / subdir).mkdir(parents=True, exist_ok=True)
    asyncio.run(index_fs(channel, write_zst=False, write_shards=False, force=True))


# -- the packages of a TLJH user env ---------------------------------------------------------


def python_spec(cpython: Path) -> CondaSpec:
    """`python` as conda-forge ships it: the whole installation (interpreter, standard
    library, shared library, headers), taken from the CPython build the suite already copies
    for the plain user env."""
    from tests.support.prefixes import _is_full_cpython, relocatable_interpreter

    short = _is_full_cpython(cpython)
    assert short, f"{cpython} is not a CPython installation"
    copied: dict[str, Path] = {}
    stdlib = cpython / "lib" / f"python{short}"
    for folder, dirs, names in os.walk(stdlib):
        dirs[:] = [d for d in dirs if d not in _STDLIB_SKIP]
        for name in names:
            source = Path(folder) / name
            # optimised bytecode (-O/-OO) is never used here; plain .pyc keeps pip fast
            if ".opt-" in name or source.is_symlink() or not source.is_file():
                continue
            copied[str(source.relative_to(cpython))] = source
    for lib in cpython.glob("lib/libpython3*"):
        if lib.is_file() and not lib.is_symlink():
            copied[f"lib/{lib.name}"] = lib
    include = cpython / "include" / f"python{short}"
    if include.is_dir():
        for source in include.rglob("*"):
            if source.is_file():
                copied[str(source.relative_to(cpython))] = source
    return CondaSpec(
        "python",
        python_version(cpython, short),
        f"h0_0_cp{short.replace('.', '')}",
        files={f"bin/python{short}": relocatable_interpreter(cpython, short)},
        copied=copied,
        symlinks={"bin/python3": f"python{short}", "bin/python": "python3"},
        executable=frozenset({f"bin/python{short}"}),
    )


def python_version(cpython: Path, short: str) -> str:
    import re

    header = cpython / "include" / f"python{short}" / "patchlevel.h"
    text = header.read_bytes() if header.is_file() else b""
    match = re.search(rb'#define\s+PY_VERSION\s+"(\d+\.\d+\.\d+)', text)
    return match.group(1).decode() if match else f"{short}.0"


def wheel_spec(wheel: Path, build: str = "pyhd8ed1ab_0", depends: tuple[str, ...] = ()) -> CondaSpec:
    """A `noarch: python` package made from a wheel, the way conda-forge repackages PyPI
    releases: the wheel's files under site-packages/, INSTALLER rewritten to conda, its
    console scripts left to the linker (entry points in link.json)."""
    files: dict[str, bytes] = {}
    entry_points: list[str] = []
    name = version = ""
    with zipfile.ZipFile(wheel) as zf:
        for item in zf.namelist():
            data = zf.read(item)
            head = item.split("/", 1)[0]
            if head.endswith(".dist-info"):
                leaf = item.rsplit("/", 1)[-1]
                if leaf == "RECORD":
                    continue  # written again below: INSTALLER changes
                if leaf == "METADATA":
                    for line in data.decode().splitlines():
                        if line.startswith("Name: "):
                            name = line[6:].strip()
                        elif line.startswith("Version: "):
                            version = line[9:].strip()
                if leaf == "entry_points.txt":
                    entry_points += _console_scripts(data.decode())
            if ".data/" in head + "/":
                continue
            files[f"site-packages/{item}"] = data
            if head.endswith(".dist-info"):
                files[f"site-packages/{head}/INSTALLER"] = b"conda\n"
    return CondaSpec(
        name.lower(),
        version,
        build,
        subdir=NOARCH,
        depends=depends,
        files=with_record(files, "site-packages"),
        noarch_python=True,
        entry_points=tuple(entry_points),
    )


def _console_scripts(text: str) -> list[str]:
    scripts, section = [], ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[console_scripts]" and "=" in line:
            scripts.append(line)
    return scripts


def tool_launcher(tool: str) -> bytes:
    """bin/conda or bin/mamba: hands the command line to the stand-in, run by the interpreter
    that has py-rattler (this session's). The real bin/conda is a Python entry point too."""
    return (
        "#!/bin/sh\n"
        f"# {tool} stand-in for tljh-admin's tests: see {STANDIN}\n"
        f'exec "{sys.executable}" "{STANDIN}" --tool {tool} --root "$(dirname "$0")/.." "$@"\n'
    ).encode()


def python_pin(short: str) -> str:
    """The dependency conda-forge's Python-specific builds carry: `python >=3.X,<3.X+1.0a0`."""
    major, minor = short.split(".")
    return f"python >={short},<{major}.{int(minor) + 1}.0a0"


def tool_spec(tool: str, version: str, python_short: str, depends: tuple[str, ...] = ()) -> CondaSpec:
    """conda or mamba: its command is the stand-in's launcher."""
    return CondaSpec(
        tool,
        version,
        f"py{python_short.replace('.', '')}h0_0",
        depends=(python_pin(python_short), *depends),
        files={f"bin/{tool}": tool_launcher(tool)},
        executable=frozenset({f"bin/{tool}"}),
    )


def c_library_spec(
    name: str, version: str, files: dict[str, bytes], depends: tuple[str, ...] = ()
) -> CondaSpec:
    """A package without Python code, like conda-forge's libgdal or proj."""
    return CondaSpec(name, version, "h0_0", depends=depends, files=files)


def python_package_spec(
    name: str, version: str, python_short: str, module: str, depends: tuple[str, ...] = ()
) -> CondaSpec:
    """A compiled Python package (linux-64, one build per Python): module plus dist-info."""
    site = f"lib/python{python_short}/site-packages"
    return CondaSpec(
        name,
        version,
        f"py{python_short.replace('.', '')}h0_0",
        depends=(python_pin(python_short), *depends),
        files=with_record(
            {
                f"{site}/{module}/__init__.py": f'__version__ = "{version}"\n'.encode(),
                **dist_info(name, version, site),
            },
            site,
        ),
    )


# TLJH 2.0's own pins (tljh/installer.py: conda_version, mamba_version) and releases below
# TLJH's minimums (tljh.MIN_CONDA 4.10, tljh.MIN_MAMBA 0.16.0), so that the upgrade has work.
CONDA_VERSIONS = ("4.9.2", "24.7.1")
MAMBA_VERSIONS = ("0.15.3", "1.5.9")


def test_channel_specs(cpython: Path, wheelhouse: Path | None, pip_wheel: Path | None) -> list[CondaSpec]:
    """Every package of the test channel (without a wheelhouse: no jupyterhub or traitlets,
    which the sandbox installs from PyPI with pip, as TLJH does)."""
    from tests.support.prefixes import _is_full_cpython

    short = _is_full_cpython(cpython)
    assert short, f"{cpython} is not a CPython installation"
    specs = [python_spec(cpython)]
    if pip_wheel is not None:
        specs.append(wheel_spec(pip_wheel, depends=("python >=3.8",)))
    specs += [tool_spec("conda", v, short) for v in CONDA_VERSIONS]
    specs += [tool_spec("mamba", v, short, (f"conda >={CONDA_VERSIONS[0]}",)) for v in MAMBA_VERSIONS]
    specs += [
        c_library_spec(
            "proj",
            "9.4.1",
            {"lib/libproj.so.25": b"\x7fELF proj 9.4.1\n", "share/proj/proj.db": b"proj.db\n"},
        ),
        c_library_spec(
            "libgdal",
            "3.9.2",
            {"lib/libgdal.so.35": b"\x7fELF gdal 3.9.2\n", "include/gdal.h": b"/* gdal 3.9.2 */\n"},
            ("proj >=9.4.1,<9.5.0a0",),
        ),
        python_package_spec("gdal", "3.9.2", short, "osgeo", ("libgdal 3.9.2.*",)),
        # also a pip distribution in the wheelhouse: the guards' two-way case
        python_package_spec("numpy", "1.26.4", short, "numpy"),
        python_package_spec("numpy", "2.1.0", short, "numpy"),
    ]
    # noarch: python packages repackaged from the session's wheels, jupyterhub at the hub's versions
    for wheel_name, depends in (
        ()
        if wheelhouse is None
        else (
            ("traitlets-5.14.3", ("python >=3.8",)),
            ("jupyterhub-5.2.1", ("python >=3.8", "traitlets >=5")),
            ("jupyterhub-5.3.0", ("python >=3.8", "traitlets >=5")),
        )
    ):
        specs.append(wheel_spec(wheelhouse / f"{wheel_name}-py3-none-any.whl", depends=depends))
    return specs


def build_test_channel(
    channels_root: Path, cpython: Path, wheelhouse: Path | None, pip_wheel: Path | None
) -> Path:
    """channels_root/conda-forge with every test package and its repodata.json."""
    channel = channels_root / CHANNEL_NAME
    stage = channels_root / ".stage"
    stage.mkdir(parents=True, exist_ok=True)
    for spec in test_channel_specs(cpython, wheelhouse, pip_wheel):
        build_package(spec, channel, stage)
    stage.rmdir()
    index_channel(channel)
    return channel


def condarc_text(channels_root: Path) -> str:
    """PREFIX/user/.condarc: conda's own `custom_channels` maps the name `conda-forge` to the
    local folder, so `-c conda-forge` (TLJH's flag) reaches the test channel."""
    return f"channels:\n  - {CHANNEL_NAME}\ncustom_channels:\n  {CHANNEL_NAME}: {channels_root.as_uri()}\n"


def standin_command(tool: str, root: Path, *args: str) -> list[str]:
    return [sys.executable, str(STANDIN), "--tool", tool, "--root", str(root), *args]
