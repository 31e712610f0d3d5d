"""`pip check` from the files: each distribution's requirements, with markers evaluated for
*that environment's* Python, against what is installed there."""

from __future__ import annotations

import os
import re
from collections import namedtuple
from functools import lru_cache

from tljh_admin.envs.model import Distribution, Environment
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.files import open_text

MISSING, CONFLICT = "missing", "conflict"


class BrokenRequirement(namedtuple("BrokenRequirement", "dist requirement required kind installed")):
    """dist's `requirement` (its text) is not met: `required` (normalised name) is MISSING,
    or installed at `installed`, a CONFLICT. A namedtuple: doctor runs this on every call
    and importing dataclasses costs more than the check."""

    __slots__ = ()


def requires_of(dist: Distribution) -> list[str]:
    """Requires-Dist of a dist-info, or requires.txt of an egg-info, as requirement strings."""
    folder = os.path.join(dist.location, dist.metadata_dir)
    if dist.metadata_dir.endswith(".dist-info"):
        return _requires_dist(os.path.join(folder, "METADATA"))
    return _requires_txt(os.path.join(folder, "requires.txt")) if os.path.isdir(folder) else []


def _requires_dist(metadata: str) -> list[str]:
    found = []
    try:
        with open_text(metadata, errors="replace") as f:
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
        with open_text(path, errors="replace") as f:
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


# -- the common shapes, without packaging -------------------------------------------------
# Importing packaging's requirement parser costs about 30 ms (its regexes compile at import),
# more than checking a whole environment. Nearly every Requires-Dist line is a name, plain
# release numbers after ==, !=, >=, <=, >, <, ~= (== and != also with .*), and a flat marker;
# those are decided here with the same results as packaging (tests compare both on every
# combination). Anything else (pre-releases, local versions, URLs, nested markers) goes to
# packaging, which stays the reference.

_NAME_AND_REST = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$", re.S)
_CLAUSE = re.compile(r"\s*(~=|==|!=|<=|>=|<|>)\s*(\d+(?:\.\d+)*)(\.\*)?\s*$")
_RELEASE = re.compile(r"\d+(?:\.\d+)*$")
_INSTALLED = re.compile(r"(\d+(?:\.\d+)*)(\.post\d+)?$")
_ATOM = re.compile(r"""\s*([a-z_]+)\s*(==|!=|<=|>=|<|>|not in|in)\s*(['"])([^'"]*)\3\s*$""")
_ATOM_REVERSED = re.compile(r"""\s*(['"])([^'"]*)\1\s*(not in|in)\s*([a-z_]+)\s*$""")
_VERSION_VARIABLES = frozenset({"python_version", "python_full_version", "implementation_version"})


def _release(text: str) -> tuple[int, ...] | None:
    return tuple(map(int, text.split("."))) if _RELEASE.match(text) else None


def _trimmed(release: tuple[int, ...]) -> tuple[int, ...]:
    end = len(release)
    while end > 1 and release[end - 1] == 0:
        end -= 1
    return release[:end]


def _compare(
    have: tuple[int, ...], op: str, want: tuple[int, ...], wildcard: bool, post: bool = False
) -> bool | None:
    """PEP 440 for final releases (`have` may be a post-release of its release numbers, as
    certifi's are); None where packaging must decide."""
    if wildcard or op == "~=":
        if wildcard and op not in ("==", "!="):
            return None
        if op == "~=" and len(want) < 2:
            return None
        prefix = want if wildcard else want[:-1]
        head = (have + (0,) * len(prefix))[: len(prefix)] == prefix
        if op == "~=":
            return head and _trimmed(have) >= _trimmed(want)
        return head if op == "==" else not head
    a, b = _trimmed(have), _trimmed(want)
    if post and a == b:
        # X.postN is after X: it is not == X, it is >= X, and `>X` excludes X's post-releases
        return op in ("!=", ">=")
    return {
        "==": a == b,
        "!=": a != b,
        ">=": a >= b,
        "<=": a <= b,
        ">": a > b,
        "<": a < b,
    }[op]


def _marker_applies(marker: str, values: dict[str, str]) -> bool | None:
    """A flat marker (atoms joined by `and`/`or`, no parentheses); None otherwise."""
    if "(" in marker or ")" in marker:
        return None
    any_true = False
    for alternative in marker.split(" or "):
        all_true = True
        for atom in alternative.split(" and "):
            match = _ATOM.match(atom)
            reversed_match = None if match else _ATOM_REVERSED.match(atom)
            if reversed_match:  # "linux" in sys_platform
                _, literal, op, variable = reversed_match.groups()
                if variable not in values or variable == "extra":
                    return None
                result = (literal in values[variable]) == (op == "in")
                all_true = all_true and result
                continue
            if match is None or match.group(1) not in values or match.group(1) == "extra":
                return None
            variable, op, _, literal = match.groups()
            value = values[variable]
            if op in ("in", "not in"):
                # `var in "literal"`: the variable's value is a substring of the literal
                result = (value in literal) == (op == "in")
            elif variable in _VERSION_VARIABLES:
                have, want = _release(value), _release(literal)
                if have is None or want is None:
                    return None
                result = _compare(have, op, want, False)
            elif op in ("==", "!="):
                result = (value == literal) == (op == "==")
            else:
                return None
            all_true = all_true and bool(result)
        any_true = any_true or all_true
    return any_true


def fast_verdict(text: str, values: dict[str, str], installed: dict[str, str]):
    """(kind, name) for one requirement: kind is "skip" (its marker does not apply), "ok",
    MISSING or CONFLICT; None when only packaging can tell."""
    requirement, _, marker = text.partition(";")
    match = _NAME_AND_REST.match(requirement)
    if match is None or "@" in requirement:
        return None
    if marker.strip():
        applies = _marker_applies(marker.strip(), values)
        if applies is None:
            return None
        if not applies:
            return "skip", None
    name = canonical_name(match.group(1))
    have = installed.get(name)
    if have is None:
        return MISSING, name
    specifier = match.group(2).strip()
    if specifier.startswith("(") and specifier.endswith(")"):
        specifier = specifier[1:-1]
    if not specifier.strip():
        return "ok", name
    parsed = _INSTALLED.match(have)
    if parsed is None:
        return None
    have_release, post = tuple(map(int, parsed.group(1).split("."))), bool(parsed.group(2))
    for clause in specifier.split(","):
        parts = _CLAUSE.match(clause)
        if parts is None:
            return None
        op, version, wildcard = parts.groups()
        ok = _compare(have_release, op, tuple(map(int, version.split("."))), bool(wildcard), post)
        if ok is None:
            return None
        if not ok:
            return CONFLICT, name
    return "ok", name


def broken_requirements(env: Environment) -> list[BrokenRequirement]:
    markers = marker_environment(env)
    installed: dict[str, str] = {}
    for dist in env.distributions:
        installed.setdefault(canonical_name(dist.name), dist.version)
    broken = []
    for dist in env.distributions:
        for text in requires_of(dist):
            if _only_for_extras(text):
                continue
            verdict = fast_verdict(text, markers, installed)
            if verdict is None:
                verdict = _packaging_verdict(text, markers, installed)
            kind, name = verdict
            if kind in (MISSING, CONFLICT):
                have = installed.get(name) if kind == CONFLICT else None
                broken.append(BrokenRequirement(dist, text, name, kind, have))
    return broken


def _provided_extras(dist: Distribution) -> set[str]:
    """Provides-Extra of a dist-info: pip ignores (with a warning) an extra not declared."""
    found = set()
    try:
        with open_text(os.path.join(dist.location, dist.metadata_dir, "METADATA"), errors="replace") as f:
            for line in f:
                if line in ("\n", "\r\n"):
                    break
                if line[:15].lower() == "provides-extra:":
                    found.add(canonical_name(line[15:].strip()))
    except OSError:
        pass
    return found


def extra_requirements(env: Environment, dist: Distribution, extras) -> list:
    """The requirements (packaging's) `dist` has only when these extras are asked for (those
    it declares: pip ignores the others)."""
    markers = marker_environment(env)
    extras = {canonical_name(e) for e in extras} & _provided_extras(dist)
    found = []
    for text in requires_of(dist):
        requirement = _parse(text)
        if requirement is None or requirement.marker is None:
            continue
        if requirement.marker.evaluate({**markers, "extra": ""}):
            continue  # needed anyway
        if any(requirement.marker.evaluate({**markers, "extra": extra}) for extra in extras):
            found.append(requirement)
    return found


def needed_by(env: Environment, roots: dict[str, frozenset[str]]) -> set[str]:
    """The canonical names of what `roots` ({name: extras asked}) need in `env`, the roots
    included: each one's requirements (markers evaluated for the env's Python, with the
    extras asked), and theirs, as far as they are installed."""
    markers = marker_environment(env)
    by_name: dict[str, Distribution] = {}
    for dist in env.distributions:
        by_name.setdefault(canonical_name(dist.name), dist)
    needed: dict[str, frozenset[str]] = {}
    queue = [(canonical_name(name), frozenset(extras)) for name, extras in roots.items()]
    while queue:
        name, extras = queue.pop()
        known = needed.get(name)
        if known is not None and extras <= known:
            continue
        needed[name] = extras = (known or frozenset()) | extras
        dist = by_name.get(name)
        if dist is None:
            continue
        for text in requires_of(dist):
            requirement = _parse(text)
            if requirement is None:
                continue
            marker = requirement.marker
            if marker is not None and not any(
                marker.evaluate({**markers, "extra": extra}) for extra in ("", *sorted(extras))
            ):
                continue
            queue.append(
                (canonical_name(requirement.name), frozenset(map(canonical_name, requirement.extras)))
            )
    return set(needed)


def _packaging_verdict(text: str, markers: dict[str, str], installed: dict[str, str]):
    from packaging.version import InvalidVersion, Version

    requirement = _parse(text)
    if requirement is None:
        return "skip", None
    if requirement.marker is not None and not requirement.marker.evaluate(markers):
        return "skip", None
    name = canonical_name(requirement.name)
    have = installed.get(name)
    if have is None:
        return MISSING, name
    try:
        ok = requirement.specifier.contains(Version(have), prereleases=True)
    except InvalidVersion:
        return "skip", None
    return ("ok" if ok else CONFLICT), name
