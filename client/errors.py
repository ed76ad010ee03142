"""One error tree for the client. ``cli.main`` prints one line for any of them.

Exit codes: 1 for a user error or a fault we can explain, 2 for bad usage.
"""

from __future__ import annotations


class MilepostError(Exception):
    """Base of every error the CLI reports as one line on stderr."""

    exit_code = 1

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class UsageError(MilepostError):
    """The command line itself is wrong (exit 2)."""

    exit_code = 2


class NotInitialised(MilepostError):
    """No profile yet: ``milepost init`` has not run under this home."""


class NotFound(MilepostError):
    """A reference names nothing known."""


class Ambiguous(MilepostError):
    """A short reference matches more than one item."""


class InvalidValue(MilepostError):
    """A value breaks a declared limit (percent 140, empty title, bad date...)."""


class StoreError(MilepostError):
    """The local database cannot be used."""


class StoreLocked(StoreError):
    """Another process holds the write lock longer than the bounded wait."""


class StoreCorrupt(StoreError):
    """The file is not a Milepost database (corrupt, or some other program's)."""


class StoreWriteFailed(StoreError):
    """The disk is full or the folder is read-only; nothing was written."""


class ImportRejected(MilepostError):
    """An import file had bad rows; ``details`` holds one line per bad row."""
