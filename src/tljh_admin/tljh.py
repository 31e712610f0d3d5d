"""Facts taken from TLJH itself, each with where it comes from."""

from __future__ import annotations

import os

# tljh/installer.py, ensure_user_environment(): the user env's Python must be at least 3.9,
# pip is raised to at least 23.1.2 (TLJH PR #890), conda to 4.10 and mamba to 0.16.0.
MIN_USER_PYTHON = "3.9"
MIN_USER_PIP = "23.1.2"
MIN_CONDA = "4.10"
MIN_MAMBA = "0.16.0"
# TLJH 2.0's tljh/installer.py pins the user env's conda and mamba (conda_version,
# mamba_version, from its Miniforge 24.7.1-2) and force-reinstalls them on every upgrade.
PINNED_CONDA = "24.7.1"
PINNED_MAMBA = "1.5.9"

# The hub venv holds these (tljh/requirements-hub-env.txt); we ship TLJH 2.0's copy.
DATA_DIR = os.path.join(os.path.dirname(__file__), "data")
HUB_REQUIREMENTS = os.path.join(DATA_DIR, "requirements-hub-env.txt")
USER_EXTRAS = os.path.join(DATA_DIR, "requirements-user-env-extras.txt")

# tljh/systemd-units/: the services TLJH installs and keeps running.
SYSTEMD_UNITS = ("jupyterhub", "traefik")

# Below this much free space under PREFIX an upgrade or install is likely to fail half way.
# (Our own threshold: TLJH's user env alone is about 1 GB; an upgrade downloads a few hundred MB.)
DISK_FAILED_BYTES = 200 * 1024**2
DISK_WARNING_BYTES = 1024**3
