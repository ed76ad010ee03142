"""Goal state: progress rules, conflict rules, corrections, retractions, pauses, as-of."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from events import bodies as b
from events.clock import pack
from projections.goals import goal_tree, milestone_view, objective_view
from projections.state import ProjectionState, apply, as_of, rebuild
from tests.builders import History, at


def fold(history: History) -> ProjectionState:
    return rebuild(history.events)


def test_increase_kr_progress_is_share_of_the_way_from_start_to_target() -> None:
    h = History()
    objective = h.objective()
    kr = h.key_result(objective)
    h.checkin(kr, value=750, when="2026-01-12")
    view = objective_view(fold(h), objective, at("2026-01-13"))
    assert view.key_results[0].progress == 25.0
    assert view.key_results[0].current == 750
    assert view.progress == 25.0
    assert view.last_checkin == date(2026, 1, 12)


def test_decrease_kr_with_target_below_start() -> None:
    h = History()
    objective = h.objective()
    kr = h.key_result(objective, "Cut churn to 4%", kind="decrease", start=10, target=4)
    h.checkin(kr, value=7, when="2026-01-12")
    assert objective_view(fold(h), objective, at("2026-01-13")).key_results[0].progress == 50.0
    h.checkin(kr, value=12, when="2026-01-19")  # worse than start: clamped to 0
    assert objective_view(fold(h), objective, at("2026-01-20")).key_results[0].progress == 0.0
    h.checkin(kr, value=2, when="2026-01-26")  # beyond target: clamped to 100, done
    kr_view = objective_view(fold(h), objective, at("2026-01-27")).key_results[0]
    assert (kr_view.progress, kr_view.status) == (100.0, "done")


@pytest.mark.parametrize(
    ("kind", "value", "met"),
    [
        ("stay-above", 40, True),
        ("stay-above", 39.9, False),
        ("stay-below", 5, True),
        ("stay-below", 5.1, False),
    ],
)
def test_stay_kr_is_met_or_not_at_its_last_checkin(kind: str, value: float, met: bool) -> None:
    h = History()
    objective = h.objective()
    threshold = 40 if kind == "stay-above" else 5
    kr = h.key_result(objective, "Hold the line", kind=kind, start=None, target=threshold)
    h.checkin(kr, value=value, when="2026-01-12")
    view = objective_view(fold(h), objective, at("2026-01-13")).key_results[0]
    assert view.met is met
    assert view.progress == (100.0 if met else 0.0)
    assert view.status == ("on-track" if met else "off-track")


def test_kr_without_numbers_takes_share_of_milestones_completed_dropped_excluded() -> None:
    h = History()
    objective = h.objective()
    kr = h.key_result(objective, "Ship the launch", start=None, target=None)
    done = h.milestone("One", key_result=kr)
    h.milestone("Two", key_result=kr)
    dropped = h.milestone("Three", key_result=kr)
    h.make(b.MilestoneCompleted(milestone=done))
    h.make(b.MilestoneDropped(milestone=dropped))
    view = objective_view(fold(h), objective, at("2026-01-13")).key_results[0]
    assert view.progress == 50.0


def test_milestone_progress_checkin_percent_then_tasks_then_completion() -> None:
    h = History()
    milestone = h.milestone("Create social media profiles", due_on="2026-02-28")
    tasks = [h.make(b.TaskAdded(milestone=milestone, title=t)).id for t in ("LinkedIn", "IG", "X")]
    h.make(b.TaskCompleted(task=tasks[0]))
    assert milestone_view(fold(h), milestone, at("2026-01-06")).progress == pytest.approx(33.33)
    h.checkin(milestone, percent=80)
    assert milestone_view(fold(h), milestone, at("2026-01-06")).progress == 80.0
    h.make(b.MilestoneCompleted(milestone=milestone, did="d", why="w", outcome="o"))
    view = milestone_view(fold(h), milestone, at("2026-01-06"))
    assert (view.progress, view.state, view.answers) == (100.0, "completed", view.answers)
    assert view.answers is not None and view.answers.outcome == "o"


def test_objective_is_weighted_average_and_status_the_worst() -> None:
    h = History()
    objective = h.objective()
    heavy = h.key_result(objective, "Heavy", weight=3)
    light = h.key_result(objective, "Light", weight=1)
    h.checkin(heavy, value=3000, confidence="on-track")
    h.checkin(light, value=0, confidence="at-risk")
    view = objective_view(fold(h), objective, at("2026-01-10"))
    assert view.progress == 75.0
    assert view.status == "at-risk"


def test_completion_stands_until_a_later_reopen_whatever_the_arrival_order() -> None:
    h = History()
    milestone = h.milestone()
    done = h.make(b.MilestoneCompleted(milestone=milestone), clock=pack(2_000, 0))
    reopen = h.make(b.MilestoneReopened(milestone=milestone), clock=pack(3_000, 0))
    again = h.make(b.MilestoneCompleted(milestone=milestone), clock=pack(1_000, 0))  # older
    for order in ([done, reopen, again], [again, reopen, done], [reopen, again, done]):
        state = rebuild([h.events[0], *order])
        assert milestone_view(state, milestone, at("2026-01-06")).state == "open"


def test_drop_stands_until_a_later_restore() -> None:
    h = History()
    milestone = h.milestone()
    h.make(b.MilestoneDropped(milestone=milestone))
    assert milestone_view(fold(h), milestone, at("2026-01-06")).state == "dropped"
    h.make(b.MilestoneRestored(milestone=milestone))
    assert milestone_view(fold(h), milestone, at("2026-01-06")).state == "open"


def test_concurrent_reschedules_resolve_by_clock_then_id() -> None:
    h = History()
    milestone = h.milestone(due_on="2026-02-01")
    same_stamp = h.events[0].clock + 10  # two devices, the same HLC stamp
    first = h.make(
        b.MilestoneRescheduled(milestone=milestone, due_on=date(2026, 3, 1)),
        device="phone",
        clock=same_stamp,
    )
    second = h.make(
        b.MilestoneRescheduled(milestone=milestone, due_on=date(2026, 4, 1)),
        device="laptop",
        clock=same_stamp,
    )
    winner = max([first, second], key=lambda e: e.id)
    expected = winner.body.due_on  # type: ignore[union-attr]
    for order in ([h.events[0], first, second], [second, h.events[0], first]):
        assert milestone_view(rebuild(order), milestone, at("2026-01-06")).due_on == expected


def test_milestone_moved_between_krs() -> None:
    h = History()
    objective = h.objective()
    kr1 = h.key_result(objective, "One", start=None, target=None)
    kr2 = h.key_result(objective, "Two", start=None, target=None)
    milestone = h.milestone(key_result=kr1)
    h.make(b.MilestoneCompleted(milestone=milestone))
    h.make(b.MilestoneRelinked(milestone=milestone, key_result=kr2))
    view = objective_view(fold(h), objective, at("2026-01-10"))
    by_title = {kr.title: kr for kr in view.key_results}
    assert by_title["One"].milestones == []
    assert [m.id for m in by_title["Two"].milestones] == [milestone]
    assert (by_title["One"].progress, by_title["Two"].progress) == (0.0, 100.0)


def test_correction_of_a_checkin_replaces_its_value() -> None:
    h = History()
    objective = h.objective()
    kr = h.key_result(objective)
    checkin = h.checkin(kr, value=300)
    h.make(b.Corrected(target=checkin, changes=b.Changes(value=600, confidence="at-risk")))
    view = objective_view(fold(h), objective, at("2026-01-10")).key_results[0]
    assert (view.current, view.progress, view.confidence) == (600, 20.0, "at-risk")


def test_correction_by_someone_else_is_ignored() -> None:
    h = History()
    objective = h.objective()
    kr = h.key_result(objective)
    checkin = h.checkin(kr, value=300)
    h.make(b.Corrected(target=checkin, changes=b.Changes(value=3000)), actor="mallory")
    assert objective_view(fold(h), objective, at("2026-01-10")).key_results[0].current == 300


def test_correction_that_would_break_a_rule_is_ignored() -> None:
    h = History()
    objective = h.objective()
    kr = h.key_result(objective, start=0, target=10)
    h.make(b.Corrected(target=kr, changes=b.Changes(target=0)))  # target == start
    assert objective_view(fold(h), objective, at("2026-01-10")).key_results[0].target == 10


def test_retracted_checkin_falls_back_to_the_previous_one() -> None:
    h = History()
    objective = h.objective()
    kr = h.key_result(objective)
    h.checkin(kr, value=300, when="2026-01-12")
    wrong = h.checkin(kr, value=3000, when="2026-01-13")
    h.make(b.Retracted(target=wrong, reason="typo"))
    view = objective_view(fold(h), objective, at("2026-01-14")).key_results[0]
    assert (view.current, view.last_checkin) == (300, date(2026, 1, 12))


def test_retracted_objective_disappears_from_the_tree() -> None:
    h = History()
    objective = h.objective()
    h.make(b.Retracted(target=objective))
    assert goal_tree(fold(h), "alice", at("2026-01-10")).objectives == []


def test_pause_is_excluded_from_expected_progress() -> None:
    h = History()
    objective = h.objective(cycle="2026-01")  # 31 days
    plain = objective_view(fold(h), objective, at("2026-01-16")).expected
    h.make(b.PauseDeclared(starts_on=date(2026, 1, 1), ends_on=date(2026, 1, 10)))
    paused = objective_view(fold(h), objective, at("2026-01-16")).expected
    assert plain == pytest.approx(100 * 15 / 31, abs=0.01)
    assert paused == pytest.approx(100 * 5 / 21, abs=0.01)


def test_as_of_a_past_date_shows_what_was_known_then() -> None:
    h = History()
    objective = h.objective()
    kr = h.key_result(objective)
    h.checkin(kr, value=300, when="2026-01-12")
    h.checkin(kr, value=900, when="2026-01-19")
    # logged on the 25th about the 14th: unknown on the 20th
    h.checkin(kr, value=600, when="2026-01-14", recorded="2026-01-25")
    state = fold(h)
    then = as_of(state, at("2026-01-20", 23))
    assert objective_view(then, objective, at("2026-01-20")).key_results[0].current == 900
    earlier = as_of(state, at("2026-01-13"))
    assert objective_view(earlier, objective, at("2026-01-13")).key_results[0].current == 300


def test_late_logged_checkin_does_not_override_a_newer_one() -> None:
    h = History()
    objective = h.objective()
    kr = h.key_result(objective)
    h.checkin(kr, value=900, when="2026-01-19")
    h.checkin(kr, value=600, when="2026-01-14", recorded="2026-01-25")
    assert objective_view(fold(h), objective, at("2026-01-26")).key_results[0].current == 900


def test_children_before_parents_and_duplicates_change_nothing() -> None:
    h = History()
    objective = h.objective()
    kr = h.key_result(objective)
    milestone = h.milestone(key_result=kr, due_on="2026-03-01")
    h.make(b.TaskAdded(milestone=milestone, title="t"))
    h.checkin(kr, value=1500)
    h.checkin(milestone, percent=50)
    expected = goal_tree(rebuild(h.events), "alice", at("2026-02-01"))
    shuffled = list(reversed(h.events))
    state = ProjectionState()
    for event in shuffled + shuffled[:3]:
        apply(state, event)
    assert goal_tree(state, "alice", at("2026-02-01")) == expected
    rng = random.Random(7)
    for _ in range(20):
        rng.shuffle(shuffled)
        assert goal_tree(rebuild(shuffled), "alice", at("2026-02-01")) == expected


def test_apply_reports_duplicates() -> None:
    h = History()
    h.objective()
    state = ProjectionState()
    assert apply(state, h.events[0]) is True
    assert apply(state, h.events[0]) is False


def test_private_objective_hidden_from_teammate_until_shared() -> None:
    h = History()
    h.join("growth", "alice")
    h.join("growth", "bob")
    objective = h.objective()
    assert goal_tree(fold(h), "alice", at("2026-01-10"), viewer="bob").objectives == []
    h.make(b.SharingChanged(subject=objective, visibility="team"))
    assert len(goal_tree(fold(h), "alice", at("2026-01-10"), viewer="bob").objectives) == 1
    assert goal_tree(fold(h), "alice", at("2026-01-10"), viewer="carol").objectives == []


def test_sharing_change_by_someone_else_does_not_count() -> None:
    h = History()
    h.join("growth", "alice")
    h.join("growth", "bob")
    objective = h.objective()
    h.make(b.SharingChanged(subject=objective, visibility="team"), actor="bob")
    assert goal_tree(fold(h), "alice", at("2026-01-10"), viewer="bob").objectives == []


def test_cycle_filter_current_all_and_one() -> None:
    h = History()
    q1 = h.objective("Q1 goal", cycle="2026-Q1")
    q2 = h.objective("Q2 goal", cycle="2026-Q2")
    year = h.objective("Year goal", cycle="2026")
    state = fold(h)

    def ids(cycle: str | None, day: str) -> set[str]:
        return {o.id for o in goal_tree(state, "alice", at(day), cycle=cycle).objectives}

    assert ids("current", "2026-02-10") == {q1, year}
    assert ids("current", "2026-04-01") == {q2, year}
    assert ids("current", "2027-01-01") == set()
    assert ids("all", "2026-02-10") == ids(None, "2026-02-10") == {q1, q2, year}
    assert ids("2026-Q2", "2026-02-10") == {q2}


def test_views_read_after_a_fold_never_come_from_before_it() -> None:
    # Objective and milestone views are memoized until their owner's next event: any
    # new event of theirs must make the next read compute afresh.
    h = History()
    objective = h.objective(visibility="team")
    kr = h.key_result(objective)
    milestone = h.milestone(key_result=kr, due_on=date(2026, 3, 1))
    task = h.make(b.TaskAdded(milestone=milestone, title="Create a LinkedIn profile")).id
    state = fold(h)
    now = at("2026-01-20")
    before = goal_tree(state, "alice", now)
    assert before.objectives[0].key_results[0].milestones[0].tasks[0].done is False
    assert goal_tree(state, "alice", now) == before  # same position: the same view
    apply(state, h.make(b.TaskCompleted(task=task)))
    after = goal_tree(state, "alice", now).objectives[0].key_results[0].milestones[0]
    assert after.tasks[0].done is True
    assert after.progress == 100.0
    # Another day at the same position: expected progress moves on.
    later = goal_tree(state, "alice", at("2026-02-20")).objectives[0].key_results[0]
    assert later.milestones[0].expected != after.expected
    assert goal_tree(state, "alice", now).objectives[0].key_results[0].milestones[0] == after


def test_the_memo_of_sub_views_stays_bounded_over_many_days() -> None:
    # Sub-views outlive other people's events, so a server up for weeks would keep every
    # day's: the memo is cleared when it reaches its bound instead.
    h = History()
    h.milestone(due_on=date(2026, 6, 1))
    state = fold(h)
    first = goal_tree(state, "alice", at("2026-01-02"))
    for day in range(5000):
        goal_tree(state, "alice", at("2026-01-01") + timedelta(days=day))
        assert len(state.memo) <= 4096
    assert goal_tree(state, "alice", at("2026-01-02")) == first


@pytest.mark.parametrize("arrives", ["after", "before"])
def test_only_the_owner_changes_a_milestone_or_its_tasks(arrives: str) -> None:
    """A teammate's reschedule, drop, completion, relink, new task or task completion
    is ignored, whether it reaches a device after the milestone or before it."""
    h = History()
    objective = h.objective(visibility="team", when="2026-01-02")
    kr = h.key_result(objective, when="2026-01-02")
    other_kr = h.key_result(objective, "Another", when="2026-01-02")
    milestone = h.milestone(key_result=kr, due_on=date(2026, 2, 1), when="2026-01-03")
    task = h.make(b.TaskAdded(milestone=milestone, title="Mine"), when="2026-01-03").id
    mine = list(h.events)
    h.make(b.MilestoneRescheduled(milestone=milestone, due_on=date(2026, 9, 1)), actor="bob")
    h.make(b.MilestoneDropped(milestone=milestone), actor="bob")
    h.make(b.MilestoneCompleted(milestone=milestone, did="x", why="y", outcome="z"), actor="bob")
    h.make(b.MilestoneRelinked(milestone=milestone, key_result=other_kr), actor="bob")
    h.make(b.TaskAdded(milestone=milestone, title="Bob's"), actor="bob")
    h.make(b.TaskCompleted(task=task), actor="bob")
    theirs = h.events[len(mine) :]
    history = mine + theirs if arrives == "after" else theirs + mine
    view = goal_tree(rebuild(history), "alice", at("2026-01-20")).objectives[0]
    assert view.milestones == []
    (milestone_view_,) = next(k for k in view.key_results if k.id == kr).milestones
    assert (milestone_view_.state, milestone_view_.due_on) == ("open", date(2026, 2, 1))
    assert [(t.title, t.done) for t in milestone_view_.tasks] == [("Mine", False)]
    assert next(k for k in view.key_results if k.id == other_kr).milestones == []
    # The owner's own writes still count, in either order.
    h.make(b.TaskCompleted(task=task))
    h.make(b.MilestoneDropped(milestone=milestone))
    ours = h.events[len(mine) + len(theirs) :]
    history = mine + theirs + ours if arrives == "after" else ours + theirs + mine
    view = goal_tree(rebuild(history), "alice", at("2026-01-20")).objectives[0]
    (milestone_view_,) = next(k for k in view.key_results if k.id == kr).milestones
    assert milestone_view_.state == "dropped"
    assert [(t.title, t.done) for t in milestone_view_.tasks] == [("Mine", True)]


def test_retracted_completion_falls_back_to_the_earlier_one_whatever_the_arrival_order() -> None:
    h = History()
    milestone = h.milestone()
    first = h.make(b.MilestoneCompleted(milestone=milestone, did="shipped"), when="2026-01-06").id
    second = h.make(b.MilestoneCompleted(milestone=milestone), when="2026-03-01").id
    retraction = h.make(b.Retracted(target=second, reason="logged twice"))
    planned, *rest = h.events
    for _ in range(12):
        order = rest[:]
        random.shuffle(order)
        state = rebuild([planned, *order])
        view = milestone_view(state, milestone, at("2026-03-02"))
        assert view.state == "completed"
        assert view.answers is not None and view.answers.did == "shipped"
        assert view.completed_at == at("2026-01-06")
        assert state.milestones[milestone].completed.value == first
    # Retracting the earlier one too leaves the milestone open.
    h.make(b.Retracted(target=first))
    assert milestone_view(fold(h), milestone, at("2026-03-02")).state == "open"
    assert retraction.id in fold(h).retracted[second]


def test_retracted_reopen_restores_the_completion() -> None:
    h = History()
    milestone = h.milestone()
    h.make(b.MilestoneCompleted(milestone=milestone))
    reopen = h.make(b.MilestoneReopened(milestone=milestone))
    assert milestone_view(fold(h), milestone, at("2026-01-06")).state == "open"
    h.make(b.Retracted(target=reopen.id))
    assert milestone_view(fold(h), milestone, at("2026-01-06")).state == "completed"
