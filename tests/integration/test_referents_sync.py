"""A milestone moved from a private objective to a shared one shows on the partner's device,
through the real parts: a nats-server, ``IngestWorker`` and ``PullResponder`` over a real
store (SQLite, then PostgreSQL), and real client databases synced by the real ``Syncer``.

Bob never receives the private objective the milestone was planned under; the server
vouches for it (its actor and type: ``PullReply.referents``), so bob's fold accepts the
milestone (tests/unit/test_moved_milestone.py is the fold's side of it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from client.session import Session
from client.store import Store
from client.sync import Endpoint, Link, Syncer
from client.views import check_views, load_all, stored_parts
from events import bodies as b
from events import decode
from projections.goals import goal_tree
from projections.state import rebuild
from server.ingest import CONSUMER, STREAM, IngestWorker
from server.pull import PullResponder
from server.store.protocol import ServerStore
from tests.services import NatsService

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


class _Device:
    def __init__(self, store: Store, link: Link, person: str) -> None:
        self.store, self.link, self.person = store, link, person
        self.syncer = Syncer(store, person, "laptop", link, now=lambda: NOW)

    async def record(self, body: b.Body) -> str:
        meta = {"person": self.person, "device": "laptop"}
        return (await Session(self.store, meta, NOW).record(body)).id


@contextlib.asynccontextmanager
async def _device(tmp_path: Path, nats: NatsService, person: str) -> AsyncIterator[_Device]:
    store = await Store.open(tmp_path / f"{person}.sqlite3", create=True, direct=False)
    async with store.write():
        await store.set_meta("person", person)
        await store.set_meta("device", "laptop")
    link = Link(Endpoint(nats.url, person, nats.passwords[person]))
    await link.open()
    try:
        yield _Device(store, link, person)
    finally:
        await link.close()
        await store.close()


async def _ingest_all(worker: IngestWorker, nats: NatsService) -> None:
    js = (await nats.connect_service()).jetstream()
    for _ in range(200):
        last = (await js.stream_info(STREAM)).state.last_seq
        info = await js.consumer_info(STREAM, CONSUMER)
        floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
        if (floor or 0) >= last and not info.num_ack_pending:
            return
        if not (await worker.run_once()).fetched:
            await asyncio.sleep(0.05)
    raise AssertionError("ingest did not drain the stream")


async def test_a_moved_milestone_shows_on_the_partners_device_after_sync(
    store: ServerStore, nats_service: NatsService, tmp_path: Path
) -> None:
    nc = await nats_service.connect_service()
    worker = IngestWorker(nc, store, batch_size=100, fetch_timeout=0.05, ack_wait=1.0)
    await worker.start()
    responder = PullResponder(nc, store)
    await responder.start()
    await nc.flush()
    try:
        async with (
            _device(tmp_path, nats_service, "alice") as alice,
            _device(tmp_path, nats_service, "bob") as bob,
        ):
            private = await alice.record(b.ObjectiveCreated(title="Private", cycle="2026-Q1"))
            milestone = await alice.record(b.MilestonePlanned(title="Moved", objective=private))
            shared = await alice.record(
                b.ObjectiveCreated(
                    title="Shared", cycle="2026-Q1", visibility="partners", partners=("bob",)
                )
            )
            await alice.syncer.push()
            await _ingest_all(worker, nats_service)
            await bob.syncer.pull()
            assert milestone not in {e.id for e in (await load_all(bob.store)).events}

            await alice.record(b.MilestoneRelinked(milestone=milestone, objective=shared))
            await alice.syncer.push()
            await _ingest_all(worker, nats_service)
            summary = await bob.syncer.pull()
            assert summary.rescans == 1  # the milestone was revealed by the move

            held = await load_all(bob.store)
            assert private not in {e.id for e in held.events}  # never received
            assert milestone in held.state.events and not held.state.pending
            rows = await bob.store.fetchall("SELECT id, actor, type FROM referents")
            assert [tuple(r) for r in rows] == [(private, "alice", "objective.created")]
            # bob's stored views show it under the shared objective, as the server does
            parts = await stored_parts(bob.store, "alice")
            shown = {m.title for p in parts if p.objective for m in p.objective.milestones}
            assert shown == {"Moved"}
            assert await check_views(bob.store, NOW) == []
            everything = rebuild(decode(e.raw) for e in await store.events_after(0, 1000))
            assert msgspec.json.encode(goal_tree(held.state, "alice", NOW, viewer="bob")) == (
                msgspec.json.encode(goal_tree(everything, "alice", NOW, viewer="bob"))
            )
    finally:
        await responder.stop()
        await worker.close()
