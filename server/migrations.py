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

from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg

Migration = tuple[int, str, tuple[str, ...]]
"""(version, name, statements)."""

_SQLITE_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"""

_POSTGRES_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    version integer PRIMARY KEY, name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())"""


def pending(migrations: Collection[Migration], applied: Collection[int]) -> Iterator[Migration]:
    """The steps not applied yet, in version order."""
    return (step for step in sorted(migrations) if step[0] not in applied)


async def connect_sqlite(path: str, *pragmas: str) -> aiosqlite.Connection:
    """An autocommit connection (transactions are explicit) to ``path`` (its folder is
    created), in WAL mode with a 30 s busy timeout, then ``PRAGMA`` each of ``pragmas``."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "busy_timeout=30000", *pragmas):
            await db.execute(f"PRAGMA {pragma}")
    except BaseException:
        await db.close()
        raise
    return db


async def migrate_sqlite(
    db: aiosqlite.Connection, table: str, migrations: Collection[Migration]
) -> None:
    """Run the steps of ``migrations`` not yet recorded in ``table``, in one transaction."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.execute(_SQLITE_TABLE.format(table=table))
        async with db.execute(f"SELECT version FROM {table}") as cursor:
            applied = {row[0] for row in await cursor.fetchall()}
        for version, name, statements in pending(migrations, applied):
            for statement in statements:
                await db.execute(statement)
            await db.execute(
                f"INSERT INTO {table}(version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, datetime.now(UTC).isoformat()),
            )
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise


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
