"""Faults: the server down while devices push, a device killed mid-push, late re-pushes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import nats

from milepost_testkit.history import jsonl_file, person_history
from milepost_testkit.sync_world import World, wait_until, world
from server.nats_embedded import inbox_prefix
from server.store.sqlite import SqliteStore


async def server_counts(w: World, person: str) -> tuple[int, int]:
    """(events by ``person`` in the server's store, distinct ids among them)."""
    store = SqliteStore(w.server.database)
    await store.open()
    try:
        events = await store.events_after(0, 1_000_000)
    finally:
        await store.close()
    mine = [e for e in events if e.actor == person]
    return len(mine), len({e.id for e in mine})


def pushed_rows(home: Path) -> int:
    """Rows marked pushed in a device's database (read directly, without the CLI)."""
    (path,) = home.glob("*.sqlite3")
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        return int(db.execute("SELECT count(*) FROM sync_state WHERE state != 'pending'")
                   .fetchone()[0])  # fmt: skip


def test_while_the_server_is_down_events_wait_in_jetstream(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        laptop = w.device("alice", "laptop")
        phone = w.device("alice", "phone")
        w.server.stop()
        refs = [laptop.new("objective", f"Goal {i}", "--cycle", "2026-Q1") for i in range(3)]
        line = laptop.fails("sync")
        assert "sync server is not running" in line
        # The stream acknowledged them: pushed, not yet confirmed.
        assert set(laptop.log_states().values()) == {"pushed"}
        assert "3 unsynced (0 pending, 3 pushed)" in laptop.ok("status")
        w.server.start()
        wait_until(lambda: asyncio.run(server_counts(w, "alice"))[0] == 3)
        phone.sync()
        assert {r for r in refs if any(i.replace("-", "").endswith(r) for i in phone.log_states())}
        assert len(phone.log_states()) == 3
        laptop.sync()
        assert set(laptop.log_states().values()) == {"confirmed"}


def test_a_device_killed_mid_push_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        laptop = w.device("alice", "laptop")
        phone = w.device("alice", "phone")
        events = person_history("alice", "laptop", 6000)
        laptop.ok("import", str(jsonl_file(tmp_path / "bulk.jsonl", events)))
        env = {**laptop.env, "MILEPOST_HOME": str(laptop.home), "MILEPOST_NOW": laptop.now}
        pusher = subprocess.Popen(
            [sys.executable, "-m", "client.cli", "sync"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            # Kill it as soon as the first acknowledgements are recorded.
            wait_until(lambda: pushed_rows(laptop.home) > 0, timeout=30, every=0.002)
        finally:
            os.kill(pusher.pid, signal.SIGKILL)
            pusher.wait()
        states = set(laptop.log_states().values())
        assert "pending" in states and "confirmed" not in states, states
        laptop.sync()
        wait_until(lambda: asyncio.run(server_counts(w, "alice"))[0] >= 6000)
        laptop.sync()
        assert set(laptop.log_states().values()) == {"confirmed"}
        assert asyncio.run(server_counts(w, "alice")) == (6000, 6000)
        phone.sync()
        assert len(phone.log_states()) == 6000


def test_a_re_push_after_the_duplicate_window_creates_no_duplicate(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        laptop = w.device("alice", "laptop")
        phone = w.device("alice", "phone")
        w.server.stop()
        laptop.new("objective", "Pushed twice", "--cycle", "2026-Q1")
        laptop.fails("sync")  # pushed; the server is down, so never confirmed
        # Days later the stream no longer remembers the id: a re-push is a new message.
        # Publishing the same bytes under another Nats-Msg-Id is exactly that.
        raw = next(iter(laptop.json("log")))["event"]

        async def republish() -> None:
            import json as _json

            nc = await nats.connect(
                w.nats.url, user="alice", password=w.passwords["alice"],
                inbox_prefix=inbox_prefix("alice"), allow_reconnect=False,
            )  # fmt: skip
            try:
                js = nc.jetstream()
                data = _json.dumps(raw, separators=(",", ":")).encode()
                for attempt in range(2):
                    ack = await js.publish(
                        "milepost.events.alice.laptop", data,
                        headers={"Nats-Msg-Id": f"{raw['id']}-late-{attempt}"},
                    )  # fmt: skip
                    assert not ack.duplicate
            finally:
                await nc.close()

        asyncio.run(republish())
        # And the client's own re-push of an unconfirmed event (timeout 0 s).
        assert laptop.fails("sync", "--repush-after", "0")
        w.server.start()
        wait_until(lambda: asyncio.run(server_counts(w, "alice"))[0] == 1, timeout=20)
        laptop.sync()
        phone.sync()
        assert asyncio.run(server_counts(w, "alice")) == (1, 1)
        assert len(phone.log_states()) == 1
        assert list(laptop.log_states().values()) == ["confirmed"]
