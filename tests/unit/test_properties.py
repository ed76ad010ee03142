"""Properties over random histories of several people, devices and teams.

* any permutation of the same events yields identical views (replicas converge);
* folding one at a time (reading views in between) equals a rebuild, and so do the
  views of one state read after each batch (its sub-views kept across batches);
* a private item never appears in another viewer's views, and a partners item
  only for the named partners — checked against an independent model of the
  sharing rules written here, not the projection's own code;
* every valid event round-trips through the codec; arbitrary bytes raise
  nothing but ``CodecError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import events
from events import bodies as b
from events.codec import CodecError
from events.envelope import Event
from milepost_testkit.model import Model, accepted_events, people_and_teams
from milepost_testkit.model import views_for as every_view
from milepost_testkit.strategies import events_strategy, histories
from projections.state import ProjectionState, apply, rebuild

NOW = datetime(2026, 6, 30, 12, tzinfo=UTC)
PERIOD = (date(2026, 1, 1), date(2026, 12, 31))
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def views_for(
    state: ProjectionState, viewer: str, people: list[str], teams: list[str]
) -> dict[str, bytes]:
    """Every view ``viewer`` can ask for, encoded, keyed by name."""
    return every_view(state, viewer, people, teams, NOW, PERIOD)


def all_views(state: ProjectionState, history: list[Event]) -> dict[str, dict[str, bytes]]:
    people, teams = people_and_teams(history)
    return {viewer: views_for(state, viewer, people, teams) for viewer in people}


@SETTINGS
@given(history=histories(), data=st.data())
def test_any_permutation_yields_identical_views(history: list[Event], data: st.DataObject) -> None:
    expected = all_views(rebuild(history), history)
    shuffled = data.draw(st.permutations(history))
    assert all_views(rebuild(shuffled), history) == expected


@SETTINGS
@given(history=histories())
def test_folding_one_by_one_equals_rebuilding(history: list[Event]) -> None:
    people, teams = people_and_teams(history)
    state = ProjectionState()
    for index, event in enumerate(history):
        apply(state, event)
        if index % 7 == 0 and people:  # reading views must not disturb the fold
            views_for(state, people[0], people, teams)
    for event in history[: len(history) // 3]:
        assert apply(state, event) is False  # redelivery is a no-op
    assert all_views(state, history) == all_views(rebuild(history), history)


@SETTINGS
@given(history=histories(), data=st.data())
def test_views_kept_across_folds_equal_a_rebuild_after_every_batch(
    history: list[Event], data: st.DataObject
) -> None:
    # Sub-views are kept across events of other people (``ProjectionState.memoized``):
    # after each batch every view of the long-lived state must still be a fresh fold's.
    cuts = data.draw(st.lists(st.integers(0, len(history)), max_size=5))
    for state, done in folded_in_batches(history, cuts):
        assert all_views(state, history) == all_views(rebuild(history[:done]), history)


def folded_in_batches(
    history: list[Event], cuts: list[int]
) -> Iterator[tuple[ProjectionState, int]]:
    """One long-lived state, folded up to each cut in order and then to the end: yields it
    after each batch with how many events of ``history`` it has folded."""
    state = ProjectionState()
    done = 0
    for cut in [*sorted(cuts), len(history)]:
        for event in history[done:cut]:
            apply(state, event)
        done = max(done, cut)
        yield state, done


SHAREABLE = (
    b.ObjectiveCreated,
    b.KeyResultAdded,
    b.MilestonePlanned,
    b.TaskAdded,
    b.CheckInRecorded,
    b.IndicatorDefined,
    b.ObservationRecorded,
)


@SETTINGS
@given(history=histories())
def test_nobody_sees_what_sharing_does_not_allow(history: list[Event]) -> None:
    model = Model(history)
    state = rebuild(history)
    views = all_views(state, history)
    items = [e for e in history if isinstance(e.body, SHAREABLE)]
    assert set(state.events) == {e.id for e in accepted_events(history)}
    for viewer, named in views.items():
        blob = b"\n".join(named.values())
        for event in items:
            if event.id.encode() in blob:
                assert event.id in model.by_id and model.may_see(viewer, event.id), (
                    f"{viewer} sees {event.body.__struct_config__.tag} {event.id} "
                    f"owned by {event.actor}"
                )


@settings(max_examples=300, deadline=None)
@given(event=events_strategy())
def test_every_valid_event_round_trips(event: Event) -> None:
    data = events.encode(event)
    again = events.decode(data)
    assert again == event
    assert events.encode(again) == data


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_codec_errors(data: bytes) -> None:
    try:
        decoded = events.decode(data)
    except CodecError as error:
        assert error.field and error.reason  # named, never empty
    else:
        assert isinstance(decoded, events.Event | events.OpaqueEvent)


@settings(max_examples=300, deadline=None)
@given(event=events_strategy(), data=st.data())
def test_mutated_events_raise_only_codec_errors(event: Event, data: st.DataObject) -> None:
    encoded = bytearray(events.encode(event))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
    try:
        decoded = events.decode(bytes(encoded))
    except CodecError:
        return
    assert isinstance(decoded, events.Event | events.OpaqueEvent)
