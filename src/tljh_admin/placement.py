"""Which packages belong in which environment: shared by the install guards (policy.py)
and by doctor, which must not pay for importing the guards to read one set."""

from __future__ import annotations

from tljh_admin.envs.sitepackages import canonical_name

# Rule 5: what runs users' servers; in the hub env it only confuses (the hub never imports
# it) and pins the hub's dependencies to the user side's release cycle.
USER_SERVER_PACKAGES = frozenset(
    canonical_name(n)
    for n in (
        "jupyterlab",
        "notebook",
        "nbclassic",
        "jupyter_server",
        "jupyterlab_server",
        "jupyter-lsp",
        "ipykernel",
        "ipython",
        "ipywidgets",
        "voila",
        "nbgitpuller",
        "jupyter-resource-usage",
    )
)
