"""`tljh env apply FILE`: make an environment match a lock, requirements or environment.yml
file, as one planned change with every guarantee `env install` has (rules, lock, plan,
snapshot, history, rollback).

What is missing is installed and what differs is changed, in one installer run under
constraints that allow only the file's versions (and the hub's jupyterhub); with `exact`,
what the file does not list is removed in the same change. The result is checked against the
file before the change is recorded: if the environment does not match, it is restored.
Applying a file the environment already matches plans nothing and changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections import namedtuple
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tljh_admin import changes, export, policy
from tljh_admin.envs import inspect_environment
from tljh_admin.envs.model import Environment
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.errors import Refused, UsageError
from tljh_admin.installers import (
    REMOVE,
    InstallerFailed,
    PlannedChange,
    plan_changes,
    resolution_error,
    write_constraints,
)
from tljh_admin.layout import HUB, USER, Layout

# What --exact never removes: the installers that do the removing, and the interpreter.
KEPT_BY_EXACT = frozenset({"pip"})
KEPT_CONDA = frozenset({"python", "pip", "conda", "mamba"})


class Wanted(namedtuple("Wanted", "name key requirement version specifier direct requested")):
    """One package the file asks for.

    requirement: what the installer is given; version: an exact pin or None; specifier: a
    packaging SpecifierSet when the file gives a range; direct: for a direct URL, what it asks
    for in the terms pip records it (direct_source); requested: asked for by name where the
    file came from (a lock says; every line of a requirements file is). Installers mark what
    they are given as requested (pip's REQUESTED), so the rest is left for them to bring in
    as dependencies.
    """

    __slots__ = ()


class CondaWanted(namedtuple("CondaWanted", "name version build fuzzy channel", defaults=(False, None))):
    """A conda package the file asks for; version and build are None when not given. fuzzy:
    the version was written `name=1.2`, which conda reads as 1.2.* (1.2, 1.2.x); channel:
    the one a lock says it came from (as `conda list` names it), or None."""

    __slots__ = ()

    @property
    def spec(self) -> str:
        """conda's match spec: `name ==version build` (exact version and build), or
        `name=version` as the file fuzzily wrote it."""
        if self.fuzzy:
            return f"{self.name}={self.version}"
        return " ".join(
            part for part in (self.name, self.version and f"=={self.version}", self.build) if part
        )

    def matches_version(self, version: str) -> bool:
        if not self.version:
            return True
        if self.fuzzy:
            return version == self.version or version.startswith(self.version + ".")
        return version == self.version


class Desired(namedtuple("Desired", "origin kind python wanted conda notes channels", defaults=((),))):
    """A file read: kind lock / requirements / environment.yml; conda: CondaWanted entries;
    channels: the conda channels the file names, in its order."""

    __slots__ = ()


@dataclass(frozen=True, kw_only=True)
class ApplyRequest(changes.ChangeRequest):
    file: str
    exact: bool = False


# -- reading the file ------------------------------------------------------------------------


def _read_text(path: str) -> str:
    return policy.read_input_text(path, "the file", "name a file made by tljh env export")


def _from_requirement_text(text: str, origin: str) -> Wanted:
    from packaging.requirements import InvalidRequirement, Requirement

    stripped = text.strip()
    if stripped.startswith("-"):
        raise UsageError(
            f"{origin} is an option; apply takes requirement lines only",
            hint="index settings belong in pip.conf or PIP_INDEX_URL",
        )
    try:
        requirement = Requirement(stripped)
    except InvalidRequirement as error:
        raise UsageError(
            # the line is never echoed: the file may be a symlink to one only root can read
            f"{origin} is not a valid requirement: {str(error).splitlines()[0]}",
            hint="use PEP 508 lines such as 'numpy==2.1.0'",
        ) from None
    key = canonical_name(requirement.name)
    if requirement.url and not export.travelling_url(requirement.url):
        raise UsageError(
            f"{requirement.name} ({origin}) comes from a local path or an unknown kind of URL",
            hint="apply takes released packages, VCS+https/ssh URLs and http(s) archives;"
            " put a local package on an index",
        )
    if requirement.url:
        return Wanted(requirement.name, key, stripped, None, None, direct_source(requirement.url), True)
    # a plain line meets install's own rules too (no shell text, no file names)
    policy.parse_requirement(stripped, origin=origin)
    pins = [s.version for s in requirement.specifier if s.operator in ("==", "===") and "*" not in s.version]
    version = pins[0] if len(pins) == 1 and len(requirement.specifier) == 1 else None
    specifier = None if version else requirement.specifier
    return Wanted(requirement.name, key, str(requirement), version, specifier, None, True)


def _lock_requirement(line: str, package: export.Package, origin: str) -> str:
    """The final pip line of a lock entry, refused unless install's own rules accept it (a
    plain NAME==VERSION), or it is the VCS/URL form export writes (checked field by field by
    export.check_locked_package, then parsed here as one PEP 508 requirement)."""
    if package.source.get("type") not in (export.VCS, export.URL):
        return str(policy.parse_requirement(line, origin=f"{origin}, package {package.name}"))
    wanted = _from_requirement_text(line, f"{origin}, package {package.name}")
    if canonical_name(wanted.name) != canonical_name(package.name):
        raise UsageError(
            f"{origin}: package {package.name} has a source that names another project",
            hint="export the lock again on the source server",
        )
    return line


def _from_lock(lock: export.Lock, notes: list[str], origin: str) -> tuple[list[Wanted], list[str]]:
    wanted, conda = [], []
    for package in lock.packages:
        if package.manager == export.CONDA_MANAGED:
            channel = package.source.get("channel")
            conda.append(
                CondaWanted(package.name, package.version, package.source.get("build"), False, channel)
            )
            continue
        source = package.source
        key = canonical_name(package.name)
        kind = source.get("type")
        local_vcs = kind == export.VCS and source["url"].startswith("file://")
        if local_vcs:
            # a repository on this disk may belong to anyone: building it runs its code as
            # root, even for a dry run's resolve. Taken by version from the index instead.
            notes.append(
                f"{package.name} {package.version} came from a {source['vcs']} repository on the source"
                " server; taken by version from the index"
            )
            line, note = f"{package.name}=={package.version}", None
        else:
            # local files and folders are pinned by version too (requirement_line's note)
            line, note = export.requirement_line(package)
        if note:
            notes.append(
                note.replace("written as a version pin", "not used: taken by version from the index")
            )
        line = _lock_requirement(line, package, origin)
        _, at, url = line.partition(" @ ")
        direct = direct_source(url.strip()) if at else None
        wanted.append(Wanted(package.name, key, line, package.version, None, direct, package.requested))
    return wanted, conda


def read_desired(path: str) -> Desired:
    text = _read_text(path)
    notes: list[str] = []
    if text.lstrip().startswith("{"):
        try:
            document = json.loads(text)
        except RecursionError:
            raise UsageError(f"{path} is nested too deeply to be a lock", hint="export it again") from None
        except ValueError as error:
            raise UsageError(f"{path} is not valid JSON: {error}", hint="export it again") from None
        lock = export.lock_from_document(document, path)
        wanted, conda = _from_lock(lock, notes, path)
        channels = tuple(dict.fromkeys(c.channel for c in conda if c.channel))
        return Desired(path, export.LOCK, lock.python, wanted, conda, notes, channels)
    if path.endswith((".yml", ".yaml")):
        return _from_environment_yml(path, text)
    if path.endswith(".json") or text.lstrip().startswith("["):
        # `null` or `42` in a lock's place would be read as a requirement on a PyPI project
        raise UsageError(f"{path} is not a tljh-admin lock file (no JSON object)", hint="export it again")
    wanted = []
    for number, line in policy.logical_lines(text):  # `\` continuations joined, as pip does
        if " --hash" in f" {line}":
            raise UsageError(
                f"{path}, line {number} pins hashes (pip-compile --generate-hashes); apply compares"
                " versions and does not check them",
                hint=f"install it with hashes checked: tljh env install --target T -r {path}",
            )
        wanted.append(_from_requirement_text(line, f"{path}, line {number}"))
    if not wanted:
        raise UsageError(f"{path} lists no requirements", hint="name a file made by tljh env export")
    return Desired(path, export.REQUIREMENTS, None, wanted, [], notes)


def _from_environment_yml(path: str, text: str) -> Desired:
    from ruamel.yaml import YAML, YAMLError

    try:
        document = YAML(typ="safe", pure=True).load(text)
    except (YAMLError, RecursionError):
        raise UsageError(f"{path} is not valid YAML", hint="name a file made by tljh env export") from None
    dependencies = document.get("dependencies") if isinstance(document, dict) else None
    if not isinstance(dependencies, list):
        raise UsageError(f"{path} has no dependencies list", hint="name an environment.yml")
    python, wanted, conda = None, [], []
    for item in dependencies:
        if isinstance(item, dict):
            lines = item.get("pip")
            if (
                set(item) != {"pip"}
                or not isinstance(lines, list)
                or not all(isinstance(x, str) for x in lines)
            ):
                raise UsageError(
                    f"{path}: a dependencies entry other than a conda spec or a `pip:` list of lines",
                    hint="name an environment.yml as written by tljh env export",
                )
            for number, line in enumerate(lines, start=1):
                wanted.append(_from_requirement_text(line, f"{path}, pip entry {number}"))
            continue
        if not isinstance(item, str):  # YAML's null, numbers and lists are no package names
            raise UsageError(
                f"{path}: a dependencies entry that is not a conda spec", hint="list conda packages as text"
            )
        spec = item.strip()
        name = spec.split("=")[0].split(" ")[0].strip()
        if name == "python":
            python = spec.partition("=")[2].lstrip("=") or None
        elif name != "pip":
            # NAME, NAME=VERSION (conda: VERSION.*), NAME==VERSION or NAME=VERSION=BUILD (what
            # export writes, exact)
            exact = "==" in spec
            parts = spec.replace("==", "=").split("=")
            if len(parts) > 3 or any(not p or p != p.strip() or " " in p for p in parts):
                raise UsageError(
                    f"{path}: conda dependency {spec[:60]!r} is not NAME[=VERSION[=BUILD]]",
                    hint="list conda packages as written by tljh env export --format environment.yml",
                )
            version, build = [*parts[1:], None, None][:2]
            export.check_locked_package(
                export.Package(name, version or "0", export.CONDA_MANAGED, "", True, {"build": build}), path
            )
            conda.append(CondaWanted(name, version, build, bool(version) and not exact and build is None))
    channels = document.get("channels") or []
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise UsageError(f"{path}: channels is not a list of channel names", hint="name an environment.yml")
    return Desired(path, export.ENVIRONMENT_YML, python, wanted, conda, [], tuple(channels))


def _resolve(installer, requirements: list[str], constraint_file: str | None, desired: Desired):
    try:
        return installer.resolve(requirements, constraint_file, False)
    except InstallerFailed as failure:
        raise resolution_error(failure, f"{failure} for {desired.origin}") from None


def _requirements_and_resolution(installer, missing: list[Wanted], constraint_file, desired: Desired):
    """Give the installer what was requested; add the rest only when no requested package
    brings it in (an orphan in the file), so that REQUESTED markers come out as in the file."""
    requirements = [w.requirement for w in missing if w.requested]
    resolution = _resolve(installer, requirements, constraint_file, desired) if requirements else None
    covered = {canonical_name(n) for n, _ in resolution.install} if resolution else set()
    rest = [w.requirement for w in missing if not w.requested and w.key not in covered]
    if rest:
        requirements += rest
        resolution = _resolve(installer, requirements, constraint_file, desired)
    return requirements, resolution


# -- planning --------------------------------------------------------------------------------


_COMMIT = re.compile(r"[0-9a-f]{7,40}")


def direct_source(url: str) -> dict:
    """What a direct URL asks for, in the terms pip records in direct_url.json (PEP 610):
    a VCS URL's repository, revision (the part after the last `@` of the path, as pip
    splits it: `git+ssh://git@host/x.git` has none) and subdirectory; an archive's URL and
    hash."""
    from urllib.parse import urlsplit

    base, _, fragment = url.partition("#")
    params = dict(part.partition("=")[::2] for part in fragment.split("&") if part)
    vcs, plus, _ = base.split("://", 1)[0].partition("+")
    if plus and vcs in export.VCS_NAMES:
        parts = urlsplit(base[len(vcs) + 1 :])
        path, at, revision = parts.path.rpartition("@")
        if not at:
            path, revision = parts.path, ""
        repository = parts._replace(path=path, fragment="").geturl()
        return {
            "vcs": vcs,
            "url": repository,
            "revision": revision or None,
            "subdirectory": params.get("subdirectory"),
        }
    hashes = [f"{name}={value}" for name, value in params.items() if name in ("sha256", "sha384", "sha512")]
    return {"url": base, "hash": hashes[0] if hashes else None}


def _without_credentials(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _direct_satisfied(direct: dict, dist) -> bool:
    """Whether the installed `dist` came from where `direct` asks (its direct_url.json)."""
    have = export.pip_source(os.path.join(dist.location, dist.metadata_dir))
    if _without_credentials(have.get("url") or "") != _without_credentials(direct["url"]):
        return False
    if "vcs" not in direct:
        return have["type"] == export.URL and (direct["hash"] is None or have.get("hash") == direct["hash"])
    if have["type"] != export.VCS or (have.get("subdirectory") or None) != direct["subdirectory"]:
        return False
    revision = direct["revision"]
    if revision is None:
        return True  # any commit of that repository, as pip would leave it
    if have.get("requested_revision") == revision:
        return True
    # a commit id, full or short, is what pip records as commit_id
    return bool(_COMMIT.fullmatch(revision)) and (have.get("commit") or "").startswith(revision)


def _satisfied(wanted: Wanted, installed: dict, env: Environment) -> bool:
    from packaging.version import InvalidVersion, Version

    dist = installed.get(wanted.key)
    if dist is None:
        return False
    if wanted.direct:
        return _direct_satisfied(wanted.direct, dist) and _extras_met(wanted, dist, installed, env)
    try:
        have = Version(dist.version)
        if wanted.version:
            met = have == Version(wanted.version)
        else:
            met = wanted.specifier is None or wanted.specifier.contains(have, prereleases=True)
    except InvalidVersion:
        met = dist.version == wanted.version
    return met and _extras_met(wanted, dist, installed, env)


def _extras_met(wanted: Wanted, dist, installed: dict, env: Environment) -> bool:
    """`jupyterlab[dev]`: what the extras add must be installed too."""
    if "[" not in wanted.requirement.partition(";")[0].partition("@")[0]:
        return True
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    from tljh_admin.envs.requirements import extra_requirements

    try:
        extras = Requirement(wanted.requirement).extras
    except InvalidRequirement:
        return False
    for needed in extra_requirements(env, dist, extras):
        have = installed.get(canonical_name(needed.name))
        if have is None:
            return False
        try:
            if not needed.specifier.contains(Version(have.version), prereleases=True):
                return False
        except InvalidVersion:
            return False
    return True


def _check_python(env: Environment, desired: Desired) -> None:
    if not desired.python or not env.python_version:
        return
    want = desired.python.split(".")[:2]
    have = env.python_version.split(".")[:2]
    if want != have:
        raise UsageError(
            f"{desired.origin} is for Python {'.'.join(want)}; the {env.name} environment runs Python "
            f"{env.python_version}",
            hint="apply it to an environment of the same Python, or export requirements with --requested",
        )


def _check_conda(env: Environment, desired: Desired) -> None:
    """Conda packages go to a conda env only (through its own mamba or conda)."""
    if desired.conda and env.kind != "conda":
        shown = ", ".join(c.spec for c in desired.conda[:5]) + (" ..." if len(desired.conda) > 5 else "")
        raise UsageError(
            f"{desired.origin} lists {len(desired.conda)} conda packages ({shown}); "
            f"the {env.name} environment is not a conda environment",
            hint="export the pip part (tljh env export --format requirements), or apply it to a conda env",
        )


def _check_jupyterhub(env: Environment, desired: Desired, pin: str | None) -> None:
    """Rule 4: the file may carry jupyterhub only at the hub's version."""
    if not pin:
        return
    hub_version = pin.split("==", 1)[1]
    for wanted in desired.wanted:
        if wanted.key == "jupyterhub" and (wanted.version or hub_version) != hub_version:
            raise Refused(
                f"{desired.origin} has jupyterhub {wanted.version}, but the hub runs jupyterhub"
                f" {hub_version}; the user env's jupyterhub must match the hub's",
                hint="upgrade this hub first (tljh upgrade), or export the file from a server with this hub",
            )


def differences(env: Environment, desired: Desired, exact: bool) -> tuple[list[Wanted], list]:
    """What to install or change, and (with exact) the installed dists the file does not list.
    Distributions a conda record owns are conda's: compared as conda packages, never removed
    with pip."""
    installed = {canonical_name(d.name): d for d in env.distributions}
    missing = [w for w in desired.wanted if not _satisfied(w, installed, env)]
    extra = []
    if exact:
        kept = _kept_by_exact(env, desired)
        extra = [
            d
            for key, d in sorted(installed.items())
            if key not in kept and key not in KEPT_BY_EXACT and d.installer != "conda"
        ]
    return missing, extra


def _kept_by_exact(env: Environment, desired: Desired) -> set[str]:
    """What --exact keeps: the packages the file lists and everything they need (a file of
    the requested packages only, `export --requested`, lists no dependencies), and what
    conda's packages need."""
    from packaging.requirements import InvalidRequirement, Requirement

    from tljh_admin.envs.requirements import needed_by

    roots: dict[str, frozenset[str]] = {}
    for wanted in desired.wanted:
        try:
            extras = frozenset(Requirement(wanted.requirement).extras)
        except InvalidRequirement:
            extras = frozenset()
        roots[wanted.key] = roots.get(wanted.key, frozenset()) | extras
    for dist in env.distributions:
        if dist.installer == "conda":
            roots.setdefault(canonical_name(dist.name), frozenset())
    return needed_by(env, roots)


def conda_differences(env: Environment, desired: Desired, exact: bool) -> tuple[list[CondaWanted], list[str]]:
    """Conda packages to install or change, and (with exact) the conda packages to remove."""
    if env.kind != "conda":
        return [], []
    records = {r["name"]: r for r in export.conda_meta_records(env.root)}
    known = export.custom_channels(env.root)
    missing = []
    for wanted in desired.conda:
        record = records.get(wanted.name)
        if (
            record is None
            or not wanted.matches_version(str(record["version"]))
            or (
                wanted.channel
                and export.conda_channel_name(str(record.get("channel") or ""), record.get("subdir"), known)
                != wanted.channel
            )
            or (wanted.build and record.get("build") != wanted.build)
        ):
            missing.append(wanted)
    extra = []
    if exact and desired.kind == export.LOCK:  # only a lock lists every conda package
        listed = {w.name for w in desired.conda}
        extra = sorted(n for n in records if n not in listed and n not in KEPT_CONDA)
    return missing, extra


@contextlib.contextmanager
def prepare_apply(
    layout: Layout, request: ApplyRequest, notify: Callable[[str], None]
) -> Iterator[changes.Prepared]:
    changes._check_target(request.target)
    desired = read_desired(request.file)
    env = inspect_environment(request.target, layout)
    changes._common_guards(layout, env, request.allow_system, request.break_system_packages)
    _check_conda(env, desired)
    _check_python(env, desired)
    pin = policy.jupyterhub_pin(inspect_environment(HUB, layout)) if env.name == USER else None
    _check_jupyterhub(env, desired, pin)
    policy.refuse_user_server_packages_in_hub(env, {w.key for w in desired.wanted}, request.force)
    for note in desired.notes:
        notify(note)

    recovered = changes.recover_first(layout, [env.name], request.lock_timeout, notify, request.dry_run)
    env = inspect_environment(env.name, layout)  # as it is now, after any recovery
    missing, extra = differences(env, desired, request.exact)
    conda_missing, conda_extra = conda_differences(env, desired, request.exact)
    removed = {canonical_name(d.name) for d in extra} | {canonical_name(n) for n in conda_extra}
    if "jupyterhub" in removed and env.name in (HUB, USER) and not request.force:
        raise Refused(
            f"{desired.origin} does not list jupyterhub; --exact would remove it and break TLJH",
            hint="add jupyterhub to the file, or pass --force",
        )
    if not (missing or extra or conda_missing or conda_extra):
        yield changes.Prepared("apply", env, [], recovered=recovered, pin=pin)
        return
    with changes._installer_for(request, env, layout) as (installer, workdir):
        plan: list[PlannedChange] = []
        steps: list[tuple[object, list[str]]] = []  # (installer, command), run in this order
        conda_installer = None
        if conda_missing or conda_extra:
            from tljh_admin import conda

            # the channels the file names, after conda-forge (validated: none may be an option)
            conda_installer = conda.CondaInstaller(env, installer.child_env, workdir, desired.channels)
            conda_installer.check_usable()
        if conda_missing:
            # conda's own spec rules on top of the file checks: no field may read as an option
            specs = list(conda.validate_specs([c.spec for c in conda_missing]))
            specs += conda.jupyterhub_pin_specs(env, pin)
            resolution = _conda_plan(conda_installer, specs, remove=False)
            conda.refuse_conda_over_pip(env, resolution, request.force)
            conda.refuse_jupyterhub_move(resolution, pin)
            plan += conda.plan_changes(env, resolution, [c.name for c in conda_missing])
            steps.append((conda_installer, conda_installer.install_command(specs, None, False)))
        if missing:
            pins = [
                f"{w.name}=={w.version}" for w in desired.wanted if w.version and " @ " not in w.requirement
            ]
            constraint_file = write_constraints(workdir, [*pins, *([pin] if pin else [])])
            requirements, resolution = _requirements_and_resolution(
                installer, missing, constraint_file, desired
            )
            pip_plan = plan_changes(env, resolution, frozenset(w.key for w in missing))
            if env.kind == "conda":
                from tljh_admin import conda

                conda.refuse_pip_over_conda(env, pip_plan, request.force)
            plan += pip_plan
            steps.append((installer, installer.install_command(requirements, constraint_file, False)))
        planned = {canonical_name(c.name) for c in plan}
        removing = [d for d in extra if canonical_name(d.name) not in planned]
        if removing:
            plan += [PlannedChange(d.name, d.version, None, REMOVE, False) for d in removing]
            steps.append((installer, installer.uninstall_command([d.name for d in removing])))
        if conda_extra:
            removal = _conda_plan(conda_installer, conda_extra, remove=True)
            conda.refuse_jupyterhub_move(removal, pin)
            plan += conda.plan_changes(env, removal, conda_extra)
            steps.append((conda_installer, conda_installer.uninstall_command(conda_extra)))
        change, _ = changes._installer_change(layout, request, "apply", env, installer, [])
        if conda_installer is not None:
            change.installer = (
                f"{conda_installer.name}+{installer.name}" if missing or removing else conda_installer.name
            )

        def run(progress: Callable[[str], None]) -> None:
            log = change.state.path("logs", f"{change.change_id}.log")
            for runner, command in steps:
                runner.run(command, log, progress, tracker=change)
            after = inspect_environment(env.name, layout)
            cut = _needs_removed(env, after)
            if cut:  # the file may match, but what stays installed lost what it needs
                raise InstallerFailed(
                    f"the change removed what packages in the {env.name} environment need",
                    "; ".join(f"{dist} needs {needs}" for dist, needs in cut[:5]),
                )
            still = [w.name for w in differences(after, desired, request.exact)[0]]
            still += [d.name for d in differences(after, desired, request.exact)[1]]
            conda_still, conda_more = conda_differences(after, desired, request.exact)
            still += [c.name for c in conda_still] + conda_more
            if still:
                raise InstallerFailed(
                    f"the {env.name} environment does not match {desired.origin} after the change",
                    "differs: " + ", ".join(sorted(still)),
                )

        plan.sort(key=lambda c: canonical_name(c.name))
        yield changes.Prepared("apply", env, plan, change, run, recovered, pin, request.lock_timeout, notify)


def _needs_removed(before: Environment, after: Environment) -> list[tuple[str, str]]:
    """(distribution, requirement) for each requirement in `after` that `pip check` finds
    missing because the change removed that package."""
    from tljh_admin.envs.requirements import MISSING, broken_requirements

    gone = {canonical_name(d.name) for d in before.distributions} - {
        canonical_name(d.name) for d in after.distributions
    }
    return sorted(
        (b.dist.name, b.requirement)
        for b in broken_requirements(after)
        if b.kind == MISSING and b.required in gone
    )


def _conda_plan(conda_installer, specs: list[str], remove: bool):
    from tljh_admin import conda

    try:
        return conda_installer.plan(specs, remove=remove)
    except InstallerFailed as failure:
        raise conda.resolution_failed(failure) from None
