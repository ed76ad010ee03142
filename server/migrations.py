"""Versioned schema migrations and SQLite set-up, shared by the event store and the
account store on both backends.

A migration is a numbered step of statements. Each store keeps its own list and
its own table recording the steps applied (``schema_migrations`` for the event
store, ``account_migrations`` for accounts); a step runs once, and all pending
steps run in one transaction, so a failure leaves the schema as it was. On
PostgreSQL an advisory lock held for that transaction keeps two servers
starting together from both running a step.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

Migration = tuple[int, str, tuple[str, ...]]
"""(version, name, statements)."""

_T = TypeVar("_T")

_SQLITE_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"""

_POSTGRES_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    version integer PRIMARY KEY, name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())"""


def pending(migrations: Collection[Migration], applied: Collection[int]) -> Iterator[Migration]:
    """The steps not applied yet, in version order."""
    return (step for step in sorted(migrations) if step[0] not in applied)


class SqliteConnection:
    """One ``sqlite3`` connection and the one worker thread that uses it: every call runs
    there, in the order made, so a transaction handed over as one function (``run``) is
    never interleaved with another caller's statements and the event loop only awaits
    its result."""

    def __init__(self, db: sqlite3.Connection, worker: ThreadPoolExecutor) -> None:
        self._db = db
        self._worker = worker

    async def run(self, body: Callable[[sqlite3.Connection], _T]) -> _T:
        """``body(connection)`` in the connection's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, body, self._db)

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one statement; the number of rows changed."""
        return await self.run(lambda db: db.execute(sql, params).rowcount)

    async def execute_fetchall(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[Any]:
        """Every row of one query."""
        return await self.run(lambda db: db.execute(sql, params).fetchall())

    async def close(self) -> None:
        """Close the connection and end its thread."""
        try:
            await self.run(lambda db: db.close())
        finally:
            self._worker.shutdown(wait=False)


async def connect_sqlite(path: str, *pragmas: str) -> SqliteConnection:
    """An autocommit connection (transactions are explicit) to ``path`` (its folder is
    created), in WAL mode with a 30 s busy timeout, then ``PRAGMA`` each of ``pragmas``;
    it lives in its own thread (``SqliteConnection``)."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)

    def connect() -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            for pragma in ("journal_mode=WAL", "busy_timeout=30000", *pragmas):
                db.execute(f"PRAGMA {pragma}")
        except BaseException:
            db.close()
            raise
        return db

    worker = ThreadPoolExecutor(1, thread_name_prefix="milepost-sqlite")
    try:
        db = await asyncio.get_running_loop().run_in_executor(worker, connect)
    except BaseException:
        worker.shutdown(wait=False)
        raise
    return SqliteConnection(db, worker)


def _migrate_sqlite(db: sqlite3.Connection, table: str, migrations: Collection[Migration]) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(_SQLITE_TABLE.format(table=table))
        applied = {row[0] for row in db.execute(f"SELECT version FROM {table}")}
        for version, name, statements in pending(migrations, applied):
            for statement in statements:
                db.execute(statement)
            db.execute(
                f"INSERT INTO {table}(version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, datetime.now(UTC).isoformat()),
            )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


async def migrate_sqlite(
    db: SqliteConnection, table: str, migrations: Collection[Migration]
) -> None:
    """Run the steps of ``migrations`` not yet recorded in ``table``, in one transaction
    (one call into the connection's thread)."""
    await db.run(lambda conn: _migrate_sqlite(conn, table, migrations))


async def migrate_postgres(
    pool: asyncpg.Pool[Any], table: str, migrations: Collection[Migration], lock: int
) -> None:
    """Run the steps of ``migrations`` not yet recorded in ``table``, in one transaction
    holding the advisory lock ``lock`` (one migrator at a time across processes)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
        await conn.execute(_POSTGRES_TABLE.format(table=table))
        applied = {row[0] for row in await conn.fetch(f"SELECT version FROM {table}")}
        for version, name, statements in pending(migrations, applied):
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(
                f"INSERT INTO {table}(version, name, applied_at) VALUES ($1, $2, $3)",
                version,
                name,
                datetime.now(UTC),
            )


class PostgresTables:
    """A store of its own tables in the event store's PostgreSQL database (accounts,
    snapshots): a small pool, its own migrations table and advisory lock, so each migrates
    independently of the others."""

    MIGRATIONS: tuple[Migration, ...] = ()
    MIGRATIONS_TABLE = ""
    MIGRATION_LOCK = 0
    WHAT = "store"
    """Named in the error when used before ``open``."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: asyncpg.Pool[Any] | None = None

    @property
    def _db(self) -> asyncpg.Pool[Any]:
        if self._pool is None:
            raise RuntimeError(f"the {self.WHAT} is not open")
        return self._pool

    async def open(self) -> None:
        """Connect and run pending versioned migrations (each exactly once)."""
        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=2)
        await migrate_postgres(
            self._db, self.MIGRATIONS_TABLE, self.MIGRATIONS, self.MIGRATION_LOCK
        )

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
