"""The HTTP API against the real app on both store backends: auth, 404/422, the
visibility matrix over every route, cursor paging, and the live feed over real uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import pytest
import pytest_asyncio
import uvicorn

from events import MilestonePlanned, encode
from server.ingest import IngestWorker
from server.nats_embedded import events_subject
from tests.http_world import (
    MARKERS,
    NOW,
    PERSON_VISIBLE,
    TEAM_VISIBLE,
    World,
    backend,
    create_app,
    location,
    until_serving,
    world,
)
from tests.services import EventMaker, NatsService

__all__ = ["backend", "location", "world"]

PERSON_ROUTES = (
    "/people/alice/goals",
    "/people/alice/review?from=2026-01-01&to=2026-12-31",
    "/people/alice/review?from=2026-01-01&to=2026-12-31&format=markdown",
)
TEAM_ROUTES = ("/teams/growth/board", "/teams/growth/feed?limit=200", "/teams/growth/drift")


@pytest_asyncio.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    """The ASGI app in this event loop (asyncpg pools are bound to their loop)."""
    # Litestar's ASGI signature names its scope and event types; httpx takes plain mappings.
    transport = httpx.ASGITransport(app=cast(Any, create_app(world.ctx)))
    async with httpx.AsyncClient(transport=transport, base_url="http://milepost") as test_client:
        yield test_client


def shown(text: str) -> set[str]:
    return {mark for mark in MARKERS.values() if mark in text}


# --- 401 ------------------------------------------------------------------------------


@pytest.mark.parametrize("route", [*PERSON_ROUTES, *TEAM_ROUTES, "/teams/growth/feed/stream"])
async def test_without_a_valid_token_every_data_route_is_401(
    client: httpx.AsyncClient, world: World, route: str
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic YWxpY2U6eA=="},
        {"Authorization": "Bearer alice.not-the-token"},
        {"Authorization": "Bearer nobody-shaped-token"},
        {"Authorization": f"Bearer {world.tokens['alice']}x"},
    ):
        response = await client.get(route, headers=headers)
        assert response.status_code == 401, (route, headers, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_health_and_metrics_need_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json()["status"] == "ok"
    metrics = (await client.get("/metrics")).text
    assert "milepost_events_stored " in metrics
    assert "milepost_projection_position " in metrics
    assert "milepost_dead_letters 0" in metrics


async def test_removed_and_rotated_credentials_stop_working(
    client: httpx.AsyncClient, world: World
) -> None:
    from server.accounts import new_credentials

    assert (await client.get("/people/bob/goals", headers=world.auth("bob"))).status_code == 200
    creds = new_credentials("bob", bcrypt_rounds=4)
    await world.accounts.rotate("bob", creds.nats_password_hash, creds.token_hash)
    assert (await client.get("/people/bob/goals", headers=world.auth("bob"))).status_code == 401
    fresh = {"Authorization": f"Bearer {creds.api_token}"}
    assert (await client.get("/people/bob/goals", headers=fresh)).status_code == 200
    await world.accounts.remove("bob")
    assert (await client.get("/people/bob/goals", headers=fresh)).status_code == 401


# --- 404: hidden is the same as missing ------------------------------------------------


async def test_hidden_and_missing_answer_the_same_404(
    client: httpx.AsyncClient, world: World
) -> None:
    headers = world.auth("dave")
    bodies = set()
    for route in (
        "/people/alice/goals",  # exists, shares nothing with dave
        "/people/nobody/goals",  # does not exist
        "/people/alice/review",
        "/teams/growth/board",  # exists, dave is not a member
        "/teams/nosuchteam/board",
        "/teams/growth/feed",
        "/teams/growth/drift",
        "/teams/growth/feed/stream",
    ):
        response = await client.get(route, headers=headers)
        assert response.status_code == 404, route
        bodies.add(response.text)
    assert len(bodies) == 1


async def test_a_teammate_with_nothing_visible_still_gets_200(
    client: httpx.AsyncClient, world: World
) -> None:
    # alice sees none of carol's goals (carol has none) but they share a team.
    response = await client.get("/people/carol/goals", headers=world.auth("alice"))
    assert response.status_code == 200
    assert response.json()["objectives"] == []


# --- 422 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "field"),
    [
        ("/people/alice/goals?as_of=2026-02-30", "as_of"),
        ("/people/alice/goals?as_of=yesterday", "as_of"),
        ("/people/alice/goals?as_of=0001-01-01", "as_of"),
        ("/people/alice/goals?cycle=2026-Q5", "cycle"),
        ("/teams/growth/board?cycle=Q1", "cycle"),
        ("/people/alice/review?from=2026-05-01&to=2026-04-01", "to"),
        ("/people/alice/review?from=2026-13-01", "from"),
        ("/people/alice/review?to=9999-12-31", "to"),
        ("/people/alice/review?from=2000-01-01&to=2026-01-01", "to"),
        ("/people/alice/review?format=pdf", "format"),
        ("/teams/growth/feed?limit=0", "limit"),
        ("/teams/growth/feed?limit=201", "limit"),
        ("/teams/growth/feed?limit=ten", "limit"),
        ("/teams/growth/feed?cursor=not-a-cursor", "cursor"),
        ("/teams/growth/feed?cursor=" + "A" * 40, "cursor"),
    ],
)
async def test_bad_parameters_are_422_with_field_and_reason(
    client: httpx.AsyncClient, world: World, route: str, field: str
) -> None:
    response = await client.get(route, headers=world.auth("alice"))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field
    assert body["reason"]


async def test_bad_last_event_id_is_422(client: httpx.AsyncClient, world: World) -> None:
    headers = {**world.auth("alice"), "Last-Event-ID": "yesterday"}
    response = await client.get("/teams/growth/feed/stream", headers=headers)
    assert response.status_code == 422
    assert response.json()["field"] == "Last-Event-ID"


# --- the visibility matrix ------------------------------------------------------------


@pytest.mark.parametrize("viewer", sorted(PERSON_VISIBLE))
@pytest.mark.parametrize("route", PERSON_ROUTES)
async def test_person_routes_show_exactly_what_the_viewer_may_see(
    client: httpx.AsyncClient, world: World, viewer: str, route: str
) -> None:
    response = await client.get(route, headers=world.auth(viewer))
    expected = PERSON_VISIBLE[viewer]
    if expected is None:
        assert response.status_code == 404
        return
    assert response.status_code == 200, response.text
    assert shown(response.text) == expected


@pytest.mark.parametrize("viewer", sorted(TEAM_VISIBLE))
@pytest.mark.parametrize("route", TEAM_ROUTES)
async def test_team_routes_show_exactly_what_the_viewer_may_see(
    client: httpx.AsyncClient, world: World, viewer: str, route: str
) -> None:
    response = await client.get(route, headers=world.auth(viewer))
    expected = TEAM_VISIBLE[viewer]
    if expected is None:
        assert response.status_code == 404
        return
    assert response.status_code == 200, response.text
    assert shown(response.text) == expected


async def test_as_of_shows_what_was_known_then(client: httpx.AsyncClient, world: World) -> None:
    before = await client.get("/people/alice/goals?as_of=2026-03-01", headers=world.auth("alice"))
    assert before.status_code == 200
    assert before.json()["objectives"] == []
    during = await client.get("/people/alice/goals?as_of=2026-03-02", headers=world.auth("alice"))
    assert shown(during.text) == set(MARKERS.values())
    other_cycle = await client.get("/people/alice/goals?cycle=2026-Q2", headers=world.auth("alice"))
    assert other_cycle.json()["objectives"] == []


async def test_goals_default_to_the_current_cycle(client: httpx.AsyncClient, world: World) -> None:
    # the world's clock is 2026-03-20: Q1 objectives are current, none from later
    current = await client.get("/people/alice/goals", headers=world.auth("alice"))
    everything = await client.get("/people/alice/goals?cycle=all", headers=world.auth("alice"))
    assert current.json()["objectives"] == everything.json()["objectives"] != []
    explicit = await client.get(
        "/people/alice/goals?as_of=2026-03-19&cycle=2026-Q1", headers=world.auth("alice")
    )
    assert explicit.status_code == 200
    bad = await client.get("/people/alice/goals?cycle=soon", headers=world.auth("alice"))
    assert bad.status_code == 422


async def test_review_markdown_is_markdown(client: httpx.AsyncClient, world: World) -> None:
    response = await client.get(
        "/people/alice/review?format=markdown&from=2026-01-01", headers=world.auth("alice")
    )
    assert response.headers["content-type"].startswith("text/markdown")
    assert response.text.startswith("# Review: alice")


# --- cursor paging --------------------------------------------------------------------


async def test_feed_pages_follow_the_cursor_without_repeats_or_gaps(
    client: httpx.AsyncClient, world: World
) -> None:
    headers = world.auth("alice")
    whole = (await client.get("/teams/growth/feed?limit=200", headers=headers)).json()
    assert whole["next_cursor"] is None
    expected = [item["id"] for item in whole["items"]]
    assert len(expected) >= 12
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "5", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/teams/growth/feed", params=params, headers=headers)).json()
        assert len(page["items"]) <= 5
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    times = [item["occurred_at"] for item in whole["items"]]
    assert times == sorted(times, reverse=True)


# --- the live feed, through a real uvicorn --------------------------------------------


@pytest_asyncio.fixture
async def served(world: World) -> AsyncIterator[str]:
    """The app on a real uvicorn on 127.0.0.1, with the projection follower running."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(world.ctx), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    stop = asyncio.Event()
    following = asyncio.create_task(world.follower.run(stop))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await until_serving(server, task)
        yield f"http://127.0.0.1:{port}"
    finally:
        world.ctx.stopping.set()
        stop.set()
        server.should_exit = True
        await task
        await following
        sock.close()


async def sse_events(
    response: httpx.Response, until: str = "ready", limit: int = 1000
) -> AsyncIterator[dict[str, str]]:
    """Parse server-sent events from a streaming response."""
    event: dict[str, str] = {}
    count = 0
    async for line in response.aiter_lines():
        if not line:
            if event:
                yield event
                count += 1
                if event.get("event") == until or count >= limit:
                    return
            event = {}
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        event[key] = value.removeprefix(" ")


async def read_until_ready(base: str, headers: dict[str, str]) -> tuple[int, list[dict[str, str]]]:
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        http.stream("GET", "/teams/growth/feed/stream", headers=headers) as response,
    ):
        if response.status_code != 200:
            return response.status_code, []
        assert response.headers["content-type"].startswith("text/event-stream")
        return 200, [e async for e in sse_events(response)]


@pytest.mark.parametrize("viewer", sorted(TEAM_VISIBLE))
async def test_feed_stream_catch_up_shows_exactly_what_the_viewer_may_see(
    served: str, world: World, viewer: str
) -> None:
    headers = {**world.auth(viewer), "Last-Event-ID": "0"}
    status, events = await read_until_ready(served, headers)
    expected = TEAM_VISIBLE[viewer]
    if expected is None:
        assert status == 404
        return
    assert status == 200
    assert events[-1]["event"] == "ready"
    assert int(events[-1]["id"]) == world.follower.position
    items = [e for e in events if e["event"] == "feed.item"]
    assert all(int(e["id"]) > 0 for e in items)
    assert shown("".join(e["data"] for e in items)) == expected
    # The first event is already filtered: it names something the viewer may see.
    assert shown(items[0]["data"]) <= expected
    # Resuming from the last id sends nothing already seen.
    resume = {**world.auth(viewer), "Last-Event-ID": events[-1]["id"]}
    _, again = await read_until_ready(served, resume)
    assert [e["event"] for e in again] == ["ready"]


async def test_feed_stream_receives_a_newly_ingested_item(
    served: str, world: World, nats_service: NatsService
) -> None:
    service = await nats_service.connect_service()
    worker = IngestWorker(service, world.store, batch_size=50, fetch_timeout=0.5)
    await worker.start()
    alice = await nats_service.connect_person("alice")
    make = EventMaker()
    headers = world.auth("carol")
    async with (
        httpx.AsyncClient(base_url=served, timeout=10) as http,
        http.stream("GET", "/teams/growth/feed/stream", headers=headers) as response,
    ):
        stream = sse_events(response, until="feed.item")
        first = await anext(stream)
        assert first["event"] == "ready"
        private = make("alice", MilestonePlanned(title="ZZPRIV secret", due_on=date(2026, 4, 1)))
        shared = make(
            "alice",
            MilestonePlanned(title="ZZTEAM new plan", due_on=date(2026, 4, 1), visibility="team"),
        )
        for event in (private, shared):
            await alice.jetstream().publish(
                events_subject("alice", event.id), encode(event), headers={"Nats-Msg-Id": event.id}
            )
        stored = 0
        for _ in range(20):
            stored += (await worker.run_once()).stored
            if stored == 2:
                break
        assert stored == 2
        world.follower.poke()
        item = await asyncio.wait_for(anext(stream), 10)
    assert item["event"] == "feed.item"
    body = msgspec.json.decode(item["data"])
    assert body["id"] == shared.id
    assert "ZZPRIV" not in item["data"]
    with contextlib.suppress(Exception):
        await alice.close()


async def test_views_follow_new_events_at_once(client: httpx.AsyncClient, world: World) -> None:
    headers = world.auth("carol")
    before = (await client.get("/teams/growth/feed", headers=headers)).json()
    make = EventMaker()
    planned = make(
        "alice",
        MilestonePlanned(title="ZZTEAM fresh", due_on=date(2026, 5, 1), visibility="team"),
    )
    await world.append([planned])
    after = (await client.get("/teams/growth/feed", headers=headers)).json()
    assert planned.id not in {item["id"] for item in before["items"]}
    assert planned.id in {item["id"] for item in after["items"]}


async def test_the_board_api_and_status_show_the_same_health(
    client: httpx.AsyncClient, world: World, tmp_path: Path
) -> None:
    # The board alice's team sees over HTTP, and what `milepost status` computes on her
    # device holding the same events (the device's store, its views kept per append).
    from client.health import stored_health
    from client.store import Store
    from client.views import on_append, stored_tree

    board = (await client.get("/teams/growth/board", headers=world.auth("alice"))).json()
    device = await Store.open(tmp_path / "alice.sqlite3", create=True)
    try:
        async with device.write():
            await device.set_meta("person", "alice")
            for event in list(world.ctx.follower.state.events.values()):  # in arrival order
                seq = await device.append(event)
                assert seq is not None
                await on_append(device, seq, event, NOW)
        tree = await stored_tree(device, "alice", NOW)
        status = await stored_health(device, "alice", tree, NOW, world.ctx.settings)
    finally:
        await device.close()
    # alice's board has her three objectives (one per visibility) and their milestones.
    assert len(status) == 9 and set(status) <= set(board["health"])
    for item, found in status.items():
        assert board["health"][item] == msgspec.json.decode(msgspec.json.encode(found)), item
    levels = {found.level for found in status.values()}
    assert levels == {"off-track", "done"}  # the late milestones and what is under them
