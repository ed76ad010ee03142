"""Ingest against a real nats-server (JetStream) and both store backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import nats.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from events import (
    CheckInRecorded,
    Event,
    MilestonePlanned,
    ObjectiveCreated,
    TaskAdded,
    TeamMemberJoined,
    encode,
)
from events.wire import subject_person
from server.ingest import STREAM, BatchReport, IngestWorker, Poke
from server.nats_embedded import events_subject, poke_subject
from server.store.protocol import ServerStore
from tests.services import EventMaker, NatsService, StoreFactory


@pytest_asyncio.fixture
async def service_client(nats_service: NatsService) -> NatsClient:
    return await nats_service.connect_service()


@pytest_asyncio.fixture
async def worker(service_client: NatsClient, store: ServerStore) -> AsyncIterator[IngestWorker]:
    ingest = IngestWorker(service_client, store, batch_size=50, fetch_timeout=0.5)
    await ingest.start()
    yield ingest


async def push(
    client: NatsClient, event: Event, *, msg_id: bool = True, raw: bytes | None = None
) -> bool:
    """Publish like a client does; return whether the stream called it a duplicate."""
    headers = {"Nats-Msg-Id": event.id} if msg_id else None
    ack = await client.jetstream().publish(
        events_subject(event.actor, event.id),
        raw if raw is not None else encode(event),
        headers=headers,
    )
    return bool(ack.duplicate)


async def drain(worker: IngestWorker) -> BatchReport:
    """Run the worker until a fetch comes back empty; sum what it did."""
    totals = [0, 0, 0, 0]
    poked: set[str] = set()
    while True:
        report = await worker.run_once()
        if report.fetched == 0:
            fetched, stored, duplicates, dead_lettered = totals
            return BatchReport(fetched, stored, duplicates, dead_lettered, frozenset(poked))
        for i, value in enumerate(
            (report.fetched, report.stored, report.duplicates, report.dead_lettered)
        ):
            totals[i] += value
        poked |= report.poked


def goal(make: EventMaker, actor: str = "alice", visibility: str = "private") -> Event:
    return make(actor, ObjectiveCreated(title="Ship", cycle="2026-Q1", visibility=visibility))  # type: ignore[arg-type]


def test_subject_person() -> None:
    assert subject_person("milepost.events.alice.0190") == "alice"
    assert subject_person("milepost.events.alice") is None
    assert subject_person("milepost.pull.alice") is None


async def test_duplicates_inside_and_after_the_window_are_stored_once(
    nats_service: NatsService, worker: IngestWorker, store: ServerStore, make_event: EventMaker
) -> None:
    alice = await nats_service.connect_person("alice")
    event = goal(make_event)
    assert await push(alice, event) is False
    assert await push(alice, event) is True  # inside JetStream's duplicate window
    # After the window a re-push is a new message: the store must absorb it.
    assert await push(alice, event, msg_id=False) is False

    report = await drain(worker)
    assert (report.fetched, report.stored, report.duplicates) == (2, 1, 1)
    assert await store.count() == 1
    stored = await store.get(event.id)
    assert stored is not None and stored.raw == encode(event)

    # Days later, after ingest: still a no-op.
    await push(alice, event, msg_id=False)
    assert (await drain(worker)).duplicates == 1
    assert await store.count() == 1


async def test_out_of_order_arrival_is_indexed(
    nats_service: NatsService, worker: IngestWorker, store: ServerStore, make_event: EventMaker
) -> None:
    alice = await nats_service.connect_person("alice")
    objective = goal(make_event, visibility="team")
    milestone = make_event("alice", MilestonePlanned(title="Cache", objective=objective.id))
    task = make_event("alice", TaskAdded(milestone=milestone.id, title="Design"))
    checkin = make_event(
        "alice", CheckInRecorded(subject=milestone.id, confidence="at-risk", percent=5)
    )
    for event in (checkin, task, milestone):
        await push(alice, event)
    await drain(worker)
    assert await store.item_root(checkin.id) is None
    await push(alice, objective)
    await drain(worker)
    for event in (objective, milestone, task, checkin):
        assert await store.item_root(event.id) == objective.id


async def test_invalid_messages_are_dead_lettered_and_never_block_the_rest(
    nats_service: NatsService, worker: IngestWorker, store: ServerStore, make_event: EventMaker
) -> None:
    alice = await nats_service.connect_person("alice")
    good = [goal(make_event) for _ in range(3)]
    garbage = b"\xff\xfe not json"
    bad_body = encode(make_event("alice", ObjectiveCreated(title="x", cycle="2026-Q1"))).replace(
        b'"cycle":"2026-Q1"', b'"cycle":"someday"'
    )
    await push(alice, good[0])
    await alice.jetstream().publish("milepost.events.alice.garbage", garbage)
    await push(alice, good[1])
    await alice.jetstream().publish("milepost.events.alice.badbody", bad_body)
    await push(alice, good[2])

    report = await drain(worker)
    assert (report.fetched, report.stored, report.dead_lettered) == (5, 3, 2)
    assert [e.id for e in await store.events_after(0, 10)] == [e.id for e in good]
    letters = await store.dead_letters()
    assert [d.raw for d in letters] == [garbage, bad_body]
    assert letters[1].reason.startswith("cycle") or "cycle" in letters[1].reason
    # Everything was acked: nothing comes back.
    assert (await drain(worker)).fetched == 0


async def test_an_actor_not_matching_its_subject_is_dead_lettered(
    nats_service: NatsService, worker: IngestWorker, store: ServerStore, make_event: EventMaker
) -> None:
    alice = await nats_service.connect_person("alice")
    forged = goal(make_event, actor="bob")
    # alice may publish under her own subject, but the event claims to be bob's.
    await alice.jetstream().publish(events_subject("alice", forged.id), encode(forged))
    report = await drain(worker)
    assert (report.stored, report.dead_lettered) == (0, 1)
    assert await store.get(forged.id) is None
    (letter,) = await store.dead_letters()
    assert letter.subject == events_subject("alice", forged.id)
    assert "does not match" in letter.reason and letter.raw == encode(forged)


async def test_two_workers_sharing_the_consumer_apply_each_event_once(
    nats_service: NatsService, store_factory: StoreFactory, make_event: EventMaker
) -> None:
    # Two "processes": own NATS connection and own store connection each, one durable.
    workers = [
        IngestWorker(
            await nats_service.connect_service(),
            await store_factory(),
            batch_size=20,
            fetch_timeout=0.5,
            ack_wait=1.0,
        )
        for _ in range(2)
    ]
    for w in workers:
        await w.start()
    alice = await nats_service.connect_person("alice")
    events = [goal(make_event) for _ in range(120)]
    await asyncio.gather(*(push(alice, e) for e in events))

    # Worker 0 stores a batch then "crashes" before acking: JetStream redelivers it.
    crashed = await workers[0].fetch()
    assert crashed
    stored_before_crash = await workers[0].store_batch(crashed)
    assert len(stored_before_crash.stored) == len(crashed)

    reports: list[BatchReport] = []

    async def run(w: IngestWorker) -> None:
        idle = 0
        while idle < 3:
            report = await w.run_once()
            reports.append(report)
            idle = idle + 1 if report.fetched == 0 else 0

    await asyncio.gather(*(run(w) for w in workers))
    reader = await store_factory()
    assert await reader.count() == len(events)
    stored = await reader.events_after(0, 1000)
    assert [e.position for e in stored] == list(range(1, len(events) + 1))
    assert {e.id for e in stored} == {e.id for e in events}
    assert sum(r.stored for r in reports) + len(crashed) == len(events)
    assert sum(r.duplicates for r in reports) >= len(crashed)  # the redelivered batch
    js = nats_service.clients[0].jetstream()
    info = await js.consumer_info(STREAM, "milepost-ingest")
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_pokes_reach_everyone_who_can_see_the_new_events(
    nats_service: NatsService, worker: IngestWorker, make_event: EventMaker
) -> None:
    alice = await nats_service.connect_person("alice")
    inboxes: dict[str, asyncio.Queue[Poke]] = {}
    for person in ("alice", "carol", "dave"):
        client = alice if person == "alice" else await nats_service.connect_person(person)
        queue: asyncio.Queue[Poke] = asyncio.Queue()
        inboxes[person] = queue

        async def on_poke(msg: Msg, queue: asyncio.Queue[Poke] = queue) -> None:
            await queue.put(msgspec.json.decode(msg.data, type=Poke))

        await client.subscribe(poke_subject(person), cb=on_poke)
        await client.flush()
    # Membership comes from the server's admin path (the service user, actor "admin").
    admin = nats_service.clients[0]
    await push(admin, make_event("admin", TeamMemberJoined(team="eng", person="alice")))
    await push(admin, make_event("admin", TeamMemberJoined(team="eng", person="carol")))
    await drain(worker)
    for person in ("alice", "carol"):
        while not inboxes[person].empty():
            inboxes[person].get_nowait()

    shared = goal(make_event, visibility="team")
    await push(alice, shared)
    report = await drain(worker)
    assert report.poked == {"alice", "carol"}
    assert (await asyncio.wait_for(inboxes["carol"].get(), 5)).position == 3
    assert (await asyncio.wait_for(inboxes["alice"].get(), 5)).position == 3
    assert inboxes["dave"].empty()


async def test_a_person_cannot_publish_under_another_persons_subject(
    nats_service: NatsService,
    worker: IngestWorker,
    store: ServerStore,
    make_event: EventMaker,
) -> None:
    errors: list[Exception] = []

    async def on_error(error: Exception) -> None:
        errors.append(error)

    alice = await nats_service.connect_person("alice", error_cb=on_error)
    as_bob = goal(make_event, actor="bob")
    with pytest.raises(nats.errors.TimeoutError):
        await alice.jetstream().publish(
            events_subject("bob", as_bob.id), encode(as_bob), timeout=1.0
        )
    assert any("permissions violation" in str(e).lower() for e in errors), errors

    # Nor read bob's pokes; her own subjects work.
    await alice.subscribe(poke_subject("bob"))
    await alice.flush()
    await asyncio.sleep(0.2)
    assert any(
        "subscription" in str(e).lower() and poke_subject("bob") in str(e) for e in errors
    ), errors
    own = goal(make_event)
    assert await push(alice, own) is False
    await drain(worker)
    assert await store.get(as_bob.id) is None
    assert await store.get(own.id) is not None
