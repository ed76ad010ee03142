"""The server refuses at ingest clocks too far ahead and dates out of range (real nats-server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest_asyncio
from nats.aio.client import Client as NatsClient

from events import MilestonePlanned, ObjectiveCreated, encode
from events.clock import MAX_CLOCK_AHEAD_MS, pack, wall_ms
from server.ingest import IngestWorker
from server.nats_embedded import events_subject
from server.store.protocol import ServerStore
from tests.integration.test_ingest import drain
from tests.services import EventMaker, NatsService

HOUR_MS = 3_600_000


@pytest_asyncio.fixture
async def worker(nats_service: NatsService, store: ServerStore) -> AsyncIterator[IngestWorker]:
    client = await nats_service.connect_service()
    ingest = IngestWorker(client, store, batch_size=50, fetch_timeout=0.5)
    await ingest.start()
    yield ingest


async def publish(client: NatsClient, event_id: str, raw: bytes) -> None:
    await client.jetstream().publish(events_subject("dave", event_id), raw)


async def test_clocks_too_far_ahead_and_dates_out_of_range_are_dead_lettered(
    nats_service: NatsService, worker: IngestWorker, store: ServerStore, make_event: EventMaker
) -> None:
    dave = await nats_service.connect_person("dave")
    now = wall_ms()
    goal = ObjectiveCreated(title="Ship", cycle="2026-Q1", visibility="team")
    # A device whose wall clock is a day ahead still syncs.
    day_ahead = make_event("dave", goal, clock=pack(now + 24 * HOUR_MS, 0))
    # Beyond the bound: a valid stamp, refused against the server's clock.
    too_far = make_event("dave", goal, clock=pack(now + MAX_CLOCK_AHEAD_MS + HOUR_MS, 0))
    # Beyond any stamp the codec accepts: the poison of issue 10.
    poison = make_event("dave", goal)
    poison_raw = encode(poison).replace(
        f'"clock":{poison.clock}'.encode(), f'"clock":{(1 << 63) - 1}'.encode()
    )
    absurd_due = make_event("dave", MilestonePlanned(title="Forever", visibility="team"))
    absurd_due_raw = encode(absurd_due).replace(b'"due_on":null', b'"due_on":"9999-12-31"')
    absurd_occurred = make_event("dave", goal)
    raw = msgspec.json.decode(encode(absurd_occurred))
    raw["occurred_at"] = "9999-12-31T23:59:59-05:00"
    absurd_occurred_raw = msgspec.json.encode(raw)
    honest = make_event("dave", goal)

    for event_id, data in [
        (day_ahead.id, encode(day_ahead)),
        (too_far.id, encode(too_far)),
        (poison.id, poison_raw),
        (absurd_due.id, absurd_due_raw),
        (absurd_occurred.id, absurd_occurred_raw),
        (honest.id, encode(honest)),
    ]:
        await publish(dave, event_id, data)

    report = await drain(worker)
    assert (report.fetched, report.stored, report.dead_lettered) == (6, 2, 4)
    assert [e.id for e in await store.events_after(0, 10)] == [day_ahead.id, honest.id]
    letters = {letter.raw: letter.reason for letter in await store.dead_letters()}
    assert "ahead of the receiver's clock" in letters[encode(too_far)]
    assert "at most 48 h" in letters[encode(too_far)]
    assert letters[poison_raw].startswith("clock: stamp is later than 2199-12-31")
    assert letters[absurd_due_raw] == "body.due_on: date must be between 1970-01-01 and 2199-12-31"
    assert letters[absurd_occurred_raw].startswith("occurred_at: date must be between")
