"""One visibility, three ways: for random histories that include hostile writes (cross-owner
writes, relinks, plants, stamps a year ahead, references to events that never come), stored
in a random order and random batches, the server's visibility (its index and SQL, on both
stores) equals the projections' (``can_see_item``), and both equal an independent model
written in the tests (``_Model``: the rules restated, with the ownership rule as a least
fixpoint). Refused events never reach anyone else, whatever order they arrive in."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import Event, encode
from events import bodies as b
from milepost_testkit.model import Model as _Model
from milepost_testkit.model import people_and_teams
from milepost_testkit.strategies import histories
from projections.state import rebuild
from projections.visibility import can_see_item
from server.nats_embedded import events_subject
from server.store import open_store
from server.store.protocol import Incoming, ServerStore
from tests.services import with_database
from tests.unit.test_properties import SHAREABLE

EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class EventModel(_Model):
    """``_Model`` extended from items to events of every type: the root an event's
    visibility follows, as the rules state it."""

    def event_root(self, event: Event, depth: int = 0) -> str | None:
        body = event.body
        if depth > 8:
            return None
        if isinstance(body, SHAREABLE):
            return self.root(event.id)
        target: str | None = None
        if isinstance(body, b.TaskCompleted | b.TaskReopened):
            target = body.task
        elif isinstance(body, b.MILESTONE_EVENTS):
            target = body.milestone
        elif isinstance(body, b.SharingChanged):
            target = body.subject
        elif isinstance(body, b.Corrected | b.Retracted):
            target = body.target
        elif isinstance(body, b.KudosGiven):  # seen by whoever sees the completion
            target = body.completion
        if target is None or target not in self.by_id:
            return None
        return self.event_root(self.by_id[target], depth + 1)

    def event_visible(self, viewer: str, event: Event) -> bool:
        """Whether ``viewer`` may receive another person's ``event`` now."""
        if event.id not in self.by_id:  # refused, or waiting for what it names
            return False
        body = event.body
        if isinstance(body, b.TeamMemberJoined | b.TeamMemberLeft):
            return body.team in self.teams(viewer)
        root = self.event_root(event)
        if root is None or root not in self.by_id:
            return False
        return self.may_see(viewer, root)


async def _store_in_random_order(store: ServerStore, order: list[Event], cuts: list[int]) -> None:
    start = 0
    for cut in [*sorted(cuts), len(order)]:
        batch = order[start:cut]
        start = cut
        if batch:
            await store.append_batch(
                [Incoming(encode(e), e, None, events_subject(e.actor, e.device)) for e in batch]
            )


async def _check(database: str, history: list[Event], order: list[Event], cuts: list[int]) -> None:
    store = open_store(database)
    await store.open()
    try:
        await _store_in_random_order(store, order, cuts)
        model = EventModel(history)
        state = rebuild(history)
        people, _ = people_and_teams(history)
        hostile: frozenset[str] = getattr(history, "hostile", frozenset())
        for viewer in people:
            served = {e.id for e in await store.visible_events_after(viewer, 0, 100_000)}
            for event in history:
                if event.actor == viewer:
                    continue
                want = model.event_visible(viewer, event)
                assert (event.id in served) == want, (
                    f"server: {viewer} {'misses' if want else 'sees'} {event.type} {event.id}"
                    f" of {event.actor}"
                )
                if isinstance(event.body, SHAREABLE):
                    assert can_see_item(state, viewer, event.id) == want, (
                        f"projections: {viewer} / {event.type} {event.id} of {event.actor}"
                    )
                if event.id in hostile:
                    assert event.id not in served
    finally:
        await store.close()


def _draw_order(data: st.DataObject, history: list[Event]) -> tuple[list[Event], list[int]]:
    order = data.draw(st.permutations(history)) if data.draw(st.booleans()) else list(history)
    cuts = data.draw(st.lists(st.integers(0, len(history)), max_size=4))
    return order, cuts


@pytest.fixture
def postgres_database(postgres_admin_url: str) -> Iterator[str]:
    """An empty database for the test; each example truncates it first."""
    import asyncpg

    name = f"milepost_prop_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        admin = await asyncpg.connect(postgres_admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    async def drop() -> None:
        admin = await asyncpg.connect(postgres_admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(create())
    try:
        yield with_database(postgres_admin_url, name)
    finally:
        asyncio.run(drop())


async def _truncate(url: str) -> None:
    import asyncpg

    store = open_store(url)
    await store.open()  # migrations, once
    await store.close()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "TRUNCATE events, items, links, sharing, team_members, dead_letters, held"
        )
        await conn.execute("UPDATE event_positions SET last = 0")
    finally:
        await conn.close()


@EXAMPLES
@given(history=histories(max_people=3, max_events=50), data=st.data())
def test_sqlite_visibility_equals_the_projections_and_the_model(
    tmp_path_factory: pytest.TempPathFactory, history: list[Event], data: st.DataObject
) -> None:
    order, cuts = _draw_order(data, history)
    path = tmp_path_factory.mktemp("vis") / "server.sqlite"
    asyncio.run(_check(str(path), history, order, cuts))


@EXAMPLES
@given(history=histories(max_people=3, max_events=50), data=st.data())
def test_postgres_visibility_equals_the_projections_and_the_model(
    postgres_database: str, history: list[Event], data: st.DataObject
) -> None:
    order, cuts = _draw_order(data, history)
    asyncio.run(_truncate(postgres_database))
    asyncio.run(_check(postgres_database, history, order, cuts))
