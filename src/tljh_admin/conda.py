"""conda (or mamba) as the installer of a conda user env, the way TLJH runs it.

TLJH installs conda packages with the env's own tool, mamba when it is there, else conda
(tljh/conda.py, ensure_conda_packages):

    PREFIX/user/bin/mamba install --yes --prefix PREFIX/user -c conda-forge SPEC...

and so does this module, plus more `-c` channels when asked. It never passes
`--override-channels`, and it hands conda no CONDA_*/MAMBA_* variables and no CONDARC:
conda reads the env's own `.condarc` (channels, custom_channels, proxy and TLS settings)
as it does when TLJH runs it. The plan comes from the solver itself (`--dry-run --json`).

The guards both ways are pure functions over an inspected env and a plan: pip must not
replace or remove what a conda record owns (conda then fails with RemoveError, TLJH#918),
and conda must not replace or remove what pip installed (it overwrites pip's files without
a word and leaves pip's RECORD lying).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# what doctor reads without this module's imports lives in conda_env.py; re-exported here
from tljh_admin.conda_env import (  # noqa: F401
    CONDA,
    DEFAULT_CHANNEL,
    MAMBA,
    Revision,
    current_revision,
    find_tool,
    history_dists,
    read_history,
)
from tljh_admin.envs.model import Environment
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.errors import Refused, ResolutionFailed, UsageError
from tljh_admin.installers import (
    DOWNGRADE,
    INSTALL,
    REINSTALL,
    REMOVE,
    UPGRADE,
    Installer,
    InstallerFailed,
    PlannedChange,
    Resolution,
)

# conda's words when a request changes nothing (conda/cli/install.py, with --json).
NOTHING_TO_DO = "All requested packages already installed."
# Variables that configure conda and mamba (conda maps every CONDA_<KEY> to a setting) and
# the variables naming extra config files; dropped so that the env's .condarc decides.
_CONDA_CONFIG_PREFIXES = ("CONDA_", "MAMBA_", "_CONDA_", "_CE_")
_CONDA_CONFIG_FILES = ("CONDARC", "MAMBARC")

# A conda match spec as admins type them: `gdal`, `gdal=3.9`, `gdal>=3.9,<4`, `gdal==3.9.2`,
# `gdal 3.9.2 py313*`. Options, channel prefixes (`conda-forge::`) and shell text are not.
_SPEC = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*(?:[ =<>!~]{1,2}[A-Za-z0-9_.*+!=<>,| -]*)?$")
_SPEC_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*")
# A channel: a name (`conda-forge`, `bioconda`) or an https:// / file:// URL.
_CHANNEL = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]*|https://[^\s\"'`$;|&]+|file:///[^\s\"'`$;|&]+)$")


@dataclass(frozen=True)
class CondaPackage:
    """One LINK or UNLINK entry of conda's dry-run document."""

    name: str
    version: str
    build: str
    channel: str


@dataclass(frozen=True)
class CondaResolution:
    link: tuple[CondaPackage, ...]
    unlink: tuple[CondaPackage, ...]

    def as_resolution(self) -> Resolution:
        return Resolution(
            tuple((p.name, p.version) for p in self.link), tuple((p.name, p.version) for p in self.unlink), {}
        )


def conda_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The child's environment: the (already scrubbed) caller's, less conda's own settings."""
    return {
        k: v
        for k, v in environ.items()
        if not k.startswith(_CONDA_CONFIG_PREFIXES) and k not in _CONDA_CONFIG_FILES
    }


def validate_specs(specs: Iterable[str]) -> tuple[str, ...]:
    checked = []
    for spec in specs:
        text = spec.strip()
        # every field of `name ==version build` on its own: none may read as an option
        if not text or any(field.startswith("-") for field in text.split()) or not _SPEC.match(text):
            raise UsageError(
                f"{spec!r} is not a conda package spec",
                hint="name a package, optionally with a version: gdal, gdal=3.9, 'gdal>=3.9,<4'",
            )
        checked.append(text)
    if not checked:
        raise UsageError("no conda package given", hint="tljh env install --target user --conda gdal")
    return tuple(checked)


def spec_name(spec: str) -> str:
    match = _SPEC_NAME.match(spec)
    assert match is not None, spec  # validate_specs ran first
    return match.group(0).lower()


def validate_channels(channels: Iterable[str]) -> tuple[str, ...]:
    checked = []
    for channel in channels:
        if not _CHANNEL.match(channel):
            raise UsageError(
                f"{channel!r} is not a conda channel",
                hint="give a channel name (bioconda) or an https:// URL",
            )
        if channel != DEFAULT_CHANNEL and channel not in checked:
            checked.append(channel)
    return tuple(checked)


class CondaInstaller(Installer):
    """The env's mamba (else conda), with TLJH's flags. Runs through Installer.run, so it
    gets the same log, progress and process handling as pip and uv."""

    def __init__(
        self, env: Environment, child_env: dict[str, str], workdir: str, channels: Sequence[str] = ()
    ):
        child = conda_environment(child_env)
        # conda's package cache for this change is its scratch folder (the first writable
        # entry gets new packages; the env's own pkgs/ is only read): nothing the change
        # writes lies outside the env's snapshot, which leaves pkgs/ out.
        child["CONDA_PKGS_DIRS"] = f"{os.path.join(workdir, 'pkgs')},{os.path.join(env.root, 'pkgs')}"
        super().__init__(env, child, workdir)
        self.tool = find_tool(env.root)
        self.name = os.path.basename(self.tool) if self.tool else CONDA
        self.channels = (DEFAULT_CHANNEL, *validate_channels(channels))

    def check_usable(self) -> None:
        from tljh_admin.envs.backends import installers_for

        if CONDA not in installers_for(self.env.kind):
            raise Refused(
                f"the {self.env.name} environment is not a conda environment (no conda-meta/)",
                hint=f"install Python packages with pip: tljh env install --target {self.env.name} NAME",
            )
        if self.tool is None:
            raise Refused(
                f"the {self.env.name} environment has neither bin/mamba nor bin/conda",
                hint="run `tljh doctor`: TLJH's user env is a Miniforge installation with both",
            )

    def _command(self, action: str, *extra: str) -> list[str]:
        assert self.tool is not None
        channel_args = [arg for channel in self.channels for arg in ("-c", channel)]
        return [self.tool, action, "--yes", "--prefix", self.env.root, *channel_args, *extra]

    # -- what Installer asks for ------------------------------------------------------------
    def resolve(self, requirements, constraint_file, upgrade) -> Resolution:
        return self.plan(list(requirements)).as_resolution()

    def install_command(self, requirements, constraint_file, upgrade) -> list[str]:
        return self._command("update" if upgrade else "install", *requirements)

    def uninstall_command(self, names) -> list[str]:
        return self._command("remove", *names)

    # -- conda's own ------------------------------------------------------------------------
    def plan(
        self,
        specs: Sequence[str],
        *,
        remove: bool = False,
        force_reinstall: bool = False,
        update: bool = False,
    ) -> CondaResolution:
        """What conda would do, from its own dry run of the same command."""
        extra = ["--force-reinstall"] if force_reinstall else []
        action = "remove" if remove else "update" if update else "install"
        command = self._command(action, "--dry-run", "--json", *extra, *specs)
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=self.child_env,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            errors="replace",
        )
        return parse_dry_run(proc.stdout, proc.returncode, proc.stderr, self.name)

    def force_reinstall_command(self, specs: Sequence[str]) -> list[str]:
        return self._command("install", "--force-reinstall", *specs)


def parse_dry_run(stdout: str, returncode: int, stderr: str, tool: str) -> CondaResolution:
    """conda's `--dry-run --json` document: {"actions": {"LINK": [...], "UNLINK": [...]}},
    or {"message": NOTHING_TO_DO}, or {"error": ..., "exception_name": ...} on failure."""
    try:
        document = json.loads(stdout) if stdout.strip() else {}
    except ValueError:
        document = {}
    if returncode != 0 or not isinstance(document, dict) or "error" in document:
        said = document.get("error") if isinstance(document, dict) else None
        tail = said or (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
        raise InstallerFailed(f"{tool} could not resolve the request", said or "\n".join(tail))
    actions = document.get("actions") or {}
    return CondaResolution(
        link=tuple(_entry(e) for e in actions.get("LINK", ())),
        unlink=tuple(_entry(e) for e in actions.get("UNLINK", ())),
    )


def _entry(entry: dict) -> CondaPackage:
    return CondaPackage(
        name=str(entry["name"]),
        version=str(entry["version"]),
        build=str(entry.get("build_string", "")),
        channel=str(entry.get("channel", "")),
    )


def plan_changes(
    env: Environment, resolution: CondaResolution, requested: Iterable[str]
) -> list[PlannedChange]:
    """The plan rows (package, now, after, action, channel), as for pip."""
    from packaging.version import InvalidVersion, Version

    wanted = {n.lower() for n in requested}
    removed = {p.name: p for p in resolution.unlink}
    rows = []
    for package in resolution.link:
        old = removed.pop(package.name, None)
        if old is None:
            action = INSTALL
        else:
            try:
                new_v, old_v = Version(package.version), Version(old.version)
                action = UPGRADE if new_v > old_v else DOWNGRADE if new_v < old_v else REINSTALL
            except InvalidVersion:
                action = REINSTALL if package.version == old.version else UPGRADE
        rows.append(
            PlannedChange(
                package.name,
                old.version if old else None,
                package.version,
                action,
                package.name in wanted,
                package.channel,
            )
        )
    for package in removed.values():
        rows.append(
            PlannedChange(
                package.name, package.version, None, REMOVE, package.name in wanted, package.channel
            )
        )
    return sorted(rows, key=lambda c: canonical_name(c.name))


def removed_distributions(env: Environment, resolution: CondaResolution) -> set[str]:
    """Canonical names of the Python distributions a conda plan removes (not reinstalls)."""
    relinked = {p.name for p in resolution.link}
    gone = {p.name for p in resolution.unlink} - relinked
    by_dist = {os.path.basename(r.dist_info): r.name for r in env.conda_records if r.dist_info}
    return {canonical_name(d.name) for d in env.distributions if by_dist.get(d.metadata_dir) in gone}


# -- guards ------------------------------------------------------------------------------------

_CHANGING = (UPGRADE, DOWNGRADE, REINSTALL, REMOVE)


def conda_owned_names(env: Environment) -> dict[str, str]:
    """{canonical distribution name: conda package name} for what conda records own."""
    owned = {canonical_name(d.name): d.name for d in env.distributions if d.installer == "conda"}
    by_dist = {os.path.basename(r.dist_info): r.name for r in env.conda_records if r.dist_info}
    for dist in env.distributions:
        if dist.metadata_dir in by_dist:
            owned[canonical_name(dist.name)] = by_dist[dist.metadata_dir]
    return owned


def refuse_pip_over_conda(env: Environment, plan: Iterable[PlannedChange], force: bool) -> None:
    """A pip plan that would replace or remove a package a conda record owns."""
    if env.kind != "conda" or force:
        return
    owned = conda_owned_names(env)
    hit = sorted(
        {
            owned[canonical_name(c.name)]
            for c in plan
            if c.action in _CHANGING and canonical_name(c.name) in owned
        }
    )
    if hit:
        names = ", ".join(hit)
        raise Refused(
            f"pip would replace or remove {names}, which conda installed in the {env.name} environment "
            "(conda then fails on it: RemoveError, TLJH#918)",
            hint=f"change it with conda: tljh env install --target {env.name} --conda {' '.join(hit)} "
            "(or pass --force to let pip do it)",
        )


def refuse_conda_over_pip(env: Environment, resolution: CondaResolution, force: bool) -> None:
    """A conda plan that would replace or remove a distribution pip (or uv) installed."""
    if force:
        return
    by_pip = {canonical_name(d.name): d for d in env.distributions if d.installer not in ("conda", "")}
    touched = {canonical_name(p.name) for p in (*resolution.link, *resolution.unlink)}
    hit = sorted(touched & by_pip.keys())
    if hit:
        shown = ", ".join(f"{by_pip[n].name} {by_pip[n].version} ({by_pip[n].installer})" for n in hit)
        raise Refused(
            f"conda would replace or remove {shown} in the {env.name} environment, installed by pip "
            "(conda overwrites pip's files and leaves pip's record of them wrong)",
            hint=f"change it with pip: tljh env install --target {env.name} {' '.join(hit)} "
            "(or pass --force to let conda do it)",
        )


def jupyterhub_pin_specs(env: Environment, pin: str | None) -> list[str]:
    """Rule 4 for a conda plan: when conda owns the user env's jupyterhub, the request
    carries `jupyterhub==X` (the hub's version), so the solver keeps it there."""
    if pin is None:
        return []
    if any(canonical_name(r.name) == "jupyterhub" for r in env.conda_records):
        return [pin]
    return []


def refuse_jupyterhub_move(resolution: CondaResolution, pin: str | None) -> None:
    """Rule 4, checked on conda's plan: jupyterhub lands at the hub's version or not at all."""
    if pin is None:
        return
    expected = pin.split("==", 1)[1]
    for package in resolution.link:
        if canonical_name(package.name) == "jupyterhub" and package.version != expected:
            raise Refused(
                f"conda would install jupyterhub {package.version}; the hub runs {expected} "
                "and the user env's jupyterhub must match it",
                hint="choose packages that work with the hub's jupyterhub, or run `tljh upgrade` first",
            )
    for package in resolution.unlink:
        if canonical_name(package.name) == "jupyterhub" and not any(
            canonical_name(p.name) == "jupyterhub" for p in resolution.link
        ):
            raise Refused(
                "conda would remove jupyterhub from the user environment, which breaks every user's server",
                hint="remove the package that needs this, or keep it",
            )


def removed_names(resolution: CondaResolution) -> set[str]:
    """What a conda plan removes and does not link again (an update unlinks and relinks)."""
    linked = {canonical_name(p.name) for p in resolution.link}
    return {canonical_name(p.name) for p in resolution.unlink} - linked


def resolution_failed(failure: InstallerFailed) -> ResolutionFailed:
    last = failure.output.strip().splitlines()[-1] if failure.output.strip() else "no output"
    return ResolutionFailed(
        f"{failure}: {last}", hint=f"conda said:\n{failure.output}" if failure.output else ""
    )
