"""Build real wheels in the test session.

A wheel is a zip holding the package's files and a `.dist-info` folder (METADATA, WHEEL,
RECORD). Real pip installs these with `--no-index --find-links`, so every isolation rule can
be exercised offline with packages named like the real ones.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name


@dataclass(frozen=True)
class WheelSpec:
    name: str
    version: str
    requires: tuple[str, ...] = ()
    #: extra files, relative to the wheel root
    files: dict[str, str] = field(default_factory=dict)
    #: a console script the wheel installs into bin/, as "name=module:function"
    scripts: tuple[str, ...] = ()


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def build_wheel(spec: WheelSpec, wheelhouse: Path) -> Path:
    """Write `{name}-{version}-py3-none-any.whl` into `wheelhouse` and return its path."""
    dist_name = canonicalize_name(spec.name).replace("-", "_")
    module = dist_name
    dist_info = f"{dist_name}-{spec.version}.dist-info"
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {spec.name}",
        f"Version: {spec.version}",
        f"Summary: test stand-in for {spec.name}",
        *(f"Requires-Dist: {req}" for req in spec.requires),
        # pip ignores an extra the metadata does not declare
        *sorted(
            {f"Provides-Extra: {m}" for r in spec.requires for m in re.findall(r"extra == \"([^\"]+)\"", r)}
        ),
    ]
    contents: dict[str, bytes] = {
        f"{module}/__init__.py": f'__version__ = "{spec.version}"\n'.encode(),
        **{path: text.encode() for path, text in spec.files.items()},
        f"{dist_info}/METADATA": ("\n".join(metadata) + "\n\n").encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: tljh-admin-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    if spec.scripts:
        entry_points = "[console_scripts]\n" + "".join(f"{s.replace('=', ' = ', 1)}\n" for s in spec.scripts)
        contents[f"{dist_info}/entry_points.txt"] = entry_points.encode()
    record_lines = [f"{path},{_record_hash(data)},{len(data)}" for path, data in contents.items()]
    record_lines.append(f"{dist_info}/RECORD,,")
    contents[f"{dist_info}/RECORD"] = ("\n".join(record_lines) + "\n").encode()

    wheelhouse.mkdir(parents=True, exist_ok=True)
    path = wheelhouse / f"{dist_name}-{spec.version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in contents.items():
            zf.writestr(name, data)
    return path


# Stand-ins for what lives in a TLJH server's environments, with the requirement shapes
# the real packages have (versions chosen around TLJH 2.x's `jupyterhub>=5.2.0,<6`).
TLJH_LIKE = (
    WheelSpec("jupyterhub", "4.1.6", ("traitlets>=5",)),
    WheelSpec("jupyterhub", "5.2.0", ("traitlets>=5",)),
    WheelSpec("jupyterhub", "5.2.1", ("traitlets>=5",)),
    WheelSpec(
        "jupyterhub",
        "5.3.0",
        ("traitlets>=5",),
        # real jupyterhub ships data files too (share/jupyterhub/...): an upgrade writes outside site-packages
        files={"jupyterhub-5.3.0.data/data/share/jupyterhub/static/marker.txt": "5.3.0\n"},
    ),
    WheelSpec("jupyterhub", "6.0.0", ("traitlets>=5",)),
    WheelSpec("traitlets", "5.14.3"),
    WheelSpec("tomli", "2.0.1"),
    WheelSpec("oauthenticator", "17.1.0", ("jupyterhub>=5",)),
    WheelSpec("oauthenticator", "17.3.0", ("jupyterhub>=5",)),
    WheelSpec("jupyterhub-idle-culler", "1.4.0", ("jupyterhub>=4",)),
    WheelSpec("jupyter-server", "2.14.2", ("traitlets>=5.6",)),
    WheelSpec("jupyterlab", "4.2.5", ("jupyter-server>=2.4,<3", 'tomli>=1.2.2; python_version < "3.11"')),
    WheelSpec("notebook", "7.2.2", ("jupyter-server>=2.4,<3", "jupyterlab>=4.2,<4.3")),
    WheelSpec("numpy", "1.26.4"),
    WheelSpec("numpy", "2.1.0"),
    # needs a jupyterhub the hub does not have: the pin must refuse it
    WheelSpec("hub-extension", "1.0.0", ("jupyterhub>=6",)),
    # its dependency is not in the wheelhouse: installs only with --no-deps
    WheelSpec("needs-missing", "1.0.0", ("not-in-wheelhouse>=1",)),
    # slow to install (thousands of files): something to kill or wait for mid-install
    WheelSpec("bigpkg", "1.0.0", files={f"bigpkg/part_{i:04d}.py": f"N = {i}\n" for i in range(3000)}),
    # a data file named like the env's lib/ folder: pip fails after writing its modules
    WheelSpec("breaks-midway", "1.0.0", files={"breaks_midway-1.0.0.data/data/lib": "not a folder\n"}),
    # the rest of TLJH 2.0's hub requirements, so that its shipped list resolves offline
    WheelSpec("jupyterhub-systemdspawner", "1.0.2", ("jupyterhub>=2",)),
    WheelSpec("jupyterhub-firstuseauthenticator", "1.1.0", ("jupyterhub>=4",)),
    WheelSpec("jupyterhub-nativeauthenticator", "1.3.0", ("jupyterhub>=4",)),
    WheelSpec("jupyterhub-ldapauthenticator", "2.0.0", ("jupyterhub>=4",)),
    WheelSpec("jupyterhub-tmpauthenticator", "1.0.0", ("jupyterhub>=4",)),
    WheelSpec("pycurl", "7.45.7"),
    # TLJH itself, carrying its own hub requirements (the authority when it is installed)
    WheelSpec(
        "the-littlest-jupyterhub",
        "2.0.0",
        files={"tljh/requirements-hub-env.txt": "jupyterhub>=5.2.0,<5.3\noauthenticator>=17.1.0,<18\n"},
    ),
    # a hub plugin that drags JupyterLab in
    WheelSpec("lab-dragging-plugin", "1.0.0", ("jupyterlab>=4",)),
)


def build_wheelhouse(wheelhouse: Path, specs=TLJH_LIKE) -> Path:
    for spec in specs:
        build_wheel(spec, wheelhouse)
    return wheelhouse
