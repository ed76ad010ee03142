"""Snapshots of the projection state, kept in the event store's database (own tables).

A snapshot is the state at a store position, as ``projections.persist`` encodes it,
with the digest of its bytes. A restart loads the newest valid one and folds only the
events after it (``server.snapshots.service``). See docs/scaling.md.
"""

from server.snapshots.protocol import SnapshotInfo, SnapshotStore


def open_snapshots(database: str) -> SnapshotStore:
    """A snapshot store on ``database`` (a ``postgresql://`` URL or an SQLite path), not opened."""
    if database.startswith(("postgresql://", "postgres://")):
        from server.snapshots.postgres import PostgresSnapshots

        return PostgresSnapshots(database)
    from server.snapshots.sqlite import SqliteSnapshots

    return SqliteSnapshots(database.removeprefix("sqlite://"))


__all__ = ["SnapshotInfo", "SnapshotStore", "open_snapshots"]
