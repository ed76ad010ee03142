"""The sync errors: each carries one line for the person at the terminal."""

from __future__ import annotations

from client.errors import MilepostError


class SyncError(MilepostError):
    """Sync could not complete; the message says why in one line."""


class SyncUnreachable(SyncError):
    """The NATS server cannot be reached (worth retrying)."""


class SyncRefused(SyncError):
    """Bad credentials or a permissions violation (not worth retrying)."""
