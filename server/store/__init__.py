"""Server stores: one Protocol, two backends (SQLite embedded, PostgreSQL scale-out)."""

from server.store.protocol import (
    AppendResult,
    DeadLetter,
    Incoming,
    ServerStore,
    StoredEvent,
)

__all__ = ["AppendResult", "DeadLetter", "Incoming", "ServerStore", "StoredEvent", "open_store"]


def open_store(database: str) -> ServerStore:
    """A store for ``database``: a ``postgresql://`` URL or an SQLite file path (not opened)."""
    if database.startswith(("postgresql://", "postgres://")):
        from server.store.postgres import PostgresStore

        return PostgresStore(database)
    from server.store.sqlite import SqliteStore

    return SqliteStore(database.removeprefix("sqlite://"))
