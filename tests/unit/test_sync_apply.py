"""Pulled pages applied to a client database: views equal a rebuild whatever the order."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from client.store import Store
from client.sync import SyncLog, apply_views
from client.views import check_views
from events import encode
from events.wire import WireEvent, WireReferent
from milepost_testkit.history import person_history

NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)


async def opened(tmp_path: Path) -> Store:
    store = await Store.open(tmp_path / "phone.sqlite3", create=True)
    async with store.write():
        await store.set_meta("person", "alice")
        await store.set_meta("device", "phone")
    return store


@pytest.mark.parametrize("page", [1, 3, 50])
async def test_children_pulled_before_their_parents_still_show(tmp_path: Path, page: int) -> None:
    events = person_history("alice", "laptop", 50)
    store = await opened(tmp_path)
    log = SyncLog(store, "alice")
    try:
        backwards = [WireEvent(i, encode(e)) for i, e in enumerate(reversed(events), start=1)]
        for start in range(0, len(backwards), page):
            chunk = backwards[start : start + page]
            await log.apply(chunk, chunk[-1].position, chunk[-1].position, NOW, apply_views)
        assert await check_views(store, NOW) == []
        assert await log.cursors() == (50, 50)
        counts = await log.counts()
        assert counts.confirmed == 50 and counts.pending == 0
    finally:
        await store.close()


async def test_in_order_pages_refold_incrementally(tmp_path: Path) -> None:
    events = person_history("alice", "laptop", 120)
    store = await opened(tmp_path)
    log = SyncLog(store, "alice")
    try:
        wire = [WireEvent(i, encode(e)) for i, e in enumerate(events, start=1)]
        for start in range(0, len(wire), 7):
            chunk = wire[start : start + 7]
            added, own, rejected = await log.apply(chunk, chunk[-1].position, 0, NOW, apply_views)
            assert added == own == len(chunk) and rejected == 0
        assert await check_views(store, NOW) == []
        again = await log.apply(wire[:10], 120, 0, NOW, apply_views)
        assert again == (0, 10, 0)  # already held: nothing added, still confirmed
    finally:
        await store.close()


async def test_the_sync_engine_refuses_a_direct_store(tmp_path: Path) -> None:
    # It fetches pages while a batch is applied: statements must queue in one thread.
    from client.errors import StoreError
    from client.sync import Syncer

    store = await Store.open(tmp_path / "cli.sqlite3", create=True, direct=True)
    try:
        with pytest.raises(StoreError, match="threaded store"):
            Syncer(store, "alice", "phone", link=None, now=lambda: NOW)  # type: ignore[arg-type]
    finally:
        await store.close()


def _moved_milestone() -> tuple[list[WireEvent], list[WireReferent], str]:
    """Alice's milestone planned under her private objective and moved to one shared with
    bob: what bob's device is sent (the private objective only as a referent)."""
    from events import Event, new_event_id
    from events import bodies as b

    def event(clock: int, body: b.Body) -> Event:
        return Event(new_event_id(), "alice", "laptop", clock, NOW, NOW, body)  # type: ignore[arg-type]

    private = event(1, b.ObjectiveCreated(title="Private", cycle="2026"))
    milestone = event(2, b.MilestonePlanned(title="Moved", objective=private.id))
    shared = event(
        3,
        b.ObjectiveCreated(title="Shared", cycle="2026", visibility="partners", partners=("bob",)),
    )
    moved = event(4, b.MilestoneRelinked(milestone=milestone.id, objective=shared.id))
    wire = [WireEvent(i, encode(e)) for i, e in enumerate([milestone, shared, moved], start=2)]
    return wire, [WireReferent(private.id, "alice", private.type)], milestone.id


async def _shown_to_bob(store: Store) -> set[str]:
    from client.views import stored_parts

    parts = await stored_parts(store, "alice")
    return {m.id for p in parts if p.objective is not None for m in p.objective.milestones}


@pytest.mark.parametrize("late", [False, True], ids=["with-its-page", "in-a-later-apply"])
async def test_referents_let_a_moved_milestone_show(tmp_path: Path, late: bool) -> None:
    from client.views import load_all

    wire, referents, milestone = _moved_milestone()
    store = await opened(tmp_path)
    log = SyncLog(store, "bob")
    try:
        if late:  # events first (as an older server sent them), the referent afterwards
            await log.apply(wire, 4, 4, NOW, apply_views)
            assert await _shown_to_bob(store) == set()
            await log.apply([], 4, 4, NOW, apply_views, referents)
        else:
            await log.apply(wire, 4, 4, NOW, apply_views, referents)
        assert await _shown_to_bob(store) == {milestone}
        assert await check_views(store, NOW) == []
        loaded = await load_all(store)
        assert milestone in loaded.state.events and not loaded.state.pending
        assert referents[0].id not in loaded.state.events  # never an item
        rows = await store.fetchall("SELECT id, actor, type FROM referents")
        assert [tuple(r) for r in rows] == [tuple(msgspec.structs.astuple(referents[0]))]
    finally:
        await store.close()


@pytest.mark.parametrize("together", [True, False], ids=["one-batch", "one-by-one"])
async def test_a_retracted_objective_stays_gone_when_another_root_carries_it(
    tmp_path: Path, together: bool
) -> None:
    # Found by the replica state machine: a milestone planned under a key result of
    # objective Q and moved to objective P carries Q and the key result in P's slice
    # (they decide its planning); Q is then retracted (its own part, with the retraction,
    # is deleted). A later batch touching both P and Q refolded Q from P's copy of it,
    # without the retraction, and stored Q again.
    from events import Event, new_event_id
    from events import bodies as b

    def event(clock: int, body: b.Body) -> Event:
        return Event(new_event_id(), "alice", "laptop", clock, NOW, NOW, body)  # type: ignore[arg-type]

    quiet = event(1, b.ObjectiveCreated(title="Quiet", cycle="2026-Q1"))
    key_result = event(2, b.KeyResultAdded(objective=quiet.id, title="KR"))
    moved = event(3, b.MilestonePlanned(title="Moved", key_result=key_result.id))
    other = event(4, b.ObjectiveCreated(title="Open", cycle="2026-Q1"))
    relink = event(5, b.MilestoneRelinked(milestone=moved.id, objective=other.id))
    retract = event(6, b.Retracted(target=quiet.id, reason="mistake"))
    restored = event(7, b.MilestoneRestored(milestone=moved.id))
    launch = event(8, b.MilestonePlanned(title="Launch", key_result=key_result.id))
    history = [quiet, key_result, moved, other, relink, retract, restored, launch]
    wire = [WireEvent(i, encode(e)) for i, e in enumerate(history, start=1)]
    store = await opened(tmp_path)
    log = SyncLog(store, "alice")
    try:
        await log.apply(wire[:6], 6, 6, NOW, apply_views)
        assert await check_views(store, NOW) == []
        pages = [wire[6:]] if together else [wire[6:7], wire[7:]]
        for page in pages:
            await log.apply(page, page[-1].position, page[-1].position, NOW, apply_views)
            assert await check_views(store, NOW) == []
    finally:
        await store.close()


async def test_a_retraction_of_an_event_the_fold_refused_flags_nothing(tmp_path: Path) -> None:
    # Found by the replica state machine: a hostile device's forged plant under someone
    # else's objective is refused by the fold; its author then retracts it through the
    # client. The retraction waits forever for an event the fold never accepts, so the
    # fold says nothing is retracted, and the stored ``refs`` row must say the same.
    from client.session import Session
    from client.views import rebuild_views
    from events import Event, new_event_id
    from events import bodies as b

    theirs = Event(
        new_event_id(),
        "bob",
        "laptop",
        1,
        NOW,
        NOW,
        b.ObjectiveCreated(title="Bob's", cycle="2026-Q1"),
    )
    store = await opened(tmp_path)
    try:
        await SyncLog(store, "alice").apply([WireEvent(1, encode(theirs))], 1, 1, NOW, apply_views)
        forged = Event(
            new_event_id(),
            "alice",
            "laptop",
            2,
            NOW,
            NOW,
            b.MilestonePlanned(title="Planted", objective=theirs.id),
        )
        async with store.write():
            assert await store.append(forged) is not None
            await store.set_meta("clock", "2")
            await rebuild_views(store, NOW)
        assert await check_views(store, NOW) == []
        session = Session(store, {"person": "alice", "device": "laptop"}, NOW)
        await session.record(b.Retracted(target=forged.id, reason="oops"))
        assert await check_views(store, NOW) == []
    finally:
        await store.close()
