"""Stored goal parts reproduce goal_tree exactly, at any later moment."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events import Event
from milepost_testkit.history import generate_history
from projections import snapshot
from projections.goals import goal_tree
from projections.state import rebuild


def _history(events: int) -> list[Event]:
    return list(generate_history(1, 1, 6, events, 11))


@pytest.mark.parametrize("later", ["2026-02-01", "2026-06-30", "2027-01-15"])
def test_parts_from_slices_equal_goal_tree(later: str) -> None:
    events = _history(4000)
    state = rebuild(events)
    person = next(e.actor for e in events if e.actor != "admin")
    order = {e.id: i for i, e in enumerate(events)}
    roots = {r for rs in snapshot.all_roots(state).values() for r in rs}
    roots.add(snapshot.pauses_root(person))
    written = datetime(2026, 1, 20, tzinfo=UTC)
    parts = []
    for root in roots:
        kept = sorted(
            (state.events[i] for i in snapshot.slice_ids(state, root)), key=lambda e: order[e.id]
        )
        parts.append(snapshot.root_part(rebuild(kept), root, written))
    now = datetime.fromisoformat(later + "T12:00:00+00:00")
    assert snapshot.assemble_tree(person, now, parts) == goal_tree(state, person, now)
