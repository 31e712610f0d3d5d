"""The environment scan behind doctor's file checks: GNU find over the env's root and,
apart, over each site folder, with paths printed relative to the folder walked (as RECORD
and conda records write them). Real files, real find; the Python walk must agree."""

from __future__ import annotations

import os

from tljh_admin import permissions, transaction
from tljh_admin.doctor import checks


def _env(top) -> tuple[str, str]:
    # glob characters in the prefix: the site folder is pruned from the root's walk by -path
    root = top / "opt [tljh]*" / "user"
    site = root / "lib" / "python3.11" / "site-packages"
    for path in (site / "pkg" / "a.py", root / "bin" / "tool", root / "share" / "data" / "f.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    return str(root), str(site)


def test_find_scan_trees_and_lookups(tmp_path):
    root, site = _env(tmp_path)
    st = os.stat(root)
    proc = permissions.start_find(root, (st.st_uid, st.st_gid), unreadable=True)
    assert proc is not None
    scan = permissions.read_find(proc)
    assert set(scan.trees) == {root, site}
    assert "pkg/a.py" in scan.trees[site]
    assert "lib/python3.11/site-packages/pkg/a.py" not in scan.trees[root]  # walked once, not twice
    assert scan.errors == ()

    rows = ["pkg/a.py", "../../../bin/tool", "../../../share/data/f.json", "pkg/gone.py", "../../../bin/gone"]
    assert scan.unseen(site, rows) == {"pkg/gone.py", "../../../bin/gone"}
    # conda records: relative to the root, the site folder's files included
    conda_rows = ["lib/python3.11/site-packages/pkg/a.py", "bin/tool", "bin/nope"]
    assert scan.unseen(root, conda_rows) == {"bin/nope"}
    assert scan.saw(os.path.join(site, "pkg", "a.py")) and scan.saw(os.path.join(root, "bin", "tool"))
    assert not scan.saw(os.path.join(root, "bin", "nope"))

    walked = permissions.walk(root, lambda mode, uid, gid, is_dir: False)
    assert walked.unseen(site, rows) == {"pkg/gone.py", "../../../bin/gone"}
    assert walked.unseen(root, ["lib/python3.11/site-packages/pkg/a.py", "bin/nope"]) == {"bin/nope"}


def test_find_scan_details_cover_the_site_folder(tmp_path):
    root, site = _env(tmp_path)
    writable = os.path.join(site, "pkg", "a.py")
    os.chmod(writable, 0o666)
    os.chmod(os.path.join(root, "bin", "tool"), 0o700)  # users cannot run it
    st = os.stat(root)
    scan = permissions.read_find(permissions.start_find(root, (st.st_uid, st.st_gid), unreadable=True))
    by_path = {e.path: e for e in scan.entries}
    assert permissions.world_writable(by_path[writable].mode)
    assert os.path.join(root, "bin", "tool") in by_path
    # the trees hold the paths, as relative as RECORD's, and nothing else
    assert {p for tree in scan.trees.values() for p in tree if p.startswith(("/", "\x01"))} == set()


def test_state_shortcut_names_the_change_machinerys_folders():
    # doctor skips importing transaction when these hold nothing: they must be its folders
    assert {checks._JOURNALS, checks._SNAPSHOTS} <= set(transaction.SUBFOLDERS)


def test_no_site_walk_through_a_symlinked_lib(tmp_path):
    # lib pointing elsewhere: the root's find does not follow it, and no find may start past it
    elsewhere = tmp_path / "elsewhere" / "python3.11" / "site-packages"
    elsewhere.mkdir(parents=True)
    root = tmp_path / "env"
    root.mkdir()
    (root / "lib").symlink_to(tmp_path / "elsewhere")
    assert permissions.site_folders(str(root)) == []
    st = os.stat(root)
    scan = permissions.read_find(permissions.start_find(str(root), (st.st_uid, st.st_gid), unreadable=False))
    assert set(scan.trees) == {str(root)}


def test_a_find_planted_in_path_is_never_run(tmp_path, planted_find):
    # doctor runs as root: the find it starts is findutils' own, by absolute path, whatever
    # PATH holds (a folder early in it may be writable by someone else)
    marker = planted_find
    root, site = _env(tmp_path)
    st = os.stat(root)
    scan = permissions.read_find(permissions.start_find(root, (st.st_uid, st.st_gid), unreadable=True))
    assert not marker.exists()
    assert "pkg/a.py" in scan.trees[site]  # the real find walked
