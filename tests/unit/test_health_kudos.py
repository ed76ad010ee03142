"""Health (pace, due dates, drift, with the reason) and kudos (the visible-to-the-giver rule,
one per giver, never one's own), as pure functions over a folded state."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Literal

from events import bodies as b
from projections.drift import DriftSignal
from projections.health import health
from projections.kudos import kudos_givers, kudos_refusal
from projections.review import review
from projections.state import rebuild
from projections.team import team_board, team_feed
from tests.builders import History, at

TODAY = date(2026, 2, 10)


def signal(
    severity: Literal["warning", "alert"], subject: str = "m1", title: str = "Child"
) -> DriftSignal:
    return DriftSignal(
        kind="stale", subject=subject, subject_title=title, owner="alice",
        severity=severity, since=TODAY, explanation="no check-in for 9 days (cadence 7)",
        events=(), action="check in",
    )  # fmt: skip


def test_health_levels_follow_the_rules_in_order() -> None:
    base = {"progress": 50.0, "expected": 55.0, "due_on": date(2026, 3, 1), "today": TODAY}
    assert health(state="completed", **base).level == "done"  # type: ignore[arg-type]
    assert health(state="dropped", **base).level == "dropped"  # type: ignore[arg-type]
    on = health(state="open", **base)  # type: ignore[arg-type]
    assert on.level == "on-track" and "50% done, 55% expected" in on.reason
    behind = health(state="open", progress=20.0, expected=55.0, due_on=None, today=TODAY)
    assert behind.level == "at-risk" and "behind pace" in behind.reason
    assert "(35 points behind, more than 20)" in behind.reason
    far = health(state="open", progress=10.0, expected=55.0, due_on=None, today=TODAY)
    assert far.level == "off-track" and "(45 points behind, more than 40)" in far.reason
    late = health(state="open", progress=90.0, expected=100.0, due_on=date(2026, 2, 7), today=TODAY)
    assert late.level == "off-track" and "3 days late" in late.reason


def test_health_never_says_on_track_for_an_item_drift_flags() -> None:
    cases: tuple[tuple[Literal["warning", "alert"], str], ...] = (
        ("warning", "at-risk"),
        ("alert", "off-track"),
    )
    for severity, level in cases:
        found = health(
            state="open", progress=90.0, expected=10.0, due_on=None, today=TODAY,
            signals=[signal(severity)], item_id="objective",
        )  # fmt: skip
        assert found.level == level and found.signals == ("stale",)
        assert "'Child'" in found.reason and "cadence 7" in found.reason


def completed_history() -> tuple[History, dict[str, str]]:
    h = History("alice")
    ids: dict[str, str] = {}
    for person, team in (("alice", "web"), ("bob", "web"), ("carol", "web")):
        h.make(b.TeamMemberJoined(team=team, person=person), actor="admin", device="server")
    goal = h.make(b.ObjectiveCreated(title="Launch", cycle="2026-Q1", visibility="team"))
    shared = h.make(b.MilestonePlanned(title="Shared", objective=goal.id, due_on=date(2026, 2, 1)))
    secret = h.make(b.MilestonePlanned(title="Secret", visibility="private"))
    ids["shared"] = h.make(b.MilestoneCompleted(milestone=shared.id, did="d", why="w", outcome="o"),
                           when="2026-01-20").id  # fmt: skip
    ids["secret"] = h.make(b.MilestoneCompleted(milestone=secret.id, did="d", why="w", outcome="o"),
                           when="2026-01-21").id  # fmt: skip
    return h, ids


def test_kudos_rule_visible_to_the_giver_once_never_ones_own() -> None:
    h, ids = completed_history()
    state = rebuild(h.events)
    assert kudos_refusal(state, "bob", ids["shared"]) is None
    assert "you can see" in (kudos_refusal(state, "bob", ids["secret"]) or "")
    assert "your own" in (kudos_refusal(state, "alice", ids["shared"]) or "")
    assert "completion" in (
        kudos_refusal(state, "bob", "0" * 8 + "-0000-7000-8000-" + "0" * 12) or ""
    )

    first = h.make(b.KudosGiven(completion=ids["shared"]), actor="bob", when="2026-01-22")
    again = h.make(b.KudosGiven(completion=ids["shared"]), actor="bob", when="2026-01-23")
    own = h.make(b.KudosGiven(completion=ids["shared"]), actor="alice", when="2026-01-23")
    hidden = h.make(b.KudosGiven(completion=ids["secret"]), actor="carol", when="2026-01-23")
    carol = h.make(b.KudosGiven(completion=ids["shared"]), actor="carol", when="2026-01-24")
    # Any arrival order gives the same count: one per giver, the forged ones ignored.
    for order in itertools.islice(itertools.permutations(h.events[-5:]), 0, 120, 7):
        state = rebuild([*h.events[:-5], *order])
        assert kudos_givers(state, ids["shared"]) == ["bob", "carol"]
        assert kudos_givers(state, ids["secret"]) == []
    assert "already" in (kudos_refusal(state, "bob", ids["shared"]) or "")
    now = at("2026-02-10")
    feed = team_feed(state, "web", "alice", limit=50)
    shown = [i.id for i in feed.items if i.kind == "kudos.given"]
    assert set(shown) == {first.id, carol.id}
    assert again.id not in shown and own.id not in shown and hidden.id not in shown
    done = next(i for i in feed.items if i.id == ids["shared"])
    assert done.kudos == ("bob", "carol")
    mine = review(state, "alice", date(2026, 1, 1), date(2026, 12, 31), now)
    assert mine.kudos_received == 2
    # The board carries health for what it shows.
    board = team_board(state, "web", "bob", now)
    assert board.health and all(h.reason for h in board.health.values())
