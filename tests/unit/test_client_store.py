"""The local store: immutability by trigger, idempotent append, faults as one clear error."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from client.errors import StoreCorrupt, StoreError, StoreLocked, StoreWriteFailed
from client.store import Store
from events import Event, new_event_id
from events import bodies as b


def _event(title: str = "Ship it") -> Event:
    moment = datetime(2026, 1, 5, 9, tzinfo=UTC)
    return Event(
        id=new_event_id(),
        actor="ava",
        device="laptop",
        clock=1,
        recorded_at=moment,
        occurred_at=moment,
        body=b.MilestonePlanned(title=title),
    )


@pytest.fixture(params=[False, True], ids=["threaded", "direct"])
async def store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """The same tests for both ways the store runs statements (``Store`` docstring)."""
    opened = await Store.open(tmp_path / "db.sqlite3", create=True, direct=request.param)
    yield opened
    await opened.close()


async def test_append_is_idempotent_and_pending(store: Store) -> None:
    event = _event()
    assert await store.append(event) == 1
    assert await store.append(event) is None
    assert await store.scalar("SELECT count(*) FROM events") == 1
    assert await store.scalar("SELECT state FROM event_sync WHERE id = ?", (event.id,)) == (
        "pending"
    )


async def test_triggers_refuse_update_and_delete(store: Store) -> None:
    await store.append(_event())
    with pytest.raises(StoreError, match="immutable"):
        await store.execute("UPDATE events SET actor = 'eve'")
    with pytest.raises(StoreError, match="immutable"):
        await store.execute("DELETE FROM events")
    assert await store.scalar("SELECT actor FROM events") == "ava"


async def test_sync_state_is_separate_and_checked(store: Store) -> None:
    event = _event()
    await store.append(event)
    await store.execute(
        "INSERT INTO sync_state (event_id, state, server_position) VALUES (?, 'confirmed', 7)",
        (event.id,),
    )
    assert await store.scalar("SELECT state FROM event_sync") == "confirmed"
    with pytest.raises(StoreError):
        await store.execute("UPDATE sync_state SET state = 'lost'")


async def test_write_rolls_back_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.write():
            await store.append(_event())
            raise RuntimeError("boom")
    assert await store.scalar("SELECT count(*) FROM events") == 0


async def test_disk_full_writes_nothing(store: Store) -> None:
    await store.append(_event())
    pages = await store.scalar("PRAGMA page_count")
    await store.scalar(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreWriteFailed, match="disk is full"):
        async with store.write():
            for index in range(200):
                await store.append(_event("x" * 190 + str(index)))
    assert await store.scalar("SELECT count(*) FROM events") == 1


async def test_read_only_database_writes_nothing(store: Store) -> None:
    await store.append(_event())
    await store.scalar("PRAGMA query_only = ON")
    with pytest.raises(StoreWriteFailed, match="read-only"):
        async with store.write():
            await store.append(_event())
    await store.scalar("PRAGMA query_only = OFF")
    assert await store.scalar("SELECT count(*) FROM events") == 1


@pytest.mark.parametrize("direct", [False, True], ids=["threaded", "direct"])
async def test_locked_database_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    path = tmp_path / "db.sqlite3"
    (await Store.open(path, create=True)).conn  # noqa: B018 - created below
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    monkeypatch.setenv("MILEPOST_LOCK_TIMEOUT", "0.2")
    store = await Store.open(path, direct=direct)
    try:
        with pytest.raises(StoreLocked, match="locked by another milepost process"):
            async with store.write():
                pass
    finally:
        holder.rollback()
        holder.close()
        await store.close()


async def test_foreign_and_corrupt_files(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.sqlite3"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreCorrupt, match="not a milepost database"):
        await Store.open(foreign)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreCorrupt):
        await Store.open(garbage)
