"""Exceptions that carry a message meant for the user (the CLI prints it as one line)."""

from __future__ import annotations


class MatloopError(Exception):
    """Base class of errors caused by input the user can fix."""


class DataError(MatloopError, ValueError):
    """Malformed or physically impossible reference data."""


class ConfigError(MatloopError, ValueError):
    """A configuration file or option that cannot be used."""


class ModelFileError(MatloopError, ValueError):
    """A model file that is missing, truncated, corrupted or from an incompatible version."""


class UnknownElementError(MatloopError, ValueError):
    """A structure contains an element the model was never trained on."""


class FitError(MatloopError, RuntimeError):
    """A model could not be fitted to the data given (the message names the cause)."""


class Interrupted(MatloopError):
    """The user pressed Ctrl-C; the message says what was saved and how to continue."""
