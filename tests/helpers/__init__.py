"""Reusable test helpers (physics checks every model family runs, small reference data)."""
