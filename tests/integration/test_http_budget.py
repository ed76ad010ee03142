"""Heavy views run in a worker thread with a time budget: over it, a 503 with a reason;
the event loop (``/health``) answers meanwhile. Both store backends, the real app."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from tests.http_world import World, backend, create_app, location, world

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
    transport = httpx.ASGITransport(app=create_app(world.ctx))
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
