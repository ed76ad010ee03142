"""The server's partition snapshot refresh (``server.snapshots.refresh``) with its real
child process: a failing run is counted and logged in one line and the next run still
comes; a stop while a child runs stops that child; success is in
``tests/e2e/test_server_snapshots.py`` and ``tests/integration/test_working_set.py``."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from milepost_testkit.history import generate_history
from server.snapshots.refresh import RefreshStats, refresh_periodically
from server.store import open_store
from tests.http_world import incoming


def children_for(database: str) -> list[int]:
    """Pids of the refresh children running on ``database``."""
    marker = f"MILEPOST_DATABASE={database}\0".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if marker in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return [pid for pid in found if pid != os.getpid()]


async def test_a_failing_refresh_is_one_warning_and_the_next_still_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A database the child cannot open: a file where its folder should be.
    (tmp_path / "not-a-folder").write_text("")
    database = str(tmp_path / "not-a-folder" / "milepost.sqlite")
    stats = RefreshStats()
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="server.snapshots.refresh")
    refreshing = asyncio.create_task(
        refresh_periodically(database, tmp_path, 0.05, 5000, stats, stop)
    )
    try:
        async with asyncio.timeout(60):
            while stats.runs < 2:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await refreshing
    assert stats.failures == stats.runs >= 2 and stats.taken == 0
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings and all(
        w.startswith("refreshing partition snapshots failed: ") for w in warnings
    )
    assert all("\n" not in w and "Traceback" not in w for w in warnings), warnings


async def test_a_stop_while_a_child_runs_stops_it(tmp_path: Path) -> None:
    database = str(tmp_path / "milepost.sqlite")
    store = open_store(database)
    await store.open()
    try:
        history = list(generate_history(people=12, teams=3, target_events=20_000, seed=3))
        for start in range(0, len(history), 1000):
            await store.append_batch(incoming(history[start : start + 1000]))
    finally:
        await store.close()
    stats = RefreshStats()
    stop = asyncio.Event()
    refreshing = asyncio.create_task(
        refresh_periodically(database, tmp_path, 0.01, 5000, stats, stop)
    )
    async with asyncio.timeout(60):
        while not (running := children_for(database)):
            await asyncio.sleep(0.01)
    stop.set()
    async with asyncio.timeout(30):
        await refreshing
    assert stats.runs == 0  # the run was cut short, not counted as done
    assert not [pid for pid in running if Path(f"/proc/{pid}").exists()]  # stopped, reaped
