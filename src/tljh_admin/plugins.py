"""TLJH plugins: hub distributions with a `tljh` entry point (pluggy's
`load_setuptools_entrypoints("tljh")` in tljh/installer.py, setup_plugins).

On every install and upgrade TLJH loads all of them and re-applies what they ask for
(tljh/installer.py, run_plugin_actions): apt packages, extra hub pip packages, user conda
packages and channels, user pip packages, then `tljh_post_install`. So a package a plugin
provides comes back after it is uninstalled, and an upgrade changes more than jupyterhub.

Two views:
- from files (no interpreter): which plugins are installed and which hooks each implements,
  read from `entry_points.txt` and the module's source with `ast`;
- evaluated: the hub's own interpreter loads each entry point and calls the hooks that take
  no arguments and only return lists (never `tljh_post_install`, which runs arbitrary code).
  When the hub cannot run, there is no evaluation, and plans say they are without plugins.
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import subprocess
from dataclasses import dataclass

from tljh_admin import policy
from tljh_admin.envs.model import Environment
from tljh_admin.envs.sitepackages import canonical_name
from tljh_admin.files import open_text

GROUP = "tljh"  # pluggy.PluginManager("tljh") in tljh/installer.py

# tljh/hooks.py (TLJH 2.0): hooks with no arguments that return a list, in the order
# run_plugin_actions applies them. tljh_extra_user_conda_channels is TLJH 2.0's (PR #942).
APT, HUB_PIP, USER_CONDA_CHANNELS, USER_CONDA, USER_PIP = (
    "tljh_extra_apt_packages",
    "tljh_extra_hub_pip_packages",
    "tljh_extra_user_conda_channels",
    "tljh_extra_user_conda_packages",
    "tljh_extra_user_pip_packages",
)
LIST_HOOKS = (APT, HUB_PIP, USER_CONDA_CHANNELS, USER_CONDA, USER_PIP)
# tljh/hooks.py: no arguments but arbitrary code (never called here), and the hooks that
# take an argument (config object, username): shown, never called.
POST_INSTALL = "tljh_post_install"
ARG_HOOKS = ("tljh_custom_jupyterhub_config", "tljh_config_post_install", "tljh_new_user_create")
ALL_HOOKS = (*LIST_HOOKS, POST_INSTALL, *ARG_HOOKS)

# pluggy's HookimplMarker("tljh") marks an implementation with this attribute; pluggy
# registers only marked functions, and so does the evaluation.
_MARK = f"{GROUP}_impl"
_EVALUATE_TIMEOUT = 60.0  # seconds; importing a plugin should take well under one

_EVALUATE = f"""\
import importlib.metadata as md, json, sys
hooks = {list(LIST_HOOKS)!r}
try:
    eps = md.entry_points(group={GROUP!r})
except TypeError:  # Python < 3.10
    eps = md.entry_points().get({GROUP!r}, [])
out = {{"python": "%d.%d" % sys.version_info[:2], "plugins": {{}}}}
for ep in eps:
    entry = out["plugins"][ep.name] = {{"hooks": {{}}, "error": ""}}
    try:
        obj = ep.load()
        for hook in hooks:
            fn = getattr(obj, hook, None)
            if fn is not None and getattr(fn, {_MARK!r}, None) is not None:
                entry["hooks"][hook] = [str(x) for x in (fn() or [])]
    except BaseException as error:  # a broken plugin is reported, not fatal
        entry["error"] = "%s: %s" % (type(error).__name__, error)
sys.stdout.write(json.dumps(out))
"""


@dataclass(frozen=True)
class Plugin:
    """One `tljh` entry point, as the files describe it."""

    name: str
    dist: str
    version: str
    target: str  # module or module:attr
    hooks: tuple[str, ...]  # hook names its module defines (from the source)
    marked: tuple[str, ...]  # of those, decorated (with @hookimpl): what pluggy registers


@dataclass(frozen=True)
class PluginReport:
    plugins: tuple[Plugin, ...]
    evaluated: bool
    #: hook name -> packages/channels, all plugins together (when evaluated)
    contributions: dict[str, tuple[str, ...]]
    #: plugin name -> hook name -> list (when evaluated)
    per_plugin: dict[str, dict[str, tuple[str, ...]]]
    errors: dict[str, str]
    reason: str  # why it was not evaluated, or ""


def _entry_points(dist_dir: str) -> dict[str, str]:
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # entry point names are case-sensitive
    try:
        with open_text(os.path.join(dist_dir, "entry_points.txt")) as f:
            parser.read_file(f)
    except (configparser.Error, OSError, UnicodeDecodeError):
        return {}
    if not parser.has_section(GROUP):
        return {}
    return {name: value.strip() for name, value in parser.items(GROUP)}


def _module_source(site_dir: str, module: str) -> str | None:
    base = os.path.join(site_dir, *module.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        try:
            with open_text(path, encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError):
            continue
    return None


def _hooks_in(source: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if source is None:
        return (), ()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return (), ()
    found, marked = [], []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in ALL_HOOKS:
            found.append(node.name)
            if node.decorator_list:
                marked.append(node.name)
    return tuple(found), tuple(marked)


def installed_plugins(hub: Environment) -> list[Plugin]:
    """Every `tljh` entry point in the hub, read from files."""
    plugins = []
    for dist in hub.distributions:
        if not dist.metadata_dir.endswith(".dist-info"):
            continue
        for name, target in _entry_points(os.path.join(dist.location, dist.metadata_dir)).items():
            module, _, attr = target.partition(":")
            hooks, marked = _hooks_in(None if attr else _module_source(dist.location, module.strip()))
            plugins.append(Plugin(name, dist.name, dist.version, target, hooks, marked))
    return sorted(plugins, key=lambda p: p.name)


def plugin_report(hub: Environment, evaluate: bool = True) -> PluginReport:
    """The hub's plugins, and (when the hub's interpreter runs its own packages) what they
    contribute."""
    plugins = tuple(installed_plugins(hub))
    if not plugins:
        return PluginReport(plugins, True, {}, {}, {}, "")
    if not evaluate:
        return PluginReport(plugins, False, {}, {}, {}, "not evaluated")
    reason = _cannot_run(hub)
    if reason:
        return PluginReport(plugins, False, {}, {}, {}, reason)
    try:
        from tljh_admin.transaction import run_with_group_timeout

        # a plugin's import may start processes: the timeout kills the whole group
        proc = run_with_group_timeout(
            [hub.interpreter.path, "-I", "-c", _EVALUATE],
            _EVALUATE_TIMEOUT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=policy.scrubbed_environment(os.environ),
            cwd=hub.root,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return PluginReport(plugins, False, {}, {}, {}, f"the hub's interpreter did not answer: {error}")
    try:
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return PluginReport(plugins, False, {}, {}, {}, f"the hub's interpreter failed: {tail}")
    short = ".".join((hub.python_version or "").split(".")[:2])
    if short and answer["python"] != short:
        return PluginReport(
            plugins,
            False,
            {},
            {},
            {},
            f"the hub's interpreter runs Python {answer['python']} but its packages are for {short}",
        )
    per_plugin = {name: {h: tuple(v) for h, v in e["hooks"].items()} for name, e in answer["plugins"].items()}
    errors = {name: e["error"] for name, e in answer["plugins"].items() if e["error"]}
    contributions: dict[str, tuple[str, ...]] = {}
    for hook in LIST_HOOKS:
        # TLJH: list(set(itertools.chain(*hook.X()))); sorted here so plans are stable
        merged = sorted({item for hooks in per_plugin.values() for item in hooks.get(hook, ())})
        if merged:
            contributions[hook] = tuple(merged)
    return PluginReport(plugins, True, contributions, per_plugin, errors, "")


def _cannot_run(hub: Environment) -> str:
    if not hub.ok:
        return f"the hub environment is {hub.status}: {hub.reason}"
    from tljh_admin.permissions import others_can_change

    found = others_can_change(hub)  # evaluating imports plugins as root
    if found:
        return (
            f"not run as root: users other than root can change the hub's code ({found[0][0]}: {found[0][1]})"
        )
    return ""


def readded_by_plugins(report: PluginReport, target: str, names: set[str]) -> dict[str, list[str]]:
    """Of `names` (canonical) being removed from `target`, those a plugin puts back on the next
    `tljh upgrade`: name -> the plugins that ask for it."""
    hooks = {"hub": (HUB_PIP,), "user": (USER_PIP, USER_CONDA)}.get(target, ())
    found: dict[str, list[str]] = {}
    for plugin, contributed in report.per_plugin.items():
        for hook in hooks:
            for requirement in contributed.get(hook, ()):
                key = _requirement_name(requirement)
                if key in names:
                    found.setdefault(key, []).append(plugin)
    return found


def _requirement_name(text: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return canonical_name(Requirement(text).name)
    except InvalidRequirement:
        # a conda match spec ("numpy >=1.2", "conda-forge::xarray") is not PEP 508
        head = text.split("::")[-1].strip().split()[0] if text.strip() else ""
        return canonical_name(head.split("=")[0].split("<")[0].split(">")[0])


def report_document(report: PluginReport) -> dict:
    return {
        "plugins": [
            {
                "name": p.name,
                "distribution": p.dist,
                "version": p.version,
                "entry_point": p.target,
                "hooks": list(p.hooks),
                "registered_hooks": list(p.marked),
                "contributes": {h: list(v) for h, v in report.per_plugin.get(p.name, {}).items()},
                "error": report.errors.get(p.name, ""),
            }
            for p in report.plugins
        ],
        "evaluated": report.evaluated,
        "reason": report.reason,
        "contributions": {h: list(v) for h, v in report.contributions.items()},
    }


_HOOK_WORDS = {
    APT: "apt packages",
    HUB_PIP: "hub pip packages",
    USER_CONDA_CHANNELS: "user conda channels",
    USER_CONDA: "user conda packages",
    USER_PIP: "user pip packages",
}


def upgrade_additions(hub: Environment) -> tuple[list[str], list[str]]:
    """For `tljh upgrade`: the hub pip packages plugins have TLJH's installer upgrade with the
    hub (added to the hub step, as run_plugin_actions does), and notes for the plan on the
    rest, which only TLJH's installer applies (user conda/pip packages, apt)."""
    from tljh_admin.errors import TljhError

    report = plugin_report(hub)
    if not report.plugins:
        return [], []
    names = ", ".join(p.name for p in report.plugins)
    if not report.evaluated:
        return [], [f"this plan is without plugins ({names}): {report.reason}"]
    hub_lines, notes = [], []
    for text in report.contributions.get(HUB_PIP, ()):
        try:
            hub_lines.append(str(policy.parse_requirement(text, origin="a TLJH plugin")))
        except TljhError as error:
            notes.append(f"a plugin's hub package is not used: {error.message}")
    if hub_lines:
        notes.append(f"plugins ({names}) add to the hub step, as TLJH does: {' '.join(hub_lines)}")
    for hook in (USER_CONDA_CHANNELS, USER_CONDA, USER_PIP, APT):
        if report.contributions.get(hook):
            notes.append(
                f"TLJH's installer re-applies {_HOOK_WORDS[hook]} from plugins ({names}): "
                f"{' '.join(report.contributions[hook])}; tljh upgrade does not"
            )
    return hub_lines, notes


def readd_warning(hub: Environment, target: str, names: set[str]) -> str | None:
    """For `env uninstall`: a sentence when a plugin will put a removed package back."""
    if target not in ("hub", "user"):
        return None
    report = plugin_report(hub)
    back = readded_by_plugins(report, target, names)
    if not back:
        return None
    parts = [f"{name} (plugin {', '.join(sorted(set(who)))})" for name, who in sorted(back.items())]
    return f"the next TLJH upgrade brings back {'; '.join(parts)}: a TLJH plugin asks for it"
