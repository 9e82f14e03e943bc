"""The errors a user can cause, in one place.

Each says what went wrong and how to fix it. The command line prints them as one line and
exits with ``exit_code``; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class KerasResnetError(Exception):
    """Base of every error a user can fix; the message says how."""

    exit_code = 1


class ConfigError(KerasResnetError, ValueError):
    """A bad setting. ``parameter`` is its Python name; the CLI shows it as a flag.

    A ``ValueError`` too, so library users can catch it as Python's usual bad-argument error.
    """

    exit_code = 2

    def __init__(self, parameter: str, reason: str):
        super().__init__(f"{parameter} {reason}")
        self.parameter = parameter
        self.reason = reason

    @classmethod
    def from_value_error(cls, parameter: str, error: ValueError) -> ConfigError:
        """Re-raise a library ``ValueError`` as a setting's error, without repeating the name."""
        message = str(error)
        reason = message[len(parameter) + 1 :] if message.startswith(f"{parameter} ") else message
        return cls(parameter, reason if reason != message else f"is invalid: {message}")


class DataUnavailableError(KerasResnetError):
    """A dataset or image could not be read or downloaded; the message says what was tried."""


class RunFolderError(KerasResnetError):
    """A run folder cannot be used as asked (damaged, unwritable, holding another run)."""


class DivergedError(KerasResnetError):
    """Training produced a non-finite loss or weights; nothing from that epoch was kept."""


class ModelFileError(KerasResnetError):
    """A model file is unreadable, of another kind, or unsafe to load."""


class UnsafeCheckpointError(ModelFileError):
    """A PyTorch checkpoint asks for a Python global beyond tensors and plain containers, which
    could run code; it is refused before that global is looked up, let alone called."""

    def __init__(self, path: str, name: str):
        super().__init__(
            f"refused to read PyTorch checkpoint {path!r}: it asks for the Python global {name}, "
            "and only tensors, storages and plain containers are read from a checkpoint"
        )
        self.path = path
        self.name = name
