import pytest

from tests.support import prefixes

# the whole module is in the floor run (scripts/test)
pytestmark = pytest.mark.floor


def test_base_prefix_is_tljh_shaped(base_prefix, cpython_source):
    assert (base_prefix / "hub" / "pyvenv.cfg").is_file()
    assert (base_prefix / "user" / "bin" / "python3").exists()
    assert ("jupyterhub", "5.2.1") in prefixes.pip_list(base_prefix / "hub")
    assert ("jupyterhub", "5.2.1") in prefixes.pip_list(base_prefix / "user")
