"""A teammate's hostile clocks and dates, pushed with raw nats-py against the real server
and real CLI devices: refused at ingest, and nothing they send stops anyone's device."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import date
from pathlib import Path

import msgspec
import nats

from events import ObjectiveCreated, encode
from events.clock import MAX_CLOCK_AHEAD_MS, pack, wall_ms
from milepost_testkit.history import person_history as history
from milepost_testkit.sync_world import World, wait_until, world
from server.nats_embedded import inbox_prefix
from server.store.protocol import DeadLetter
from tests.e2e.test_sync_security import dead_letters, ids

HOUR_MS = 3_600_000
YEAR_6000_MS = (date(6000, 1, 1) - date(1970, 1, 1)).days * 24 * HOUR_MS


def _team_goal(title: str, clock: int) -> tuple[str, bytes]:
    base = history("alice", "laptop", 1)[0]
    event = msgspec.structs.replace(
        base, clock=1, body=ObjectiveCreated(title=title, cycle="2026-Q1", visibility="team")
    )
    raw = encode(event).replace(b'"clock":1,', f'"clock":{clock},'.encode())
    return event.id, raw


def _replaced(raw: bytes, old: str, new: str) -> bytes:
    assert old.encode() in raw
    return raw.replace(old.encode(), new.encode())


async def _push(w: World, messages: list[bytes]) -> None:
    nc = await nats.connect(
        w.nats.url, user="alice", password=w.passwords["alice"],
        inbox_prefix=inbox_prefix("alice"), allow_reconnect=False,
    )  # fmt: skip
    try:
        js = nc.jetstream()
        for raw in messages:
            await js.publish("milepost.events.alice.laptop", raw)
    finally:
        await nc.close()


def test_hostile_clocks_and_dates_are_refused_and_poison_no_device(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        alice = w.device("alice", "laptop", team="web")
        bob = w.device("bob", "laptop", team="web")
        w.server.admin("team", "join", "web", "alice", "bob")
        now = wall_ms()
        _, poison = _team_goal("Poison", (1 << 63) - 1)
        _, year_6000 = _team_goal("Year 6000", pack(YEAR_6000_MS, 0))
        _, too_far = _team_goal("Three days ahead", pack(now + 72 * HOUR_MS, 0))
        allowed_id, allowed = _team_goal("A day ahead", pack(now + 24 * HOUR_MS, 0))
        absurd_cycle = _replaced(
            _team_goal("Cycle 9999", pack(now, 0))[1], '"cycle":"2026-Q1"', '"cycle":"9999-Q4"'
        )
        _, plain = _team_goal("Occurred 9999", pack(now, 0))
        absurd_occurred = _replaced(
            plain,
            '"occurred_at":"2026-01-05T09:00:01Z"',
            '"occurred_at":"9999-12-31T23:59:59-05:00"',
        )
        asyncio.run(_push(w, [poison, year_6000, too_far, absurd_cycle, absurd_occurred, allowed]))

        def dead() -> list[DeadLetter]:
            return asyncio.run(dead_letters(w))

        wait_until(lambda: len(dead()) == 5)
        reasons = {letter.raw: letter.reason for letter in dead()}
        assert reasons[poison].startswith("clock: stamp is later than 2199-12-31")
        assert reasons[year_6000].startswith("clock: stamp is later than 2199-12-31")
        assert "at most 48 h ahead is accepted" in reasons[too_far]
        assert reasons[absurd_cycle] == "body.cycle: year must be between 1970 and 2199"
        assert reasons[absurd_occurred].startswith("occurred_at: date must be between")

        # bob syncs what was accepted, then keeps writing and syncing: no "invalid clock".
        summary = bob.sync()
        assert allowed_id in ids(bob)
        assert summary is not None
        with sqlite3.connect(bob.home / "bob@laptop.sqlite3") as db:
            (stamp,) = db.execute("SELECT value FROM meta WHERE key = 'clock'").fetchone()
        assert int(stamp) <= pack(now + MAX_CLOCK_AHEAD_MS, 0xFFFF)
        mine = bob.new("milestone", "add", "Mine", "--visibility", "team")
        bob.ok("checkin", mine, "40")
        bob.sync()
        alice.sync()
        titles = {e["event"]["body"].get("title") for e in alice.json("log", "--limit", "0")}
        assert {"Mine", "A day ahead"} <= titles
        assert not titles & {"Poison", "Year 6000", "Three days ahead", "Occurred 9999"}
