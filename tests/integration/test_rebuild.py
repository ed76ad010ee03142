"""``rebuild`` equals the incremental state after a long random history, on both backends.

The history (milepost_testkit/history.py: 8 people, 2 teams, ~5,000 events with
corrections, retractions, relinks, sharing changes, membership changes) is
appended through the store in random batches in a shuffled order, while a
projection follower catches up between batches, as a running server does.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from milepost_testkit.history import generate_history
from server.cli import main
from server.projection import ProjectionFollower
from server.rebuild import differences, rebuilt_state, views
from server.store import open_store
from tests.http_world import backend, incoming, location

__all__ = ["backend", "location"]

NOW = datetime(2026, 9, 15, 12, 0, tzinfo=UTC)


async def test_rebuild_equals_the_incremental_state(location: str) -> None:

    history = list(generate_history(people=8, teams=2, target_events=5000, seed=7))
    assert len(history) > 4500
    rng = random.Random(11)
    # Arrival order is not creation order: shuffle within windows (devices sync late).
    for start in range(0, len(history), 300):
        window = history[start : start + 300]
        rng.shuffle(window)
        history[start : start + 300] = window
    store = open_store(location)
    await store.open()
    try:
        follower = ProjectionFollower(store, page=rng.randint(50, 500))
        index = 0
        while index < len(history):
            size = rng.randint(1, 400)
            batch = history[index : index + size]
            # A re-push of earlier events now and then: duplicates must change nothing.
            if index and rng.random() < 0.2:
                batch = batch + rng.sample(history[:index], min(20, index))
            items = incoming(batch)
            result = await store.append_batch(items)
            index += size
            roll = rng.random()
            if roll < 0.4:
                # As the server's ingest does: hand over the decoded batch; it is folded
                # only when it follows on from the follower, else read from the store.
                behind = bool(result.stored) and result.stored[0].position > follower.position + 1
                offered = follower.offer(result.stored, items)
                assert offered != behind
                if not offered:
                    await follower.catch_up()
            elif roll < 0.7:
                await follower.catch_up()
        await follower.catch_up()
        assert follower.position == len(history)
        reread = ProjectionFollower(store)
        await reread.catch_up()
        assert list(follower.feed_events_after(0)) == list(reread.feed_events_after(0))

        fresh = await rebuilt_state(store)
        compared, differ = differences(follower.state, fresh, NOW)
        assert differ == []
        assert compared > 100
        names = dict(views(fresh, NOW))
        assert any(name.startswith("feed/") for name in names)
        assert any(name.startswith("review/") for name in names)
    finally:
        await store.close()


def test_rebuild_command_checks_and_reports(
    location: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("MILEPOST_SERVER_HOME", str(tmp_path / "home"))

    async def fill() -> None:
        store = open_store(location)
        await store.open()
        try:
            events = list(generate_history(people=4, teams=1, target_events=800, seed=3))
            await store.append_batch(incoming(events))
        finally:
            await store.close()

    asyncio.run(fill())
    assert main(["rebuild", "--check", "--json", "--database", location]) == 0
    out = capsys.readouterr().out
    assert '"equal": true' in out
