"""Pulled pages applied to a client database: views equal a rebuild whatever the order."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from client.store import Store
from client.sync import SyncLog, apply_views
from client.views import check_views
from events import encode
from events.wire import WireEvent
from milepost_testkit.history import person_history

NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)


async def opened(tmp_path: Path) -> Store:
    store = await Store.open(tmp_path / "phone.sqlite3", create=True)
    async with store.write():
        await store.set_meta("person", "alice")
        await store.set_meta("device", "phone")
    return store


@pytest.mark.parametrize("page", [1, 3, 50])
async def test_children_pulled_before_their_parents_still_show(tmp_path: Path, page: int) -> None:
    events = person_history("alice", "laptop", 50)
    store = await opened(tmp_path)
    log = SyncLog(store, "alice")
    try:
        backwards = [WireEvent(i, encode(e)) for i, e in enumerate(reversed(events), start=1)]
        for start in range(0, len(backwards), page):
            chunk = backwards[start : start + page]
            await log.apply(chunk, chunk[-1].position, chunk[-1].position, NOW, apply_views)
        assert await check_views(store, NOW) == []
        assert await log.cursors() == (50, 50)
        counts = await log.counts()
        assert counts.confirmed == 50 and counts.pending == 0
    finally:
        await store.close()


async def test_in_order_pages_refold_incrementally(tmp_path: Path) -> None:
    events = person_history("alice", "laptop", 120)
    store = await opened(tmp_path)
    log = SyncLog(store, "alice")
    try:
        wire = [WireEvent(i, encode(e)) for i, e in enumerate(events, start=1)]
        for start in range(0, len(wire), 7):
            chunk = wire[start : start + 7]
            added, own, rejected = await log.apply(chunk, chunk[-1].position, 0, NOW, apply_views)
            assert added == own == len(chunk) and rejected == 0
        assert await check_views(store, NOW) == []
        again = await log.apply(wire[:10], 120, 0, NOW, apply_views)
        assert again == (0, 10, 0)  # already held: nothing added, still confirmed
    finally:
        await store.close()


async def test_the_sync_engine_refuses_a_direct_store(tmp_path: Path) -> None:
    # It fetches pages while a batch is applied: statements must queue in one thread.
    from client.errors import StoreError
    from client.sync import Syncer

    store = await Store.open(tmp_path / "cli.sqlite3", create=True, direct=True)
    try:
        with pytest.raises(StoreError, match="threaded store"):
            Syncer(store, "alice", "phone", link=None, now=lambda: NOW)  # type: ignore[arg-type]
    finally:
        await store.close()
