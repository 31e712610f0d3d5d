"""Files shipped with tljh-admin: TLJH's own requirement lists, for when TLJH is not installed."""
