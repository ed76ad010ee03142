"""The one migration runner (``server.migrations``) on SQLite and PostgreSQL: steps run once
and in order, a later step runs alone on an existing database, a failing step leaves
the schema as it was, and two migrators at once apply each step once."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from server.migrations import (
    Migration,
    connect_sqlite,
    migrate_postgres,
    migrate_sqlite,
)
from tests.services import fresh_database

STEPS: tuple[Migration, ...] = (
    (1, "notes", ("CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL)",)),
    (2, "an index", ("CREATE INDEX notes_body ON notes (body)",)),
)
LATER: Migration = (3, "tags", ("CREATE TABLE tags (name text PRIMARY KEY)",))
BROKEN: Migration = (3, "broken", ("CREATE TABLE tags (name text)", "NOT SQL AT ALL"))


@dataclass
class Backend:
    """One database on either backend: run the migrator on it, or query it."""

    migrate: Callable[[Collection[Migration]], Awaitable[None]]
    query: Callable[[str], Awaitable[list[Any]]]

    async def versions(self) -> list[int]:
        return [row[0] for row in await self.query("SELECT version FROM m ORDER BY version")]

    async def has_table(self, name: str) -> bool:
        try:
            await self.query(f"SELECT count(*) FROM {name}")
        except (sqlite3.OperationalError, asyncpg.UndefinedTableError):
            return False
        return True


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_admin_url: str
) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        path = str(tmp_path / "db" / "store.sqlite")

        async def migrate_lite(steps: Collection[Migration]) -> None:
            db = await connect_sqlite(path)
            try:
                await migrate_sqlite(db, "m", steps)
            finally:
                await db.close()

        async def query_lite(sql: str) -> list[Any]:
            db = await connect_sqlite(path)
            try:
                return list(await db.execute_fetchall(sql))
            finally:
                await db.close()

        yield Backend(migrate_lite, query_lite)
        return
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(fresh_database(postgres_admin_url))
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        stack.push_async_callback(pool.close)

        async def migrate_pg(steps: Collection[Migration]) -> None:
            await migrate_postgres(pool, "m", steps, lock=4242)

        async def query_pg(sql: str) -> list[Any]:
            return list(await pool.fetch(sql))

        yield Backend(migrate_pg, query_pg)


async def test_steps_run_once_in_order_and_a_later_step_alone(backend: Backend) -> None:
    await backend.migrate(tuple(reversed(STEPS)))  # listed out of order: run by version
    assert await backend.versions() == [1, 2]
    await backend.migrate(STEPS)  # nothing pending: CREATE TABLE notes would fail if rerun
    assert await backend.versions() == [1, 2]
    await backend.migrate((*STEPS, LATER))
    assert await backend.versions() == [1, 2, 3]
    assert await backend.has_table("tags")


async def test_a_failing_step_leaves_the_schema_as_it_was(backend: Backend) -> None:
    await backend.migrate(STEPS[:1])
    with pytest.raises((sqlite3.OperationalError, asyncpg.PostgresSyntaxError)):
        await backend.migrate((*STEPS, BROKEN))
    # Step 2 ran in the same transaction as the broken step 3: both undone.
    assert await backend.versions() == [1]
    assert not await backend.has_table("tags")
    await backend.migrate((*STEPS, LATER))
    assert await backend.versions() == [1, 2, 3]


async def test_two_migrators_at_once_apply_each_step_once(backend: Backend) -> None:
    results = await asyncio.gather(
        *(backend.migrate((*STEPS, LATER)) for _ in range(3)), return_exceptions=True
    )
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert await backend.versions() == [1, 2, 3]
