"""A known bug the convergence machine found (tests/integration/test_convergence.py): a
milestone planned under a private objective, then moved to one shared with bob, reaches
bob's device without the objective it was planned under (bob may never see it). The
ownership rule makes the device's fold wait for that objective forever, so bob's device
never shows the milestone the server shows him. Strict xfail: it fails until fixed."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from events import Event, new_event_id
from events import bodies as b
from projections.goals import goal_tree
from projections.state import rebuild

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _event(clock: int, body: b.Body) -> Event:
    moment = datetime(2026, 2, 1, tzinfo=UTC)
    return Event(new_event_id(), "alice", "laptop", clock, moment, moment, body)  # type: ignore[arg-type]


@pytest.mark.xfail(strict=True, reason="a moved milestone waits forever on others' devices")
def test_a_milestone_moved_to_a_shared_objective_shows_on_the_partners_device() -> None:
    private = _event(1, b.ObjectiveCreated(title="Private", cycle="2026"))
    milestone = _event(2, b.MilestonePlanned(title="Moved", objective=private.id))
    shared = _event(
        3,
        b.ObjectiveCreated(title="Shared", cycle="2026", visibility="partners", partners=("bob",)),
    )
    moved = _event(4, b.MilestoneRelinked(milestone=milestone.id, objective=shared.id))
    server = rebuild([private, milestone, shared, moved])
    device = rebuild([shared, milestone, moved])  # what bob may receive
    want = msgspec.json.encode(goal_tree(server, "alice", NOW, viewer="bob"))
    assert msgspec.json.encode(goal_tree(device, "alice", NOW, viewer="bob")) == want
