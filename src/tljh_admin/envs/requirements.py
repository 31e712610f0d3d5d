"""`pip check` from the files: each distribution's requirements, with markers evaluated for
*that environment's* Python, against what is installed there."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from tljh_admin.envs.model import Distribution, Environment
from tljh_admin.envs.sitepackages import canonical_name

MISSING, CONFLICT = "missing", "conflict"


@dataclass(frozen=True)
class BrokenRequirement:
    dist: Distribution
    requirement: str
    #: normalised name of what is required
    required: str
    kind: str
    installed: str | None


def requires_of(dist: Distribution) -> list[str]:
    """Requires-Dist of a dist-info, or requires.txt of an egg-info, as requirement strings."""
    folder = os.path.join(dist.location, dist.metadata_dir)
    if dist.metadata_dir.endswith(".dist-info"):
        return _requires_dist(os.path.join(folder, "METADATA"))
    return _requires_txt(os.path.join(folder, "requires.txt")) if os.path.isdir(folder) else []


def _requires_dist(metadata: str) -> list[str]:
    found = []
    try:
        with open(metadata, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line in ("\n", "\r\n"):
                    break  # the body (long description) starts here
                if line[:14].lower() == "requires-dist:":
                    found.append(line[14:].strip())
    except OSError:
        pass
    return found


def _requires_txt(path: str) -> list[str]:
    found = []
    marker = ""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for raw in f:
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                if line.startswith("["):
                    extra, _, marker = line.strip("[]").partition(":")
                    marker = None if extra else marker  # extras' requirements are not checked
                    continue
                if marker is None:
                    continue
                found.append(f"{line}; {marker}" if marker else line)
    except OSError:
        pass
    return found


def marker_environment(env: Environment) -> dict[str, str]:
    """PEP 508 marker values for the environment's interpreter, from its files and uname."""
    version = env.python_version or ""
    parts = [*version.split("."), "0", "0"][:3]
    uname = os.uname()
    return {
        "python_version": ".".join(parts[:2]),
        "python_full_version": ".".join(parts),
        "implementation_version": ".".join(parts),
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": uname.machine,
        "platform_release": uname.release,
        "platform_version": uname.version,
        "extra": "",
    }


def _only_for_extras(text: str) -> bool:
    """`foo; extra == "test"` (or `... and extra == ...`) never applies with no extras: most
    Requires-Dist lines look like this, and skipping them spares the parser. Anything with
    `or` is left to the full evaluation."""
    _, sep, marker = text.partition(";")
    return bool(sep) and "extra" in marker and " or " not in marker


@lru_cache(maxsize=4096)
def _parse(text: str):
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def broken_requirements(env: Environment) -> list[BrokenRequirement]:
    from packaging.version import InvalidVersion, Version

    markers = marker_environment(env)
    installed: dict[str, str] = {}
    for dist in env.distributions:
        installed.setdefault(canonical_name(dist.name), dist.version)
    broken = []
    for dist in env.distributions:
        for text in requires_of(dist):
            if _only_for_extras(text):
                continue
            requirement = _parse(text)
            if requirement is None:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate(markers):
                continue
            name = canonical_name(requirement.name)
            have = installed.get(name)
            if have is None:
                broken.append(BrokenRequirement(dist, text, name, MISSING, None))
                continue
            try:
                ok = requirement.specifier.contains(Version(have), prereleases=True)
            except InvalidVersion:
                continue
            if not ok:
                broken.append(BrokenRequirement(dist, text, name, CONFLICT, have))
    return broken
