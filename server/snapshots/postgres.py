"""Snapshots in PostgreSQL (the event store's database, own tables): every replica sharing
the database starts from the same snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from server.migrations import Migration, PostgresTables
from server.snapshots.protocol import SnapshotInfo

MIGRATIONS: tuple[Migration, ...] = (
    (
        1,
        "snapshots of the projection state, their bytes in parts",
        (
            """CREATE TABLE snapshots (
                id bigserial PRIMARY KEY,
                position bigint NOT NULL,
                anchor text NOT NULL,
                fold_version text NOT NULL,
                checksum text NOT NULL,
                size bigint NOT NULL,
                taken_at timestamptz NOT NULL,
                seconds double precision NOT NULL
            )""",
            """CREATE TABLE snapshot_parts (
                snapshot bigint NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
                seq integer NOT NULL,
                data bytea NOT NULL,
                PRIMARY KEY (snapshot, seq)
            )""",
            # JSON compresses, but pglz on hundreds of MB costs more than it saves here.
            "ALTER TABLE snapshot_parts ALTER COLUMN data SET STORAGE EXTERNAL",
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

_MIGRATION_LOCK = 727275  # apart from the event store's and the accounts'

_COLUMNS = "id, position, anchor, fold_version, checksum, size, taken_at, seconds, partition_key"


def _info(row: asyncpg.Record) -> SnapshotInfo:
    return SnapshotInfo(*row.values())


class PostgresSnapshots(PostgresTables):
    """``SnapshotStore`` on PostgreSQL through a small asyncpg pool of its own."""

    MIGRATIONS = MIGRATIONS
    MIGRATIONS_TABLE = "snapshot_migrations"
    MIGRATION_LOCK = _MIGRATION_LOCK
    WHAT = "snapshot store"

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
        """Store a snapshot and its parts in one transaction."""
        size = sum(len(part) for part in parts)
        taken_at = datetime.now(UTC)
        async with self._db.acquire() as conn, conn.transaction():
            snapshot_id = await conn.fetchval(
                "INSERT INTO snapshots(position, anchor, fold_version, checksum, size, taken_at,"
                " seconds, partition_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                position,
                anchor,
                fold_version,
                checksum,
                size,
                taken_at,
                seconds,
                partition,
            )
            for seq, part in enumerate(parts):
                await conn.execute(
                    "INSERT INTO snapshot_parts(snapshot, seq, data) VALUES ($1, $2, $3)",
                    snapshot_id,
                    seq,
                    part,
                )
        return SnapshotInfo(
            int(snapshot_id),
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
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM snapshots WHERE partition_key = $1"
            " ORDER BY position DESC, id DESC",
            partition,
        )
        return [_info(row) for row in rows]

    async def partition_count(self) -> int:
        """How many snapshots of working-set partitions are stored."""
        return int(
            await self._db.fetchval("SELECT COUNT(*) FROM snapshots WHERE partition_key != ''")
        )

    async def blob(self, snapshot_id: int) -> bytearray | None:
        """The snapshot's parts in one buffer, read one at a time; None if it is gone."""
        async with self._db.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            size = await conn.fetchval("SELECT size FROM snapshots WHERE id = $1", snapshot_id)
            if size is None:
                return None
            buffer = bytearray(size)
            offset = seq = 0
            while offset < len(buffer):
                part = await conn.fetchval(
                    "SELECT data FROM snapshot_parts WHERE snapshot = $1 AND seq = $2",
                    snapshot_id,
                    seq,
                )
                if part is None or offset + len(part) > len(buffer):
                    return buffer[:offset]  # a part is missing: the digest will say
                buffer[offset : offset + len(part)] = part
                offset, seq = offset + len(part), seq + 1
            return buffer

    async def delete(self, snapshot_ids: list[int]) -> None:
        """Forget these snapshots (their parts go with them)."""
        if snapshot_ids:
            await self._db.execute(
                "DELETE FROM snapshots WHERE id = ANY($1::bigint[])", snapshot_ids
            )
