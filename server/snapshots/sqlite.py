"""Snapshots in the embedded SQLite file (the event store's file, own tables)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.migrations import Migration, SqliteConnection, connect_sqlite, migrate_sqlite
from server.snapshots.protocol import SnapshotInfo

MIGRATIONS: tuple[Migration, ...] = (
    (
        1,
        "snapshots of the projection state (their bytes in files beside the database)",
        (
            """CREATE TABLE snapshots (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                position INTEGER NOT NULL,
                anchor TEXT NOT NULL,
                fold_version TEXT NOT NULL,
                checksum TEXT NOT NULL,
                size INTEGER NOT NULL,
                taken_at TEXT NOT NULL,
                seconds REAL NOT NULL,
                file TEXT NOT NULL
            )""",
        ),
    ),
    (
        2,
        "snapshots of working-set partitions beside those of all history",
        (
            "ALTER TABLE snapshots ADD COLUMN partition_key TEXT NOT NULL DEFAULT ''",
            "CREATE INDEX snapshots_partition ON snapshots(partition_key, position)",
        ),
    ),
)
"""Numbered schema steps, recorded in ``snapshot_migrations`` (apart from the event store's)."""

_COLUMNS = "id, position, anchor, fold_version, checksum, size, taken_at, seconds, partition_key"


def _info(row: Any) -> SnapshotInfo:
    return SnapshotInfo(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        datetime.fromisoformat(row[6]),
        row[7],
        row[8],
    )


def folder_of(database: str) -> Path:
    """Where the snapshots of the SQLite database at ``database`` keep their bytes."""
    path = Path(database)
    return path.with_name(path.name + ".snapshots")


def _write(path: Path, parts: Sequence[bytes]) -> None:
    """The parts into ``path``, durably, appearing whole or not at all."""
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        for part in parts:
            out.write(part)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)


class SqliteSnapshots:
    """``SnapshotStore`` for an SQLite store: the list in a table of the database (on a
    connection of its own), each snapshot's bytes in a file of ``<database>.snapshots/``.

    A file rather than rows: SQLite keeps a large blob as a chain of 4 KB overflow pages,
    and reading 450 MB back that way took 2.1 s against a fraction of that for a file.
    One host holds an SQLite store, so the files are where the database is.
    """

    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._db: SqliteConnection | None = None
        self._lock = asyncio.Lock()
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        self._folder = folder_of(self._path)

    @property
    def _conn(self) -> SqliteConnection:
        if self._db is None:
            raise RuntimeError("the snapshot store is not open")
        return self._db

    async def open(self) -> None:
        """Connect and run pending versioned migrations (each exactly once)."""
        if self._path == ":memory:":
            self._temporary = tempfile.TemporaryDirectory(prefix="milepost-snapshots-")
            self._folder = Path(self._temporary.name)
        self._folder.mkdir(parents=True, exist_ok=True)
        self._db = await connect_sqlite(self._path, "synchronous=NORMAL")
        async with self._lock:
            await migrate_sqlite(self._db, "snapshot_migrations", MIGRATIONS)

    async def close(self) -> None:
        """Release the connection."""
        if self._db is not None:
            await self._db.close()
            self._db = None
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None

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
        """Write the bytes to a new file, then list the snapshot (a crash in between
        leaves an unlisted file, never a listed snapshot without its bytes)."""
        size = sum(len(part) for part in parts)
        taken_at = datetime.now(UTC)
        name = f"{position}-{uuid.uuid4().hex}.snapshot"
        await asyncio.to_thread(_write, self._folder / name, parts)
        stamp = taken_at.isoformat()
        row = (position, anchor, fold_version, checksum, size, stamp, seconds, name, partition)

        def insert(db: sqlite3.Connection) -> int | None:
            cursor = db.execute(
                "INSERT INTO snapshots(position, anchor, fold_version, checksum, size,"
                " taken_at, seconds, file, partition_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return cursor.lastrowid

        async with self._lock:
            snapshot_id = await self._conn.run(insert)
        assert snapshot_id is not None
        return SnapshotInfo(
            snapshot_id,
            position,
            anchor,
            fold_version,
            checksum,
            size,
            taken_at,
            seconds,
            partition,
        )

    async def listing(self, partition: str = "") -> list[SnapshotInfo]:
        """Every snapshot of ``partition``, newest position first."""
        async with self._lock:
            rows = await self._conn.execute_fetchall(
                f"SELECT {_COLUMNS} FROM snapshots WHERE partition_key = ?"
                " ORDER BY position DESC, id DESC",
                (partition,),
            )
        return [_info(row) for row in rows]

    async def partition_count(self) -> int:
        """How many snapshots of working-set partitions are stored."""
        async with self._lock:
            rows = await self._conn.execute_fetchall(
                "SELECT COUNT(*) FROM snapshots WHERE partition_key != ''"
            )
        return int(rows[0][0])

    async def file(self, snapshot_id: int) -> Path | None:
        """The file holding a snapshot's bytes (None if it is not listed)."""
        async with self._lock:
            rows = await self._conn.execute_fetchall(
                "SELECT file FROM snapshots WHERE id = ?", (snapshot_id,)
            )
        return None if not rows else self._folder / rows[0][0]

    async def blob(self, snapshot_id: int) -> bytes | None:
        """The snapshot's bytes; None if it is not listed or its file is gone."""
        path = await self.file(snapshot_id)
        if path is None:
            return None
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def delete(self, snapshot_ids: list[int]) -> None:
        """Forget these snapshots, then remove their files."""
        if not snapshot_ids:
            return
        marks = ",".join("?" * len(snapshot_ids))
        async with self._lock:
            rows = await self._conn.execute_fetchall(
                f"SELECT file FROM snapshots WHERE id IN ({marks})", snapshot_ids
            )
            files = [row[0] for row in rows]
            await self._conn.execute(f"DELETE FROM snapshots WHERE id IN ({marks})", snapshot_ids)
        for name in files:
            (self._folder / name).unlink(missing_ok=True)
