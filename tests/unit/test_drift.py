"""Drift signals (docs/contract.md#projections): every kind with a positive and a negative
case, and the edges."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

import pytest

from events import bodies as b
from projections.drift import DriftSignal, drift_for_people, drift_signals
from projections.settings import DriftSettings
from projections.state import ProjectionState, as_of, rebuild
from tests.builders import History, at


def fold(history: History) -> ProjectionState:
    return rebuild(history.events)


def drift(
    history: History, day: str, person: str = "alice", **settings: float
) -> list[DriftSignal]:
    """Drift of ``person`` at 09:00 UTC on ``day`` (optionally with other thresholds)."""
    config = DriftSettings(**settings) if settings else DriftSettings()  # type: ignore[arg-type]
    return drift_signals(fold(history), person, at(day), config)


def of(signals: list[DriftSignal], kind: str, subject: str | None = None) -> list[DriftSignal]:
    return [s for s in signals if s.kind == kind and (subject is None or s.subject == subject)]


def one(signals: list[DriftSignal], kind: str, subject: str) -> DriftSignal:
    found = of(signals, kind, subject)
    assert len(found) == 1, (kind, subject, signals)
    return found[0]


def pause(h: History, starts_on: str, ends_on: str, when: str = "2026-01-01") -> str:
    body = b.PauseDeclared(
        starts_on=date.fromisoformat(starts_on), ends_on=date.fromisoformat(ends_on)
    )
    return h.make(body, when=when).id


def indicator(h: History, title: str = "Customer empathy", **kw: object) -> str:
    stages = ("team solicits feedback", "team anticipates needs unprompted")
    return h.make(b.IndicatorDefined(title=title, stages=stages), **kw).id  # type: ignore[arg-type]


def observe(h: History, indicator_id: str, polarity: str, when: str) -> str:
    body = b.ObservationRecorded(text="seen", polarity=polarity, indicator=indicator_id)  # type: ignore[arg-type]
    return h.make(body, when=when).id


def linked_milestone(h: History, **kw: Any) -> tuple[str, str, str]:
    """An objective (2026-Q1), a key result and a milestone linked to it."""
    objective = h.objective(when=kw.pop("when", None) or "2026-01-05")
    kr = h.key_result(objective)
    return objective, kr, h.milestone(key_result=kr, **kw)


# --- stale ---------------------------------------------------------------------------------


def test_stale_weekly_is_nothing_at_6_days_warning_at_7_alert_at_14() -> None:
    h = History()
    m = h.milestone("Post 10 blog posts", when="2026-01-05")
    assert of(drift(h, "2026-01-11"), "stale") == []
    warning = one(drift(h, "2026-01-12"), "stale", m)
    assert (warning.severity, warning.since, warning.owner) == (
        "warning",
        date(2026, 1, 12),
        "alice",
    )
    assert warning.subject_title == "Post 10 blog posts"
    assert "no check-in for 7 days" in warning.explanation
    assert "cadence weekly → 1 period (warning at 1, alert at 2)" in warning.explanation
    assert warning.action == "Check in on 'Post 10 blog posts' or reschedule it"
    assert warning.events == (m,)
    alert = one(drift(h, "2026-01-20"), "stale", m)
    assert (alert.severity, alert.since) == ("alert", date(2026, 1, 12))
    assert "15 days" in alert.explanation and "→ 2.14 periods" in alert.explanation


def test_stale_counts_from_the_last_checkin() -> None:
    h = History()
    m = h.milestone(when="2026-01-05")
    checkin = h.checkin(m, percent=10, when="2026-01-10")
    assert of(drift(h, "2026-01-16"), "stale") == []
    signal = one(drift(h, "2026-01-17"), "stale", m)
    assert (signal.severity, signal.since) == ("warning", date(2026, 1, 17))
    assert signal.events == (m, checkin)
    assert "since the last check-in on 2026-01-10" in signal.explanation


def test_a_retracted_checkin_does_not_count_for_staleness() -> None:
    h = History()
    m = h.milestone(when="2026-01-05")
    checkin = h.checkin(m, percent=10, when="2026-01-10")
    h.make(b.Retracted(target=checkin), when="2026-01-11")
    signal = one(drift(h, "2026-01-12"), "stale", m)
    assert "since creation on 2026-01-05" in signal.explanation
    assert checkin not in signal.events


@pytest.mark.parametrize(("cadence", "days"), [("biweekly", 14), ("monthly", 30)])
def test_stale_follows_the_objective_cadence(cadence: str, days: int) -> None:
    h = History()
    objective = h.objective(cadence=cadence, when="2026-01-05")
    kr = h.key_result(objective, when="2026-01-05")
    m = h.milestone(key_result=kr, when="2026-01-05")
    before = date(2026, 1, 5).toordinal() + days - 1
    signals = drift(h, date.fromordinal(before).isoformat())
    assert of(signals, "stale") == []
    signals = drift(h, date.fromordinal(before + 1).isoformat())
    for subject in (kr, m):
        signal = one(signals, "stale", subject)
        assert signal.severity == "warning"
        assert f"no check-in for {days} days" in signal.explanation
        assert f"cadence {cadence} → 1 period" in signal.explanation


def test_a_key_result_cadence_overrides_the_objective_and_milestones_inherit_it() -> None:
    h = History()
    objective = h.objective(cadence="weekly", when="2026-01-05")
    kr = h.key_result(objective, cadence="monthly", when="2026-01-05")
    m = h.milestone(key_result=kr, when="2026-01-05")
    signals = drift(h, "2026-01-20")
    assert of(signals, "stale", kr) == [] and of(signals, "stale", m) == []


def test_a_pause_does_not_count_towards_staleness() -> None:
    h = History()
    pause_id = pause(h, "2026-01-08", "2026-01-14")
    m = h.milestone(when="2026-01-05")
    assert of(drift(h, "2026-01-18"), "stale") == []  # 13 days, 7 of them paused
    signal = one(drift(h, "2026-01-19"), "stale", m)
    assert (signal.severity, signal.since) == ("warning", date(2026, 1, 19))
    assert "no check-in for 7 days" in signal.explanation
    assert "7 paused days not counted" in signal.explanation
    h.make(b.Retracted(target=pause_id), when="2026-01-15")
    assert one(drift(h, "2026-01-19"), "stale", m).severity == "alert"


def test_completed_and_dropped_milestones_are_not_stale_until_reopened() -> None:
    h = History()
    done = h.milestone("Done", when="2026-01-05")
    dropped = h.milestone("Dropped", when="2026-01-05")
    h.make(b.MilestoneCompleted(milestone=done), when="2026-01-06")
    h.make(b.MilestoneDropped(milestone=dropped), when="2026-01-06")
    assert of(drift(h, "2026-02-20"), "stale") == []
    reopen = h.make(b.MilestoneReopened(milestone=done), when="2026-02-10").id
    h.make(b.MilestoneRestored(milestone=dropped), when="2026-02-12")
    signals = drift(h, "2026-02-17")
    signal = one(signals, "stale", done)
    assert (signal.severity, signal.since) == ("warning", date(2026, 2, 17))
    assert "since the reopen on 2026-02-10" in signal.explanation
    assert reopen in signal.events
    assert of(signals, "stale", dropped) == []  # restored on 02-12: 5 days
    assert one(drift(h, "2026-02-19"), "stale", dropped).since == date(2026, 2, 19)


def test_a_key_result_is_stale_only_while_its_cycle_is_current_and_it_is_not_done() -> None:
    h = History()
    objective = h.objective(cycle="2026-Q1", when="2026-01-05")
    kr = h.key_result(objective, when="2026-01-05")
    done_kr = h.key_result(objective, "Done already", when="2026-01-05")
    h.checkin(done_kr, value=3000, when="2026-01-05")
    signals = drift(h, "2026-01-12")
    assert one(signals, "stale", kr).severity == "warning"
    assert of(signals, "stale", done_kr) == []
    assert of(drift(h, "2026-04-02"), "stale", kr) == []  # Q1 is over


def test_a_future_cycle_key_result_is_stale_from_its_cycle_start() -> None:
    h = History()
    objective = h.objective(cycle="2026-Q2", when="2026-03-20")
    kr = h.key_result(objective, when="2026-03-20")
    assert of(drift(h, "2026-03-30"), "stale", kr) == []
    assert of(drift(h, "2026-04-07"), "stale", kr) == []
    signal = one(drift(h, "2026-04-08"), "stale", kr)
    assert "since the cycle start on 2026-04-01" in signal.explanation


def test_moving_a_milestone_to_another_key_result_changes_its_cadence() -> None:
    h = History()
    objective = h.objective(when="2026-01-05")
    weekly = h.key_result(objective, "Weekly", when="2026-01-05")
    monthly = h.key_result(objective, "Monthly", cadence="monthly", when="2026-01-05")
    m = h.milestone(key_result=weekly, when="2026-01-05")
    assert one(drift(h, "2026-01-13"), "stale", m).severity == "warning"
    h.make(b.MilestoneRelinked(milestone=m, key_result=monthly), when="2026-01-13")
    assert of(drift(h, "2026-01-14"), "stale", m) == []
    assert "cadence monthly" in one(drift(h, "2026-02-04"), "stale", m).explanation


# --- behind pace ------------------------------------------------------------------------------


def test_behind_pace_exactly_20_points_is_nothing_20_01_is_a_warning() -> None:
    h = History(start="2026-01-01")
    on_edge = h.milestone("On the edge", due_on="2026-01-10", when="2026-01-01")
    behind = h.milestone("Behind", due_on="2026-01-10", when="2026-01-01")
    h.checkin(on_edge, percent=30, when="2026-01-06")
    h.checkin(behind, percent=29.99, when="2026-01-06")
    signals = drift(h, "2026-01-06")  # 5 of 10 days elapsed: 50% expected
    assert of(signals, "behind-pace", on_edge) == []
    signal = one(signals, "behind-pace", behind)
    assert (signal.severity, signal.since) == ("warning", date(2026, 1, 6))
    assert "progress 29.99% vs 50% expected" in signal.explanation
    assert "20.01 points behind (more than 20)" in signal.explanation


def test_behind_pace_since_is_the_day_the_gap_first_exceeded_the_threshold() -> None:
    h = History(start="2026-01-01")
    m = h.milestone(due_on="2026-01-10", when="2026-01-01")
    h.checkin(m, percent=0, when="2026-01-02")
    signal = one(drift(h, "2026-01-06"), "behind-pace", m)
    assert signal.since == date(2026, 1, 4)  # 2026-01-03: 20 points, 2026-01-04: 30
    assert one(drift(h, "2026-01-08"), "behind-pace", m).severity == "alert"  # 70 > 40


def test_no_due_date_means_no_overdue_and_no_behind_pace() -> None:
    h = History(start="2026-01-01")
    m = h.milestone(when="2026-01-01")
    signals = drift(h, "2026-06-01")
    assert of(signals, "overdue", m) == [] and of(signals, "behind-pace", m) == []


def test_decrease_key_result_behind_pace() -> None:
    h = History(start="2026-01-01")
    objective = h.objective(when="2026-01-01")
    kr = h.key_result(objective, "Cut churn to 4%", kind="decrease", start=10, target=4)
    h.checkin(kr, value=7, when="2026-02-15")  # halfway, at half of the quarter
    assert of(drift(h, "2026-02-15"), "behind-pace", kr) == []
    h.checkin(kr, value=10, when="2026-02-15", recorded="2026-02-15T10:00:00+00:00")
    signal = one(drift(h, "2026-02-16"), "behind-pace", kr)
    assert signal.severity == "alert"  # 51.11 points behind: more than twice 20
    assert "progress 0% vs 51.11% expected" in signal.explanation


def test_completed_milestone_is_not_behind_pace() -> None:
    h = History(start="2026-01-01")
    m = h.milestone(due_on="2026-01-10", when="2026-01-01")
    assert of(drift(h, "2026-01-08"), "behind-pace", m) != []
    h.make(b.MilestoneCompleted(milestone=m), when="2026-01-08")
    assert of(drift(h, "2026-01-08"), "behind-pace", m) == []


# --- overdue ---------------------------------------------------------------------------------


def test_overdue_from_the_day_after_the_due_date() -> None:
    h = History()
    m = h.milestone(due_on="2026-01-10", when="2026-01-05")
    signals = drift(h, "2026-01-10")
    assert of(signals, "overdue") == []
    signal = one(drift(h, "2026-01-11"), "overdue", m)
    assert (signal.severity, signal.since) == ("alert", date(2026, 1, 11))
    assert signal.explanation.startswith("due 2026-01-10; 1 day overdue and not completed")
    assert of(drift(h, "2026-01-11"), "behind-pace", m) == []  # overdue says it all


def test_completed_dropped_or_rescheduled_milestones_are_not_overdue() -> None:
    h = History()
    done = h.milestone("Done", due_on="2026-01-10", when="2026-01-05")
    dropped = h.milestone("Dropped", due_on="2026-01-10", when="2026-01-05")
    moved = h.milestone("Moved", due_on="2026-01-10", when="2026-01-05")
    h.make(b.MilestoneCompleted(milestone=done), when="2026-01-09")
    h.make(b.MilestoneDropped(milestone=dropped), when="2026-01-09")
    h.make(b.MilestoneRescheduled(milestone=moved, due_on=date(2026, 2, 1)), when="2026-01-09")
    assert of(drift(h, "2026-01-20"), "overdue") == []


def test_a_milestone_completed_then_reopened_is_overdue_again() -> None:
    h = History()
    m = h.milestone(due_on="2026-01-10", when="2026-01-05")
    h.make(b.MilestoneCompleted(milestone=m), when="2026-01-09")
    assert of(drift(h, "2026-01-20"), "overdue") == []
    h.make(b.MilestoneReopened(milestone=m), when="2026-01-15")
    assert one(drift(h, "2026-01-20"), "overdue", m).since == date(2026, 1, 11)


def test_a_pause_spanning_the_due_date_extends_it_by_the_paused_days() -> None:
    h = History()
    pause_id = pause(h, "2026-01-08", "2026-01-12")
    m = h.milestone(due_on="2026-01-10", when="2026-01-05")
    assert of(drift(h, "2026-01-15"), "overdue") == []
    signal = one(drift(h, "2026-01-16"), "overdue", m)
    assert signal.since == date(2026, 1, 16)
    assert "due 2026-01-10, extended by 5 paused days to 2026-01-15; 1 day overdue" in (
        signal.explanation
    )
    assert pause_id in signal.events


def test_a_pause_before_the_due_date_does_not_move_it() -> None:
    h = History()
    pause(h, "2026-01-06", "2026-01-07")
    m = h.milestone(due_on="2026-01-10", when="2026-01-05")
    assert one(drift(h, "2026-01-11"), "overdue", m).since == date(2026, 1, 11)


# --- overload / underplanned ------------------------------------------------------------------


def _plan(h: History, count: int, *, cycle: str = "2026-Q1") -> tuple[str, list[str]]:
    objective = h.objective(cycle=cycle, when="2026-01-05")
    kr = h.key_result(objective, when="2026-01-05")
    milestones = [
        h.milestone(f"M{i}", key_result=kr, when=f"2026-01-{5 + i:02d}") for i in range(count)
    ]
    return objective, milestones


def test_overload_above_9_open_milestones_in_a_current_cycle() -> None:
    h = History()
    _, milestones = _plan(h, 10)
    signal = one(drift(h, "2026-01-20"), "overload", "alice:2026-Q1")
    assert (signal.severity, signal.since) == ("warning", date(2026, 1, 14))  # the 10th
    assert signal.explanation == "10 open milestones in 2026-Q1 (more than 9)"
    assert set(signal.events) == set(milestones)
    h.make(b.MilestoneCompleted(milestone=milestones[0]), when="2026-01-20")
    signals = drift(h, "2026-01-20")
    assert of(signals, "overload") == [] and of(signals, "underplanned") == []


def test_underplanned_below_4_open_milestones_only_for_current_cycles() -> None:
    h = History()
    objective, milestones = _plan(h, 4)
    assert of(drift(h, "2026-01-20"), "underplanned") == []
    h.make(b.MilestoneDropped(milestone=milestones[0]), when="2026-01-22")
    signal = one(drift(h, "2026-01-25"), "underplanned", "alice:2026-Q1")
    assert (signal.severity, signal.since) == ("warning", date(2026, 1, 22))
    assert signal.explanation == "3 open milestones in 2026-Q1 (fewer than 4)"
    assert objective in signal.events
    assert of(drift(h, "2026-04-02"), "underplanned") == []  # Q1 is no longer current


def test_load_respects_configured_thresholds() -> None:
    h = History()
    _plan(h, 3)
    signals = drift(h, "2026-01-20", overload_open_milestones=2, underplanned_open_milestones=1)
    assert one(signals, "overload", "alice:2026-Q1").explanation.startswith("3 open")


# --- confidence drop --------------------------------------------------------------------------


def test_confidence_fell_since_the_previous_checkin_is_a_warning() -> None:
    h = History()
    _, _, m = linked_milestone(h)
    first = h.checkin(m, "on-track", percent=10, when="2026-01-06")
    second = h.checkin(m, "at-risk", percent=20, when="2026-01-08")
    signal = one(drift(h, "2026-01-09"), "confidence-drop", m)
    assert (signal.severity, signal.since) == ("warning", date(2026, 1, 8))
    assert signal.explanation == (
        "confidence fell from on-track (2026-01-06) to at-risk (2026-01-08)"
    )
    assert signal.events == (first, second)
    h.checkin(m, "on-track", percent=30, when="2026-01-09")  # recovered
    assert of(drift(h, "2026-01-10"), "confidence-drop") == []


def test_same_confidence_twice_is_no_drop() -> None:
    h = History()
    _, _, m = linked_milestone(h)
    h.checkin(m, "at-risk", percent=10, when="2026-01-06")
    h.checkin(m, "at-risk", percent=20, when="2026-01-08")
    assert of(drift(h, "2026-01-09"), "confidence-drop") == []


def test_off_track_is_an_alert_since_the_first_of_the_run() -> None:
    h = History()
    objective = h.objective(when="2026-01-05")
    kr = h.key_result(objective, when="2026-01-05")
    h.checkin(kr, "at-risk", value=10, when="2026-01-06")
    h.checkin(kr, "off-track", value=10, when="2026-01-08")
    h.checkin(kr, "off-track", value=10, when="2026-01-12")
    signal = one(drift(h, "2026-01-13"), "confidence-drop", kr)
    assert (signal.severity, signal.since) == ("alert", date(2026, 1, 8))
    assert "2 off-track check-ins in a row" in signal.explanation


def test_a_corrected_confidence_changes_the_drop() -> None:
    h = History()
    _, _, m = linked_milestone(h)
    h.checkin(m, "on-track", percent=10, when="2026-01-06")
    second = h.checkin(m, "at-risk", percent=20, when="2026-01-08")
    fix = h.make(b.Corrected(target=second, changes=b.Changes(confidence="on-track")))
    assert of(drift(h, "2026-01-09"), "confidence-drop") == []
    h.make(b.Corrected(target=second, changes=b.Changes(confidence="off-track")))
    signal = one(drift(h, "2026-01-09"), "confidence-drop", m)
    assert signal.severity == "alert"
    assert fix.id in signal.events


def test_a_retracted_checkin_is_not_the_last_one() -> None:
    h = History()
    _, _, m = linked_milestone(h)
    h.checkin(m, "on-track", percent=10, when="2026-01-06")
    wrong = h.checkin(m, "off-track", percent=20, when="2026-01-08")
    assert one(drift(h, "2026-01-09"), "confidence-drop", m).severity == "alert"
    h.make(b.Retracted(target=wrong))
    assert of(drift(h, "2026-01-09"), "confidence-drop") == []


# --- orphan ----------------------------------------------------------------------------------


def test_a_standalone_milestone_is_an_orphan_a_linked_one_is_not() -> None:
    h = History()
    _, _, linked = linked_milestone(h)
    alone = h.milestone("Alone", when="2026-01-06")
    signals = drift(h, "2026-01-07")
    assert of(signals, "orphan", linked) == []
    signal = one(signals, "orphan", alone)
    assert (signal.severity, signal.since) == ("warning", date(2026, 1, 6))
    assert signal.action == "Link 'Alone' to a key result or objective, or drop it"


def test_orphan_follows_relinks_and_retracted_parents() -> None:
    h = History()
    objective, _kr, m = linked_milestone(h)
    unlink = h.make(b.MilestoneRelinked(milestone=m), when="2026-01-08").id
    signal = one(drift(h, "2026-01-09"), "orphan", m)
    assert signal.since == date(2026, 1, 8) and unlink in signal.events
    h.make(b.MilestoneRelinked(milestone=m, objective=objective), when="2026-01-09")
    assert of(drift(h, "2026-01-10"), "orphan") == []
    h.make(b.Retracted(target=objective), when="2026-01-10")
    assert of(drift(h, "2026-01-11"), "orphan", m) != []


def test_a_completed_standalone_milestone_is_no_orphan() -> None:
    h = History()
    m = h.milestone(when="2026-01-05")
    h.make(b.MilestoneCompleted(milestone=m), when="2026-01-06")
    assert of(drift(h, "2026-01-07"), "orphan") == []


# --- slowdown --------------------------------------------------------------------------------


def _complete_on(h: History, days: list[str]) -> None:
    for day in days:
        m = h.milestone(f"Done {day}", when="2025-10-01")
        h.make(b.MilestoneCompleted(milestone=m), when=day)


# now = 2026-03-30: recent window 03-03..03-30, baseline 01-06..03-02 (8 weeks).
BASELINE = [f"2026-01-{d:02d}" for d in (6, 13, 20, 27)] + [
    f"2026-02-{d:02d}" for d in (3, 10, 17, 24)
]


def test_slowdown_at_exactly_half_the_baseline_rate_is_nothing() -> None:
    h = History(start="2025-10-01")
    _complete_on(h, [*BASELINE, "2026-03-10", "2026-03-20"])  # 0.5/week vs 1/week
    assert of(drift(h, "2026-03-30"), "slowdown") == []


def test_slowdown_below_half_the_baseline_rate() -> None:
    h = History(start="2025-10-01")
    _complete_on(h, [*BASELINE, "2026-03-10"])
    signal = one(drift(h, "2026-03-30"), "slowdown", "alice")
    assert (signal.severity, signal.since) == ("warning", date(2026, 3, 3))
    assert signal.explanation == (
        "1 milestone completed in the last 4 weeks (0.25/week) vs 8 in the 8 weeks before "
        "(1/week): below 0.5 × the baseline rate"
    )
    assert len(signal.events) == 9


def test_slowdown_with_nothing_recent_is_an_alert_and_no_baseline_means_no_signal() -> None:
    h = History(start="2025-10-01")
    _complete_on(h, BASELINE)
    assert one(drift(h, "2026-03-30"), "slowdown", "alice").severity == "alert"
    empty = History(start="2025-10-01")
    _complete_on(empty, ["2026-03-10"])
    assert of(drift(empty, "2026-03-30"), "slowdown") == []


def test_slowdown_counts_only_active_weeks() -> None:
    h = History(start="2025-10-01")
    pause(h, "2026-03-03", "2026-03-23")  # three of the four recent weeks paused
    _complete_on(h, [*BASELINE, "2026-03-26"])  # 1 in the one active week: 1/week
    assert of(drift(h, "2026-03-30"), "slowdown") == []


def test_reopened_milestones_do_not_count_as_completed() -> None:
    h = History(start="2025-10-01")
    _complete_on(h, [*BASELINE, "2026-03-10", "2026-03-20"])
    last = h.events[-1]
    assert isinstance(last.body, b.MilestoneCompleted)
    h.make(b.MilestoneReopened(milestone=last.body.milestone), when="2026-03-25")
    assert one(drift(h, "2026-03-30"), "slowdown", "alice").severity == "warning"


# --- unreviewed ------------------------------------------------------------------------------


def test_unreviewed_after_30_days_untouched() -> None:
    h = History()
    m = h.milestone(when="2026-01-05")
    assert of(drift(h, "2026-02-03"), "unreviewed") == []
    signal = one(drift(h, "2026-02-04"), "unreviewed", m)
    assert (signal.severity, signal.since) == ("warning", date(2026, 2, 4))
    assert signal.explanation == (
        "nobody touched it for 30 days (last event on 2026-01-05; threshold 30 days)"
    )
    assert one(drift(h, "2026-03-06"), "unreviewed", m).severity == "alert"


@pytest.mark.parametrize(
    "touch", ["checkin", "task", "task-done", "reschedule", "correction", "retraction"]
)
def test_any_event_about_the_milestone_its_tasks_or_checkins_is_a_touch(touch: str) -> None:
    h = History()
    m = h.milestone(when="2026-01-05")
    task = h.make(b.TaskAdded(milestone=m, title="Draft"), when="2026-01-06").id
    checkin = h.checkin(m, percent=5, when="2026-01-06")
    if touch == "checkin":
        h.checkin(m, percent=10, when="2026-01-20")
    elif touch == "task":
        h.make(b.TaskAdded(milestone=m, title="Edit"), when="2026-01-20")
    elif touch == "task-done":
        h.make(b.TaskCompleted(task=task), when="2026-01-20")
    elif touch == "reschedule":
        h.make(b.MilestoneRescheduled(milestone=m, due_on=None), when="2026-01-20")
    elif touch == "correction":
        h.make(b.Corrected(target=checkin, changes=b.Changes(note="typo")), when="2026-01-20")
    else:
        h.make(b.Retracted(target=checkin), when="2026-01-20")
    assert of(drift(h, "2026-02-18"), "unreviewed") == []
    assert one(drift(h, "2026-02-19"), "unreviewed", m).since == date(2026, 2, 19)


def test_a_closed_milestone_is_never_unreviewed() -> None:
    h = History()
    m = h.milestone(when="2026-01-05")
    h.make(b.MilestoneDropped(milestone=m), when="2026-01-05")
    assert of(drift(h, "2026-04-01"), "unreviewed") == []


# --- one-sided and quiet ------------------------------------------------------------------------


def test_one_sided_when_the_last_5_observations_are_all_positive() -> None:
    h = History()
    ind = indicator(h, when="2026-01-05")
    observe(h, ind, "negative", "2026-01-05")
    ids = [observe(h, ind, "positive", f"2026-01-{d:02d}") for d in (6, 7, 8, 9)]
    assert of(drift(h, "2026-01-10"), "one-sided") == []
    ids.append(observe(h, ind, "positive", "2026-01-10"))
    signal = one(drift(h, "2026-01-11"), "one-sided", ind)
    assert (signal.severity, signal.since) == ("warning", date(2026, 1, 10))
    assert signal.explanation == "the last 5 observations are all positive (threshold 5)"
    assert signal.events == tuple(ids)
    assert "disconfirming evidence" in signal.action


def test_a_negative_observation_or_a_corrected_polarity_breaks_the_run() -> None:
    h = History()
    ind = indicator(h, when="2026-01-05")
    ids = [observe(h, ind, "positive", f"2026-01-{d:02d}") for d in (6, 7, 8, 9, 10)]
    assert of(drift(h, "2026-01-11"), "one-sided") != []
    h.make(b.Corrected(target=ids[-1], changes=b.Changes(polarity="negative")))
    assert of(drift(h, "2026-01-11"), "one-sided") == []
    h.make(b.Retracted(target=ids[-1]))
    assert of(drift(h, "2026-01-11"), "one-sided") == []  # only 4 positives remain


def test_the_run_follows_when_observations_happened_not_when_they_were_logged() -> None:
    h = History()
    ind = indicator(h, when="2026-01-02")
    ids = [observe(h, ind, "positive", f"2026-01-{d:02d}") for d in (6, 7, 8, 9, 10)]
    # A setback that happened before the run, logged after it: the run stands.
    late = h.make(
        b.ObservationRecorded(text="missed it", indicator=ind, polarity="negative"),
        when="2026-01-03",
        recorded="2026-01-11",
    ).id
    signal = one(drift(h, "2026-01-12"), "one-sided", ind)
    assert signal.events == tuple(ids)
    assert late not in signal.events
    # One that happened after the run ends it, whenever it was logged.
    h.make(
        b.ObservationRecorded(text="slipped", indicator=ind, polarity="negative"),
        when="2026-01-11",
        recorded="2026-01-12",
    )
    assert of(drift(h, "2026-01-13"), "one-sided") == []


def test_quiet_indicator_from_creation_or_last_observation() -> None:
    h = History()
    ind = indicator(h, when="2026-01-05")
    assert of(drift(h, "2026-02-03"), "quiet") == []
    signal = one(drift(h, "2026-02-04"), "quiet", ind)
    assert (signal.severity, signal.since) == ("warning", date(2026, 2, 4))
    assert "since creation on 2026-01-05" in signal.explanation
    observation = observe(h, ind, "negative", "2026-01-20")
    assert of(drift(h, "2026-02-18"), "quiet") == []
    signal = one(drift(h, "2026-02-19"), "quiet", ind)
    assert observation in signal.events


def test_someone_elses_observation_does_not_keep_my_indicator_alive() -> None:
    h = History()
    ind = indicator(h, when="2026-01-05")
    body = b.ObservationRecorded(text="seen", indicator=ind)
    h.make(body, when="2026-01-20", actor="mallory")
    assert of(drift(h, "2026-02-04"), "quiet", ind) != []


# --- general -----------------------------------------------------------------------------------


def test_retracted_items_never_drift() -> None:
    h = History()
    m = h.milestone(due_on="2026-01-10", when="2026-01-05")
    ind = indicator(h, when="2026-01-05")
    assert drift(h, "2026-03-01") != []
    h.make(b.Retracted(target=m), when="2026-01-06")
    h.make(b.Retracted(target=ind), when="2026-01-06")
    assert drift(h, "2026-03-01") == []


def test_only_the_persons_own_items_and_a_stable_order() -> None:
    h = History()
    pause(h, "2026-02-01", "2026-02-02")
    h.milestone("Mine", due_on="2026-01-10", when="2026-01-05")
    h.milestone("Bob's", due_on="2026-01-10", when="2026-01-05", actor="bob")
    signals = drift(h, "2026-01-20")
    assert {s.owner for s in signals} == {"alice"}
    assert [s.kind for s in signals] == ["overdue", "stale", "orphan"]  # alerts first
    assert signals == sorted(
        signals, key=lambda s: (s.severity != "alert", s.since, s.kind, s.subject)
    )
    both = drift_for_people(fold(h), ["alice", "bob", "alice"], at("2026-01-20"))
    assert {s.owner for s in both} == {"alice", "bob"} and len(both) == 6
    assert drift_signals(fold(h), "nobody", at("2026-01-20")) == []


def test_the_same_events_in_any_order_give_the_same_drift() -> None:
    h = History()
    _, kr, m = linked_milestone(h, due_on="2026-01-20")
    h.checkin(m, "on-track", percent=10, when="2026-01-06")
    h.checkin(m, "off-track", percent=10, when="2026-01-08")
    h.make(b.MilestoneRelinked(milestone=m), when="2026-01-09")
    h.make(b.MilestoneRelinked(milestone=m, key_result=kr), when="2026-01-10")
    ind = indicator(h, when="2026-01-05")
    for d in (6, 7, 8, 9, 10):
        observe(h, ind, "positive", f"2026-01-{d:02d}")
    expected = drift(h, "2026-01-25")
    assert {s.kind for s in expected} >= {"overdue", "confidence-drop", "one-sided", "stale"}
    shuffled = list(h.events)
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        assert drift_signals(rebuild(shuffled), "alice", at("2026-01-25")) == expected


def test_drift_as_of_a_past_date_is_what_was_known_then() -> None:
    h = History()
    m = h.milestone(due_on="2026-02-28", when="2026-01-05")
    # A check-in about 2026-01-10 logged only on 2026-01-20 (offline laptop).
    late = h.checkin(m, "off-track", percent=10, when="2026-01-10", recorded="2026-01-20")
    state = fold(h)
    then = at("2026-01-15", 23)
    past = drift_signals(as_of(state, then), "alice", then)
    known_then = rebuild(e for e in h.events if e.recorded_at <= then)
    assert past == drift_signals(known_then, "alice", then)
    assert one(past, "stale", m).since == date(2026, 1, 12)
    assert of(past, "confidence-drop") == []
    today = drift_signals(state, "alice", then)
    assert of(today, "stale", m) == []  # now we know about the 01-10 check-in
    assert late in one(today, "confidence-drop", m).events
