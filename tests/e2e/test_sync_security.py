"""Who receives what: team, partners, private, widening later; and what NATS and the server
refuse (another person's subject, a forged actor, membership, malformed bytes)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
import pytest

from events import ObjectiveCreated, TeamMemberJoined, encode
from milepost_testkit.history import person_history
from milepost_testkit.sync_world import World, wait_until, world
from server.nats_embedded import inbox_prefix
from server.store.protocol import DeadLetter
from server.store.sqlite import SqliteStore


def titles(feed: Any) -> set[str]:
    return {item["summary"] for item in feed["items"]}


def ids(device: Any) -> set[str]:
    return set(device.log_states())


async def dead_letters(w: World) -> list[DeadLetter]:
    store = SqliteStore(w.server.database)
    await store.open()
    try:
        return await store.dead_letters()
    finally:
        await store.close()


def test_team_partners_and_private_items_reach_exactly_who_may_see_them(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        alice = w.device("alice", "laptop", team="web")
        bob = w.device("bob", "laptop", team="web")
        carol = w.device("carol", "laptop")
        w.server.admin("team", "join", "web", "alice", "bob")
        team = alice.json("milestone", "add", "Team launch", "--visibility", "team")
        private = alice.json("milestone", "add", "Secret plan", "--visibility", "private")
        mentor = alice.json("milestone", "add", "Mentor goal", "--partner", "carol")
        alice.ok("checkin", private["ref"], "30")
        alice.sync()
        for device in (bob, carol):
            device.sync()
        bob_feed, carol_feed = titles(bob.json("feed")), titles(carol.json("feed"))
        assert any("Team launch" in t for t in bob_feed)
        assert not any("Secret" in t or "Mentor" in t for t in bob_feed)
        assert any("Mentor goal" in t for t in carol_feed)
        assert not any("Team launch" in t or "Secret" in t for t in carol_feed)
        # A device never stores an event its person may not see.
        assert private["id"] not in ids(bob) | ids(carol)
        assert mentor["id"] not in ids(bob) and team["id"] not in ids(carol)

        # Widening later delivers the history too (the check-in came before the share).
        alice.ok("share", private["ref"], "team")
        alice.sync()
        bob.sync()
        assert private["id"] in ids(bob)
        assert len([i for i in bob.json("log", "--limit", "0")
                    if i["event"]["body"]["type"] == "checkin.recorded"]) == 1  # fmt: skip
        # Narrowing stops what follows; what bob already has stays (documented).
        alice.ok("share", private["ref"], "private")
        alice.ok("checkin", private["ref"], "80")
        alice.sync()
        bob.sync()
        assert private["id"] in ids(bob)
        checkins = [i for i in bob.json("log", "--limit", "0")
                    if i["event"]["body"]["type"] == "checkin.recorded"]  # fmt: skip
        assert len(checkins) == 1


def test_bad_credentials_and_an_unreachable_server_are_one_clear_line(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        alice = w.device("alice", "laptop")
        # init keeps its own copy of the credentials: spoil that one.
        stored = Path(alice.json("config")["credentials"])
        stored.write_text(json.dumps({"nats_password": "wrong"}))
        assert "authorization violation" in alice.fails("sync")
        alice.ok("config", "server", "nats://127.0.0.1:1")
        assert "cannot reach the sync server" in alice.fails("sync")
        alice.ok("config", "server", "http://127.0.0.1:8321")
        assert "not a NATS URL" in alice.fails("sync")


async def _raw_attacks(w: World) -> tuple[list[str], Any]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(
        w.nats.url, user="alice", password=w.passwords["alice"],
        inbox_prefix=inbox_prefix("alice"), allow_reconnect=False, error_cb=on_error,
    )  # fmt: skip
    try:
        js = nc.jetstream()
        forged = person_history("bob", "laptop", 1)[0]
        with pytest.raises(nats.errors.TimeoutError):
            await js.publish("milepost.events.bob.laptop", encode(forged), timeout=1.0)
        await nc.flush()
        # Alice's own subject, but the event claims bob: NATS lets it in, the server refuses.
        await js.publish("milepost.events.alice.laptop", encode(forged))
        # Team membership from a person's subject is refused too.
        join = msgspec.structs.replace(
            person_history("alice", "laptop", 1)[0],
            body=TeamMemberJoined(team="web", person="alice"),
        )
        await js.publish("milepost.events.alice.laptop", encode(join))
        await js.publish("milepost.events.alice.laptop", b'{"id": "not an event"')
        good = msgspec.structs.replace(
            person_history("alice", "laptop", 1)[0],
            body=ObjectiveCreated(title="After the junk", cycle="2026-Q1"),
        )
        await js.publish("milepost.events.alice.laptop", encode(good))
        return errors, good
    finally:
        await nc.close()


def test_nats_and_the_server_refuse_what_alice_may_not_push(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        bob = w.device("bob", "laptop")
        alice = w.device("alice", "laptop")
        errors, good = asyncio.run(_raw_attacks(w))
        assert any("permissions violation" in e and "milepost.events.bob" in e for e in errors)

        def dead() -> list[DeadLetter]:
            return asyncio.run(dead_letters(w))

        wait_until(lambda: len(dead()) == 3)
        reasons = sorted(d.reason for d in dead())  # one batch: any order
        assert any("does not match subject person 'alice'" in r for r in reasons)
        assert any("written only by the server's admin" in r for r in reasons)
        assert any("malformed JSON" in r for r in reasons)
        # The good event behind the junk still lands.
        alice.sync()
        assert good.id in ids(alice)
        bob.sync()
        assert ids(bob) == set()
        # The CLI turns a permissions violation into one line: a profile that claims to be
        # bob but logs in as alice publishes under bob's subject.
        creds = Path(alice.json("config")["credentials"])  # the copies init keeps
        creds.write_text(json.dumps({"user": "alice", "nats_password": w.passwords["alice"]}))
        bob_creds = Path(bob.json("config")["credentials"])
        bob_creds.write_text(creds.read_text())
        bob.new("objective", "Pushed with the wrong login", "--cycle", "2026-Q1")
        line = bob.fails("sync")
        assert "permissions violation" in line
