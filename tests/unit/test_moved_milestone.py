"""A bug the convergence machine found (tests/integration/test_convergence.py): a milestone
planned under a private objective, then moved to one shared with bob, reaches bob's device
without the objective it was planned under (bob may never receive it). The ownership rule
made the device's fold wait for that objective forever, so bob's device never showed the
milestone the server shows him.

The fix: the server vouches for what the rule needs of such an event, its actor and type
(``events.wire.WireReferent``), and the fold judges with these *referents*
(``projections.state.rebuild(..., referents)`` / ``vouch``). These tests are the fold's
side; tests/integration/test_store_contract.py and tests/integration/test_referents_sync.py
the server's and the sync's."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from events import Event, new_event_id
from events import bodies as b
from projections.goals import goal_tree
from projections.indicators import indicator_views
from projections.ownership import Referent
from projections.review import review
from projections.state import rebuild, vouch

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _event(clock: int, body: b.Body, actor: str = "alice") -> Event:
    moment = datetime(2026, 2, 1, tzinfo=UTC)
    return Event(new_event_id(), actor, "laptop", clock, moment, moment, body)  # type: ignore[arg-type]


def _referent(event: Event) -> dict[str, Referent]:
    """What the server sends of an event the receiver may not see."""
    return {event.id: Referent(event.actor, event.type)}


def _tree(state: object, viewer: str = "bob") -> bytes:
    return msgspec.json.encode(goal_tree(state, "alice", NOW, viewer=viewer))  # type: ignore[arg-type]


def _shared() -> Event:
    return _event(
        3,
        b.ObjectiveCreated(title="Shared", cycle="2026", visibility="partners", partners=("bob",)),
    )


def test_a_milestone_moved_to_a_shared_objective_shows_on_the_partners_device() -> None:
    private = _event(1, b.ObjectiveCreated(title="Private", cycle="2026"))
    milestone = _event(2, b.MilestonePlanned(title="Moved", objective=private.id))
    shared = _shared()
    moved = _event(4, b.MilestoneRelinked(milestone=milestone.id, objective=shared.id))
    server = rebuild([private, milestone, shared, moved])
    received = [shared, milestone, moved]  # what bob may receive
    device = rebuild(received, _referent(private))
    want = _tree(server)
    assert b"Moved" in want
    assert _tree(device) == want
    # the same views: the review (which folds the owner's events again) too
    start, end = datetime(2026, 1, 1).date(), datetime(2026, 12, 31).date()
    assert msgspec.json.encode(
        review(device, "alice", start, end, NOW, viewer="bob")
    ) == msgspec.json.encode(review(server, "alice", start, end, NOW, viewer="bob"))
    # without the referent the milestone waits forever: the bug
    assert _tree(rebuild(received)) != want
    # a referent is never shown: it only lets the rule decide
    assert b"Private" not in _tree(device)
    assert private.id not in device.events
    # vouched for after the events arrived: the same state as with it from the start
    late = rebuild(received)
    vouch(late, _referent(private))
    assert _tree(late) == want
    assert set(late.events) == set(device.events)


def test_a_milestone_planned_under_a_private_key_result_and_moved_twice() -> None:
    private = _event(1, b.ObjectiveCreated(title="Private", cycle="2026"))
    key_result = _event(2, b.KeyResultAdded(objective=private.id, title="KR"))
    other = _event(3, b.ObjectiveCreated(title="Other private", cycle="2026"))
    milestone = _event(4, b.MilestonePlanned(title="Moved twice", key_result=key_result.id))
    first = _event(5, b.MilestoneRelinked(milestone=milestone.id, objective=other.id))
    shared = _shared()
    second = _event(6, b.MilestoneRelinked(milestone=milestone.id, objective=shared.id))
    server = rebuild([private, key_result, other, milestone, first, shared, second])
    received = [shared, milestone, first, second]
    referents = {**_referent(key_result), **_referent(other)}
    device = rebuild(received, referents)
    assert b"Moved twice" in _tree(server)
    assert _tree(device) == _tree(server)
    assert not device.pending


def test_a_referent_of_someone_elses_event_still_refuses() -> None:
    """Referents decide like the events they stand for: a milestone naming bob's objective
    is refused whether the objective is here or vouched for."""
    bobs = _event(1, b.ObjectiveCreated(title="Bob's", cycle="2026"), actor="bob")
    milestone = _event(2, b.MilestonePlanned(title="Hijack", objective=bobs.id))
    here = rebuild([bobs, milestone])
    vouched = rebuild([milestone], _referent(bobs))
    assert milestone.id in here.refused
    assert milestone.id in vouched.refused


def test_an_indicator_under_an_objective_the_device_lacks() -> None:
    """The indicator variant at the fold: an indicator (and its observations) naming an
    objective the device holds only as a referent is accepted, and the objective is not
    shown. (The server sends an indicator only to who may see its objective, its root, so
    today this reaches a device only through a referent, never through a lost objective;
    the fold handles it the same way whatever the reference.)"""
    objective = _event(1, b.ObjectiveCreated(title="Hidden", cycle="2026"))
    indicator = _event(
        2,
        b.IndicatorDefined(title="Habit", stages=("off", "on"), objective=objective.id),
    )
    observation = _event(3, b.ObservationRecorded(text="on track", indicator=indicator.id, stage=1))
    received = [indicator, observation]
    assert indicator.id in rebuild(received).pending
    device = rebuild(received, _referent(objective))
    assert {indicator.id, observation.id} <= set(device.events)
    assert objective.id not in device.events
    owner = msgspec.json.encode(indicator_views(device, "alice"))
    assert owner == msgspec.json.encode(indicator_views(rebuild([objective, *received]), "alice"))
