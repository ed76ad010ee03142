"""Private items and pauses never shape another person's view (SPEC §3: "A private item
never appears in another person's view, whatever the query").

* Person-wide drift (overload, underplanned, slowdown) shown to a viewer other than the
  owner counts, and names, only the owner's items that viewer may see; the owner sees the
  full one.
* Pauses are private (a ``pause.declared`` reaches its author only): they count in views
  computed for the owner themself, never in anyone else's. So a teammate's view on the
  server equals what the teammate's device computes from what it may receive.
"""

from __future__ import annotations

from datetime import date

import msgspec

from events import bodies as b
from events.envelope import Event
from projections.drift import DriftSignal, drift_signals
from projections.goals import goal_tree
from projections.review import review
from projections.state import ProjectionState, rebuild
from projections.team import person_drift, team_board, team_drift
from projections.visibility import can_see_item
from tests.builders import History, at

NOW = at("2026-02-20")


def _team() -> History:
    h = History(start="2026-01-01")
    for person in ("alice", "bob"):
        h.join("roads", person, when="2026-01-01")
    return h


def _load(h: History, private: int, shared: int) -> tuple[list[str], list[str]]:
    """alice's open milestones of 2026-Q1: ``private`` under a private objective, ``shared``
    under a team one."""
    hidden = h.objective("ZZPRIV plans", visibility="private", when="2026-01-05")
    shown = h.objective("Team plans", visibility="team", when="2026-01-05")
    mine = [
        h.milestone(f"ZZPRIV {i}", objective=hidden, when=f"2026-01-{6 + i:02d}")
        for i in range(private)
    ]
    ours = [
        h.milestone(f"Team {i}", objective=shown, when=f"2026-01-{6 + i:02d}")
        for i in range(shared)
    ]
    return mine, ours


def _of(signals: list[DriftSignal], owner: str, kind: str) -> list[DriftSignal]:
    return [s for s in signals if s.owner == owner and s.kind == kind]


def _no_private(state: ProjectionState, viewer: str, signals: list[DriftSignal]) -> None:
    for signal in signals:
        for event_id in signal.events:
            assert can_see_item(state, viewer, event_id), (signal.kind, event_id)
        assert "ZZPRIV" not in msgspec.json.encode(signal).decode()


# --- person-wide drift ------------------------------------------------------------------


def test_a_teammate_sees_no_overload_from_private_milestones_the_owner_does() -> None:
    h = _team()
    mine, ours = _load(h, private=12, shared=6)
    state = rebuild(h.events)

    [own] = _of(team_drift(state, "roads", "alice", NOW), "alice", "overload")
    assert own.explanation == "18 open milestones in 2026-Q1 (more than 9)"
    assert set(own.events) == {*mine, *ours}

    bobs = team_drift(state, "roads", "bob", NOW)
    assert _of(bobs, "alice", "overload") == []
    assert _of(bobs, "alice", "underplanned") == []  # 6 open: neither over nor under
    _no_private(state, "bob", bobs)
    # The board's health and the person page read the same signals.
    assert person_drift(state, "alice", "bob", NOW) == [s for s in bobs if s.owner == "alice"]


def test_a_teammate_sees_the_load_of_what_they_may_see_and_names_only_that() -> None:
    h = _team()
    mine, ours = _load(h, private=12, shared=2)
    state = rebuild(h.events)
    [under] = _of(team_drift(state, "roads", "bob", NOW), "alice", "underplanned")
    assert under.explanation == "2 open milestones in 2026-Q1 (fewer than 4)"
    assert not set(under.events) & set(mine)
    assert set(ours) <= set(under.events)
    assert _of(team_drift(state, "roads", "alice", NOW), "alice", "underplanned") == []


def test_a_private_objective_alone_makes_no_cycle_current_for_a_teammate() -> None:
    h = _team()
    hidden = h.objective("ZZPRIV plans", visibility="private", when="2026-01-05")
    h.milestone("ZZPRIV only", objective=hidden, when="2026-01-06")
    state = rebuild(h.events)
    assert _of(team_drift(state, "roads", "alice", NOW), "alice", "underplanned")
    assert _of(team_drift(state, "roads", "bob", NOW), "alice", "underplanned") == []


def test_a_slowdown_of_private_completions_shows_to_its_owner_only() -> None:
    h = _team()
    hidden = h.objective("ZZPRIV plans", cycle="2026", visibility="private", when="2025-10-01")
    for day in ("2025-12-01", "2025-12-08", "2025-12-15", "2026-01-05", "2026-01-12"):
        done = h.milestone("ZZPRIV done", objective=hidden, when="2025-11-20")
        h.make(b.MilestoneCompleted(milestone=done), when=day)
    state = rebuild(h.events)
    now = at("2026-03-02")
    assert _of(team_drift(state, "roads", "alice", now), "alice", "slowdown")
    bobs = team_drift(state, "roads", "bob", now)
    assert _of(bobs, "alice", "slowdown") == []
    _no_private(state, "bob", bobs)


def test_the_review_of_another_person_counts_only_what_the_viewer_may_see() -> None:
    h = _team()
    _load(h, private=12, shared=6)
    state = rebuild(h.events)
    period = (date(2026, 1, 1), date(2026, 12, 31))
    own = review(state, "alice", *period, NOW)
    assert any(d.kind == "overload" for d in own.drift)
    theirs = review(state, "alice", *period, NOW, viewer="bob")
    assert not any(d.kind == "overload" for d in theirs.drift)
    assert "ZZPRIV" not in msgspec.json.encode(theirs).decode()


# --- pauses -----------------------------------------------------------------------------


def _paused_history() -> tuple[History, str, str]:
    """alice's team milestone due 2026-03-31, a KR of a team objective, and her pause."""
    h = _team()
    objective = h.objective("Team plans", visibility="team", when="2026-01-05")
    kr = h.key_result(objective, when="2026-01-05")
    milestone = h.milestone("Shared", key_result=kr, due_on=date(2026, 3, 31), when="2026-01-05")
    h.checkin(milestone, "on-track", percent=10, when="2026-01-10")
    h.make(b.PauseDeclared(starts_on=date(2026, 1, 20), ends_on=date(2026, 2, 9)))
    return h, objective, milestone


def _without(events: list[Event], kinds: tuple[type, ...]) -> ProjectionState:
    return rebuild(e for e in events if not isinstance(e.body, kinds))


def _milestone(state: ProjectionState, viewer: str, milestone: str) -> float | None:
    tree = goal_tree(state, "alice", NOW, viewer=viewer)
    [objective] = tree.objectives
    [shown] = [m for kr in objective.key_results for m in kr.milestones if m.id == milestone]
    return shown.expected


def test_the_owner_s_expected_progress_excludes_the_pause_a_teammate_s_does_not() -> None:
    h, _, milestone = _paused_history()
    state = rebuild(h.events)
    unpaused = _without(h.events, (b.PauseDeclared,))
    own = _milestone(state, "alice", milestone)
    theirs = _milestone(state, "bob", milestone)
    assert own is not None and theirs is not None
    assert own < theirs  # 21 paused days do not count for alice
    assert theirs == _milestone(unpaused, "alice", milestone)
    assert own != _milestone(unpaused, "alice", milestone)


def test_a_teammate_s_views_of_a_paused_owner_match_what_their_device_computes() -> None:
    h, _, _ = _paused_history()
    state = rebuild(h.events)
    # bob's device never receives the pause: it folds everything else.
    device = _without(h.events, (b.PauseDeclared,))
    encode = msgspec.json.encode
    views: dict[bool, bytes] = {}
    for day in ("2026-02-20", "2026-03-15", "2026-04-10"):
        now = at(day)
        for seen in (state, device):
            views[seen is device] = encode(
                [
                    goal_tree(seen, "alice", now, viewer="bob"),
                    team_board(seen, "roads", "bob", now),
                    team_drift(seen, "roads", "bob", now),
                    review(seen, "alice", date(2026, 1, 1), date(2026, 12, 31), now, "bob"),
                ]
            )
        assert views[False] == views[True], day
    # ... while alice's own views count her pause.
    drift = drift_signals(state, "alice", at("2026-02-20"))
    assert any("paused days not counted" in s.explanation for s in drift)
    assert encode(team_board(state, "roads", "alice", NOW)) != encode(
        team_board(device, "roads", "alice", NOW)
    )


def test_drift_for_a_teammate_ignores_the_owner_s_pauses() -> None:
    h, _, milestone = _paused_history()
    state = rebuild(h.events)
    now = at("2026-02-20")
    pause_ids = {e.id for e in h.events if isinstance(e.body, b.PauseDeclared)}

    def shown(viewer: str) -> dict[str, str]:
        signals = drift_signals(state, "alice", now, viewer=viewer)
        return {s.kind: s.explanation for s in signals if s.subject == milestone}

    own, theirs = shown("alice"), shown("bob")
    assert own["stale"].startswith("no check-in for 20 days")
    assert "21 paused days not counted" in own["stale"]
    assert theirs["stale"].startswith("no check-in for 41 days (since the last check-in")
    assert "unreviewed" not in own and "unreviewed" in theirs  # 20 active days vs 41
    assert "pauses excluded" in own["behind-pace"]
    assert not any("pause" in text for text in theirs.values())
    for signal in team_drift(state, "roads", "bob", now):
        assert not pause_ids & set(signal.events)
        assert "pause" not in signal.explanation
