"""Review: a person's record over a period, its gaps, drift, calibration and visibility."""

from __future__ import annotations

from datetime import date

import msgspec
import pytest

from events import bodies as b
from projections.review import Review, review, review_markdown
from projections.state import ProjectionState, as_of, rebuild
from tests.builders import History, at

JAN_1, JUN_30 = date(2026, 1, 1), date(2026, 6, 30)


def history(*people: str) -> History:
    h = History(start="2026-01-01")
    for person in people:
        h.join("roads", person, when="2026-01-01")
    return h


def complete(h: History, milestone: str, when: str, **answers: str) -> str:
    return h.make(b.MilestoneCompleted(milestone=milestone, **answers), when=when).id


def months(r: Review) -> dict[str, tuple[int, int, int, int, bool, bool]]:
    return {
        m.month: (
            m.checkins,
            m.milestones_planned,
            m.milestones_completed,
            m.observations,
            m.gap,
            m.future,
        )
        for m in r.months
    }


def test_months_show_gaps_explicitly_and_future_months_are_not_gaps() -> None:
    h = history("alice")
    objective = h.objective("Grow the community", when="2026-01-02")
    milestone = h.milestone("Profiles", objective=objective, when="2026-01-03")
    h.checkin(milestone, percent=30, when="2026-01-10")
    h.make(b.ObservationRecorded(text="Good call with a user"), when="2026-03-04")
    complete(h, milestone, "2026-03-20")
    state = rebuild(h.events)
    r = review(state, "alice", JAN_1, JUN_30, at("2026-04-15"))
    assert months(r) == {
        "2026-01": (1, 1, 0, 0, False, False),
        "2026-02": (0, 0, 0, 0, True, False),
        "2026-03": (0, 0, 1, 1, False, False),
        "2026-04": (0, 0, 0, 0, True, False),
        "2026-05": (0, 0, 0, 0, False, True),
        "2026-06": (0, 0, 0, 0, False, True),
    }
    text = review_markdown(r)
    assert "| February 2026 | — no activity — | | | |" in text
    assert "| April 2026 | — no activity — | | | |" in text
    assert "| May 2026 | — not yet — | | | |" in text
    assert "| January 2026 | 1 | 1 | 0 | 0 |" in text
    assert "Months with no activity at all: February 2026, April 2026." in text


def test_completed_milestones_with_their_answers_by_objective_and_month() -> None:
    h = history("alice")
    objective = h.objective("Grow the community", when="2026-01-02")
    kr = h.key_result(objective, "Reach 3,000 visitors", when="2026-01-02")
    profiles = h.milestone("Create social media profiles", key_result=kr, due_on="2026-01-31")
    newsletter = h.milestone("Launch the newsletter", objective=objective, due_on="2026-02-10")
    talk = h.milestone("Give a meetup talk", due_on="2026-03-01")  # tied to no objective
    complete(
        h,
        profiles,
        "2026-01-20",
        did="Set up three profiles",
        why="People find us there",
        outcome="120 followers in a week",
    )
    newsletter_done = complete(
        h,
        newsletter,
        "2026-02-14",
        did="Sent the first issue",
        why="A direct channel",
        outcome="40% opened it",
    )
    complete(h, talk, "2026-02-20", did="Spoke at the meetup", why="Visibility", outcome="3 leads")
    # A typo fixed later is reflected; a completion undone by a reopen is not listed.
    h.make(
        b.Corrected(target=newsletter_done, changes=b.Changes(outcome="45% opened it")),
        when="2026-02-15",
    )
    reopened = h.milestone("Set up analytics", objective=objective, when="2026-01-05")
    complete(h, reopened, "2026-01-25", did="Installed it")
    h.make(b.MilestoneReopened(milestone=reopened, reason="Not working"), when="2026-01-28")
    state = rebuild(h.events)
    r = review(state, "alice", JAN_1, JUN_30, at("2026-07-01"))

    (goal,) = r.objectives
    assert (goal.title, goal.cycle) == ("Grow the community", "2026-Q1")
    assert [(g.month, [m.title for m in g.milestones]) for g in goal.completed] == [
        ("2026-01", ["Create social media profiles"]),
        ("2026-02", ["Launch the newsletter"]),
    ]
    january = goal.completed[0].milestones[0]
    assert (january.did, january.why, january.outcome) == (
        "Set up three profiles",
        "People find us there",
        "120 followers in a week",
    )
    assert january.on_time is True
    assert goal.completed[1].milestones[0].on_time is False  # done 4 days late
    assert goal.completed[1].milestones[0].outcome == "45% opened it"
    assert [m.title for g in r.other_completed for m in g.milestones] == ["Give a meetup talk"]

    text = review_markdown(r)
    assert "### Grow the community (2026-Q1)" in text
    assert "#### January 2026" in text and "#### February 2026" in text
    assert "- **Create social media profiles** (completed 2026-01-20, on time)" in text
    assert "  - What I did: Set up three profiles" in text
    assert "  - Why it mattered: People find us there" in text
    assert "  - Outcome: 120 followers in a week" in text
    assert "  - Outcome: 45% opened it" in text
    assert "### Milestones outside any objective" in text
    assert "Set up analytics" not in text.split("## Check-ins")[0]
    # Objective sections come before month sections inside them.
    assert text.index("### Grow the community") < text.index("#### January 2026")


def test_checkin_history_and_observations_both_ways() -> None:
    h = history("alice")
    objective = h.objective("Know our users", when="2026-01-02")
    kr = h.key_result(objective, "Reach 3,000 visitors", when="2026-01-02")
    h.checkin(kr, value=500, when="2026-01-12")
    h.checkin(kr, "at-risk", value=700, note="slow month", when="2026-02-12")
    h.checkin(kr, value=900, when="2025-12-20")  # before the period
    indicator = h.make(
        b.IndicatorDefined(
            title="Customer empathy", stages=("Solicits feedback", "Anticipates needs")
        ),
        when="2026-01-02",
    ).id
    h.make(
        b.ObservationRecorded(text="Fixed it before they asked", indicator=indicator, stage=1),
        when="2026-02-01",
    )
    h.make(
        b.ObservationRecorded(
            text="Ignored a complaint", polarity="negative", indicator=indicator, stage=0
        ),
        when="2026-02-03",
    )
    state = rebuild(h.events)
    r = review(state, "alice", JAN_1, JUN_30, at("2026-03-01"))
    (history_,) = r.checkins
    assert (history_.title, history_.kind, history_.objective_title) == (
        "Reach 3,000 visitors",
        "key_result",
        "Know our users",
    )
    assert [(e.value, e.confidence) for e in history_.entries] == [
        (500, "on-track"),
        (700, "at-risk"),
    ]
    assert [(o.polarity, o.stage_name) for o in r.observations] == [
        ("positive", "Anticipates needs"),
        ("negative", "Solicits feedback"),
    ]
    text = review_markdown(r)
    assert "### Wins (1)" in text and "### Lessons (1)" in text
    assert "[Customer empathy, stage: Solicits feedback] Ignored a complaint" in text
    assert "- 2026-02-12 · 700, at-risk: slow month" in text


def calibration_history() -> History:
    h = history("alice")
    objective = h.objective("Ship the launch", when="2026-01-02")

    def planned(title: str, due: str) -> str:
        return h.milestone(title, objective=objective, due_on=due, when="2026-01-05")

    a = planned("A", "2026-02-10")
    h.checkin(a, "on-track", when="2026-02-01")
    complete(h, a, "2026-02-09")
    b_ = planned("B", "2026-02-15")
    h.checkin(b_, "on-track", when="2026-02-05")
    h.checkin(b_, "off-track", when="2026-02-20")  # after the due date: not the prediction
    complete(h, b_, "2026-02-25")  # late
    c = planned("C", "2026-02-20")
    h.checkin(c, "off-track", when="2026-02-10")  # never completed
    d = planned("D", "2026-02-25")
    h.checkin(d, "at-risk", when="2026-02-12")
    complete(h, d, "2026-02-25")  # on the due date: on time
    planned("E", "2026-02-27")  # no confidence stated, not completed
    f = planned("F", "2026-06-01")  # due after now: not scored yet
    h.checkin(f, "off-track", when="2026-02-12")
    g = planned("G", "2026-02-11")  # dropped: not scored
    h.checkin(g, "on-track", when="2026-02-01")
    h.make(b.MilestoneDropped(milestone=g), when="2026-02-05")
    return h


def test_calibration_on_a_crafted_case() -> None:
    state = rebuild(calibration_history().events)
    r = review(state, "alice", JAN_1, JUN_30, at("2026-03-15"))
    c = r.calibration
    assert [(case.milestone and case.title, case.confidence, case.on_time) for case in c.cases] == [
        ("A", "on-track", True),
        ("B", "on-track", False),
        ("C", "off-track", False),
        ("D", "at-risk", True),
        ("E", None, False),
    ]
    buckets = {x.confidence: (x.milestones, x.on_time, x.share_on_time) for x in c.buckets}
    assert buckets == {
        "on-track": (2, 1, 0.5),
        "at-risk": (1, 1, 1.0),
        "off-track": (1, 0, 0.0),
        "none": (1, 0, 0.0),
    }
    # ((0.8-1)² + (0.8-0)² + (0.2-0)² + (0.5-1)²) / 4 = (0.04 + 0.64 + 0.04 + 0.25) / 4
    assert c.scored == 4
    assert c.brier == pytest.approx(0.2425)
    text = review_markdown(r)
    assert "| on-track | 2 | 1 | 50% |" in text
    assert "Brier score 0.242 over 4 milestones" in text or "Brier score 0.243" in text


def test_private_items_never_reach_another_viewers_review() -> None:
    h = history("alice", "bob")
    shared = h.objective("Grow the community", visibility="team", when="2026-01-02")
    open_ = h.milestone("Profiles", objective=shared, due_on="2026-02-01", when="2026-01-03")
    h.checkin(open_, "at-risk", percent=20, when="2026-01-10")
    secret = h.objective("Find a new job", when="2026-01-02")
    resume = h.milestone(
        "Update my resume", objective=secret, due_on="2026-01-20", when="2026-01-03"
    )
    h.checkin(resume, "on-track", percent=50, note="quietly", when="2026-01-11")
    complete(h, resume, "2026-01-19", did="Rewrote it", why="Leaving", outcome="Two interviews")
    h.make(b.ObservationRecorded(text="Interview went well"), when="2026-02-02")
    mentored = h.milestone(
        "Give a talk",
        visibility="partners",
        partners=("mentor",),
        due_on="2026-02-20",
        when="2026-02-03",
    )
    state = rebuild(h.events)
    now = at("2026-04-01")

    own = review(state, "alice", JAN_1, JUN_30, now)
    assert {o.title for o in own.objectives} == {"Grow the community", "Find a new job"}
    assert len(own.calibration.cases) == 3
    assert any(d.subject == open_ for d in own.drift)

    bob = review(state, "alice", JAN_1, JUN_30, now, viewer="bob")
    assert [o.title for o in bob.objectives] == ["Grow the community"]
    assert [c.subject for c in bob.checkins] == [open_]
    assert bob.observations == []
    assert [case.milestone for case in bob.calibration.cases] == [open_]
    assert months(bob)["2026-02"][4] is True  # the private activity does not fill the gap
    assert any(d.subject == open_ for d in bob.drift)
    assert any(d.kind == "underplanned" for d in bob.drift)  # a teammate sees load signals
    seen_by_bob = msgspec.json.encode(bob).decode() + review_markdown(bob)
    for word in (
        "Find a new job",
        "resume",
        "quietly",
        "Interview",
        "Give a talk",
        resume,
        mentored,
        secret,
    ):
        assert word not in seen_by_bob

    mentor = review(state, "alice", JAN_1, JUN_30, now, viewer="mentor")
    assert mentor.objectives == [] and mentor.checkins == []
    assert [case.milestone for case in mentor.calibration.cases] == [mentored]
    assert {d.subject for d in mentor.drift} <= {mentored}
    assert not any(d.kind in ("underplanned", "overload", "slowdown") for d in mentor.drift)
    assert "Grow the community" not in msgspec.json.encode(mentor).decode()


def test_drift_that_occurred_is_listed_once_with_first_and_last_seen() -> None:
    h = history("alice")
    objective = h.objective("Grow the community", when="2026-01-02")
    late = h.milestone("Profiles", objective=objective, due_on="2026-01-20", when="2026-01-03")
    h.checkin(late, percent=10, when="2026-01-05")
    complete(h, late, "2026-03-10")
    state = rebuild(h.events)
    r = review(state, "alice", JAN_1, JUN_30, at("2026-06-30"))
    overdue = [d for d in r.drift if d.kind == "overdue"]
    assert len(overdue) == 1
    (seen,) = overdue
    assert (seen.subject, seen.first_seen, seen.last_seen, seen.times_seen) == (
        late,
        date(2026, 1, 31),
        date(2026, 2, 28),
        2,
    )
    assert seen.severity == "alert"
    assert "**overdue** on 'Profiles' (alert, 2026-01-31 to 2026-02-28)" in review_markdown(r)


def test_review_as_of_a_past_date_and_standing_at_the_period_end() -> None:
    h = history("alice")
    objective = h.objective("Grow the community", when="2026-01-02")
    kr = h.key_result(objective, "Reach 3,000 visitors", when="2026-01-02")
    milestone = h.milestone("Profiles", key_result=kr, when="2026-01-03")
    h.checkin(kr, value=600, when="2026-01-15")
    h.checkin(kr, value=1500, when="2026-02-20", recorded="2026-03-03")  # logged late
    h.checkin(kr, value=2400, when="2026-03-02")  # after the period
    complete(h, milestone, "2026-02-10")
    state: ProjectionState = rebuild(h.events)
    jan_feb = (date(2026, 1, 1), date(2026, 2, 28))

    # As things stood at the end of February, the late-logged check-in included.
    r = review(state, "alice", *jan_feb, at("2026-03-10"))
    assert r.objectives[0].progress == 50.0
    assert [e.value for e in r.checkins[0].entries] == [600, 1500]

    # As known on Feb 1: the completion and February's check-in were not there yet.
    then = review(as_of(state, at("2026-02-01")), "alice", *jan_feb, at("2026-02-01"))
    assert then.objectives[0].completed == []
    assert then.objectives[0].progress == 20.0
    assert months(then)["2026-02"] == (0, 0, 0, 0, True, False)
    assert months(r)["2026-02"] == (1, 0, 1, 0, False, False)


def test_review_is_json_and_rejects_a_backwards_period() -> None:
    state = rebuild(calibration_history().events)
    r = review(state, "alice", JAN_1, JUN_30, at("2026-03-15"))
    assert msgspec.json.decode(msgspec.json.encode(r), type=Review) == r
    with pytest.raises(ValueError):
        review(state, "alice", JUN_30, JAN_1, at("2026-03-15"))
