"""tljh-admin: the `tljh` command for people who run The Littlest JupyterHub."""

__version__ = "0.1.0"
