"""File-system safety of changes run as root: the umask every write happens under."""

from __future__ import annotations

import os
import stat

from tests.test_install import install, offline  # noqa: F401  (fixtures, used by name)


def _group_or_world_writable(root) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            st = os.lstat(os.path.join(folder, name))
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                found.append(os.path.join(folder, name))
    return found


def test_install_under_umask_000_never_makes_writable_files(prefix, install):  # noqa: F811
    """Under an inherited umask 000, files pip writes would be 0666 until normalisation
    (which only drops o+w): others could plant code meanwhile. The tool sets 022 at start,
    so every file it or its installer creates, in the env and in the snapshot, is born
    without group or world write (normalisation cannot hide this: g+w would remain)."""
    before = {path for path, _ in _walk_inodes(prefix)}
    result = install("user", "oauthenticator", "--yes", preexec_fn=lambda: os.umask(0))
    assert result.code == 0, result.stderr
    created = [path for path, _ in _walk_inodes(prefix) if path not in before]
    assert any("oauthenticator" in path for path in created)
    assert _group_or_world_writable(prefix / "user") == []
    assert _group_or_world_writable(prefix / "state") == []
    for path, st in _walk_inodes(prefix):
        if path in created and not stat.S_ISLNK(st.st_mode):
            assert stat.S_IMODE(st.st_mode) & 0o7022 == 0, (path, oct(st.st_mode))


def _walk_inodes(root):
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            yield path, os.lstat(path)


def test_a_timeout_kills_the_childs_whole_process_group(tmp_path):
    """The plugin evaluation's timeout: a plugin whose import starts a process of its own
    must not outlive it, nor keep tljh waiting on the output pipe it inherited."""
    import subprocess
    import time

    import pytest

    from tljh_admin.transaction import run_with_group_timeout

    pid_file = tmp_path / "grandchild"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_with_group_timeout(
            ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; sleep 60"],
            1.0,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    assert time.monotonic() - started < 20
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_normalisation_leaves_a_hard_link_to_an_outside_file_alone(tmp_path):
    """Where fs.protected_hardlinks=0 a user can hard-link a root file they cannot read into
    a folder of the env they can write; normalisation must not make it readable by all nor
    change its group (made here by root directly: the link itself is the attack)."""
    from tljh_admin import snapshot, transaction

    env, outside = tmp_path / "env", tmp_path / "etc"
    (env / "site").mkdir(parents=True)
    outside.mkdir()
    victim = outside / "shadow"
    victim.write_text("secret\n")
    victim.chmod(0o640)
    os.chown(victim, 0, 42)
    os.link(victim, env / "site" / "planted")
    new_file = env / "site" / "new.py"  # one link: a file the change wrote, fully fixed
    new_file.write_text("")
    new_file.chmod(0o600)
    transaction.normalize_permissions(snapshot.install_areas(str(env), []), (0, 0))
    st = victim.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, 42)
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o644


def test_normalisation_refuses_a_linked_file_another_uid_owns(tmp_path):
    """A file with a second name that another uid owns (an installer's cache in their
    folder): they can change it in place, and chowning it through the env's name is no
    fix. The change fails (and is undone by its caller) instead of leaving it there."""
    import pytest

    from tljh_admin import snapshot, transaction
    from tljh_admin.errors import ChangeFailed
    from tljh_admin.permissions import acl_writers

    env, cache = tmp_path / "env", tmp_path / "their-cache"
    (env / "site").mkdir(parents=True)
    cache.mkdir()
    cached = cache / "module.py"
    cached.write_text("")
    os.chown(cached, 65534, 65534)
    os.link(cached, env / "site" / "module.py")
    with pytest.raises(ChangeFailed, match="uid 65534 owns"):
        transaction.normalize_permissions(snapshot.install_areas(str(env), []), (0, 0))
    assert cached.stat().st_uid == 65534  # nothing chowned through the link

    # root's own linked file (conda's package cache) with an ACL for others: taken away
    os.chown(cached, 0, 0)
    cached.chmod(0o644)
    _grant_write_by_acl(cached, 65534)
    report = transaction.normalize_permissions(snapshot.install_areas(str(env), []), (0, 0))
    assert report.acl_removed == 1 and acl_writers(str(cached), (0, 0), False) == []


def test_normalisation_skips_pkgs_under_a_prefix_with_glob_characters(tmp_path, planted_find):
    """conda's package cache (a skipped area) stays as conda left it even when PREFIX holds
    `[` or `*` (find's -path is a glob), and the find that picks the paths is the system's,
    not one planted early in PATH."""
    from tljh_admin import snapshot, transaction

    marker = planted_find
    env = tmp_path / "opt [tljh]*" / "user"
    cached = env / "pkgs" / "numpy-2.0" / "info" / "index.json"
    cached.parent.mkdir(parents=True)
    cached.write_text("{}")
    cached.chmod(0o600)
    written = env / "lib" / "new.py"
    written.parent.mkdir()
    written.write_text("")
    written.chmod(0o600)
    areas = snapshot.install_areas(str(env), [], skip={"pkgs"})
    transaction.normalize_permissions(areas, (os.getuid(), os.getgid()))
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert stat.S_IMODE(written.stat().st_mode) == 0o644
    assert not marker.exists()


# -- root runs no code others could have changed ----------------------------------------------


def _site(env_root):
    from pathlib import Path

    (site,) = Path(env_root).glob("lib/python3.*/site-packages")
    return site


def _planted_pth(site, marker) -> None:
    """What a user who could write the site folder plants: a .pth whose `import` line runs
    in every Python started on that env, pip's included."""
    pth = site / "zz-planted.pth"
    pth.write_text(f"import os; open({str(marker)!r}, 'w').write(str(os.geteuid()))\n")
    os.chown(pth, 65534, 65534)


def test_no_installer_runs_in_an_env_others_can_write(tljh, prefix, install, tmp_path):  # noqa: F811
    """A user site folder others may write: pip (even for a dry run's plan) would run the
    .pth they planted, as root; and the change's normalisation would then chown it to root.
    Refused before anything of the env runs, naming the folder; nothing changes."""
    from tests.support.listing import file_listing, listing_diff
    from tljh_admin.errors import ExitCode

    site = _site(prefix / "user")
    marker = tmp_path / "ran-as"
    _planted_pth(site, marker)
    site.chmod(0o777)
    before = file_listing(prefix)
    for args in (["--dry-run", "oauthenticator"], ["oauthenticator", "--yes"]):
        result = install("user", *args)
        assert result.code == ExitCode.REFUSED, result.stderr
        assert str(site) in result.stderr and "world-writable" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    uninstall = tljh("--prefix", prefix, "env", "uninstall", "-t", "user", "numpy", "--yes")
    assert uninstall.code == ExitCode.REFUSED, uninstall.stderr
    assert not marker.exists(), f"the planted .pth ran as uid {marker.read_text()}"
    assert listing_diff(before, file_listing(prefix)) == []

    # doctor names both, as failures root-code; --fix takes the world-write away and leaves
    # the other uid's file for the admin to judge
    doc = tljh("--prefix", prefix, "doctor", "--json", "--target", "user").json()
    found = {
        (c["id"], f["subject"]): f for c in doc["checks"] for f in c["findings"] if f["status"] == "failed"
    }
    assert found[("world-writable", str(site))]["impact"] == "root-code"
    assert found[("stray-owners", str(site / "zz-planted.pth"))]["impact"] == "root-code"
    tljh("--prefix", prefix, "doctor", "--fix", "--target", "user", "world-writable")
    still = install("user", "--dry-run", "oauthenticator")
    assert still.code == ExitCode.REFUSED and "uid 65534 owns it" in still.stderr
    (site / "zz-planted.pth").unlink()  # the admin's judgement
    assert install("user", "--dry-run", "oauthenticator").code == ExitCode.OK
    assert not marker.exists()


def test_a_prefix_others_may_write_or_own_is_not_roots(tljh, prefix, install):  # noqa: F811
    """PREFIX world-writable, or owned by another uid (an admin's `chown -R ubuntu`): that
    user can swap the hub for their own, which root then runs. Every change is refused
    before anything runs, nothing changes, and doctor names PREFIX as a root-code failure
    (before, doctor trusted the prefix's owner and called such a server healthy)."""
    from tests.support.listing import file_listing, listing_diff
    from tljh_admin.errors import ExitCode

    def failures(check):
        doc = tljh("--prefix", prefix, "doctor", "--json", check).json()
        return [(r["env"], f) for r in doc["checks"] for f in r["findings"] if f["status"] == "failed"]

    for way_in, why, check, hint in (
        (lambda: prefix.chmod(0o777), "it is world-writable", "world-writable", "sudo chmod o-w "),
        (
            lambda: os.chown(prefix, 1234, 1234),
            "uid 1234 owns it",
            "stray-owners",
            "check who made it theirs",
        ),
    ):
        way_in()
        before = file_listing(prefix)
        for target in ("hub", "user"):
            result = install(target, "--dry-run", "oauthenticator")
            assert result.code == ExitCode.REFUSED, result.stderr
            assert f"{prefix}: {why}" in result.stderr
        assert listing_diff(before, file_listing(prefix)) == []
        found = failures(check)
        assert [env for env, _ in found] == ["hub", "user"], found
        for _, finding in found:
            assert finding["subject"] == str(prefix) and finding["impact"] == "root-code"
            assert why in finding["message"] and finding["hint"].startswith(hint)
        prefix.chmod(0o755)
        os.chown(prefix, 0, 0)
        assert failures(check) == []


def _grant_write_by_acl(path, uid: int, default: bool = False) -> None:
    """`setfacl -m u:UID:rwx PATH` (or `-d -m`, the default ACL new files inherit), through
    the kernel's own interface (setfacl is not installed here): a real POSIX ACL."""
    import struct

    obj, user, group_obj, mask, other = 0x01, 0x02, 0x04, 0x10, 0x20  # linux/posix_acl_xattr.h
    nobody = 0xFFFFFFFF
    entries = [
        (obj, 7, nobody),
        (user, 7, uid),
        (group_obj, 5, nobody),
        (mask, 7, nobody),
        (other, 5, nobody),
    ]
    raw = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    os.setxattr(path, "system.posix_acl_default" if default else "system.posix_acl_access", raw)


def test_an_acl_that_lets_a_user_write_is_found_refused_and_fixed(tljh, prefix, install):  # noqa: F811
    """`setfacl -m u:ubuntu:rwX` on the hub, to spare someone sudo: the owner and the mode
    look like root's, but uid 65534 can write. doctor names each path (root-code) and --fix
    removes exactly those ACLs; until then every change is refused, nothing written."""
    from tests.support import prefixes
    from tests.support.listing import file_listing, listing_diff
    from tljh_admin.errors import ExitCode

    site = _site(prefix / "hub")
    module = prefixes.own(site / "jupyterhub" / "__init__.py")  # a hard link to the shared base until now
    _grant_write_by_acl(module, 65534)
    _grant_write_by_acl(site / "oauthenticator", 65534)
    _grant_write_by_acl(site / "oauthenticator", 65534, default=True)
    before = file_listing(prefix)
    result = install("hub", "--dry-run", "oauthenticator")
    assert result.code == ExitCode.REFUSED and "an ACL lets uid 65534" in result.stderr, result.stderr
    assert listing_diff(before, file_listing(prefix)) == []

    doc = tljh("--prefix", prefix, "doctor", "--json", "--target", "hub", "acl-writers").json()
    found = {f["subject"]: f for f in doc["checks"][0]["findings"]}
    assert set(found) == {str(module), str(site / "oauthenticator")}
    assert {(f["status"], f["impact"], f["fixable"]) for f in found.values()} == {
        ("failed", "root-code", True)
    }
    assert "(in new files)" in found[str(site / "oauthenticator")]["message"]
    fixed = tljh("--prefix", prefix, "doctor", "--fix", "--json", "--target", "hub", "acl-writers").json()
    assert {f["subject"] for f in fixed["fixes"] if f["applied"]} == set(found)
    changed = [line for line in listing_diff(before, file_listing(prefix)) if " state" not in line]
    assert changed == []  # modes and owners as they were (state/: doctor's lock)
    for path in found:
        assert not [n for n in os.listxattr(path) if n.startswith("system.posix_acl")]
    assert install("hub", "--dry-run", "oauthenticator").code == ExitCode.OK


def test_a_default_acl_for_others_is_refused_and_never_inherited(tljh, prefix, install, tmp_path):  # noqa: F811
    """A default ACL (`setfacl -d -m u:ubuntu:rwX`) leaves a folder's own mode alone and
    hands everything written into it to that user. On the folders installers write into,
    the gate refuses it and doctor names it; deeper down, a change's normalisation takes
    the inherited ACLs off the files it wrote."""
    from tests.support.listing import file_listing, listing_diff
    from tljh_admin import snapshot, transaction
    from tljh_admin.errors import ExitCode
    from tljh_admin.permissions import acl_writers

    site = _site(prefix / "user")
    _grant_write_by_acl(site, 65534, default=True)
    before = file_listing(prefix)
    refused = install("user", "oauthenticator", "--yes")
    assert refused.code == ExitCode.REFUSED and "uid 65534 (in new files)" in refused.stderr, refused.stderr
    assert listing_diff(before, file_listing(prefix)) == []
    doc = tljh("--prefix", prefix, "doctor", "--json", "--target", "user", "acl-writers").json()
    assert [f["subject"] for f in doc["checks"][0]["findings"]] == [str(site)]
    tljh("--prefix", prefix, "doctor", "--fix", "--target", "user", "acl-writers")
    assert install("user", "oauthenticator", "--yes").code == ExitCode.OK

    # deeper down, where neither looks: the files a change writes lose what they inherit
    env = tmp_path / "env"
    deep = env / "share" / "jupyter" / "labextensions"
    deep.mkdir(parents=True)
    _grant_write_by_acl(deep, 65534, default=True)
    written = deep / "extension.js"
    written.write_text("")  # inherits the default ACL, as an installer's file would
    assert acl_writers(str(written), (0, 0), False) == ["uid 65534"]
    report = transaction.normalize_permissions(snapshot.install_areas(str(env), []), (0, 0))
    assert acl_writers(str(written), (0, 0), False) == [] and report.acl_removed >= 1


def test_installers_keep_nothing_in_folders_another_user_owns(prefix, install, offline, tmp_path):  # noqa: F811
    """Under `sudo -E`, HOME, XDG_CACHE_HOME, TMPDIR (and an admin's UV_CACHE_DIR) still
    name folders another uid owns. uv kept its cache there and hard-linked its files into
    the env, where that uid could change them in place after root installed them. The
    installer now gets root's own home and a private TMPDIR: nothing lands in their folders,
    and every file the change wrote is root's, however many names it has."""
    theirs = tmp_path / "theirs"
    folders = {name: theirs / name for name in ("HOME", "XDG_CACHE_HOME", "TMPDIR", "UV_CACHE_DIR")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    os.chown(theirs, 65534, 65534)
    for folder in folders.values():
        os.chown(folder, 65534, 65534)
    env = {**offline, **{name: str(folder) for name, folder in folders.items()}}
    result = install("user", "oauthenticator", "--yes", "--installer", "uv", env=env)
    assert result.code == 0, result.stderr
    assert [p for p in theirs.rglob("*") if p not in folders.values()] == []
    site = _site(prefix / "user")
    written = [p for p in (site / "oauthenticator").rglob("*") if p.is_file()]
    assert written and {p.stat().st_uid for p in written} == {0}


def test_an_installers_private_config_stays_private(tljh, prefix, install):  # noqa: F811
    """An admin's 0600 pip.conf (or .condarc) at the user env's root may hold an index
    password. pip skips a config file it cannot read, so users' servers lose nothing: doctor
    does not call it unreadable, --fix and a change's normalisation leave it 0600 (before,
    both made it readable by every local user)."""
    user = prefix / "user"
    private = [user / "pip.conf", user / ".condarc"]
    private[0].write_text("[global]\nextra-index-url = https://deploy:s3cr3t@pypi.internal.example/simple\n")
    private[1].write_text("channels: [https://deploy:s3cr3t@conda.internal.example/main]\n")
    for path in private:
        path.chmod(0o600)
    doc = tljh("--prefix", prefix, "doctor", "--json", "--target", "user", "users-can-read").json()
    assert doc["checks"][0]["status"] == "ok", doc["checks"][0]["findings"]
    tljh("--prefix", prefix, "doctor", "--fix", "--target", "user")
    result = install("user", "oauthenticator", "--yes")
    assert result.code == 0, result.stderr
    assert [stat.S_IMODE(p.stat().st_mode) for p in private] == [0o600, 0o600]


def test_a_symlinked_env_or_a_group_given_prefix_is_not_roots(prefix, install, tmp_path):  # noqa: F811
    """A user env that is a symlink to a folder another uid owns (find never follows a
    symlinked start, so nothing in it was judged), and a PREFIX whose group an admin made
    another (its members were trusted to write): both refused before anything runs."""
    import shutil

    from tljh_admin.errors import ExitCode

    theirs = tmp_path / "theirs"
    shutil.copytree(prefix / "user", theirs, symlinks=True)
    for folder, dirs, files in os.walk(theirs):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.lchown(name, 65534, 65534)
    moved = prefix / "user-moved"
    (prefix / "user").rename(moved)
    (prefix / "user").symlink_to(theirs)
    result = install("user", "--dry-run", "oauthenticator")
    assert result.code == ExitCode.REFUSED and f"{theirs}: uid 65534 owns it" in result.stderr, result.stderr
    (prefix / "user").unlink()
    moved.rename(prefix / "user")

    from tests.support import prefixes

    module = prefixes.own(_site(prefix / "hub") / "jupyterhub" / "__init__.py")
    os.chown(prefix, 0, 1234)
    os.chown(module, 0, 1234)
    module.chmod(0o664)
    result = install("hub", "--dry-run", "oauthenticator")
    assert result.code == ExitCode.REFUSED and "group 1234 may write it" in result.stderr, result.stderr


def test_a_pth_naming_a_missing_folder_outside_the_hub(tljh, prefix, install, tmp_path):  # noqa: F811
    """An editable plugin installed from a checkout that is gone: whoever creates that
    folder decides what the hub imports as root. No installer, no plugin evaluation, no
    --deep import runs from such a hub; doctor says so and names the .pth to remove."""
    from tljh_admin.errors import ExitCode

    site = _site(prefix / "hub")
    gone = tmp_path / "myplugin-src"
    (site / "__editable__.myplugin.pth").write_text(f"{gone}\n")
    result = install("hub", "--dry-run", "oauthenticator")
    assert result.code == ExitCode.REFUSED, result.stderr
    assert str(gone) in result.stderr and "does not exist" in result.stderr
    doc = tljh("--prefix", prefix, "doctor", "--json", "--target", "hub", "hub-sys-path").json()
    (finding,) = doc["checks"][0]["findings"]
    assert finding["status"] == "failed" and finding["impact"] == "root-code"
    assert "does not exist" in finding["message"] and finding["hint"].startswith("sudo rm ")
    deep = tljh("--prefix", prefix, "doctor", "--json", "--deep", "hub-imports").json()
    (finding,) = deep["checks"][0]["findings"]
    assert finding["status"] == "skipped" and "not started as root" in finding["message"]


def test_rebuild_builds_no_local_source_others_can_change(tmp_path):
    """`env rebuild` reinstalls a package from the folder it was installed from. A folder
    in /tmp that was cleared and recreated by a user (or a checkout someone else can write)
    would run their build backend as root, even for the plan: such a source is replaced by
    the index's release of the same version, with the reason. A root-owned folder in a
    sticky world-writable one (/tmp itself) is still used."""
    import subprocess

    from tljh_admin import rebuild

    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    theirs = sticky / "demo-auth"  # recreated by uid 65534 after the admin's was cleared
    theirs.mkdir()
    (theirs / "pyproject.toml").write_text("[build-system]\n")
    subprocess.run(["chown", "-R", "65534:65534", theirs], check=True)
    ours = sticky / "our-auth"
    ours.mkdir()
    (ours / "pyproject.toml").write_text("[build-system]\n")
    planted = ours / "backend.py"  # a file someone else may write, in a folder of ours
    planted.write_text("")
    planted.chmod(0o666)
    clean = sticky / "clean-auth"
    clean.mkdir()
    (clean / "pyproject.toml").write_text("[build-system]\n")

    def line(folder, kind=rebuild.DIRECTORY):
        origin = rebuild.Origin(kind, f"file://{folder}")
        return rebuild.requirement_line(rebuild.InstalledDist("demo-auth", "1.0", True, origin, ()))

    for folder, why in ((theirs, "uid 65534 owns it"), (ours, "world-writable")):
        for kind in (rebuild.DIRECTORY, rebuild.EDITABLE):
            requirement, note = line(folder, kind)
            assert requirement == "demo-auth==1.0", requirement
            assert why in note and "from the index" in note, note
    assert line(clean) == (f"demo-auth @ file://{clean}", "")


def test_a_replaced_symlink_comes_back_with_its_inode_and_times(tmp_path):
    """The snapshot's farm holds the env's symlinks themselves (cp -al links them): restore
    links that one back, so owner, mtime and inode are as they were (before: a new symlink,
    with the restore's mtime), and a symlink made anew with the same target is replaced."""
    from tljh_admin import snapshot

    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    link = env / "bin" / "python3"
    link.symlink_to("python3.13")
    os.utime(link, ns=(10**18, 10**18), follow_symlinks=False)
    before = os.lstat(link)
    areas = snapshot.install_areas(str(env), [])
    dest = tmp_path / "snap"
    dest.mkdir(mode=0o700)
    snapshot.take(areas, str(dest))
    link.unlink()
    link.symlink_to("python3.13")  # the same target, made anew by an installer
    snapshot.restore(str(dest), str(env), areas.folders)
    after = os.lstat(link)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    link.unlink()
    link.symlink_to("elsewhere")
    snapshot.restore(str(dest), str(env), areas.folders)
    assert os.readlink(link) == "python3.13" and os.lstat(link).st_mtime_ns == before.st_mtime_ns
