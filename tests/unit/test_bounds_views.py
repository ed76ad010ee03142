"""Every view is total over the range the codec accepts, and its calendar maths is cheap.

Histories are drawn with ``extreme=True``: now and then a date, a cycle, a pause, a
number, an instant or a clock stamp comes from anywhere in the accepted range, as a
hostile or broken client could send them; the server's clock is anywhere in it too.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import force_setattr

from events import bodies as b
from events.bodies import MAX_DATE, MIN_DATE
from events.envelope import Event
from milepost_testkit.strategies import histories
from projections.drift import drift_signals
from projections.goals import goal_tree
from projections.review import review, review_markdown
from projections.state import ProjectionState, rebuild
from projections.team import team_board, team_drift, team_feed
from projections.timeline import after_active_days, expected_percent, paused_days
from tests.builders import History, at

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

server_clocks = st.one_of(
    st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(2199, 12, 31, 23, 59, 59),
        timezones=st.just(UTC),
    ),
    st.sampled_from(
        [
            datetime(1970, 1, 1, tzinfo=UTC),
            datetime(2026, 6, 30, 12, tzinfo=UTC),
            datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        ]
    ),
)


def people_and_teams(history: list[Event]) -> tuple[list[str], list[str]]:
    people = {e.actor for e in history if e.actor != "admin"}
    teams = set()
    for event in history:
        if isinstance(event.body, b.TeamMemberJoined | b.TeamMemberLeft):
            people.add(event.body.person)
            teams.add(event.body.team)
    return sorted(people), sorted(teams)


def every_view(state: ProjectionState, history: list[Event], now: datetime) -> int:
    """Compute every view every person may ask for; the number of bytes they encode to."""
    encode = msgspec.json.encode
    people, teams = people_and_teams(history)
    year = now.year
    produced: list[Any] = []
    for viewer in people:
        failures: list[tuple[str, str]] = []
        produced.append(drift_signals(state, viewer, now, failures=failures))
        assert failures == []  # no rule failed on any item
        for person in people:
            for cycle in ("current", "all"):
                tree = goal_tree(state, person, now, viewer=viewer, cycle=cycle)
                assert tree.unavailable == []  # no item's view failed
                produced.append(tree)
            shown = review(state, person, date(year, 1, 1), date(year, 12, 31), now, viewer)
            produced.append(shown)
            produced.append(review_markdown(shown))
        for team in teams:
            produced.append(team_board(state, team, viewer, now))
            produced.append(team_drift(state, team, viewer, now))
            produced.append(team_feed(state, team, viewer, limit=50))
    return sum(len(encode(item)) for item in produced)


@SETTINGS
@given(history=histories(max_people=3, max_events=50, extreme=True), now=server_clocks)
def test_no_view_raises_on_extreme_in_range_histories(history: list[Event], now: datetime) -> None:
    assert every_view(rebuild(history), history, now) > 0


# --- the attacks of issue 10, at the ends of the range ------------------------------------


def hostile_history(*, due: date, pause: tuple[date, date], occurred: datetime) -> list[Event]:
    """alice's team-visible goals with the most extreme dates the codec now accepts."""
    h = History(start="2026-01-05")
    h.join("t", "alice")
    h.join("t", "bob")
    objective = h.objective(visibility="team", cycle=f"{due.year}")
    milestone = h.milestone(objective=objective, due_on=due)
    h.milestone(objective=objective, due_on=MIN_DATE, when=occurred, recorded="2026-01-06")
    h.checkin(milestone, percent=10, when=occurred, recorded="2026-01-07")
    h.make(b.PauseDeclared(starts_on=pause[0], ends_on=pause[1]), recorded="2026-01-08")
    return h.events


def test_the_reported_attacks_at_the_ends_of_the_range_leave_every_view_working() -> None:
    for now in (at("2026-03-01"), at("2199-12-31", 23), at("1970-01-01", 0)):
        for history in (
            hostile_history(
                due=MAX_DATE,
                pause=(date(2026, 1, 10), MAX_DATE),
                occurred=datetime.fromisoformat("2199-12-31T23:59:59-14:00"),
            ),
            hostile_history(
                due=MIN_DATE,
                pause=(MIN_DATE, MAX_DATE),
                occurred=datetime.fromisoformat("1970-01-01T00:00:00+14:00"),
            ),
        ):
            assert every_view(rebuild(history), history, now) > 0


def test_a_pause_over_the_whole_range_costs_its_intervals_not_its_days() -> None:
    # An old milestone plus a two-century pause: drift and the review took seconds
    # when pace and staleness walked the calendar day by day.
    h = History(start="2026-01-05")
    h.join("t", "alice")
    h.join("t", "bob")
    objective = h.objective(visibility="team", cycle="1970")
    h.milestone(objective=objective, due_on="1970-01-05", when="1970-01-01", recorded="2026-01-06")
    h.make(b.PauseDeclared(starts_on=date(1970, 1, 2), ends_on=date(2198, 1, 1)))
    state = rebuild(h.events)
    now = at("2199-12-31", 12)
    began = time.perf_counter()
    for _ in range(5):
        drift_signals(state, "alice", now)
    drift_seconds = (time.perf_counter() - began) / 5
    began = time.perf_counter()
    review(state, "alice", date(2199, 1, 1), date(2199, 12, 31), now, "bob")
    review_seconds = time.perf_counter() - began
    # Day by day this was ~0.1 s per drift and ~1 s per review; per interval it is
    # microseconds. The bound leaves room for a loaded machine.
    assert drift_seconds < 0.02
    assert review_seconds < 0.2


def test_after_active_days_skips_whole_pauses() -> None:
    pauses = [(date(2026, 1, 3), date(2026, 1, 4)), (date(2026, 1, 6), date(2199, 12, 30))]
    start = date(2026, 1, 1)
    assert after_active_days(start, 0, pauses) == start
    assert after_active_days(start, 2, pauses) == date(2026, 1, 3)  # 1st and 2nd are active
    assert after_active_days(start, 3, pauses) == date(2026, 1, 6)  # the 5th is the 3rd
    assert after_active_days(start, 4, pauses) == date(2199, 12, 31) + timedelta(days=1)
    assert after_active_days(start, 4, list(reversed(pauses))) == date(2200, 1, 1)
    full = [(MIN_DATE, MAX_DATE)]
    assert after_active_days(MIN_DATE, 10**5, full) == MAX_DATE + timedelta(days=10**5 + 1)
    assert (
        paused_days(MIN_DATE, MAX_DATE + timedelta(days=1), full) == (MAX_DATE - MIN_DATE).days + 1
    )
    assert expected_percent(MIN_DATE, MAX_DATE, MAX_DATE, full) == 0.0
    assert expected_percent(MIN_DATE, MAX_DATE, MAX_DATE + timedelta(days=1), []) == 100.0


def test_one_item_whose_view_fails_degrades_that_item_not_the_tree() -> None:
    # An event this codec would refuse (due 9999-12-31) held in a state anyway, as a
    # store written by an older version could: its milestone is listed as unavailable
    # with the reason; every other item and the board still show.
    h = History(start="2026-01-05")
    h.join("t", "alice")
    h.join("t", "bob")
    objective = h.objective(visibility="team", cycle="2026-Q1")
    h.milestone(title="Fine", objective=objective, due_on="2026-03-01")
    broken_objective = h.objective(title="Broken", visibility="team", cycle="2026-Q1")
    broken = h.milestone(title="Forever", objective=broken_objective, due_on="2026-03-01")
    standalone = h.milestone(title="Alone", visibility="team", due_on="2026-03-01")
    state = rebuild(h.events)
    for item in (broken, standalone):
        force_setattr(state.events[item].body, "due_on", date(9999, 12, 31))
        force_setattr(state.milestones[item].due_on, "value", date(9999, 12, 31))
    now = at("2026-02-01")
    tree = goal_tree(state, "alice", now, viewer="bob")
    assert [o.title for o in tree.objectives] == ["Show people how Roads works"]
    assert {(u.id, u.title) for u in tree.unavailable} == {
        (broken_objective, "Broken"),
        (standalone, "Alone"),
    }
    assert all(u.reason.startswith("OverflowError") for u in tree.unavailable)
    (alice, bob) = team_board(state, "t", "bob", now).members
    assert alice.unavailable == tree.unavailable
    assert [o.title for o in alice.objectives] == ["Show people how Roads works"]
    assert b'"unavailable"' not in msgspec.json.encode(bob)  # omitted when empty


def test_one_item_whose_drift_rule_fails_drops_only_that_items_signals() -> None:
    h = History(start="2026-01-05")
    h.join("t", "alice")
    h.join("t", "bob")
    objective = h.objective(visibility="team", cycle="2026-Q1")
    late = h.milestone(title="Late", objective=objective, due_on="2026-01-20")
    broken = h.milestone(title="Forever", objective=objective, due_on="2026-01-20")
    state = rebuild(h.events)
    now = at("2026-02-10")
    force_setattr(state.events[broken].body, "due_on", date(9999, 12, 31))
    force_setattr(state.milestones[broken].due_on, "value", date(9999, 12, 31))
    failures: list[tuple[str, str]] = []
    after = {(s.kind, s.subject) for s in drift_signals(state, "alice", now, failures=failures)}
    assert ("overdue", late) in after
    assert not any(subject == broken for _, subject in after)
    # the milestone's own rules failed, and so did its objective's (its view holds it)
    assert sorted(item for item, _ in failures) == sorted([objective, broken])
    assert all(reason.startswith("OverflowError") for _, reason in failures)
    shown = team_drift(state, "t", "bob", now)  # the team's list still answers
    assert any(s.subject == late for s in shown)
