"""HTTP behind several replicas: two ``milepost-server`` processes on one PostgreSQL and a
three-node NATS cluster answer every read the same way, and the live feed stream
survives the replica it was reading from going away (the client reconnects to the
other one with ``Last-Event-ID``, as it would through a balancer)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from events import CheckInRecorded, Event, MilestonePlanned, ObjectiveCreated
from tests.services import EventMaker
from tests.topology import Topology, push, running_topology

pytestmark = pytest.mark.slow

TEAM = "web"


@pytest_asyncio.fixture
async def topology(tmp_path: Path, postgres_url: str) -> AsyncIterator[Topology]:
    """Cluster, PostgreSQL, two servers; alice, bob and carol in team ``web``."""
    async with running_topology(tmp_path, postgres_url) as running:
        await running.add_people(TEAM, "alice", "bob", "carol")
        yield running


def team_goal(make: EventMaker, actor: str, milestones: int) -> list[Event]:
    """A team-visible objective with milestones and a check-in on each."""
    objective = make(
        actor, ObjectiveCreated(title=f"{actor} ships", cycle="2026-Q1", visibility="team")
    )
    events = [objective]
    for index in range(milestones):
        milestone = make(actor, MilestonePlanned(title=f"Step {index}", objective=objective.id))
        events.append(milestone)
        events.append(
            make(actor, CheckInRecorded(subject=milestone.id, confidence="on-track", percent=10))
        )
    return events


def get(server_url: str, path: str, token: str) -> Any:
    response = httpx.get(
        server_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


async def test_any_replica_answers_the_same_reads(
    topology: Topology, make_event: EventMaker
) -> None:
    pushed = 0
    for person in ("alice", "bob", "carol"):
        client = await topology.connect_person(person)
        pushed += len(await push(client, team_goal(make_event, person, 4)))
    memberships = 3
    await topology.quiesce(pushed + memberships)

    reads = [
        ("/teams/web/feed?limit=200", "carol"),
        ("/teams/web/board?cycle=2026-Q1", "alice"),
        ("/people/alice/goals?cycle=2026-Q1", "bob"),
        ("/people/carol/goals?cycle=2026-Q1", "carol"),
        ("/people/alice/goals?as_of=2026-03-31", "carol"),
        ("/teams/web/drift", "bob"),
    ]
    for path, viewer in reads:
        token = topology.people[viewer].api_token
        # A view computed "now" carries its wall-clock instant; everything else must match.
        answers = [without_clock(get(s.http_url, path, token)) for s in topology.servers]
        assert answers[0] == answers[1], path
        assert answers[0], path
    feed = get(
        topology.servers[1].http_url, "/teams/web/feed?limit=200", topology.people["bob"].api_token
    )
    assert len(feed["items"]) == pushed - 3  # every milestone and check-in, no objectives
    await asyncio.to_thread(topology.rebuild_check)


def without_clock(answer: Any) -> Any:
    """``answer`` without its top-level ``as_of`` instant (the moment it was computed)."""
    if isinstance(answer, dict):
        return {k: v for k, v in answer.items() if k not in {"as_of", "now"}}
    return answer


@dataclass
class SseMessage:
    event: str
    id: int | None
    data: str


async def sse_messages(response: httpx.Response) -> AsyncIterator[SseMessage]:
    """Parse a text/event-stream response into messages (comments skipped)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "event" in fields or "data" in fields:
                raw_id = fields.get("id")
                yield SseMessage(
                    fields.get("event", "message"),
                    int(raw_id) if raw_id else None,
                    fields.get("data", ""),
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


async def test_the_live_feed_reconnects_to_the_other_replica(
    topology: Topology, make_event: EventMaker
) -> None:
    alice = await topology.connect_person("alice")
    # Feed items whose parent (the objective) is stored before the stream starts; two
    # replicas may commit them in any order (a child stored before its parent is
    # test_live_feed_sends_a_child_stored_before_its_parent).
    objective = make_event(
        "alice", ObjectiveCreated(title="alice ships", cycle="2026-Q1", visibility="team")
    )
    first = [objective] + [
        make_event("alice", MilestonePlanned(title=f"Step {i}", objective=objective.id))
        for i in range(6)
    ]
    more = [
        make_event("alice", MilestonePlanned(title=f"Later {i}", objective=objective.id))
        for i in range(5)
    ]
    await push(alice, first[:1])
    await topology.quiesce(3 + 1)

    token = topology.people["carol"].api_token
    received: list[SseMessage] = []
    last_id: int | None = None
    connections: list[str] = []
    expected = len(first) - 1 + len(more)

    async def follow() -> None:
        nonlocal last_id
        order = [s.http_url for s in topology.servers]
        attempt = 0
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=30.0)) as http:
            while len([m for m in received if m.event == "feed.item"]) < expected:
                # The "balancer": whichever replica answers /health, first one first.
                url = order[attempt % len(order)]
                attempt += 1
                headers = {"Authorization": f"Bearer {token}"}
                if last_id is not None:
                    headers["Last-Event-ID"] = str(last_id)
                try:
                    async with http.stream(
                        "GET", f"{url}/teams/{TEAM}/feed/stream", headers=headers
                    ) as response:
                        if response.status_code != 200:
                            await asyncio.sleep(0.2)
                            continue
                        connections.append(url)
                        opened.set()
                        async for message in sse_messages(response):
                            if message.id is not None:
                                last_id = message.id
                            received.append(message)
                            if len([m for m in received if m.event == "feed.item"]) >= expected:
                                return
                except (httpx.TransportError, httpx.RemoteProtocolError):
                    await asyncio.sleep(0.1)

    def count() -> int:
        return len([m for m in received if m.event == "feed.item"])

    opened = asyncio.Event()
    follower = asyncio.create_task(follow())
    try:
        await asyncio.wait_for(opened.wait(), 10)
        await push(alice, first[1:])
        try:
            await asyncio.wait_for(_until(lambda: count() >= len(first) - 1), 20)
        except TimeoutError:
            raise AssertionError(f"{received} {connections} {follower}") from None
        assert connections == [topology.servers[0].http_url]

        topology.servers[0].kill()  # the replica goes away mid-stream
        await push(alice, more)
        await asyncio.wait_for(follower, 30)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower

    assert connections[-1] == topology.servers[1].http_url
    items = [m for m in received if m.event == "feed.item"]
    ids = [m.id for m in items if m.id is not None]
    assert len(ids) == expected == len(set(ids)), ids  # nothing twice
    assert ids == sorted(ids)  # in position order
    # Exactly the feed events pushed, at their store positions: nothing skipped across
    # the reconnect.
    positions = {stored.id: stored.position for stored in await topology.stored()}
    assert ids == sorted(positions[e.id] for e in first[1:] + more)


async def _until(check: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.05)


async def test_live_feed_sends_a_child_stored_before_its_parent(
    topology: Topology, make_event: EventMaker
) -> None:
    """With two replicas ingesting, a check-in can commit before its milestone."""
    alice = await topology.connect_person("alice")
    objective = make_event(
        "alice", ObjectiveCreated(title="alice ships", cycle="2026-Q1", visibility="team")
    )
    milestone = make_event("alice", MilestonePlanned(title="Beta", objective=objective.id))
    checkin = make_event(
        "alice", CheckInRecorded(subject=milestone.id, confidence="on-track", percent=10)
    )
    await push(alice, [objective])
    await topology.quiesce(3 + 1)
    token = topology.people["carol"].api_token
    kinds: list[str] = []
    opened = asyncio.Event()

    async def follow() -> None:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=30.0)) as http,
            http.stream(
                "GET",
                f"{topology.servers[0].http_url}/teams/{TEAM}/feed/stream",
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            assert response.status_code == 200
            opened.set()  # the stream starts at the position the server had when it answered
            async for message in sse_messages(response):
                if message.event == "feed.item":
                    kinds.append(json.loads(message.data)["kind"])
                    if len(kinds) == 2:
                        return

    follower = asyncio.create_task(follow())
    await asyncio.wait_for(opened.wait(), 10)
    await push(alice, [checkin])  # stored first, with the milestone unknown
    await topology.quiesce(3 + 2)
    await push(alice, [milestone])
    await topology.quiesce(3 + 3)
    paged = get(topology.servers[0].http_url, "/teams/web/feed?limit=200", token)
    assert len(paged["items"]) == 2  # the paged feed has both
    try:
        await asyncio.wait_for(follower, 5)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    assert sorted(kinds) == ["checkin.recorded", "milestone.planned"]
