"""The port both snapshot stores implement."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import msgspec

PART_BYTES = 32 * 1024 * 1024
"""A blob is stored in parts of at most this size (PostgreSQL's bytea and SQLite's blobs
stop at 1 GB; a full state passes that at about two million events)."""


class SnapshotInfo(msgspec.Struct, frozen=True):
    """One stored snapshot, without its bytes."""

    id: int
    position: int
    anchor: str
    """The id of the event at ``position``: a store that holds another event there is
    not the store the snapshot was taken of."""
    fold_version: str
    checksum: str
    size: int
    taken_at: datetime
    seconds: float
    """How long encoding it took."""
    partition: str = ""
    """The working-set partition it is of (``team:T``, ``person:X``); "" for all history."""


class SnapshotStore(Protocol):
    """Snapshots by id; the blob is read only when loaded."""

    async def open(self) -> None:
        """Connect and run pending migrations (``snapshot_migrations``)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def save(
        self,
        position: int,
        anchor: str,
        fold_version: str,
        checksum: str,
        parts: Sequence[bytes],
        seconds: float,
        partition: str = "",
    ) -> SnapshotInfo:
        """Store a snapshot (of all history, or of the working-set ``partition``), its bytes
        as these parts (each at most ``PART_BYTES``), in one transaction; return it."""
        ...

    async def listing(self, partition: str = "") -> list[SnapshotInfo]:
        """Every snapshot of ``partition`` ("": of all history), newest position first
        (then newest id)."""
        ...

    async def partition_count(self) -> int:
        """How many snapshots of working-set partitions are stored."""
        ...

    async def blob(self, snapshot_id: int) -> bytes | bytearray | None:
        """The bytes of a snapshot (its parts copied into one buffer, one part read at a
        time), None if it is gone."""
        ...

    async def delete(self, snapshot_ids: list[int]) -> None:
        """Forget these snapshots."""
        ...


def to_prune(snapshots: list[SnapshotInfo], current: str, keep: int) -> list[int]:
    """Ids beyond the newest ``keep`` of the current fold and the newest one of each other
    fold (a replica still running older code may start from it)."""
    seen: dict[str, int] = {}
    doomed = []
    for info in snapshots:  # newest first
        count = seen.get(info.fold_version, 0)
        allowed = keep if info.fold_version == current else 1
        if count >= allowed:
            doomed.append(info.id)
        seen[info.fold_version] = count + 1
    return doomed


def in_parts(pieces: list[bytes], part_bytes: int | None = None) -> list[bytes]:
    """``pieces`` regrouped into parts of at most ``part_bytes`` (a piece larger than that
    is cut); ``pieces`` is emptied as it goes, so the bytes are held about once."""
    limit = part_bytes or PART_BYTES
    pieces.reverse()
    parts: list[bytes] = []
    group: list[bytes] = []
    size = 0
    while pieces:
        piece = pieces.pop()
        while len(piece) > limit - size:
            cut = limit - size
            group.append(piece[:cut])
            parts.append(b"".join(group))
            group, size, piece = [], 0, piece[cut:]
        if piece:
            group.append(piece)
            size += len(piece)
    if group or not parts:
        parts.append(b"".join(group))
    return parts
