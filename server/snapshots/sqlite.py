"""Snapshots in the embedded SQLite file (the event store's file, own tables)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from server.migrations import Migration, connect_sqlite, migrate_sqlite
from server.snapshots.protocol import SnapshotInfo

MIGRATIONS: tuple[Migration, ...] = (
    (
        1,
        "snapshots of the projection state, their bytes in parts",
        (
            """CREATE TABLE snapshots (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                position INTEGER NOT NULL,
                anchor TEXT NOT NULL,
                fold_version TEXT NOT NULL,
                checksum TEXT NOT NULL,
                size INTEGER NOT NULL,
                taken_at TEXT NOT NULL,
                seconds REAL NOT NULL
            )""",
            """CREATE TABLE snapshot_parts (
                snapshot INTEGER NOT NULL,
                seq INTEGER NOT NULL,
                data BLOB NOT NULL,
                PRIMARY KEY (snapshot, seq)
            )""",
        ),
    ),
)
"""Numbered schema steps, recorded in ``snapshot_migrations`` (apart from the event store's)."""

_COLUMNS = "id, position, anchor, fold_version, checksum, size, taken_at, seconds"


def _info(row: Any) -> SnapshotInfo:
    return SnapshotInfo(
        row[0], row[1], row[2], row[3], row[4], row[5], datetime.fromisoformat(row[6]), row[7]
    )


class SqliteSnapshots:
    """``SnapshotStore`` on an SQLite file (WAL), on a connection of its own."""

    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the snapshot store is not open")
        return self._db

    async def open(self) -> None:
        """Connect and run pending versioned migrations (each exactly once)."""
        self._db = await connect_sqlite(self._path, "synchronous=NORMAL")
        async with self._lock:
            await migrate_sqlite(self._db, "snapshot_migrations", MIGRATIONS)

    async def close(self) -> None:
        """Release the connection."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def save(
        self,
        position: int,
        anchor: str,
        fold_version: str,
        checksum: str,
        parts: Sequence[bytes],
        seconds: float,
    ) -> SnapshotInfo:
        """Store a snapshot and its parts in one transaction."""
        size = sum(len(part) for part in parts)
        taken_at = datetime.now(UTC)
        db = self._conn
        async with self._lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                cursor = await db.execute(
                    "INSERT INTO snapshots(position, anchor, fold_version, checksum, size,"
                    " taken_at, seconds) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        position,
                        anchor,
                        fold_version,
                        checksum,
                        size,
                        taken_at.isoformat(),
                        seconds,
                    ),
                )
                snapshot_id = cursor.lastrowid
                await cursor.close()
                for seq, part in enumerate(parts):
                    await db.execute(
                        "INSERT INTO snapshot_parts(snapshot, seq, data) VALUES (?, ?, ?)",
                        (snapshot_id, seq, part),
                    )
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        assert snapshot_id is not None
        return SnapshotInfo(
            snapshot_id, position, anchor, fold_version, checksum, size, taken_at, seconds
        )

    async def listing(self) -> list[SnapshotInfo]:
        """Every snapshot, newest position first."""
        async with (
            self._lock,
            self._conn.execute(
                f"SELECT {_COLUMNS} FROM snapshots ORDER BY position DESC, id DESC"
            ) as cursor,
        ):
            return [_info(row) for row in await cursor.fetchall()]

    async def blob(self, snapshot_id: int) -> bytearray | None:
        """The snapshot's parts in one buffer, read one at a time; None if it is gone."""
        async with self._lock:
            await self._conn.execute("BEGIN")  # one read snapshot for every part
            try:
                async with self._conn.execute(
                    "SELECT size FROM snapshots WHERE id = ?", (snapshot_id,)
                ) as cursor:
                    row = await cursor.fetchone()
                if row is None:
                    return None
                buffer = bytearray(row[0])
                offset = seq = 0
                while offset < len(buffer):
                    async with self._conn.execute(
                        "SELECT data FROM snapshot_parts WHERE snapshot = ? AND seq = ?",
                        (snapshot_id, seq),
                    ) as cursor:
                        part = await cursor.fetchone()
                    if part is None or offset + len(part[0]) > len(buffer):
                        return buffer[:offset]  # a part is missing: the digest will say
                    buffer[offset : offset + len(part[0])] = part[0]
                    offset, seq = offset + len(part[0]), seq + 1
                return buffer
            finally:
                await self._conn.execute("COMMIT")

    async def delete(self, snapshot_ids: list[int]) -> None:
        """Forget these snapshots and their parts."""
        if not snapshot_ids:
            return
        db = self._conn
        marks = ",".join("?" * len(snapshot_ids))
        async with self._lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.execute(
                    f"DELETE FROM snapshot_parts WHERE snapshot IN ({marks})", snapshot_ids
                )
                await db.execute(f"DELETE FROM snapshots WHERE id IN ({marks})", snapshot_ids)
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
