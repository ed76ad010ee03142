"""Snapshots in the store, on both backends: a start from the newest valid snapshot plus
the tail equals a fold of everything; a corrupt snapshot (bytes flipped in the stored
blob), one of another fold or of another store is skipped with a clear log line and the
start folds everything; the ``snapshot`` commands take, list and check them."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from events import Event
from milepost_testkit.history import generate_history
from projections import persist
from server.cli import main
from server.metrics import SnapshotStats
from server.projection import ProjectionFollower
from server.rebuild import differences, rebuilt_state
from server.snapshots import SnapshotStore, open_snapshots
from server.snapshots import service as snapshotting
from server.snapshots.protocol import in_parts
from server.snapshots.sqlite import folder_of
from server.store import ServerStore, open_store
from tests.http_world import backend, incoming, location

__all__ = ["backend", "location"]

NOW = datetime(2026, 9, 15, 12, 0, tzinfo=UTC)
HISTORY = list(generate_history(people=6, teams=2, target_events=3000, seed=9))


class Opened:
    def __init__(self, location: str, store: ServerStore, snapshots: SnapshotStore) -> None:
        self.location = location
        self.store = store
        self.snapshots = snapshots


@pytest_asyncio.fixture
async def opened(location: str) -> AsyncIterator[Opened]:
    store = open_store(location)
    await store.open()
    snapshots = open_snapshots(location)
    await snapshots.open()
    try:
        yield Opened(location, store, snapshots)
    finally:
        await snapshots.close()
        await store.close()


async def append(store: ServerStore, history: Sequence[Event], batch: int = 400) -> None:
    for start in range(0, len(history), batch):
        await store.append_batch(incoming(history[start : start + batch]))


async def started(opened: Opened, stats: SnapshotStats | None = None) -> ProjectionFollower:
    """A follower as ``milepost-server run`` starts one: newest valid snapshot, then the tail."""
    follower = ProjectionFollower(opened.store, page=700)
    await snapshotting.load_newest(
        opened.store, opened.snapshots, follower, stats or SnapshotStats()
    )
    await follower.catch_up()
    return follower


async def assert_equals_a_fold(opened: Opened, follower: ProjectionFollower) -> None:
    fresh = await rebuilt_state(opened.store)
    compared, differ = differences(follower.state, fresh, NOW)
    assert differ == []
    assert compared > 20
    assert follower.position == await opened.store.max_position()
    reread = ProjectionFollower(opened.store)
    await reread.catch_up()
    assert list(follower.feed_events_after(0)) == list(reread.feed_events_after(0))


async def flip_stored_byte(location: str, offset: int) -> None:
    """Damage the newest snapshot's stored bytes (its first part, on PostgreSQL)."""
    if location.startswith("postgresql://"):
        sql = "SELECT snapshot, seq, data FROM snapshot_parts ORDER BY snapshot DESC, seq LIMIT 1"
        conn = await asyncpg.connect(location)
        try:
            row = await conn.fetchrow(sql)
            assert row is not None
            snapshot, seq, data = row
            damaged = bytearray(data)
            damaged[offset] ^= 0x20
            await conn.execute(
                "UPDATE snapshot_parts SET data = $1 WHERE snapshot = $2 AND seq = $3",
                bytes(damaged),
                snapshot,
                seq,
            )
        finally:
            await conn.close()
        return
    # SQLite: the bytes are in a file beside the database.
    db = sqlite3.connect(location)
    try:
        found = db.execute("SELECT file FROM snapshots ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        db.close()
    assert found is not None
    path = folder_of(location) / found[0]
    damaged = bytearray(path.read_bytes())
    damaged[offset] ^= 0x20
    path.write_bytes(bytes(damaged))


async def test_a_blob_round_trips_in_parts(opened: Opened) -> None:
    blob = bytes(range(256)) * 37  # 9,472 bytes
    parts = in_parts([blob[:5000], blob[5000:5001], blob[5001:]], part_bytes=1000)
    assert len(parts) == 10 and b"".join(parts) == blob
    assert all(len(part) <= 1000 for part in parts)
    first = await opened.snapshots.save(5, "x", "v1", "digest", parts, 0.5)
    second = await opened.snapshots.save(9, "y", "v1", "digest2", in_parts([]), 0.1)
    assert first.size == len(blob) and second.size == 0
    assert await opened.snapshots.blob(first.id) == bytearray(blob)
    assert await opened.snapshots.blob(second.id) == bytearray()
    listed = await opened.snapshots.listing()
    assert [info.id for info in listed] == [second.id, first.id]
    assert listed[1] == first
    await opened.snapshots.delete([first.id])
    assert await opened.snapshots.blob(first.id) is None
    assert [info.id for info in await opened.snapshots.listing()] == [second.id]


async def test_a_start_from_a_snapshot_folds_only_the_tail_and_equals_a_fold(
    opened: Opened,
) -> None:
    cut = 1800
    await append(opened.store, HISTORY[:cut])
    first = await started(opened)
    assert first.position == cut
    info = await snapshotting.take(opened.store, opened.snapshots, first, SnapshotStats())
    assert info is not None and info.position == cut
    await append(opened.store, HISTORY[cut:])

    stats = SnapshotStats()
    resumed = ProjectionFollower(opened.store, page=700)
    assert await snapshotting.load_newest(opened.store, opened.snapshots, resumed, stats) == info
    assert resumed.position == cut  # nothing folded yet: the state is the snapshot's
    assert stats.load_seconds is not None and stats.loaded_position == cut
    folded = await resumed.catch_up()
    assert folded == len(HISTORY) - cut  # only the tail
    await assert_equals_a_fold(opened, resumed)

    # A snapshot of the resumed state (taken while requests may read) loads the same.
    again = await snapshotting.take(opened.store, opened.snapshots, resumed, SnapshotStats())
    assert again is not None and again.position == len(HISTORY)
    await assert_equals_a_fold(opened, await started(opened))
    assert len(await opened.snapshots.listing()) == snapshotting.KEEP


async def test_a_corrupt_snapshot_means_a_fold_of_everything(
    opened: Opened, caplog: pytest.LogCaptureFixture
) -> None:
    await append(opened.store, HISTORY[:1200])
    first = await started(opened)
    info = await snapshotting.take(opened.store, opened.snapshots, first, SnapshotStats())
    assert info is not None
    await append(opened.store, HISTORY[1200:])
    await flip_stored_byte(opened.location, info.size // 2)

    stats = SnapshotStats()
    with caplog.at_level(logging.WARNING, logger="server.snapshots.service"):
        follower = await started(opened, stats)
    assert stats.load_seconds is None and stats.skipped == 1
    assert f"snapshot {info.id} at position 1200 ignored" in caplog.text
    assert "checksum does not match" in caplog.text
    assert "no valid snapshot: folding every stored event" in caplog.text
    await assert_equals_a_fold(opened, follower)
    # It can never be loaded: deleted, not read again at the next start.
    assert f"snapshot {info.id} deleted: its bytes are corrupt" in caplog.text
    assert info.id not in [listed.id for listed in await opened.snapshots.listing()]


async def test_an_older_valid_snapshot_is_used_when_the_newest_is_corrupt(
    opened: Opened, caplog: pytest.LogCaptureFixture
) -> None:
    await append(opened.store, HISTORY[:1000])
    older = await snapshotting.take(
        opened.store, opened.snapshots, await started(opened), SnapshotStats()
    )
    await append(opened.store, HISTORY[1000:2000])
    newest = await snapshotting.take(
        opened.store, opened.snapshots, await started(opened), SnapshotStats()
    )
    assert older is not None and newest is not None
    await flip_stored_byte(opened.location, 10)
    stats = SnapshotStats()
    with caplog.at_level(logging.WARNING, logger="server.snapshots.service"):
        follower = ProjectionFollower(opened.store)
        assert (
            await snapshotting.load_newest(opened.store, opened.snapshots, follower, stats) == older
        )
    assert f"snapshot {newest.id} at position 2000 ignored" in caplog.text
    await append(opened.store, HISTORY[2000:])
    await follower.catch_up()
    await assert_equals_a_fold(opened, follower)


async def test_a_snapshot_of_another_fold_or_store_is_ignored(
    opened: Opened, caplog: pytest.LogCaptureFixture
) -> None:
    await append(opened.store, HISTORY[:900])
    follower = await started(opened)
    pieces, position = await follower.snapshot()
    blob = b"".join(pieces)
    # Stored as an older fold would have: never loaded by this one.
    await opened.snapshots.save(
        position, HISTORY[899].id, "0-older", persist.checksum(blob), [blob], 0.1
    )
    # One whose position holds another event: taken of another store.
    await opened.snapshots.save(
        position, HISTORY[0].id, persist.FOLD_VERSION, persist.checksum(blob), [blob], 0.1
    )
    stats = SnapshotStats()
    with caplog.at_level(logging.WARNING, logger="server.snapshots.service"):
        fresh = await started(opened, stats)
    assert stats.skipped == 2 and stats.load_seconds is None
    assert "this server folds" in caplog.text
    assert "another event at its position 900" in caplog.text
    await append(opened.store, HISTORY[900:])
    await fresh.catch_up()
    await assert_equals_a_fold(opened, fresh)


async def test_folding_waits_for_a_snapshot_but_readers_do_not(opened: Opened) -> None:
    await append(opened.store, HISTORY[:1500])
    follower = await started(opened)
    await append(opened.store, HISTORY[1500:])
    taking = asyncio.create_task(follower.snapshot(pause_every=1))
    await asyncio.sleep(0)  # the snapshot holds the state at 1500 now
    folding = asyncio.create_task(follower.catch_up())
    async with follower.reading() as state:  # a view's read is not held up
        assert state is follower.state
    pieces, position = await taking
    assert position == 1500
    await folding
    assert follower.position == len(HISTORY)
    blob = b"".join(pieces)
    loaded, fields = persist.decode(blob, persist.checksum(blob))
    assert fields.position == 1500 and len(loaded.events) <= 1500


def test_the_snapshot_commands(
    location: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("MILEPOST_SERVER_HOME", str(tmp_path / "home"))

    async def fill(history: Sequence[Event]) -> None:
        store = open_store(location)
        await store.open()
        try:
            await append(store, history)
        finally:
            await store.close()

    def run(*args: str) -> tuple[int, str]:
        code = main([*args, "--database", location])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    assert run("snapshot", "check") == (
        1,
        "milepost-server: error: no snapshots yet: milepost-server snapshot take\n",
    )
    asyncio.run(fill(HISTORY[:1000]))
    code, out = run("snapshot", "take", "--json")
    assert code == 0
    taken = json.loads(out)
    assert taken["position"] == 1000 and taken["size"] > 0
    asyncio.run(fill(HISTORY[1000:]))
    code, out = run("snapshot", "take", "--json")  # from the first snapshot + the tail
    assert code == 0 and json.loads(out)["position"] == len(HISTORY)

    code, out = run("snapshot", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [item["position"] for item in listed] == [len(HISTORY), 1000]
    assert all(item["loadable"] for item in listed)

    code, out = run("snapshot", "check", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["equal"] and report["views_compared"] > 50
    code, out = run("snapshot", "check", "--id", str(taken["id"]))
    assert code == 0 and "views equal a fold of the same events" in out

    asyncio.run(flip_stored_byte(location, 100))  # the newest
    code, out = run("snapshot", "check")
    assert code == 1
    assert "cannot be loaded: the snapshot's checksum does not match its bytes" in out
    assert out.count("\n") == 1 and "Traceback" not in out
    code, out = run("snapshot", "check", "--id", "999")
    assert (code, out) == (1, "milepost-server: error: no snapshot 999\n")


async def test_a_snapshot_whose_file_is_gone_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    location = str(tmp_path / "server.sqlite")
    store = open_store(location)
    await store.open()
    snapshots = open_snapshots(location)
    await snapshots.open()
    opened = Opened(location, store, snapshots)
    try:
        await append(store, HISTORY[:600])
        info = await snapshotting.take(store, snapshots, await started(opened), SnapshotStats())
        assert info is not None
        (file,) = folder_of(location).iterdir()
        assert file.name.startswith("600-") and file.stat().st_size == info.size
        file.unlink()
        with caplog.at_level(logging.WARNING, logger="server.snapshots.service"):
            follower = await started(opened)
        assert f"snapshot {info.id} at position 600 ignored: its bytes are gone" in caplog.text
        await assert_equals_a_fold(opened, follower)
        await snapshots.delete([info.id])  # a missing file is no error
        assert await snapshots.listing() == []
    finally:
        await snapshots.close()
        await store.close()


async def test_the_running_server_snapshots_at_once_without_one_then_every_n_events(
    opened: Opened,
) -> None:
    await append(opened.store, HISTORY[:500])
    follower = await started(opened)
    stats = SnapshotStats()
    stop = asyncio.Event()
    running = asyncio.create_task(
        snapshotting.run_periodically(
            opened.store,
            opened.snapshots,
            follower,
            stats,
            stop,
            every_events=1000,
            every_seconds=3600,
            check_interval=0.05,
        )
    )
    try:
        for _ in range(200):  # none of this fold yet: one at once
            if stats.taken:
                break
            await asyncio.sleep(0.05)
        assert stats.taken == 1 and stats.position == 500
        await append(opened.store, HISTORY[500:1200])
        await follower.catch_up()
        await asyncio.sleep(0.3)
        assert stats.taken == 1  # 700 behind: fewer than every_events
        await append(opened.store, HISTORY[1200:1600])
        await follower.catch_up()
        for _ in range(200):
            if stats.taken == 2:
                break
            await asyncio.sleep(0.05)
        assert stats.taken == 2 and stats.position == 1600
    finally:
        stop.set()
        await running
    assert [info.position for info in await opened.snapshots.listing()] == [1600, 500]
