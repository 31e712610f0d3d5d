"""The three environments: detection and fast, read-only inspection."""

from tljh_admin.envs.backends import backend_for, inspect_all, inspect_environment

__all__ = ["backend_for", "inspect_all", "inspect_environment"]
