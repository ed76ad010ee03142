"""Found by the replica convergence machine (tests/integration/test_convergence.py).

Two devices of one person relink the same milestone offline; the device whose own relink
is the later one (by clock) then receives the earlier one. The fold keeps the later relink
(last writer wins by (clock, id)), but ``client.views._roots_touched`` moves the milestone's
``goal_roots`` row to the parent of whichever relink *arrived* last. The stored views then
disagree with a rebuild (``check_views``: "goal roots differ"), and later events on the
milestone refold the wrong root, so its objective's stored part goes stale until
``milepost rebuild``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from client.store import Store
from client.views import check_views, on_append
from events import Event, KnownBody, new_event_id
from events import bodies as b

NOW = datetime(2026, 6, 30, tzinfo=UTC)


def _event(body: KnownBody, clock: int) -> Event:
    return Event(
        id=new_event_id(),
        actor="alice",
        device="phone",
        clock=clock,
        recorded_at=NOW,
        occurred_at=NOW,
        body=body,
    )


@pytest.mark.xfail(strict=True, reason="client/views.py applies relinks in arrival order")
async def test_an_earlier_relink_arriving_later_leaves_the_views_a_rebuild(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "phone.db", create=True, direct=True)
    try:
        first = _event(b.ObjectiveCreated(title="A", cycle="2026-Q2"), 1)
        second = _event(b.ObjectiveCreated(title="B", cycle="2026-Q2"), 2)
        milestone = _event(b.MilestonePlanned(title="M"), 3)
        later = _event(b.MilestoneRelinked(milestone=milestone.id, objective=first.id), 10)
        earlier = _event(b.MilestoneRelinked(milestone=milestone.id, objective=second.id), 5)
        for event in (first, second, milestone, later, earlier):  # the earlier one comes last
            async with store.write():
                seq = await store.append(event)
                assert seq is not None
                await on_append(store, seq, event, NOW)
        assert await check_views(store, NOW) == []
    finally:
        await store.close()
