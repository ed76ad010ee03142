"""A device's request while the server restarts: nothing subscribes to the pull subject for
a moment. The device asks again briefly instead of reporting the server down (the
convergence machine hit this after a restart), and still says so when it stays down."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg

from client.sync import Endpoint, Link
from client.sync.errors import SyncUnreachable
from client.sync.transport import NO_RESPONDERS_PATIENCE
from events.wire import PULL_PREFIX, pull_subject
from tests.services import NatsService


async def _link(nats_service: NatsService) -> Link:
    link = Link(Endpoint(nats_service.url, "alice", nats_service.passwords["alice"]))
    await link.open()
    return link


async def test_a_request_during_a_restart_is_answered(nats_service: NatsService) -> None:
    service = await nats_service.connect_service()

    async def answer(msg: Msg) -> None:
        await msg.respond(b"pong")

    link = await _link(nats_service)
    try:

        async def restart_later() -> None:
            await asyncio.sleep(0.3)  # the request already went out to nobody
            await service.subscribe(f"{PULL_PREFIX}.*", queue="pull", cb=answer)
            await service.flush()

        later = asyncio.create_task(restart_later())
        reply = await link.request("pull", pull_subject("alice"), b"ping", timeout=5.0)
        await later
        assert reply == b"pong"
    finally:
        await link.close()


async def test_a_server_that_stays_down_is_reported(nats_service: NatsService) -> None:
    link = await _link(nats_service)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        with pytest.raises(SyncUnreachable, match="sync server is not running"):
            await link.request("pull", pull_subject("alice"), b"ping", timeout=5.0)
        waited = loop.time() - started
        assert waited < NO_RESPONDERS_PATIENCE + 1.0  # patience, not the request's timeout
    finally:
        await link.close()
