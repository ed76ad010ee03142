"""Health: what the facts say about a goal, whatever its owner last said."""

from __future__ import annotations

from datetime import date

from events import bodies as b
from projections.goals import goal_tree
from projections.health_status import Signal, health, milestone_health, tree_health
from projections.state import rebuild
from tests.builders import History, at


def test_overdue_milestone_is_off_track_even_when_said_on_track() -> None:
    h = History()
    milestone = h.milestone(due_on=date(2026, 1, 20))
    h.checkin(milestone, percent=0, confidence="on-track")
    tree = goal_tree(rebuild(h.events), "alice", at("2026-02-01"))
    [view] = tree.standalone_milestones
    found = milestone_health(view, date(2026, 2, 1))
    assert found.level == "off-track"
    assert "overdue since 2026-01-21 (12 days)" in found.reason
    assert view.confidence == "on-track"


def test_behind_pace_then_far_behind() -> None:
    h = History()
    milestone = h.milestone(due_on=date(2026, 3, 1))
    h.checkin(milestone, percent=30, confidence="on-track", when="2026-01-30")
    state = rebuild(h.events)
    view = goal_tree(state, "alice", at("2026-02-01")).standalone_milestones[0]
    assert health(view, date(2026, 2, 1)).level == "on-track"  # 30% done, 48% expected
    h.checkin(milestone, percent=30, confidence="on-track", when="2026-02-24")
    state = rebuild(h.events)
    view = goal_tree(state, "alice", at("2026-02-25")).standalone_milestones[0]
    found = health(view, date(2026, 2, 25))
    assert found.level == "off-track" and "behind pace: 30% done" in found.reason


def test_ended_cycle_says_so_and_completion_is_done() -> None:
    h = History()
    objective = h.objective(cycle="2026-Q1")
    kr = h.key_result(objective, start=0, target=100)
    h.checkin(kr, value=14, confidence="on-track")
    done = h.milestone(key_result=kr)
    h.make(b.MilestoneCompleted(milestone=done))
    tree = goal_tree(rebuild(h.events), "alice", at("2026-04-02"))
    healths = tree_health(tree.objectives, tree.standalone_milestones, date(2026, 4, 2))
    assert healths[objective].level == "off-track"
    assert healths[objective].reason == "the cycle ended on 2026-03-31 at 14%"
    assert healths[kr].reason == "the cycle ended on 2026-03-31 at 14%"
    assert healths[done].level == "done"


def test_drift_signals_raise_the_level() -> None:
    h = History()
    milestone = h.milestone()
    view = goal_tree(rebuild(h.events), "alice", at("2026-01-06")).standalone_milestones[0]
    assert health(view, date(2026, 1, 6)).level == "on-track"
    alert = Signal(kind="stale", subject=milestone, severity="alert", explanation="silent")
    found = health(view, date(2026, 1, 6), signals=[alert])
    assert (found.level, found.reason) == ("off-track", "silent")


def test_a_key_result_added_mid_cycle_is_not_stale_from_the_cycle_start() -> None:
    h = History(start="2026-03-01")
    objective = h.objective(cycle="2026-Q1")
    kr = h.key_result(objective, kind="stay-above", start=None, target=5)  # no pace
    tree = goal_tree(rebuild(h.events), "alice", at("2026-03-03"))
    today = date(2026, 3, 3)
    stale = tree_health(tree.objectives, [], today)
    assert stale[kr].level == "off-track" and "no check-in since 2026-01-01" in stale[kr].reason
    fresh = tree_health(tree.objectives, [], today, created={kr: date(2026, 3, 1)})
    assert fresh[kr].level == "on-track"
