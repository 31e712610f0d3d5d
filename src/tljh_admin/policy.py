"""The isolation rules (DESIGN.md section 1), one named guard each.

Every guard either returns what the change may use or raises TljhError with a hint. All of
them run before anything touches the disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tljh_admin.envs.model import Environment
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.errors import ExitCode, TljhError
from tljh_admin.layout import HUB, SYSTEM, USER
from tljh_admin.placement import USER_SERVER_PACKAGES  # rule 5's set; doctor reads it too

# Rule 2: variables that would send an install somewhere else, or make the child import
# from somewhere else. Index settings (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_CERT, ...)
# and pip's config files are deliberately kept.
REDIRECTING_VARIABLES = frozenset(
    {
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONUSERBASE",
        "PYTHONSTARTUP",
        "PYTHONEXECUTABLE",
        "PYTHONSAFEPATH",
        "PIP_TARGET",
        "PIP_PREFIX",
        "PIP_ROOT",
        "PIP_USER",
        "PIP_SRC",
        "PIP_EDITABLE",
        "PIP_REQUIRE_VIRTUALENV",
        "PIP_PYTHON",
        "PIP_BREAK_SYSTEM_PACKAGES",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "CONDA_DEFAULT_ENV",
        "CONDA_PYTHON_EXE",
        "UV_PYTHON",
        "UV_SYSTEM_PYTHON",
        "UV_PROJECT_ENVIRONMENT",
        "UV_TARGET",
        "UV_PREFIX",
        "UV_BREAK_SYSTEM_PACKAGES",
    }
)

# Rule 3: pip options that would install outside the environment.
ESCAPING_OPTIONS = ("--user", "--target", "-t", "--prefix", "--root", "--src", "-e", "--editable")
# Never valid in a requirement, always meaningful to a shell. (`;`, quotes, `<`, `>` and
# parentheses are legal in markers and specifiers; packaging judges those.)
_SHELL_TEXT = re.compile(r"[`$|&\\{}\n\r]")


def scrubbed_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The child's environment: the caller's, less everything that redirects an install."""
    env = {k: v for k, v in environ.items() if k not in REDIRECTING_VARIABLES}
    env["PYTHONNOUSERSITE"] = "1"  # root's ~/.local must not shadow the env while pip runs
    env["PIP_USER"] = "0"  # overrides `user = true` in a pip.conf
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


@dataclass(frozen=True)
class RequirementSet:
    """Validated requirements: what to pass to the installer, and the project names."""

    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    names: frozenset[str]


def _refuse(message: str, hint: str, code: ExitCode = ExitCode.USAGE) -> TljhError:
    return TljhError(message, hint=hint, exit_code=code)


def parse_requirement(text: str, origin: str = "argument"):
    """One requirement, validated with packaging: a name, extras, versions, a marker.
    Options, shell text, URLs and paths are refused."""
    from packaging.requirements import InvalidRequirement, Requirement

    stripped = text.strip()
    where = f" ({origin})" if origin != "argument" else ""
    if not stripped:
        raise _refuse(f"empty requirement{where}", "name a package, e.g. numpy or 'numpy>=2,<3'")
    if stripped.startswith("-"):
        if stripped.split("=")[0] in ESCAPING_OPTIONS:
            raise _refuse(
                f"{stripped!r}{where} would install outside the environment",
                "tljh installs only into the --target environment; drop the option",
                ExitCode.REFUSED,
            )
        raise _refuse(
            f"{stripped!r}{where} looks like an option, not a package",
            "put options before the package names; see tljh env install --help",
        )
    if _SHELL_TEXT.search(stripped):
        raise _refuse(
            f"{stripped!r}{where} contains shell syntax",
            "pass plain requirement specifiers such as 'numpy>=2'; nothing is run through a shell",
        )
    if "://" in stripped or stripped.startswith(("/", "./", "~")) or " @ " in stripped:
        raise _refuse(
            f"{stripped!r}{where} is a URL or a path, not a package name",
            "install released packages by name; put a private package on an index and use PIP_INDEX_URL",
        )
    try:
        requirement = Requirement(stripped)
    except InvalidRequirement as error:
        if ";" in stripped:
            raise _refuse(
                f"{stripped!r}{where} is not a valid requirement: only an environment marker may follow ';'",
                "quote requirements with markers, e.g. 'tomli; python_version < \"3.11\"'",
            ) from None
        raise _refuse(
            f"{stripped!r}{where} is not a valid requirement: {str(error).splitlines()[0]}",
            "use a PEP 508 specifier such as 'numpy>=2,<3'",
        ) from None
    if requirement.url:
        raise _refuse(
            f"{stripped!r}{where} is a direct URL reference",
            "install released packages by name; put a private package on an index and use PIP_INDEX_URL",
        )
    return requirement


def read_requirement_file(path: str, kind: str = "requirements") -> list[str]:
    """Requirement lines of a file, validated like arguments; option lines are refused."""
    file = Path(path)
    if not file.is_file():
        what = "does not exist" if not os.path.lexists(path) else "is not a file"
        raise _refuse(f"{kind} file {path} {what}", "check the path; quote it if it has spaces")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise _refuse(
            f"cannot read {kind} file {path}: {error}", "check its permissions and encoding"
        ) from None
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            parse_requirement(line, origin=f"{path}, line {number}")
            lines.append(line)
    return lines


def validate_requirements(
    packages: Iterable[str], requirement_files: Iterable[str], constraint_files: Iterable[str]
) -> RequirementSet:
    """Rule 3: every package argument and requirement-file line is a plain requirement."""
    requirements = [str(parse_requirement(p)) for p in packages]
    for path in requirement_files:
        lines = read_requirement_file(path)
        if not lines:
            raise _refuse(f"requirements file {path} lists no requirements", "add requirements or drop -r")
        requirements.extend(lines)
    constraints: list[str] = []
    for path in constraint_files:
        constraints.extend(read_requirement_file(path, kind="constraints"))
    if not requirements:
        raise _refuse("nothing to install", "name packages, or pass -r requirements.txt")
    names = frozenset(canonical_name(parse_requirement(r).name) for r in requirements)
    return RequirementSet(tuple(requirements), tuple(constraints), names)


def validate_package_names(packages: Iterable[str]) -> frozenset[str]:
    """For uninstall: plain project names only."""
    names = []
    for package in packages:
        requirement = parse_requirement(package)
        if requirement.specifier or requirement.extras or requirement.marker:
            raise _refuse(f"{package!r}: uninstall takes project names only", f"use {requirement.name!r}")
        names.append(canonical_name(requirement.name))
    if not names:
        raise _refuse("nothing to uninstall", "name the packages to remove")
    return frozenset(names)


def require_runnable(env: Environment) -> None:
    """Rule 1: the change runs the env's own interpreter, so that interpreter must work."""
    if env.status != "ok":
        raise _refuse(
            f"the {env.name} environment is {env.status}: {env.reason}",
            "run `tljh doctor` to see how to repair it",
            ExitCode.REFUSED,
        )


def require_system_allowed(env: Environment, allow_system: bool, break_system_packages: bool) -> None:
    """Rule 6: the system interpreter belongs to the OS."""
    if env.name != SYSTEM:
        return
    if not allow_system:
        raise _refuse(
            "the system environment is refused: TLJH uses it only to bootstrap the hub",
            "use --target hub or --target user; pass --allow-system only if you really mean the OS python",
            ExitCode.REFUSED,
        )
    if env.externally_managed and not break_system_packages:
        raise _refuse(
            f"{env.interpreter.path} is externally managed (PEP 668): its packages belong to apt",
            "install the Debian/Ubuntu package instead (apt install python3-<name>), "
            "or add --break-system-packages if you accept the risk",
            ExitCode.REFUSED,
        )


def refuse_user_server_packages_in_hub(env: Environment, names: Iterable[str], force: bool) -> None:
    """Rule 5: no JupyterLab & co. in the hub env unless forced."""
    if env.name != HUB or force:
        return
    misplaced = sorted(set(names) & USER_SERVER_PACKAGES)
    if misplaced:
        raise _refuse(
            f"{', '.join(misplaced)} belong{'s' if len(misplaced) == 1 else ''} in the user environment, "
            "not the hub",
            "use --target user (or --force to put "
            f"{'it' if len(misplaced) == 1 else 'them'} in the hub anyway)",
            ExitCode.REFUSED,
        )


def refuse_direct_jupyterhub_change(env: Environment, names: Iterable[str]) -> None:
    """Rule 4: the user env's jupyterhub follows the hub; it is changed only by an upgrade."""
    if env.name == USER and "jupyterhub" in set(names):
        raise _refuse(
            "jupyterhub in the user environment follows the hub's version",
            "run `tljh upgrade` to move both together",
            ExitCode.REFUSED,
        )


def jupyterhub_pin(hub: Environment) -> str:
    """Rule 4: the constraint every user-env change runs under."""
    versions = sorted({d.version for d in hub.distributions if canonical_name(d.name) == "jupyterhub"})
    if hub.status != "ok" or len(versions) != 1:
        found = "no jupyterhub" if not versions else f"jupyterhub {', '.join(versions)}"
        raise _refuse(
            f"cannot pin the user environment's jupyterhub: the hub environment has {found}"
            + (f" and is {hub.status}" if hub.status != "ok" else ""),
            "repair the hub first (tljh doctor)",
            ExitCode.REFUSED,
        )
    return f"jupyterhub=={versions[0]}"


def require_write_access(paths: Iterable[str]) -> None:
    """Rule 7: refuse before anything runs when this user cannot write where the change writes."""
    for path in paths:
        probe = path
        while not os.path.exists(probe):
            probe = os.path.dirname(probe)
        if not os.access(probe, os.W_OK | os.X_OK):
            raise _refuse(
                f"this user cannot write to {probe}",
                "run with sudo (TLJH's environments belong to root)",
                ExitCode.PERMISSION_DENIED,
            )
