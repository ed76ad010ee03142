"""One copy of the team changes in a process (``projections.directory``): a state that
shares the directory's objects has the same views, and goes on folding on its own."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from hypothesis import given
from hypothesis import strategies as st

import events
from events import bodies as b
from events.envelope import Event
from milepost_testkit.strategies import histories
from projections.compact import compact
from projections.directory import share_team_changes
from projections.state import ProjectionState, apply, rebuild
from tests.unit.test_properties import SETTINGS, all_views

_TEAM_CHANGES = (b.TeamMemberJoined, b.TeamMemberLeft)
_LATE = datetime(2026, 12, 31, tzinfo=UTC)


def _team_changes(history: list[Event]) -> list[Event]:
    """The team changes of ``history``, decoded again: equal objects, not the same ones."""
    return [
        events.decode_event(events.encode(event))
        for event in history
        if isinstance(event.body, _TEAM_CHANGES)
    ]


def _encoded(state: ProjectionState) -> list[bytes]:
    return sorted(events.encode(event) for event in state.all_events())


@SETTINGS
@given(history=histories(), compacted=st.booleans(), data=st.data())
def test_a_state_sharing_the_directory_has_the_same_views_and_folds_on_alone(
    history: list[Event], compacted: bool, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(history)), label="cut")
    directory = rebuild(_team_changes(history))  # the directory may be further on
    state = rebuild(history[:cut])
    if compacted:
        compact(state)
    expected = rebuild(history[:cut])
    shared = share_team_changes(state, directory)

    assert all_views(state, history) == all_views(expected, history)
    assert _encoded(state) == _encoded(expected)
    changes = [e for e in history[:cut] if isinstance(e.body, _TEAM_CHANGES)]
    assert shared == len({e.id for e in changes if e.id in state.events})
    for event in changes:
        if event.id in state.events:
            assert dict.__getitem__(state.events, event.id) is directory.events[event.id]
    for key, register in state.memberships.items():
        if register.writer is not None:
            assert register.writer is dict.__getitem__(state.events, register.writer.id)
        if key in directory.memberships:
            assert register is not directory.memberships[key]  # written by each fold
    for person, teams in state.teams_by_person.items():
        if directory.teams_by_person.get(person) == teams:
            assert teams is directory.teams_by_person[person]

    # Folding on writes the state's own registers and sets, never the directory's.
    before = {person: directory.teams_of(person) for person in directory.teams_by_person}
    for event in history[cut:]:
        apply(state, event)
        apply(expected, event)
    person = history[0].actor if history else "alice"
    team = "team-zz"
    joined = Event(
        id="01900000-0000-7000-8000-00000000ffff",
        actor="admin",
        device="server",
        clock=10**15,
        recorded_at=_LATE,
        occurred_at=_LATE,
        body=b.TeamMemberJoined(team=team, person=person),
    )
    apply(state, joined)
    apply(expected, msgspec.structs.replace(joined))
    assert team in state.teams_of(person)
    assert {p: directory.teams_of(p) for p in directory.teams_by_person} == before
    assert all_views(state, history) == all_views(expected, history)
