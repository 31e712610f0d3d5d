"""`tljh upgrade --version X`: what TLJH's bootstrap does first (bootstrap/bootstrap.py
upgrades the `the-littlest-jupyterhub` package in the hub, then runs its installer): the
TLJH package moves to X from the source it came from (its direct_url.json: the package
index, or the git repository), and the upgrade plans from X's own requirements-hub-env.txt.

What stays with TLJH's installer: traefik, the systemd units, config migration and every
other step of `python3 -m tljh.installer`; tljh-admin changes the Python environments only.
"""

from __future__ import annotations

import os
import tarfile
import zipfile

from tljh_admin import policy
from tljh_admin.envs.model import Environment
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.errors import Refused, ResolutionFailed, UsageError
from tljh_admin.rebuild import INDEX, UNKNOWN_ORIGIN, VCS, read_origin

TLJH_DISTRIBUTION = "the-littlest-jupyterhub"  # TLJH's project name (its setup.py)
REQUIREMENTS_MEMBER = "tljh/requirements-hub-env.txt"  # where TLJH keeps the hub's list


def tljh_requirement(hub: Environment, version: str) -> tuple[str, str]:
    """The requirement that moves TLJH in the hub to `version` from where it came from,
    and that source in words."""
    if not version or version.startswith("-") or any(c in version for c in " \t\n;@#"):
        raise UsageError(
            f"--version {version!r} is not a version, tag or branch", hint="e.g. --version 2.0.0"
        )
    dists = [d for d in hub.distributions if canonical_name(d.name) == TLJH_DISTRIBUTION]
    if not dists:
        raise Refused(
            "TLJH is not installed in the hub environment, so there is nothing to move to --version",
            hint="use TLJH's installer (bootstrap.py --version X), or upgrade without --version",
        )
    origin = read_origin(os.path.join(dists[0].location, dists[0].metadata_dir))
    if origin.kind == UNKNOWN_ORIGIN:
        raise Refused(
            f"TLJH's direct_url.json is damaged ({origin.problem}): where TLJH came from is not known",
            hint="install that version into the hub yourself, then run tljh upgrade",
        )
    if origin.kind == INDEX:
        return f"{TLJH_DISTRIBUTION}=={version}", "the package index"
    if origin.kind == VCS:
        from tljh_admin.permissions import others_reach, running_user
        from tljh_admin.rebuild import _file_path

        local = _file_path(origin.url)
        others = others_reach(os.path.realpath(local), running_user()) if local else None
        if others:
            raise Refused(
                f"TLJH came from the repository {local}, which users other than root can change"
                f" ({others}); pip would run its build as root",
                hint=f"make {local} root's only, or install that version into the hub yourself",
            )
        url = f"{origin.vcs}+{origin.url}@{version}"
        return f"{TLJH_DISTRIBUTION} @ {url}", url
    raise Refused(
        f"TLJH was installed from {origin.url} (a local {origin.kind}); tljh-admin does not know where X is",
        hint="install that version into the hub yourself, then run tljh upgrade",
    )


def fetch_requirements(hub: Environment, line: str, child_env: dict[str, str], workdir: str) -> str:
    """Download TLJH at the requested version with the hub's own pip (no dependencies) and
    extract its requirements-hub-env.txt into `workdir`; returns that file's path."""
    from tljh_admin.permissions import require_only_root_can_change
    from tljh_admin.rebuild import _pip_spelling, _run

    require_only_root_can_change(hub)  # its pip runs as root
    dest = os.path.join(workdir, "tljh-download")
    command = [hub.interpreter.path, "-m", "pip", "download", "--no-deps", "--quiet", "-d", dest]
    proc = _run([*command, _pip_spelling(line)], child_env, workdir)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise ResolutionFailed(f"TLJH at {line!r} could not be fetched", hint=f"pip said:\n{tail}")
    archives = sorted(os.listdir(dest)) if os.path.isdir(dest) else []
    for name in archives:
        text = requirements_member(os.path.join(dest, name))
        if text is not None:
            path = os.path.join(workdir, "requirements-hub-env.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            policy.read_requirement_file(path)  # validated like any requirements file
            return path
    raise ResolutionFailed(
        f"TLJH at {line!r} has no {REQUIREMENTS_MEMBER}", hint="is that a TLJH version? see its repository"
    )


def requirements_member(archive: str) -> str | None:
    """requirements-hub-env.txt from a wheel, a zip (pip's archive of a git checkout) or an
    sdist, wherever the archive's top folder is; None when it has none. An archive that
    cannot be read, a member over policy.INPUT_FILE_LIMIT (a list is a few hundred bytes)
    or text that is not UTF-8 is a ResolutionFailed naming the archive, never a traceback."""
    import zlib

    try:
        return _member(archive)
    except (OSError, EOFError, UnicodeDecodeError, zlib.error, zipfile.BadZipFile, tarfile.TarError) as error:
        why = (
            "its text is not UTF-8"
            if isinstance(error, UnicodeDecodeError)
            else str(error) or type(error).__name__
        )
        why = why.splitlines()[0]
        raise ResolutionFailed(
            f"the TLJH archive that was downloaded ({os.path.basename(archive)}) cannot be read: {why}",
            hint="the index served a damaged file: try again, or use another index (PIP_INDEX_URL)",
        ) from None


def _member(archive: str) -> str | None:
    if archive.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.filename == REQUIREMENTS_MEMBER or info.filename.endswith("/" + REQUIREMENTS_MEMBER):
                    _within_limit(info.file_size)
                    return zf.read(info).decode("utf-8")
    elif archive.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as tf:
            for member in tf:
                if member.isfile() and member.name.endswith("/" + REQUIREMENTS_MEMBER):
                    _within_limit(member.size)
                    extracted = tf.extractfile(member)
                    return extracted.read().decode("utf-8") if extracted else None
    return None


def _within_limit(size: int) -> None:
    if size > policy.INPUT_FILE_LIMIT:
        raise OSError(f"its {REQUIREMENTS_MEMBER} says it holds {size} bytes")
