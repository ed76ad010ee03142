"""Compaction (``projections.compact``): bulk events held as rows change no view.

Compacted states are compared with a rebuild over random histories, compacted between
batches (so later compactions merge into earlier tables) and in shuffled orders (so
late arrivals land in the middle of row lists); the rows' events are compared with the
folded ones byte for byte, as the codec writes them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import events
from events import bodies as b
from events.envelope import Event
from milepost_testkit.strategies import histories
from projections import compact as compact_module
from projections.compact import (
    HeldEvents,
    RowList,
    RowTable,
    Stopped,
    compact,
    compactable,
    held_as_rows,
    prepare,
)
from projections.state import ProjectionState, apply, rebuild
from tests.unit.test_properties import SETTINGS, all_views, folded_in_batches

ALICE_GOAL = "0190a000-0000-7000-8000-000000000001"


def _sorted_events(state: ProjectionState) -> list[bytes]:
    return sorted(events.encode(event) for event in state.all_events())


@SETTINGS
@given(history=histories(), data=st.data())
def test_compacted_states_have_a_rebuilds_views_after_every_batch(
    history: list[Event], data: st.DataObject
) -> None:
    arrival = data.draw(st.sampled_from(["as made", "shuffled"]))
    if arrival == "shuffled":
        history = data.draw(st.permutations(history))
    cuts = data.draw(st.lists(st.integers(0, len(history)), max_size=4))
    for state, done in folded_in_batches(history, cuts):
        compact(state)
        fresh = rebuild(history[:done])
        assert all_views(state, history) == all_views(fresh, history)
        assert set(state.events) == set(fresh.events)
        assert _sorted_events(state) == _sorted_events(fresh)
    for event in history:
        assert apply(state, event) is False  # a redelivery is found among the rows too
    expected_rows = sum(1 for event in state.events.values() if compactable(event))
    assert held_as_rows(state) == expected_rows


def _checkin(
    number: int,
    at: datetime,
    *,
    note: str = "",
    occurred: datetime | None = None,
    body: b.CheckInRecorded | None = None,
) -> Event:
    return _alices(
        number,
        at,
        body or b.CheckInRecorded(subject=ALICE_GOAL, confidence="on-track", percent=10, note=note),
        occurred=at - timedelta(hours=number % 3) if occurred is None else occurred,
    )


def _alices(number: int, at: datetime, body: b.KnownBody, *, occurred: datetime) -> Event:
    """Alice's event number ``number`` (its id and clock follow from it)."""
    return Event(
        id=f"0190a000-0000-7000-8000-{number:012x}",
        actor="alice",
        device="laptop-1",
        clock=1_000 + number,
        recorded_at=at,
        occurred_at=occurred,
        body=body,
    )


def _goal() -> Event:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    return Event(
        id=ALICE_GOAL,
        actor="alice",
        device="laptop-1",
        clock=1,
        recorded_at=at,
        occurred_at=at,
        body=b.MilestonePlanned(title="Ship", due_on=at.date() + timedelta(days=30)),
    )


def test_a_row_makes_again_the_event_folded_byte_for_byte() -> None:
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    at = datetime(2026, 3, 2, 9, 15, 7, 123_456, tzinfo=UTC)
    checkins = [
        _checkin(n, at.astimezone(zones[n % 3]) + timedelta(minutes=n), note=f"n{n}")
        for n in range(2, 40)
    ]
    # The same instant as recorded, written in another offset.
    checkins += [_checkin(n, at, occurred=at.astimezone(zones[1])) for n in range(40, 44)]
    # Every kind of body the columns hold: numbers as ints or floats (they encode apart),
    # either or none, each confidence, a note or none.
    bodies = [
        b.CheckInRecorded(subject=ALICE_GOAL, confidence="at-risk", value=5),
        b.CheckInRecorded(subject=ALICE_GOAL, confidence="off-track", value=5.0, note="hm"),
        b.CheckInRecorded(subject=ALICE_GOAL, confidence="on-track", value=-1e15),
        b.CheckInRecorded(subject=ALICE_GOAL, confidence="on-track", value=0.1),
        b.CheckInRecorded(subject=ALICE_GOAL, confidence="at-risk", percent=99.5),
        b.CheckInRecorded(subject=ALICE_GOAL, confidence="at-risk", percent=100),
        b.CheckInRecorded(subject=ALICE_GOAL, confidence="on-track"),
    ]
    checkins += [_checkin(50 + n, at, body=body) for n, body in enumerate(bodies)]
    state = rebuild([_goal(), *checkins])
    assert compact(state) == len(checkins)
    assert isinstance(state.events, HeldEvents)
    assert isinstance(state.checkins_by_subject[ALICE_GOAL], RowList)
    for checkin in checkins:
        again = state.events[checkin.id]
        assert again == checkin
        assert events.encode(again) == events.encode(checkin)
        assert again.recorded_at.utcoffset() == checkin.recorded_at.utcoffset()
    assert list(state.checkins_by_subject[ALICE_GOAL]) == sorted(
        checkins, key=lambda e: (e.occurred_at, e.clock, e.id)
    )
    assert compact(state) == 0  # nothing new to move


def test_an_observation_row_makes_its_body_again_byte_for_byte() -> None:
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    indicator = _alices(
        2, at, b.IndicatorDefined(title="Empathy", stages=("a", "b", "c")), occurred=at
    )
    bodies = [
        b.ObservationRecorded(text="Listened first.", indicator=indicator.id),
        b.ObservationRecorded(text="Again", polarity="negative", indicator=indicator.id, stage=2),
        b.ObservationRecorded(text='"quoted" ✓', indicator=indicator.id, impact="The team saw it."),
        b.ObservationRecorded(text="", indicator=indicator.id, stage=0, impact="[1, 2]"),
        # Shared otherwise than its indicator (the defaults): kept whole.
        b.ObservationRecorded(text="Shared", indicator=indicator.id, visibility="team"),
    ]
    observed = [_alices(10 + n, at, body, occurred=at) for n, body in enumerate(bodies)]
    state = rebuild([indicator, *observed])
    assert compact(state) == len(observed)
    table = state.events.rows  # type: ignore[attr-defined]
    assert len(table.bodies) == 1  # the shared one, whole
    for event in observed:
        again = state.events[event.id]
        assert again == event
        assert events.encode(again) == events.encode(event)
    assert list(state.indicators[indicator.id].observations) == observed


def test_lookups_by_id_match_only_the_id_itself() -> None:
    checkin = _checkin(2, datetime(2026, 3, 2, tzinfo=UTC))
    state = rebuild([_goal(), checkin])
    compact(state)
    assert checkin.id in state.events
    assert checkin.id.upper() not in state.events  # the same halves, not the same id
    assert state.events.get(checkin.id.upper()) is None
    assert "not-an-id" not in state.events
    assert state.events.get("0190a000-0000-7000-8000-0000000000ff") is None
    assert len(state.events) == 2
    assert sorted(state.events) == sorted([ALICE_GOAL, checkin.id])


def test_instants_the_table_cannot_name_stay_objects() -> None:
    # 300 distinct offsets: a table names 255; and a named zone is not a fixed offset.
    base = datetime(2026, 3, 2, 12)
    checkins = [
        _checkin(n, base.replace(tzinfo=timezone(timedelta(minutes=n)))) for n in range(2, 302)
    ]
    named = _checkin(400, base.replace(tzinfo=ZoneInfo("Europe/Paris")))
    state = rebuild([_goal(), *checkins, named])
    expected = rebuild([_goal(), *checkins, named])
    moved = compact(state)
    assert 0 < moved < len(checkins)
    assert named.id in state.events.objects()  # type: ignore[attr-defined]
    assert sorted(events.encode(e) for e in state.all_events()) == sorted(
        events.encode(e) for e in expected.all_events()
    )
    assert list(state.checkins_by_subject[ALICE_GOAL]) == list(
        expected.checkins_by_subject[ALICE_GOAL]
    )


def test_handles_beyond_what_two_bytes_name_stay_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rows name actors and devices by two bytes: a table of four handles here, as if
    # 65,535 were already named. Alice and three devices fill it; the fourth device's
    # event stays an object, and a later event of named handles is a row again.
    monkeypatch.setattr(compact_module, "_MAX_HANDLES", 4)
    at = datetime(2026, 3, 2, tzinfo=UTC)
    checkins = [
        msgspec.structs.replace(_checkin(n, at + timedelta(hours=n)), device=f"phone-{n % 5}")
        for n in range(2, 9)
    ]
    history = [_goal(), *checkins]
    state = rebuild(history)
    expected = rebuild(history)
    compact(state)
    table = state.events.rows  # type: ignore[attr-defined]
    assert len(table.handles) == 4
    objects = state.events.objects()  # type: ignore[attr-defined]
    beyond = {c.id for c in checkins if c.device not in table.handles}
    assert beyond and all(event_id in objects for event_id in beyond)
    assert len(table) == len(checkins) - len(beyond)
    assert _sorted_events(state) == _sorted_events(expected)
    assert all_views(state, history) == all_views(expected, history)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda t: t.bodies.update({0: t.bodies[1]}), "bodies held whole"),  # a row of columns
        (lambda t: t.bodies.pop(1), "bodies held whole"),  # a row held whole without one
        (lambda t: t.bodies.update({9: t.bodies.pop(1)}), "bodies held whole"),  # beyond
        (lambda t: t.handles.extend(["x"] * 4), "two bytes"),
        (lambda t: t.handles.pop(), "beyond its table"),
        (lambda t: t.flags.__setitem__(0, 255), "kind this code reads"),
    ],
)
def test_columns_that_do_not_hold_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, damage: Callable[[RowTable], object], reason: str
) -> None:
    monkeypatch.setattr(compact_module, "_MAX_HANDLES", 5)
    at = datetime(2026, 3, 2, tzinfo=UTC)
    whole = _checkin(3, at, body=b.CheckInRecorded(subject=ALICE_GOAL, confidence="on-track"))
    state = rebuild([_goal(), _checkin(2, at), whole])
    whole_body = b.CheckInRecorded(subject=ALICE_GOAL, confidence="on-track", value=2**60)
    held = rebuild([_goal(), _checkin(2, at), msgspec.structs.replace(whole, body=whole_body)])
    compact(state)
    compact(held)
    table = held.events.rows  # type: ignore[attr-defined]
    assert table.bodies == {1: whole_body}  # the row whose number columns cannot hold
    columns = table.columns()
    tables = (table.handles, table.words, table.confidences, table.zone_offsets())
    again = RowTable.from_columns(columns, sys.byteorder, table.texts, dict(table.bodies), tables)
    assert list(again.rows()) == list(table.rows())
    damage(table)
    tables = (table.handles, table.words, table.confidences, table.zone_offsets())
    with pytest.raises(ValueError, match=reason):
        RowTable.from_columns(table.columns(), sys.byteorder, table.texts, table.bodies, tables)
    assert state.events  # the other state is untouched


def test_events_folded_after_a_compaction_join_the_next_one() -> None:
    early = [_checkin(n, datetime(2026, 3, 2, tzinfo=UTC) + timedelta(days=n)) for n in range(2, 6)]
    late = [_checkin(n, datetime(2026, 3, 2, tzinfo=UTC) + timedelta(days=n)) for n in range(6, 9)]
    # One that happened before all the others, folded last, its id less than theirs: it
    # lands at the head of the list and of the table (every row after it renumbered).
    backdated = _checkin(0, datetime(2026, 3, 1, tzinfo=UTC))
    state = rebuild([_goal(), *early])
    assert compact(state) == len(early)
    for event in [*late, backdated]:
        assert apply(state, event)
    assert held_as_rows(state) == len(early)
    expected = rebuild([_goal(), *early, *late, backdated])
    assert list(state.checkins_by_subject[ALICE_GOAL]) == list(
        expected.checkins_by_subject[ALICE_GOAL]
    )
    assert compact(state) == len(late) + 1
    assert held_as_rows(state) == len(early) + len(late) + 1
    assert list(state.checkins_by_subject[ALICE_GOAL]) == list(
        expected.checkins_by_subject[ALICE_GOAL]
    )
    assert list(state.feeds["alice"].events) == list(expected.feeds["alice"].events)


def _task_event(number: int, body: b.TaskAdded | b.TaskCompleted | b.TaskReopened) -> Event:
    at = datetime(2026, 3, 2, tzinfo=UTC) + timedelta(hours=number)
    return _alices(number, at, body, occurred=at)


def test_task_nodes_name_their_rows_and_fold_on_after_a_compaction() -> None:
    task_ids = [f"0190a000-0000-7000-8000-{n:012x}" for n in (2, 3)]
    added = [_task_event(n, b.TaskAdded(milestone=ALICE_GOAL, title=f"Task {n}")) for n in (2, 3)]
    completed = _task_event(4, b.TaskCompleted(task=task_ids[0]))
    history = [_goal(), *added, completed]
    state = rebuild(history)
    assert compact(state) == 3  # both addings and the completion
    first, second = state.tasks[task_ids[0]], state.tasks[task_ids[1]]
    assert isinstance(first.writer, int) and isinstance(second.writer, int)
    assert isinstance(first.added, int) and second.writer == second.added  # never written
    assert first.event == added[0] and first.done_by == completed and first.done
    assert second.done_by == added[1] and not second.done
    assert (second.id, second.title) == (task_ids[1], "Task 3")
    # Folded after: a reopen (an object) wins over the completion (a row); then a late
    # completion with an earlier stamp loses to it, before and after the next compaction.
    reopened = _task_event(6, b.TaskReopened(task=task_ids[0]))
    stale = _task_event(5, b.TaskCompleted(task=task_ids[0]))
    for event in (reopened, stale):
        assert apply(state, event)
    assert first.done_by == reopened and not first.done
    expected = rebuild([*history, reopened, stale])
    assert all_views(state, history) == all_views(expected, history)
    assert compact(state) == 2
    first = state.tasks[task_ids[0]]
    assert isinstance(first.writer, int) and first.done_by == reopened and not first.done
    assert all_views(state, history) == all_views(expected, history)


def test_a_compaction_asked_to_stop_changes_nothing() -> None:
    checkins = [
        _checkin(n, datetime(2026, 3, 2, tzinfo=UTC) + timedelta(hours=n)) for n in range(2, 3000)
    ]
    state = rebuild([_goal(), *checkins])
    asked: list[int] = []

    def stop_at_the_third_ask() -> bool:
        asked.append(1)
        return len(asked) >= 3

    with pytest.raises(Stopped):
        prepare(state, stop_at_the_third_ask)
    assert len(asked) == 3  # asked along the way, not only at the start
    assert type(state.events) is dict and held_as_rows(state) == 0
    assert type(state.checkins_by_subject[ALICE_GOAL]) is list
    assert compact(state) == len(checkins)
