"""The incremental views place a relinked milestone where the fold does, whatever the order.

Found by the replica convergence machine (tests/integration/test_convergence.py): two
devices of one person relink the same milestone offline; the device whose own relink is
the later one (by clock) then receives the earlier one. The fold keeps the later relink
(last writer wins by (clock, id), only the owner's writes count), but ``client.views``
moved the milestone's ``goal_roots`` row to the parent of whichever relink *arrived*
last: the stored views then disagreed with a rebuild (``check_views``: "goal roots
differ"), and later events on the milestone refolded the wrong root. ``client.views.refold``
now places the milestone from the folded state (its link register).

Each test checks the stored views against a rebuild and, so that agreeing on a wrong
answer cannot pass, where the milestone shows in the stored goal tree.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from client.store import Store
from client.sync import SyncLog, apply_views
from client.views import check_views, on_append, stored_tree
from events import Event, KnownBody, encode, new_event_id
from events import bodies as b
from events.wire import WireEvent

NOW = datetime(2026, 6, 30, tzinfo=UTC)


def _event(body: KnownBody, clock: int, actor: str = "alice") -> Event:
    return Event(
        id=new_event_id(),
        actor=actor,
        device="phone",
        clock=clock,
        recorded_at=NOW,
        occurred_at=NOW,
        body=body,
    )


async def _where(store: Store, person: str, milestone: str) -> str | None:
    """The objective showing ``milestone`` in the person's stored tree ("" when standalone,
    None when it does not show)."""
    tree = await stored_tree(store, person, NOW)
    for objective in tree.objectives:
        if any(m.id == milestone for m in objective.milestones):
            return objective.id
    if any(m.id == milestone for m in tree.standalone_milestones):
        return ""
    return None


async def _appended(store: Store, events: list[Event]) -> None:
    """Each event appended and its views updated as a one-shot command does."""
    for event in events:
        async with store.write():
            seq = await store.append(event)
            assert seq is not None
            await on_append(store, seq, event, NOW)


async def test_an_earlier_relink_arriving_later_leaves_the_views_a_rebuild(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "phone.db", create=True, direct=True)
    try:
        first = _event(b.ObjectiveCreated(title="A", cycle="2026-Q2"), 1)
        second = _event(b.ObjectiveCreated(title="B", cycle="2026-Q2"), 2)
        milestone = _event(b.MilestonePlanned(title="M"), 3)
        later = _event(b.MilestoneRelinked(milestone=milestone.id, objective=first.id), 10)
        earlier = _event(b.MilestoneRelinked(milestone=milestone.id, objective=second.id), 5)
        # the earlier one comes last
        await _appended(store, [first, second, milestone, later, earlier])
        assert await check_views(store, NOW) == []
        assert await _where(store, "alice", milestone.id) == first.id
        # A later event on the milestone refolds the root it is in, not the loser's.
        task = _event(b.TaskAdded(milestone=milestone.id, title="t"), 11)
        await _appended(store, [task])
        assert await check_views(store, NOW) == []
        tree = await stored_tree(store, "alice", NOW)
        shown = [m for o in tree.objectives for m in o.milestones if m.id == milestone.id]
        assert [len(m.tasks) for m in shown] == [1]
    finally:
        await store.close()


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
async def test_three_relinks_in_any_arrival_order_keep_the_latest(
    tmp_path: Path, order: tuple[int, int, int]
) -> None:
    store = await Store.open(tmp_path / "phone.db", create=True, direct=True)
    try:
        objectives = [
            _event(b.ObjectiveCreated(title=f"O{i}", cycle="2026-Q2"), 1 + i) for i in range(3)
        ]
        milestone = _event(b.MilestonePlanned(title="M"), 4)
        # Clocks 7, 9, 8: the winner (clock 9) is the middle one, not the last created.
        relinks = [
            _event(b.MilestoneRelinked(milestone=milestone.id, objective=o.id), clock)
            for o, clock in zip(objectives, (7, 9, 8), strict=True)
        ]
        await _appended(store, [*objectives, milestone, *(relinks[i] for i in order)])
        assert await check_views(store, NOW) == []
        assert await _where(store, "alice", milestone.id) == objectives[1].id
    finally:
        await store.close()


async def _synced(tmp_path: Path) -> tuple[Store, SyncLog]:
    store = await Store.open(tmp_path / "phone.sqlite3", create=True)
    async with store.write():
        await store.set_meta("person", "alice")
        await store.set_meta("device", "phone")
    return store, SyncLog(store, "alice")


async def _pulled(log: SyncLog, pages: list[list[Event]], start: int = 1) -> int:
    """Apply ``pages`` as pulled pages (positions from ``start``); the next position."""
    position = start
    for page in pages:
        wire = [WireEvent(position + i, encode(e)) for i, e in enumerate(page)]
        position += len(page)
        await log.apply(wire, position - 1, position - 1, NOW, apply_views)
    return position


@pytest.mark.parametrize("page", [1, 2])
async def test_a_relink_pulled_before_its_milestone_is_placed_when_it_arrives(
    tmp_path: Path, page: int
) -> None:
    store, log = await _synced(tmp_path)
    try:
        first = _event(b.ObjectiveCreated(title="A", cycle="2026-Q2"), 1)
        second = _event(b.ObjectiveCreated(title="B", cycle="2026-Q2"), 2)
        milestone = _event(b.MilestonePlanned(title="M", objective=first.id), 3)
        relink = _event(b.MilestoneRelinked(milestone=milestone.id, objective=second.id), 4)
        position = await _pulled(log, [[first, second]])
        # The relink before the planning: in one page, or the relink alone first.
        pages = [[relink, milestone]] if page == 2 else [[relink], [milestone]]
        for chunk in pages:
            position = await _pulled(log, [chunk], position)
            assert await check_views(store, NOW) == []
        assert await _where(store, "alice", milestone.id) == second.id
    finally:
        await store.close()


async def test_someone_elses_relink_arriving_late_is_refused_by_the_views_too(
    tmp_path: Path,
) -> None:
    store, log = await _synced(tmp_path)
    try:
        mine = _event(b.ObjectiveCreated(title="A", cycle="2026-Q2"), 1)
        other = _event(b.ObjectiveCreated(title="B", cycle="2026-Q2"), 2)
        milestone = _event(b.MilestonePlanned(title="M", objective=mine.id), 3)
        moved = _event(b.MilestoneRelinked(milestone=milestone.id, objective=other.id), 5)
        theirs = _event(b.ObjectiveCreated(title="Bob's", cycle="2026-Q2"), 6, actor="bob")
        # Bob's relink of alice's milestone: the latest stamp, but not the owner's write.
        hostile = _event(b.MilestoneRelinked(milestone=milestone.id, objective=theirs.id), 9, "bob")
        await _pulled(log, [[mine, other, milestone, theirs], [moved], [hostile]])
        assert await check_views(store, NOW) == []
        assert await _where(store, "alice", milestone.id) == other.id
        assert await _where(store, "bob", milestone.id) is None
    finally:
        await store.close()


async def test_a_relink_out_of_a_retracted_objective_rebuilds(tmp_path: Path) -> None:
    # The retracted objective's part is empty, so no stored slice holds the milestone:
    # the fold of the touched slices cannot place it, and the views are rebuilt.
    store = await Store.open(tmp_path / "phone.db", create=True, direct=True)
    try:
        gone = _event(b.ObjectiveCreated(title="A", cycle="2026-Q2"), 1)
        kept = _event(b.ObjectiveCreated(title="B", cycle="2026-Q2"), 2)
        milestone = _event(b.MilestonePlanned(title="M", objective=gone.id), 3)
        retraction = _event(b.Retracted(target=gone.id), 4)
        relink = _event(b.MilestoneRelinked(milestone=milestone.id, objective=kept.id), 5)
        await _appended(store, [gone, kept, milestone, retraction, relink])
        assert await check_views(store, NOW) == []
        assert await _where(store, "alice", milestone.id) == kept.id
    finally:
        await store.close()
