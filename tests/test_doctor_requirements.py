"""doctor's `pip check` decides the common requirement shapes without packaging (whose
import costs more than the check): on every combination below it must agree with
packaging, and it must really decide the common ones rather than hand them all over."""

from __future__ import annotations

import itertools

import pytest

from tljh_admin.envs import requirements as req

# the whole module is in the floor run (scripts/test)
pytestmark = pytest.mark.floor

INSTALLED = ["0.9", "1", "1.0", "1.0.0", "1.0.1", "1.1", "1.2.3", "2.0", "1.0.post1", "2026.10.19.post1"]
CLAUSES = [
    "==1.0",
    "==1",
    "!=1.0",
    ">=1.0",
    ">=1.0.1",
    "<=1.0",
    ">1.0",
    "<1.0",
    "<2",
    ">0.9",
    "~=1.0",
    "~=1.0.1",
    "==1.*",
    "==1.0.*",
    "!=1.0.*",
    ">=2023.5.7",
]
MARKERS = [
    "",
    'python_version < "3.11"',
    'python_version >= "3.9"',
    'python_full_version >= "3.11.2"',
    'sys_platform == "win32"',
    'sys_platform != "win32"',
    'platform_python_implementation != "PyPy"',
    'python_version >= "3.8" and python_version < "3.12"',
    'sys_platform == "win32" or python_version == "3.11"',
    '"linux" in sys_platform',
    'sys_platform in "linux darwin"',
    'sys_platform not in "win32 cygwin"',
    'os_name == "nt"',
]
VALUES = {
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "implementation_version": "3.11.2",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "platform_release": "6.1.0",
    "platform_version": "#1 SMP",
    "extra": "",
}


def _texts():
    specs = [""] + CLAUSES + [f"{a},{b}" for a, b in itertools.combinations(CLAUSES[:8], 2)]
    for spec, marker in itertools.product(specs, MARKERS):
        yield f"dep{spec}" + (f"; {marker}" if marker else "")
    yield "dep (>=1.0,<2)"
    yield "Dep_Name[extra1]>=1.0"


def test_fast_verdicts_equal_packagings():
    decided = 0
    for have, text in itertools.product(INSTALLED, _texts()):
        installed = {"dep": have, "dep-name": have}
        fast = req.fast_verdict(text, VALUES, installed)
        reference = req._packaging_verdict(text, VALUES, installed)
        if fast is not None:
            decided += 1
            assert fast == reference, (text, have)
    total = len(INSTALLED) * len(list(_texts()))
    assert decided == total  # every shape above is a common one: none needs packaging


def test_uncommon_shapes_go_to_packaging():
    installed = {"dep": "1.0rc1"}
    assert req.fast_verdict("dep>=1.0", VALUES, installed) is None  # a pre-release installed
    installed = {"dep": "1.0"}
    for text in (
        "dep>=1.0rc1",
        "dep===1.0",
        "dep @ https://example.org/dep.whl",
        'dep; (python_version < "3.9" or sys_platform == "win32") and os_name == "posix"',
        "dep~=1",
    ):
        assert req.fast_verdict(text, VALUES, installed) is None, text
        assert req._packaging_verdict(text, VALUES, installed)[0] in ("ok", "skip", req.MISSING, req.CONFLICT)
    assert req.fast_verdict("other>=1", VALUES, installed) == (req.MISSING, "other")
