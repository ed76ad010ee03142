"""Heavy views run in a worker thread with a time budget: over it, a 503 with a reason;
the event loop (``/health``) answers meanwhile. Both store backends, the real app."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import date
from typing import Any, cast

import httpx
import pytest_asyncio

from events import CheckInRecorded, MilestonePlanned, ObjectiveCreated, PauseDeclared, encode
from events.bodies import MAX_DATE, MIN_DATE
from server.nats_embedded import events_subject
from server.store import Incoming
from tests.http_world import World, backend, create_app, incoming, location, world
from tests.services import EventMaker

__all__ = ["backend", "location", "world"]

REVIEW_MD = "/people/alice/review?from=2026-01-01&to=2026-12-31&format=markdown"
HEAVY_ROUTES = (
    ("alice", REVIEW_MD),
    ("alice", "/people/alice/review?from=2026-01-01&to=2026-12-31"),
    ("carol", "/teams/growth/drift"),
    ("carol", "/teams/growth/board"),
    ("bob", "/people/alice/goals"),  # a partner: deciding 200 or 404 computes views
)


@pytest_asyncio.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=cast(Any, create_app(world.ctx)))
    async with httpx.AsyncClient(transport=transport, base_url="http://milepost") as test_client:
        yield test_client


async def settled(world: World) -> None:
    for _ in range(1000):
        if world.ctx.views_in_progress == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("views still computing after 10 s")


async def test_a_view_over_its_budget_answers_503_with_a_reason_then_serves_the_retry(
    client: httpx.AsyncClient, world: World
) -> None:
    world.ctx.view_budget = 0.0  # no view is ready at once: every heavy route is over budget
    for viewer, route in HEAVY_ROUTES:
        response = await client.get(route, headers=world.auth(viewer))
        assert response.status_code == 503, route
        body = response.json()
        assert body["error"] == "view not ready"
        assert "longer than its budget of 0 s" in body["reason"]
        assert response.headers["Retry-After"] == "1"
    await settled(world)  # the computations went on in the background
    world.ctx.view_budget = 30.0
    response = await client.get(REVIEW_MD, headers=world.auth("alice"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/markdown")
    assert "ZZPRIV" in response.text
    for viewer, route in HEAVY_ROUTES[1:]:
        assert (await client.get(route, headers=world.auth(viewer))).status_code == 200, route


async def test_health_answers_while_a_view_is_computing(
    client: httpx.AsyncClient, world: World
) -> None:
    # A view that cannot finish until the test lets it: while it runs in its worker
    # thread, /health (on the event loop) answers, and so does the view's own route
    # for another caller, with a 503 once the budget is spent.
    started, release = threading.Event(), threading.Event()

    def stuck() -> dict[str, bool]:
        started.set()
        release.wait(30)
        return {"done": True}

    world.ctx.view_budget = 30.0
    view = asyncio.create_task(world.ctx.cached(("stuck",), stuck))
    try:
        assert await asyncio.to_thread(started.wait, 30)
        for _ in range(5):
            health = await client.get("/health")
            assert health.status_code == 200
            assert health.json()["status"] == "ok"
        assert not view.done()  # /health did not wait behind the view
        # the follower is held off while the view reads the state, so the next view
        # waits too; it answers 503 within its budget instead of hanging
        world.ctx.view_budget = 0.2
        waiting = await client.get(REVIEW_MD, headers=world.auth("alice"))
        assert waiting.status_code == 503
        assert not view.done()
    finally:
        release.set()
    assert await view == b'{"done":true}'
    await settled(world)


# --- absurd dates: every route keeps answering ------------------------------------------

ROUTES = (
    ("carol", "/people/alice/goals?cycle=all"),
    ("carol", "/teams/growth/board"),
    ("carol", "/teams/growth/board?cycle=all"),
    ("carol", "/teams/growth/drift"),
    ("carol", "/people/alice/review?from=2026-01-01&to=2026-12-31"),
    ("carol", "/people/alice/review?from=2199-01-01&to=2199-12-31"),
    ("carol", "/people/alice/review?from=2026-01-01&to=2026-12-31&format=markdown"),
    ("alice", "/people/alice/review?from=2026-01-01&to=2026-12-31&format=markdown"),
)


def _with(raw: bytes, old: str, new: str) -> bytes:
    assert old.encode() in raw
    return raw.replace(old.encode(), new.encode())


async def test_extreme_dates_in_range_and_absurd_ones_stored_earlier_break_no_route(
    client: httpx.AsyncClient, world: World
) -> None:
    # The attacks of issue 10 (a team milestone due 9999-12-31, a pause ending
    # 9999-12-31, an occurred_at of 9999-12-31T23:59:59-05:00) as bytes a store may
    # hold from before the range existed, next to the most extreme dates the codec
    # accepts now. Every route answers 200; the absurd events are simply left out.
    make = EventMaker()
    growth = make("alice", ObjectiveCreated(title="ZZTEAM far", cycle="2199-Q4", visibility="team"))
    last_day = make(
        "alice", MilestonePlanned(title="ZZTEAM last", due_on=MAX_DATE, objective=growth.id)
    )
    first_day = make(
        "alice", MilestonePlanned(title="ZZTEAM first", due_on=MIN_DATE, visibility="team")
    )
    long_pause = make("alice", PauseDeclared(starts_on=MIN_DATE, ends_on=MAX_DATE))
    extremes = [growth, last_day, first_day, long_pause]
    planned = make(
        "alice", MilestonePlanned(title="ZZTEAM 9999", due_on=date(2026, 5, 1), visibility="team")
    )
    pause = make("alice", PauseDeclared(starts_on=date(2026, 1, 10), ends_on=date(2026, 2, 1)))
    checkin = make("alice", CheckInRecorded(subject=last_day.id, confidence="at-risk", percent=5.0))
    absurd = [
        (planned, _with(encode(planned), '"due_on":"2026-05-01"', '"due_on":"9999-12-31"')),
        (pause, _with(encode(pause), '"ends_on":"2026-02-01"', '"ends_on":"9999-12-31"')),
        (
            checkin,
            _with(
                encode(checkin),
                '"occurred_at":"2026-03-02T09:00:00Z"',
                '"occurred_at":"9999-12-31T23:59:59-05:00"',
            ),
        ),
    ]
    await world.store.append_batch(
        [
            *incoming(extremes),
            *(Incoming(raw, e, None, events_subject(e.actor, e.id)) for e, raw in absurd),
        ]
    )
    await world.follower.catch_up()
    assert world.follower.undecodable == 3
    for viewer, route in ROUTES:
        response = await client.get(route, headers=world.auth(viewer))
        assert response.status_code == 200, (route, response.text)
    board = (await client.get("/teams/growth/board?cycle=all", headers=world.auth("carol"))).text
    assert "ZZTEAM last" in board and "ZZTEAM first" in board
    assert "ZZTEAM 9999" not in board


async def test_health_answers_while_a_real_heavy_review_is_rendered(
    client: httpx.AsyncClient, world: World
) -> None:
    # A year of alice's work: 800 milestones with three check-ins each. Its review in
    # Markdown takes a good fraction of a second; /health, asked while it is being
    # rendered, answers before it (the rendering used to run on the event loop).
    make = EventMaker()
    events = []
    objective = make(
        "alice", ObjectiveCreated(title="ZZTEAM year", cycle="2026", visibility="team")
    )
    events.append(objective)
    for index in range(800):
        milestone = make(
            "alice",
            MilestonePlanned(
                title=f"ZZTEAM m{index}",
                due_on=date(2026, 1 + index % 12, 1),
                objective=objective.id,
            ),
        )
        events.append(milestone)
        for confidence in ("on-track", "at-risk", "off-track"):
            events.append(
                make(
                    "alice",
                    CheckInRecorded(subject=milestone.id, confidence=confidence, percent=10.0),
                )
            )
    await world.append(events)
    world.ctx.view_budget = 120.0
    heavy = "/people/alice/review?from=2026-01-01&to=2026-12-31&format=markdown"
    review = asyncio.create_task(client.get(heavy, headers=world.auth("alice")))
    for _ in range(500):  # until the review is being computed
        if world.ctx.views_in_progress:
            break
        await asyncio.sleep(0.01)
    assert world.ctx.views_in_progress == 1
    health = await client.get("/health")
    assert health.status_code == 200
    assert not review.done()  # /health did not wait behind the review
    response = await review
    assert response.status_code == 200
    assert "ZZTEAM m799" in response.text
