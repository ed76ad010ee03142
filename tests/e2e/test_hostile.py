"""A hostile teammate with valid credentials, a raw nats-py connection, raw HTTP and events
built by hand, against the real server on both stores (docs/security.md).

Bob is in alice's team. Every attack below must be refused (a dead letter with a reason,
which bob's device learns) or harmless: alice's private items never reach bob, nothing of
alice's moves, and nothing anyone else may see is lost or hidden because of it.
"""

# ruff: noqa: E501

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
import pytest_asyncio

from events import (
    Changes,
    CheckInRecorded,
    Corrected,
    Event,
    IndicatorDefined,
    KeyResultAdded,
    KnownBody,
    KudosGiven,
    MilestoneCompleted,
    MilestonePlanned,
    MilestoneRelinked,
    ObjectiveCreated,
    Retracted,
    SharingChanged,
    TaskAdded,
    TeamMemberJoined,
    encode,
    new_event_id,
)
from events.clock import pack
from events.wire import decode_reply, pull_subject
from milepost_testkit.history import jsonl_file as jsonl
from milepost_testkit.sync_world import Device, World
from server.nats_embedded import inbox_prefix
from server.store import open_store
from server.store.protocol import DeadLetter
from tests.services import fresh_database

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgres", "sqlite-working-set"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """The store, and with ``-working-set`` a server holding partitions folded on demand
    (``--memory-budget``) instead of all history: the same attacks must fail the same way."""
    return str(request.param)


@pytest_asyncio.fixture
async def hostile(tmp_path: Path, store_kind: str, postgres_admin_url: str) -> AsyncIterator[World]:
    """alice, bob and carol in team web; dave elsewhere; the server on the store asked for."""
    async with contextlib.AsyncExitStack() as stack:
        database = None
        if store_kind == "postgres":
            database = await stack.enter_async_context(fresh_database(postgres_admin_url))
        budget = ("--memory-budget", "64") if store_kind.endswith("-working-set") else ()
        w = World(tmp_path, database, budget)
        stack.push_async_callback(asyncio.to_thread, w.close)
        await asyncio.to_thread(w.start)
        await asyncio.to_thread(w.server.admin, "team", "join", "web", "alice", "bob", "carol")
        yield w


class Raw:
    """One person on a raw nats-py connection with their own credentials, and raw HTTP."""

    def __init__(self, w: World, person: str) -> None:
        self.w = w
        self.person = person
        self.clock = pack(int(time.time() * 1000), 0)
        self.nc: Any = None
        self.errors: list[str] = []

    async def __aenter__(self) -> Raw:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        self.nc = await nats.connect(
            self.w.nats.url, user=self.person, password=self.w.passwords[self.person],
            inbox_prefix=inbox_prefix(self.person), allow_reconnect=False, error_cb=on_error,
        )  # fmt: skip
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.close()

    def event(self, body: KnownBody, *, clock: int | None = None) -> Event:
        self.clock += 1
        now = datetime.now(UTC)
        return Event(
            id=new_event_id(), actor=self.person, device="raw", clock=clock or self.clock,
            recorded_at=now, occurred_at=now, body=body,
        )  # fmt: skip

    async def push(self, *events: Event) -> None:
        js = self.nc.jetstream()
        for event in events:
            await js.publish(f"milepost.events.{self.person}.raw", encode(event))

    def http(self, path: str) -> httpx.Response:
        return httpx.get(
            self.w.server.http_url + path,
            headers={"Authorization": f"Bearer {self.w.tokens[self.person]}"},
            timeout=10,
        )


async def dead_letters(w: World) -> list[DeadLetter]:
    store = open_store(w.server.database)
    await store.open()
    try:
        return await store.dead_letters(0, 1000)
    finally:
        await store.close()


async def refused(w: World, count: int, timeout: float = 20.0) -> dict[str, str]:
    """Wait for ``count`` dead letters; their event id -> reason."""
    deadline = time.monotonic() + timeout
    while True:
        letters = await dead_letters(w)
        if len(letters) >= count or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert len(letters) == count, [d.reason for d in letters]
    out: dict[str, str] = {}
    for letter in letters:
        out[str(msgspec.json.decode(letter.raw)["id"])] = letter.reason
    return out


async def synced(device: Device) -> dict[str, Any]:
    return await asyncio.to_thread(device.sync)


def held_ids(device: Device) -> set[str]:
    return set(device.log_states())


def alice_goals(w: World, alice: Device) -> tuple[dict[str, Any], dict[str, Any]]:
    """alice's private objective (a KR, a milestone) and team objective (a milestone)."""
    private = alice.json("objective", "Private plan", "--cycle", "2026", "--visibility", "private")
    kr = alice.json("kr", private["ref"], "Secret metric", "--start", "0", "--target", "10")
    secret = alice.json("milestone", "add", "Secret milestone", "--kr", kr["ref"])
    alice.ok("checkin", secret["ref"], "40", "--note", "confidential note")
    team = alice.json("objective", "Team plan", "--cycle", "2026", "--visibility", "team")
    shared = alice.json("milestone", "add", "Team milestone", "--objective", team["ref"])
    return (
        {"objective": private["id"], "kr": kr["id"], "milestone": secret["id"]},
        {"objective": team["id"], "milestone": shared["id"]},
    )


def tree_ids(payload: Any) -> set[str]:
    """Every ``id`` anywhere in a JSON document."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("id"), str):
                found.add(node["id"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(payload)
    return found


async def test_cross_owner_writes_are_refused_and_change_nothing(hostile: World) -> None:
    w = hostile
    alice = w.device("alice", "laptop", team="web")
    bob = w.device("bob", "laptop", team="web")
    carol = w.device("carol", "laptop", team="web")
    private, team = await asyncio.to_thread(alice_goals, w, alice)
    await synced(alice)
    await synced(carol)
    before = Raw(w, "carol").http("/people/alice/goals?cycle=all").json()
    before.pop("as_of")
    assert team["milestone"] in tree_ids(before)
    async with Raw(w, "bob") as raw:
        mine = raw.event(ObjectiveCreated(title="Bob's own", cycle="2026", visibility="team"))
        far = pack(int(time.time() * 1000) + 60_000, 0)  # ahead, within any sane bound
        attacks = [
            # 1. relinks that would pull alice's private items under bob's root, or hide
            #    her team milestone under it
            raw.event(MilestoneRelinked(milestone=private["milestone"], objective=mine.id), clock=far),
            raw.event(MilestoneRelinked(milestone=private["objective"], objective=mine.id), clock=far),
            raw.event(MilestoneRelinked(milestone=team["milestone"], objective=mine.id), clock=far),
            # 2. planting into alice's tree
            raw.event(MilestonePlanned(title="Planted", objective=team["objective"])),
            raw.event(KeyResultAdded(objective=team["objective"], title="Planted KR")),
            raw.event(IndicatorDefined(title="Planted", stages=("a",), objective=private["objective"])),
            # writes to alice's items
            raw.event(CheckInRecorded(subject=team["milestone"], confidence="off-track", percent=99)),
            raw.event(TaskAdded(milestone=team["milestone"], title="Planted task")),
            raw.event(MilestoneCompleted(milestone=team["milestone"], did="not me")),
            raw.event(SharingChanged(subject=private["objective"], visibility="partners", partners=("bob",))),
            raw.event(Corrected(target=team["objective"], changes=Changes(title="Renamed by bob"))),
            raw.event(Retracted(target=team["milestone"])),
            # membership is the admin's
            raw.event(TeamMemberJoined(team="web", person="dave")),
        ]  # fmt: skip
        planted_completion = raw.event(MilestoneCompleted(milestone=attacks[3].id))
        await raw.push(mine, *attacks, planted_completion)
        reasons = await refused(w, len(attacks))
    assert set(reasons) == {a.id for a in attacks}
    for attack in attacks[:-1]:
        assert "belongs to alice" in reasons[attack.id], reasons[attack.id]
    assert "admin" in reasons[attacks[-1].id]

    # Bob's pull: his own objective, alice's team items, nothing private of alice's.
    await synced(bob)
    seen = held_ids(bob)
    assert mine.id in seen and team["milestone"] in seen
    assert not seen & set(private.values())
    assert not seen & {a.id for a in attacks}
    # Nothing of alice's moved: her team sees the same goals and board as before.
    after = Raw(w, "carol").http("/people/alice/goals?cycle=all").json()
    after.pop("as_of")
    assert after == before
    board = Raw(w, "carol").http("/teams/web/board?cycle=all")
    assert board.status_code == 200
    assert team["milestone"] in tree_ids(board.json())
    assert not tree_ids(board.json()) & ({a.id for a in attacks} | {planted_completion.id})
    await synced(carol)
    assert not held_ids(carol) & ({a.id for a in attacks} | set(private.values()))
    goals = Raw(w, "bob").http("/people/alice/goals?cycle=all")
    assert goals.status_code == 200
    assert not tree_ids(goals.json()) & set(private.values())
    assert "Renamed by bob" not in goals.text and "Planted" not in goals.text


async def test_a_write_that_arrives_before_its_target_is_judged_when_the_target_arrives(
    hostile: World,
) -> None:
    w = hostile
    carol = w.device("carol", "laptop", team="web")
    async with Raw(w, "alice") as alice, Raw(w, "bob") as bob:
        goal = alice.event(ObjectiveCreated(title="Launch", cycle="2026", visibility="team"))
        milestone = alice.event(MilestonePlanned(title="Ship it", objective=goal.id))
        # Bob guesses (or learns) the ids and writes first: held, visible to bob alone.
        early = [
            bob.event(CheckInRecorded(subject=milestone.id, confidence="off-track", percent=1)),
            bob.event(MilestoneRelinked(milestone=milestone.id)),
        ]
        await bob.push(*early)
        # Alice's own out-of-order write (her check-in before her milestone) is accepted.
        own_early = alice.event(
            CheckInRecorded(subject=milestone.id, confidence="at-risk", percent=30)
        )
        await alice.push(own_early)
        await asyncio.sleep(1.0)  # let the server store the early writes first
        await alice.push(goal, milestone)
        reasons = await refused(w, len(early))
    assert set(reasons) == {e.id for e in early}
    await synced(carol)
    seen = held_ids(carol)
    assert {goal.id, milestone.id, own_early.id} <= seen
    assert not seen & {e.id for e in early}
    status = carol.json("feed")
    assert not any(e.id in str(status) for e in early)


async def test_the_device_learns_which_of_its_events_were_refused(hostile: World) -> None:
    w = hostile
    alice = w.device("alice", "laptop", team="web")
    bob = w.device("bob", "laptop", team="web")
    team_goal = alice.json("objective", "Team plan", "--cycle", "2026", "--visibility", "team")
    shared = alice.json("milestone", "add", "Team milestone", "--objective", team_goal["ref"])
    await synced(alice)
    await synced(bob)
    # The CLI refuses to write to alice's milestone, in one line.
    line = bob.fails("checkin", shared["ref"], "50")
    assert "belongs to alice" in line and "Traceback" not in line
    # A hand-made event in bob's log (an import): pushed, refused, shown with the reason.
    forged = Event(
        id=new_event_id(), actor="bob", device="laptop", clock=pack(int(time.time() * 1000), 5),
        recorded_at=datetime.now(UTC), occurred_at=datetime.now(UTC),
        body=CheckInRecorded(subject=shared["id"], confidence="off-track", percent=3),
    )  # fmt: skip
    good = bob.json("objective", "Bob's", "--cycle", "2026", "--visibility", "team")
    bob.ok("import", str(jsonl(bob.home / "forged.jsonl", [forged])))
    first = await synced(bob)
    if not first["refused"]:  # the refusal may land after this round's pull
        await refused(w, 1)
        first = await synced(bob)
    assert [r["event_id"] for r in first["refused"]] == [forged.id]
    states = bob.log_states()
    assert states[forged.id] == "rejected" and states[good["id"]] == "confirmed"
    entry = next(e for e in bob.json("log", "--limit", "0") if e["event"]["id"] == forged.id)
    assert "belongs to alice" in entry["reason"]
    text = bob.ok("log", "--limit", "0")
    assert "rejected (" in text
    # Never pushed again, and nothing else is lost: alice's milestone is untouched.
    again = await synced(bob)
    assert again["pushed"] == 0 and again["refused"] == []
    await synced(alice)
    assert forged.id not in held_ids(alice)


def test_a_rate_limited_device_pushes_again_and_loses_nothing(tmp_path: Path) -> None:
    """A burst of 5 then 5 events/s: the device's flood is refused for now, the device says
    so, pushes the refused events again after the delay the server names, and in the end
    every event is stored and confirmed (nothing rejected, nothing lost)."""
    w = World(tmp_path, server_args=("--burst", "5", "--rate-limit", "5"))
    w.start()
    try:
        alice = w.device("alice", "laptop")
        goal = alice.json("milestone", "add", "Flood")
        for i in range(24):
            alice.ok("checkin", goal["ref"], str(i))
        # The refusals are written by ingest as it reaches the flood: under load they
        # may come with a later round's pull than the push's own.
        reports = [alice.sync()]
        states: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = alice.log_states()
            told = any(r["retry"] for report in reports for r in report["refused"])
            if told and set(states.values()) == {"confirmed"}:
                break
            time.sleep(1.0)
            reports.append(alice.sync())
        assert any(r["retry"] for report in reports for r in report["refused"]), reports
        assert set(states.values()) == {"confirmed"} and len(states) == 25, states
    finally:
        w.close()


async def test_kudos_from_a_raw_connection_are_judged_like_any_event(hostile: World) -> None:
    """``kudos.given`` is the rule's one reaction: it must name someone else's completion.
    Kudos on one's own completion, or naming something that is not a completion, are refused."""
    w = hostile
    async with Raw(w, "alice") as alice, Raw(w, "bob") as bob:
        goal = alice.event(MilestonePlanned(title="Ship", visibility="team"))
        done = alice.event(MilestoneCompleted(milestone=goal.id, did="shipped"))
        await alice.push(goal, done)
        own = alice.event(KudosGiven(completion=done.id))
        not_a_completion = bob.event(KudosGiven(completion=goal.id))
        fine = bob.event(KudosGiven(completion=done.id, note="well done"))
        await alice.push(own)
        await bob.push(not_a_completion, fine)
        reasons = await refused(w, 2)
    assert set(reasons) == {own.id, not_a_completion.id}
    assert "your own" in reasons[own.id]
    assert "not a milestone completion" in reasons[not_a_completion.id]


async def test_a_raw_pull_vouches_only_for_what_the_pullers_events_name(hostile: World) -> None:
    """Referents (``PullReply.referents``) carry the author and type of an event the person
    may not see, and only when an event delivered to them names it. Bob, on a raw
    connection, plants on alice's private objective and asks with a hand-made request
    carrying extra fields: his reply vouches for nothing his planting names, and never
    carries a title, note or any other content of alice's private items."""
    w = hostile
    async with Raw(w, "alice") as alice, Raw(w, "bob") as bob:
        private = alice.event(ObjectiveCreated(title="Private plan ZZSECRET", cycle="2026"))
        hidden = alice.event(ObjectiveCreated(title="Never named ZZHIDDEN", cycle="2026"))
        moved = alice.event(MilestonePlanned(title="Moved", objective=private.id))
        team = alice.event(ObjectiveCreated(title="Team plan", cycle="2026", visibility="team"))
        relinked = alice.event(MilestoneRelinked(milestone=moved.id, objective=team.id))
        await alice.push(private, hidden, moved, team, relinked)
        planted = bob.event(MilestonePlanned(title="Planted", objective=hidden.id))
        await bob.push(planted)
        reasons = await refused(w, 1)
        assert set(reasons) == {planted.id}

        request = msgspec.msgpack.encode(
            {"device": "raw", "after": 0, "limit": 100, "checked": 0, "ids": [hidden.id]}
        )  # an extra field asking for more: ignored
        reply = await bob.nc.request(pull_subject("bob"), request, timeout=10)
    answer = decode_reply(reply.data)
    delivered = {msgspec.json.decode(e.raw)["id"] for e in answer.events}
    assert {moved.id, team.id, relinked.id} <= delivered
    assert not delivered & {private.id, hidden.id, planted.id}
    # The moved milestone's planning names the private objective: vouched for, bare.
    assert [(r.id, r.actor, r.type) for r in answer.referents] == [
        (private.id, "alice", "objective.created")
    ]
    assert b"ZZSECRET" not in reply.data and b"ZZHIDDEN" not in reply.data
    # bob's refused planting comes back as his refusal, never as a referent
    assert [r.event_id for r in answer.refusals] == [planted.id]
