"""A real git repository holding a real PEP 517 project, for installs from VCS URLs.

No build backend is available offline here (setuptools needs `wheel`, which has no offline
wheel), so the project carries its own in-tree backend (`backend-path`), a few lines that
zip the wheel the way tests/support/wheels.py does. pip runs it as it runs any backend.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

_BACKEND = """
import base64, hashlib, os, zipfile

NAME, VERSION = {name!r}, {version!r}
DIST = NAME.replace("-", "_")


def _hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = f"{{DIST}}-{{VERSION}}.dist-info"
    files = {{
        f"{{DIST}}/__init__.py": f"__version__ = {{VERSION!r}}\\n".encode(),
        f"{{info}}/METADATA": f"Metadata-Version: 2.1\\nName: {{NAME}}\\nVersion: {{VERSION}}\\n\\n".encode(),
        f"{{info}}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: in-tree\\nRoot-Is-Purelib: true\\n"
        b"Tag: py3-none-any\\n",
    }}
    record = "".join(f"{{p}},{{_hash(d)}},{{len(d)}}\\n" for p, d in files.items()) + f"{{info}}/RECORD,,\\n"
    files[f"{{info}}/RECORD"] = record.encode()
    name = f"{{DIST}}-{{VERSION}}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return name
"""


def git_project(root: Path, name: str, version: str) -> tuple[Path, str]:
    """A git repository with one commit of project `name` at `version`; (path, commit id)."""
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "{version}"\n\n'
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    (root / "backend.py").write_text(_BACKEND.format(name=name, version=version))
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "v" + version]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    return root, commit.stdout.strip()
