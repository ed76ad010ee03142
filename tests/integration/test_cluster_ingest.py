"""Ingest on a three-node JetStream cluster with PostgreSQL, through a node crash.

Two ingest workers (own NATS connection and own PostgreSQL pool each: two
"server processes") share the durable consumer on a stream replicated three
times. A person's client pushes events; half-way, one nats-server is
SIGKILLed. The stream keeps its quorum (two of three), the clients reconnect
to a surviving node, and every publish the stream acknowledged is stored
exactly once, at dense positions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import nats.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient

from events import Event, ObjectiveCreated, encode, new_event_id
from milepost_testkit.cluster import NatsCluster, eventually
from server.ingest import CONSUMER, STREAM, Delivered, IngestWorker
from server.nats_embedded import events_subject
from server.store.postgres import PostgresStore
from server.store.protocol import AppendResult

EVENTS = 400
PUSH_WINDOW = 40


def objective(actor: str, clock: int) -> Event:
    """A small valid event by ``actor``."""
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    return Event(
        id=new_event_id(),
        actor=actor,
        device="laptop",
        clock=clock,
        recorded_at=now,
        occurred_at=now,
        body=ObjectiveCreated(title=f"Goal {clock}", cycle="2026-Q1"),
    )


@dataclass
class Pusher:
    """Pushes events like a device: Nats-Msg-Id = event id, retried until acknowledged."""

    client: NatsClient
    acked: dict[str, int] = field(default_factory=dict)  # event id → stream sequence
    retries: int = 0

    async def push(self, event: Event, timeout: float = 60.0) -> None:
        """Publish until the stream acknowledges (a re-push is harmless); TimeoutError
        after ``timeout`` seconds."""
        js = self.client.jetstream()
        deadline = time.monotonic() + timeout
        while True:
            try:
                ack = await js.publish(
                    events_subject(event.actor, event.id),
                    encode(event),
                    headers={"Nats-Msg-Id": event.id},
                    timeout=2.0,
                )
            except (nats.errors.Error, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{event.id} not acknowledged: {exc!r}") from None
                self.retries += 1
                await asyncio.sleep(0.1)
                continue
            self.acked[event.id] = ack.seq
            return


@dataclass
class Workers:
    """Ingest workers running until ``stop``; their stored counts add up per worker."""

    workers: list[IngestWorker]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stored: list[int] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        """Run every worker's loop as a task."""
        self.stored = [0] * len(self.workers)
        for index, worker in enumerate(self.workers):
            self._count_commits(index, worker)
        self.tasks = [asyncio.create_task(self._run(i)) for i in range(len(self.workers))]

    def _count_commits(self, index: int, worker: IngestWorker) -> None:
        # Counted at the commit, not from the round's report: a node killed between the
        # commit and the acks fails the round after its events are stored (they are
        # redelivered and found to be duplicates), and that round must still count.
        store_batch = worker.store_batch

        async def counted(delivered: list[Delivered]) -> AppendResult:
            result = await store_batch(delivered)
            self.stored[index] += len(result.stored)
            return result

        worker.store_batch = counted  # type: ignore[method-assign]

    async def _run(self, index: int) -> None:
        worker = self.workers[index]
        while not self.stop.is_set():
            try:
                await worker.run_once()
            except Exception:
                await asyncio.sleep(0.2)  # a node went away mid-round: try again

    async def close(self) -> None:
        """Stop the loops and wait for them."""
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest_asyncio.fixture
async def stores(postgres_url: str) -> AsyncIterator[list[PostgresStore]]:
    """Two PostgreSQL stores on one database (one per "server process") and a reader."""
    opened = [PostgresStore(postgres_url) for _ in range(3)]
    for store in opened:
        await store.open()
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


async def start_workers(cluster: NatsCluster, stores: list[PostgresStore]) -> Workers:
    workers = []
    for store in stores[:2]:
        worker = IngestWorker(
            await cluster.connect_service(),
            store,
            batch_size=50,
            fetch_timeout=0.3,
            ack_wait=2.0,
            replicas=3,
        )
        await worker.start()
        workers.append(worker)
    running = Workers(workers)
    running.start()
    return running


def node_index(cluster: NatsCluster, url: str) -> int:
    """Which node a client URL points at."""
    port = int(url.rsplit(":", 1)[1])
    return next(i for i, node in enumerate(cluster.nodes) if node.port == port)


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["publisher-node", "stream-leader"])
async def test_killing_a_nats_node_mid_push_loses_and_doubles_nothing(
    nats_cluster: NatsCluster, stores: list[PostgresStore], victim: str
) -> None:
    cluster = nats_cluster
    running = await start_workers(cluster, stores)
    client = await cluster.connect_person("alice")
    pusher = Pusher(client)
    events = [objective("alice", (1 << 40) + i) for i in range(EVENTS)]
    try:
        half = EVENTS // 2
        for start in range(0, half, PUSH_WINDOW):
            await asyncio.gather(*(pusher.push(e) for e in events[start : start + PUSH_WINDOW]))

        connected = client.connected_url
        assert connected is not None
        if victim == "publisher-node":
            killed = node_index(cluster, f"{connected.hostname}:{connected.port}")
        else:
            leader, _ = await cluster.stream_replicas()
            killed = next(i for i, n in enumerate(cluster.nodes) if n.name == leader)
        cluster.kill(killed)

        for start in range(half, EVENTS, PUSH_WINDOW):
            await asyncio.gather(*(pusher.push(e) for e in events[start : start + PUSH_WINDOW]))
        assert len(pusher.acked) == EVENTS
        if victim == "publisher-node":
            now = client.connected_url
            assert now is not None and now.port != cluster.nodes[killed].port

        reader = stores[2]

        async def all_stored() -> bool:
            return await reader.count() >= EVENTS

        assert await eventually(all_stored, timeout=30), await reader.count()

        # The stream kept its quorum: it still has a leader and a current replica.
        leader, current = await cluster.stream_replicas()
        assert leader is not None and leader != cluster.nodes[killed].name
        assert len(current) >= 1

        monitor = await cluster.connect_service()

        async def consumer_drained() -> bool:
            info = await monitor.jetstream().consumer_info(STREAM, CONSUMER)
            return bool(info.num_pending == 0 and info.num_ack_pending == 0)

        assert await eventually(consumer_drained, timeout=30)
    finally:
        await running.close()

    stored = await reader.events_after(0, EVENTS * 2)
    assert len(stored) == EVENTS == await reader.count()
    assert [s.position for s in stored] == list(range(1, EVENTS + 1))
    assert {s.id for s in stored} == set(pusher.acked) == {e.id for e in events}
    # No event applied twice: the workers' "newly stored" counts add up to exactly N.
    assert sum(running.stored) == EVENTS
    assert all(count > 0 for count in running.stored), running.stored

    # The killed node comes back and catches up: three current replicas again.
    await asyncio.to_thread(cluster.restart, killed)

    async def three_replicas() -> bool:
        leader, current = await cluster.stream_replicas()
        return leader is not None and len(current) == 2

    assert await eventually(three_replicas, timeout=30)
    with contextlib.suppress(Exception):
        await client.close()
