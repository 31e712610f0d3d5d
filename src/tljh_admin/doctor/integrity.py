"""Are the installed files still there (and, with --deep, still what was installed)?

For each distribution, the files its RECORD lists are looked up in the paths the
environment scan already holds (its site folder's, relative to it as RECORD writes them):
one set difference per distribution, not a stat per file. A path the scan did not see
(outside the environment, reached through a symlinked folder) is checked with one lstat,
so the scan only speeds things up and never decides alone. Conda packages' files are
conda-files' (conda_checks.py).
"""

from __future__ import annotations

import os

from tljh_admin.doctor.context import Context
from tljh_admin.doctor.model import (
    COSMETIC,
    FAILED,
    HUB_FAILS,
    OK,
    SPAWNS_FAIL,
    WARNING,
    Finding,
)
from tljh_admin.envs.model import DUPLICATE, MISSING
from tljh_admin.envs.sitepackages import read_record, read_record_paths, sha256_of_regular_file
from tljh_admin.layout import HUB, SYSTEM, USER

#: how many paths a finding names before it only counts
EXAMPLES = 3

#: what an admin's `sudo pip install` into the system python leaves in INSTALLER
_ADMIN_INSTALLERS = ("pip", "uv")
_IMPACT = {HUB: HUB_FAILS, USER: SPAWNS_FAIL, SYSTEM: COSMETIC}


def quoted(text: str) -> str:
    """`text` as one shell word, so that hints can be pasted (PREFIX may hold a space)."""
    import shlex

    return shlex.quote(text)


def _examples(paths: list[str]) -> str:
    shown = ", ".join(paths[:EXAMPLES])
    return shown + (f" and {len(paths) - EXAMPLES} more" if len(paths) > EXAMPLES else "")


def _full_path(site: str, path: str) -> str:
    if path.startswith("/"):
        return os.path.normpath(path)
    full = site + "/" + path
    return os.path.normpath(full) if "./" in path else full


def _relevant(ctx: Context, name: str):
    """The distributions whose RECORD this check covers."""
    env = ctx.env(name)
    duplicates = {p for problem in env.problems if problem.kind == DUPLICATE for p in problem.paths}
    for dist in env.distributions:
        if dist.installer == "conda":
            continue  # its conda-meta record is checked instead (conda-files, conda_checks.py)
        if name == SYSTEM and dist.installer not in _ADMIN_INSTALLERS:
            continue  # apt's (no INSTALLER, or "debian"): Debian moves files its RECORDs list
        if os.path.join(dist.location, dist.metadata_dir) in duplicates:
            continue  # duplicate-dist-info reports it, with the stale one to remove
        yield dist


def missing_files(dist, paths: list[str], scan) -> list[str]:
    """The RECORD paths (as written) whose file is not there, as full paths, in RECORD's
    order. The hot loop of doctor, done as one set difference: the scan holds the paths of
    the dist's site folder relative to it, as RECORD writes nearly all rows; the rest
    (`../../../bin/x`, absolute or unusual rows) are made full and looked up in the scan, and
    only what the scan did not see costs an lstat."""
    unseen = scan.unseen(dist.location, paths) if scan else set(paths)
    if not unseen:
        return []
    site = dist.location + "/"
    # scripts and data files are written `../../../bin/x` from lib/pythonX.Y/site-packages
    env_root = os.path.dirname(os.path.dirname(os.path.dirname(dist.location))) + "/"
    lexists = os.path.lexists
    missing = set()
    for path in unseen:
        if path.endswith(".pyc"):
            continue  # bytecode caches: Python writes them again when they are gone
        if "./" not in path and path[0] != "/":
            full = site + path
        elif path.startswith("../../../") and "./" not in path[9:]:
            full = env_root + path[9:]
        else:
            full = os.path.normpath(path if path[0] == "/" else site + path)
        if not (scan and scan.saw(full)) and not lexists(full):
            missing.add(path)
    if not missing:
        return []
    ordered = []  # RECORD's order, so that the examples named are always the same ones
    for path in paths:
        if path in missing:
            missing.discard(path)
            ordered.append(_full_path(dist.location, path))
    return ordered


def _record_problem(dist) -> str | None:
    """Why pip cannot use the RECORD of a dist-info (pip's and uv's always carry one, listing
    at least itself), once reading it gave nothing: None for an egg-info, or a RECORD only
    root may read (doctor as another user)."""
    from tljh_admin.files import utf8_text

    if not dist.metadata_dir.endswith(".dist-info"):
        return None
    path = os.path.join(dist.location, dist.metadata_dir, "RECORD")
    if not os.path.lexists(path):
        return "has no RECORD (an interrupted or hand-made install)"
    text, why = utf8_text(path)
    if why:
        return f"has a RECORD that {why}"
    return "has an empty RECORD" if text is not None and not text.strip() else None


def _reinstall_hint(ctx: Context, name: str, specs: list[str]) -> str:
    if name == SYSTEM:
        return (
            f"sudo {quoted(ctx.env(SYSTEM).interpreter.path)} -m pip install --force-reinstall "
            + " ".join(specs)
        )
    return f"sudo tljh env install --target {name} --force-reinstall " + " ".join(specs)


def record_files(ctx: Context, name: str) -> list[Finding]:
    env = ctx.env(name)
    if env.status == MISSING:
        return [Finding("skipped", f"the {name} environment is missing", env.root, "")]
    # RECORDs first, then the scan: they are read while find still walks
    records = [(dist, read_record_paths(dist)) for dist in _relevant(ctx, name)]
    scan = ctx.scan(name) if name != SYSTEM else None
    found = []
    rewritten: list[str] = []
    root = env.root.rstrip("/") + "/"
    for dist, paths in records:
        problem = _record_problem(dist) if not paths else None
        if problem:
            meta = os.path.join(dist.location, dist.metadata_dir)
            found.append(
                Finding(
                    FAILED,
                    f"{dist.name} {dist.version} {problem}: pip can neither upgrade nor uninstall it",
                    f"{dist.name} {dist.version}",
                    f"sudo rm -r {quoted(meta)} && "
                    + _reinstall_hint(ctx, name, [f"{dist.name}=={dist.version}"]),
                    impact=_IMPACT[name],
                )
            )
            continue
        if not paths:
            continue
        missing = missing_files(dist, paths, scan)
        if missing:
            shown = [p[len(root) :] if p.startswith(root) else p for p in missing]
            spec = f"{dist.name}=={dist.version}"
            found.append(
                Finding(
                    FAILED,
                    f"{len(missing)} of the {len(paths)} files {dist.name} {dist.version} installed are "
                    f"missing: {_examples(shown)}",
                    f"{dist.name} {dist.version}",
                    _reinstall_hint(ctx, name, [spec]),
                    impact=_IMPACT[name],
                )
            )
        if ctx.deep:
            rows = [(_full_path(dist.location, path), digest) for path, digest in read_record(dist) or ()]
            changed, scripts = _changed_files(env.root, dist, rows, name)
            found += changed
            rewritten += scripts
    if rewritten:
        found.append(
            Finding(
                OK,
                f"{len(rewritten)} scripts differ from what was installed ({_examples(sorted(rewritten))}): "
                "only their #! lines, which pip, conda and relocations rewrite; expected",
                os.path.join(env.root, "bin"),
                "",
            )
        )
    return found


def _changed_files(root: str, dist, rows, name: str) -> tuple[list[Finding], list[str]]:
    """--deep: files whose content is not what RECORD says was installed, and, apart, the
    scripts among them (pip, conda and relocation tools rewrite their `#!` line)."""
    import base64

    bin_dir = os.path.join(root, "bin") + "/"
    inside = os.path.realpath(root) + "/"
    changed, scripts = [], []
    for path, digest in rows:
        algorithm, _, expected = digest.partition("=")
        if algorithm != "sha256" or not os.path.realpath(path).startswith(inside):
            continue  # a row naming a place outside the env (/dev/zero, ../../etc) is not read
        sha, first = sha256_of_regular_file(path)
        if sha is None:
            continue  # missing files are reported above; not a regular file: not hashed
        actual = base64.urlsafe_b64encode(sha).rstrip(b"=").decode()
        if actual != expected:
            is_script = path.startswith(bin_dir) and first.startswith(b"#!")
            (scripts if is_script else changed).append(os.path.relpath(path, root))
    found = []
    label = f"{dist.name} {dist.version}"
    if changed:
        found.append(
            Finding(
                WARNING,
                f"{len(changed)} files of {label} differ from what was installed (edited, or "
                f"corrupted): {_examples(changed)}",
                label,
                f"sudo tljh env install --target {name} --force-reinstall {dist.name}=={dist.version}",
                impact=_IMPACT[name],
            )
        )
    return found, scripts
