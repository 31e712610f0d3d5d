"""A `conda` / `mamba` command for tljh-admin's tests, built on py-rattler.

Why it exists: conda and mamba cannot be installed from the package registries reachable
here (neither is on PyPI in a runnable form). py-rattler is: it is the conda ecosystem's
solver and installer (behind pixi), it reads a real channel's `repodata.json`, extracts real
`.conda` packages into a package cache and links them, writing real `conda-meta/*.json`
records. This script puts conda's command line in front of it, and accepts exactly the
command lines tljh-admin emits (and the `create` that a Miniforge installer amounts to):

    install|update|remove --yes --prefix P [-c CHANNEL]... [--dry-run] [--json]
                          [--force-reinstall] SPEC...
    create --yes --prefix P [-c CHANNEL]... SPEC...
    list --json --prefix P
    --version

What it does the way conda does: channels from `-c` first, then the prefix's `.condarc`
`channels:`; a channel name is turned into a URL through `.condarc`'s `custom_channels`
(conda's own setting), which is how `-c conda-forge` reaches the local test channel without
a network; installed packages are kept unless the request needs them changed; `remove`
also removes what depends on the removed package; the package cache is CONDA_PKGS_DIRS's
first entry, else PREFIX/pkgs (the Miniforge root's); `conda-meta/history` gets conda's
revision block; `--dry-run --json` prints conda's document (`actions: {FETCH, LINK,
UNLINK, PREFIX}`, or "All requested packages already installed."); `list --json` lists
the records plus pip-installed distributions as channel `pypi`. Everything else conda
can do is refused with exit 2.

Run by bin/conda and bin/mamba launchers: `--tool NAME --root ROOT` say which command it
stands in for and where that command's own installation (its conda-meta record) is.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import sys
import tempfile

PLATFORM, NOARCH = "linux-64", "noarch"
NOTHING_TO_DO = "All requested packages already installed."  # conda's own words
_ACTIONS = ("install", "update", "remove", "create")


class Refused(Exception):
    pass


def parse(argv: list[str]) -> dict:
    if len(argv) < 4 or argv[0] != "--tool" or argv[2] != "--root":
        raise Refused("usage: conda_standin.py --tool conda|mamba --root ROOT ARGS...")
    opts = {"tool": argv[1], "root": argv[3], "channels": [], "specs": [], "flags": set(), "prefix": None}
    args = argv[4:]
    if args == ["--version"]:
        opts["command"] = "--version"
        return opts
    if not args or args[0] not in (*_ACTIONS, "list"):
        raise Refused(f"the stand-in does not take: {' '.join(args)}")
    opts["command"] = args[0]
    i = 1
    while i < len(args):
        arg = args[i]
        if arg in ("--prefix", "-p", "-c", "--channel") and i + 1 < len(args):
            if arg in ("--prefix", "-p"):
                opts["prefix"] = args[i + 1]
            else:
                opts["channels"].append(args[i + 1])
            i += 2
            continue
        if arg in ("--yes", "-y", "--dry-run", "--json", "--force-reinstall"):
            opts["flags"].add("yes" if arg == "-y" else arg.lstrip("-"))
            i += 1
            continue
        if arg.startswith("-"):
            raise Refused(f"the stand-in does not take the option {arg}")
        opts["specs"].append(arg)
        i += 1
    if opts["prefix"] is None:
        opts["prefix"] = opts["root"]
    if opts["command"] == "list":
        if opts["specs"] or opts["flags"] != {"json"}:
            raise Refused("the stand-in lists only as `list --json --prefix P`")
    elif "yes" not in opts["flags"] and "dry-run" not in opts["flags"]:
        raise Refused("the stand-in never prompts: pass --yes")
    elif not opts["specs"]:
        raise Refused(f"{opts['command']}: no package given")
    return opts


# -- .condarc: the two settings that decide where packages come from ------------------------


def read_condarc(prefix: str) -> dict:
    """`channels:` (a list) and `custom_channels:` (a mapping) from PREFIX/.condarc, in the
    block YAML that `conda config` writes; other keys are ignored."""
    found: dict = {"channels": [], "custom_channels": {}}
    try:
        with open(os.path.join(prefix, ".condarc"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return found
    section = None
    for line in lines:
        text = line.split("#", 1)[0].rstrip()
        if not text:
            continue
        if not text.startswith((" ", "\t", "-")):
            key = text.rstrip(":").strip()
            section = key if key in found else None
            continue
        if section == "channels" and text.strip().startswith("- "):
            found["channels"].append(text.strip()[2:].strip())
        elif section == "custom_channels" and ":" in text:
            name, _, url = text.strip().partition(":")
            found["custom_channels"][name.strip()] = url.strip()
    return found


def channel_urls(opts: dict) -> list[str]:
    rc = read_condarc(opts["prefix"])
    names = [*opts["channels"], *(c for c in rc["channels"] if c not in opts["channels"])]
    urls = []
    for name in names:
        if "://" in name:
            urls.append(name.rstrip("/"))
        elif name.startswith("/"):
            urls.append("file://" + name.rstrip("/"))
        elif name in rc["custom_channels"]:
            urls.append(rc["custom_channels"][name].rstrip("/") + "/" + name)
        else:
            # conda would ask conda.anaconda.org; there is no network for the tests
            raise Refused(f"UnavailableInvalidChannel: {name} (no custom_channels entry in .condarc)")
    if not urls:
        raise Refused("no channel: pass -c or set channels in .condarc")
    return urls


def channel_name(url: str) -> str:
    """What conda shows for a channel URL: its last path part (`conda-forge`)."""
    parts = [p for p in url.rstrip("/").split("/") if p]
    if parts and parts[-1] in (PLATFORM, NOARCH):
        parts = parts[:-1]
    return parts[-1] if parts else url


# -- the prefix ------------------------------------------------------------------------------


def installed_records(prefix: str) -> list:
    import rattler

    meta = os.path.join(prefix, "conda-meta")
    try:
        names = sorted(n for n in os.listdir(meta) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    return [rattler.PrefixRecord.from_path(os.path.join(meta, n)) for n in names]


def dist_name(record) -> str:
    return f"{record.name.normalized}-{record.version}-{record.build!s}"


def _key(record) -> tuple[str, str, str]:
    return record.name.normalized, str(record.version), str(record.build)


def solve(opts: dict, installed: list) -> list:
    """The environment after the request, as rattler's solver finds it."""
    import rattler
    from rattler.exceptions import InvalidMatchSpecError, SolverError

    command, requested = opts["command"], opts["specs"]
    requested_names = {rattler.MatchSpec(s).name.normalized for s in requested}
    if command == "remove":
        missing = requested_names - {r.name.normalized for r in installed}
        if missing:
            raise Refused(f"PackagesNotFoundError: {', '.join(sorted(missing))} is not installed")
        gone = _with_dependents(requested_names, installed)
        kept = [r for r in installed if r.name.normalized not in gone]
        specs = [r.name.normalized for r in kept]
        locked = kept
    else:
        kept_names = [r.name.normalized for r in installed if r.name.normalized not in requested_names]
        specs = [*requested, *kept_names]
        locked = [r for r in installed if r.name.normalized not in requested_names or command == "install"]
    if not specs:
        return []
    with tempfile.TemporaryDirectory(prefix="conda-standin-") as cache:
        gateway = rattler.Gateway(cache_dir=cache)
        try:
            return asyncio.run(
                rattler.solve(
                    channel_urls(opts),
                    specs,
                    gateway=gateway,
                    platforms=[PLATFORM, NOARCH],
                    locked_packages=locked,
                    virtual_packages=[],
                )
            )
        except (SolverError, InvalidMatchSpecError) as error:
            raise Refused(f"UnsatisfiableError: {error}") from None


def _with_dependents(names: set[str], installed: list) -> set[str]:
    import rattler

    gone = set(names)
    changed = True
    while changed:
        changed = False
        for record in installed:
            name = record.name.normalized
            if name in gone:
                continue
            needs = {rattler.MatchSpec(d).name.normalized for d in record.depends}
            if needs & gone:
                gone.add(name)
                changed = True
    return gone


def transaction(installed: list, solution: list, force: set[str]) -> tuple[list, list]:
    """(UNLINK, LINK) records, the way conda orders them: by name."""
    before = {_key(r): r for r in installed}
    after = {_key(r): r for r in solution}
    unlink = [r for k, r in before.items() if k not in after or k[0] in force]
    link = [r for k, r in after.items() if k not in before or k[0] in force]
    return sorted(unlink, key=_key), sorted(link, key=_key)


def _link_entry(record) -> dict:
    return {
        "base_url": record.channel.rstrip("/"),
        "build_number": int(record.build_number),
        "build_string": str(record.build),
        "channel": channel_name(record.channel),
        "dist_name": dist_name(record),
        "name": record.name.normalized,
        "platform": str(record.subdir),
        "version": str(record.version),
    }


def dry_run_document(prefix: str, unlink: list, link: list) -> dict:
    if not unlink and not link:
        return {"message": NOTHING_TO_DO, "success": True}
    actions = {
        "FETCH": [{**_link_entry(r), "fn": r.file_name, "url": r.url} for r in link],
        "LINK": [_link_entry(r) for r in link],
        "PREFIX": prefix,
        "UNLINK": [_link_entry(r) for r in unlink],
    }
    return {"actions": actions, "dry_run": True, "prefix": prefix, "success": True}


def apply(opts: dict, installed: list, solution: list, force: set[str]) -> None:
    import rattler

    prefix = opts["prefix"]
    asyncio.run(
        rattler.install(
            solution,
            prefix,
            cache_dir=package_cache(prefix),
            installed_packages=installed,
            reinstall_packages=force or None,
            show_progress=False,
        )
    )
    # conda writes its records with the process umask (0644 under root's 022); rattler
    # writes them 0600, which would hide them from `conda list` run by a user.
    meta = os.path.join(prefix, "conda-meta")
    for name in os.listdir(meta):
        path = os.path.join(meta, name)
        if name.endswith(".json") and os.stat(path).st_mode & 0o777 != 0o644:
            os.chmod(path, 0o644)


def package_cache(prefix: str) -> str:
    """conda's pkgs_dirs: CONDA_PKGS_DIRS's first entry (the one conda writes new packages
    to), else the Miniforge root's pkgs/."""
    configured = [p for p in os.environ.get("CONDA_PKGS_DIRS", "").split(",") if p]
    return configured[0] if configured else os.path.join(prefix, "pkgs")


def append_history(opts: dict, argv: list[str], unlink: list, link: list, conda_version: str) -> None:
    """One revision block, as conda's History writes it."""
    if not unlink and not link:
        return
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    lines = [f"==> {when} <==", f"# cmd: {' '.join(argv)}", f"# conda version: {conda_version}"]
    lines += [f"-{channel_name(r.channel)}/{r.subdir}::{dist_name(r)}" for r in unlink]
    lines += [f"+{channel_name(r.channel)}/{r.subdir}::{dist_name(r)}" for r in link]
    kind = "remove" if opts["command"] == "remove" else "update"
    lines.append(f"# {kind} specs: {opts['specs']!r}")
    path = os.path.join(opts["prefix"], "conda-meta", "history")
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def tool_versions(root: str) -> dict[str, str]:
    versions = {}
    for record in installed_records(root):
        if record.name.normalized in ("conda", "mamba"):
            versions[record.name.normalized] = str(record.version)
    return versions


# -- conda list ------------------------------------------------------------------------------


def list_document(prefix: str) -> list[dict]:
    """`conda list --json`: every record, then pip-installed distributions no record owns."""
    from importlib import metadata

    records = installed_records(prefix)
    entries = [_link_entry(r) for r in records]
    owned = {
        path.split(".dist-info/", 1)[0] + ".dist-info"
        for r in records
        for path in map(str, r.files)
        if ".dist-info/" in path
    }
    python = next((r for r in records if r.name.normalized == "python"), None)
    if python is not None:
        short = ".".join(str(python.version).split(".")[:2])
        site = os.path.join("lib", f"python{short}", "site-packages")
        for dist in metadata.distributions(path=[os.path.join(prefix, site)]):
            folder = os.path.basename(str(dist._path))  # the dist-info folder read
            if f"{site}/{folder}" in owned:
                continue
            name, version = dist.metadata["Name"], dist.version
            entries.append(
                {
                    "base_url": "https://pypi.org/",
                    "build_number": 0,
                    "build_string": "pypi_0",
                    "channel": "pypi",
                    "dist_name": f"{name.lower()}-{version}-pypi_0",
                    "name": name.lower(),
                    "platform": "pypi",
                    "version": version,
                }
            )
    return sorted(entries, key=lambda e: e["name"])


def main(argv: list[str]) -> int:
    try:
        opts = parse(argv)
        if opts["command"] == "--version":
            versions = tool_versions(opts["root"])
            tool = opts["tool"]
            print(f"{tool} {versions.get(tool, '0')}")
            if tool == "mamba":
                print(f"conda {versions.get('conda', '0')}")
            return 0
        prefix = opts["prefix"] = os.path.abspath(opts["prefix"])
        if opts["command"] == "list":
            print(json.dumps(list_document(prefix), indent=2))
            return 0
        if opts["command"] != "create" and not os.path.isdir(os.path.join(prefix, "conda-meta")):
            raise Refused(f"EnvironmentLocationNotFound: Not a conda environment: {prefix}")
        installed = installed_records(prefix)
        force = set()
        if "force-reinstall" in opts["flags"]:
            import rattler

            force = {rattler.MatchSpec(s).name.normalized for s in opts["specs"]}
        solution = solve(opts, installed)
        unlink, link = transaction(installed, solution, force)
        if "dry-run" in opts["flags"]:
            document = dry_run_document(prefix, unlink, link)
            print(json.dumps(document, indent=2) if "json" in opts["flags"] else document)
            return 0
        if not unlink and not link:
            print(f"\n# {NOTHING_TO_DO}\n")
            return 0
        os.makedirs(os.path.join(prefix, "conda-meta"), exist_ok=True)
        apply(opts, installed, solution, force)
        conda_version = tool_versions(opts["root"]).get("conda", "0")
        launcher = os.path.join(opts["root"], "bin", opts["tool"])
        append_history(opts, [launcher, *argv[4:]], unlink, link, conda_version)
        for record in unlink:
            print(f"  - {dist_name(record)}")
        for record in link:
            print(f"  + {dist_name(record)}")
        print("Preparing transaction: done\nVerifying transaction: done\nExecuting transaction: done")
        return 0
    except Refused as error:
        if "--json" in argv:
            name, _, message = str(error).partition(": ")
            print(json.dumps({"error": str(error), "exception_name": name, "message": message}))
        else:
            print(f"\n{error}\n", file=sys.stderr)
        return 2 if str(error).startswith(("usage", "the stand-in")) else 1


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # py-rattler's runtime threads can crash the interpreter's own shutdown ("PyGILState_Release:
    # thread state must be current", seen about once in ten runs): everything is written by
    # now, so leave without it.
    os._exit(code)
