"""Health: what the facts say about a goal, whatever its owner last said — one rule for
``milepost status``, the board API and the team page."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import msgspec

from client.health import stored_health
from client.store import Store
from client.views import on_append, stored_tree
from events import bodies as b
from projections.drift import DriftSignal, drift_signals
from projections.goals import goal_tree
from projections.health import milestone_health, tree_health
from projections.settings import DEFAULT_SETTINGS, DriftSettings
from projections.state import rebuild
from projections.team import team_board
from tests.builders import History, at


def test_overdue_milestone_is_off_track_even_when_said_on_track() -> None:
    h = History()
    milestone = h.milestone(due_on=date(2026, 1, 20))
    h.checkin(milestone, percent=0, confidence="on-track")
    tree = goal_tree(rebuild(h.events), "alice", at("2026-02-01"))
    [view] = tree.standalone_milestones
    found = milestone_health(view, date(2026, 2, 1))
    assert found.level == "off-track"
    assert found.reason == "overdue: due 2026-01-20, 12 days late, 0% done"
    assert view.confidence == "on-track"


def test_behind_pace_by_the_configured_points_then_far_behind() -> None:
    h = History()
    milestone = h.milestone(due_on=date(2026, 3, 1))
    h.checkin(milestone, percent=30, confidence="on-track", when="2026-01-30")
    state = rebuild(h.events)
    view = goal_tree(state, "alice", at("2026-02-01")).standalone_milestones[0]
    assert view.expected is not None and 15 < view.expected - 30 < 20
    assert milestone_health(view, date(2026, 2, 1)).level == "on-track"
    # The same gap is behind pace with a tighter threshold (DriftSettings decides).
    tight = DriftSettings(behind_pace_points=10)
    found = milestone_health(view, date(2026, 2, 1), settings=tight)
    assert found.level == "at-risk" and "behind pace: 30% done" in found.reason
    assert "more than 10)" in found.reason
    h.checkin(milestone, percent=30, confidence="on-track", when="2026-02-24")
    view = goal_tree(rebuild(h.events), "alice", at("2026-02-25")).standalone_milestones[0]
    found = milestone_health(view, date(2026, 2, 25))
    assert found.level == "off-track" and "behind pace: 30% done" in found.reason
    assert "more than 40)" in found.reason


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
    ended = "the cycle ended on 2026-03-31 at 14%, target not reached"
    assert healths[objective].reason == ended
    assert healths[kr].reason == ended
    assert healths[done].level == "done"


def test_a_threshold_not_met_is_off_track_and_one_held_at_the_end_is_done() -> None:
    h = History()
    objective = h.objective(cycle="2026-Q1")
    kr = h.key_result(objective, kind="stay-above", start=None, target=5)
    h.checkin(kr, value=3, confidence="on-track", when="2026-03-20")
    tree = goal_tree(rebuild(h.events), "alice", at("2026-03-21"))
    found = tree_health(tree.objectives, [], date(2026, 3, 21))[kr]
    assert (
        found.level == "off-track"
        and found.reason == "threshold not met: last check-in 3, not above 5"
    )
    h.checkin(kr, value=6, confidence="on-track", when="2026-03-30")
    tree = goal_tree(rebuild(h.events), "alice", at("2026-04-02"))
    healths = tree_health(tree.objectives, [], date(2026, 4, 2))
    assert healths[kr].level == "done" and "threshold held" in healths[kr].reason
    assert healths[objective].level == "done"


def _signal(severity: str, subject: str, title: str = "Child") -> DriftSignal:
    return msgspec.convert(
        {
            "kind": "stale", "subject": subject, "subject_title": title, "owner": "alice",
            "severity": severity, "since": "2026-01-06", "explanation": "silent for 9 days",
            "events": [], "action": "check in",
        },
        DriftSignal,
    )  # fmt: skip


def test_drift_decides_first_and_names_the_item_under() -> None:
    h = History()
    objective = h.objective(cycle="2026-Q1")
    kr = h.key_result(objective, start=0, target=100)
    milestone = h.milestone(key_result=kr, title="Child")
    tree = goal_tree(rebuild(h.events), "alice", at("2026-01-06"))
    today = date(2026, 1, 6)
    calm = tree_health(tree.objectives, [], today)
    assert {calm[i].level for i in (objective, kr, milestone)} == {"on-track"}
    for severity, level in (("warning", "at-risk"), ("alert", "off-track")):
        found = tree_health(tree.objectives, [], today, [_signal(severity, milestone)])
        assert found[milestone].level == level
        assert found[milestone].reason == f"drift {severity} (stale): silent for 9 days"
        assert found[milestone].signals == ("stale",)
        # Never on-track above an item drift flags; the reason names the item.
        assert found[kr].level == level and "'Child': silent for 9 days" in found[kr].reason
        assert found[objective].level == level


def test_a_key_result_added_mid_cycle_is_not_stale_from_the_cycle_start() -> None:
    h = History(start="2026-03-01")
    objective = h.objective(cycle="2026-Q1")
    kr = h.key_result(objective, kind="stay-above", start=None, target=5)  # no pace
    state = rebuild(h.events)

    def kr_health(day: str) -> tuple[str, str]:
        now = at(day)
        tree = goal_tree(state, "alice", now)
        signals = drift_signals(state, "alice", now)
        found = tree_health(tree.objectives, [], now.date(), signals)[kr]
        return found.level, found.reason

    assert kr_health("2026-03-03")[0] == "on-track"
    level, reason = kr_health("2026-03-20")  # 19 days, weekly cadence: 2 periods
    assert level == "off-track" and reason.startswith("drift alert (stale)")


# --- one health for the CLI and the board ------------------------------------------------------


def _history() -> History:
    """Alice's goals with something for every rule; bob shares her team."""
    h = History(start="2026-01-05")
    h.join("web", "alice")
    h.join("web", "bob")
    objective = h.objective(cycle="2026-Q1", visibility="team")
    visitors = h.key_result(objective, title="Visitors", start=0, target=3000)
    h.checkin(visitors, value=200, confidence="on-track", when="2026-01-12")
    bounce = h.key_result(objective, title="Bounce", kind="stay-below", start=None, target=40)
    h.checkin(bounce, value=45, confidence="at-risk", when="2026-02-20")
    seo = h.milestone(title="SEO", key_result=visitors, due_on="2026-02-10", when="2026-01-06")
    h.checkin(seo, percent=10, confidence="on-track", when="2026-02-01")
    h.checkin(seo, percent=10, confidence="off-track", when="2026-02-08")
    blog = h.milestone(title="Blog", key_result=visitors, when="2026-01-07")
    h.make(b.TaskAdded(milestone=blog, title="Draft"), when="2026-01-08")
    h.make(b.MilestoneCompleted(milestone=blog, did="d", why="w", outcome="o"), when="2026-02-02")
    slides = h.milestone(
        title="Slides", objective=objective, due_on="2026-03-25", when="2026-01-15"
    )
    h.checkin(slides, percent=50, confidence="on-track", when="2026-03-05")  # behind: a warning
    h.milestone(title="Fresh", objective=objective, due_on="2026-04-30", when="2026-03-08")
    dropped = h.milestone(title="Old", objective=objective, when="2026-01-15")
    h.make(b.MilestoneDropped(milestone=dropped), when="2026-01-20")
    h.make(b.PauseDeclared(starts_on=date(2026, 2, 1), ends_on=date(2026, 2, 5)))
    h.milestone(
        title="Loose end", due_on="2026-04-30", when="2026-01-09", visibility="team"
    )  # an orphan
    h.milestone(title="Mine only", visibility="private", when="2026-01-10")
    ended = h.objective(title="Last quarter", cycle="2025-Q4", visibility="team")
    h.key_result(ended, title="Signups", start=0, target=10)
    return h


async def _cli_health(
    tmp_path: Path, h: History, now: datetime, settings: DriftSettings
) -> dict[str, object]:
    """What ``milepost status`` computes: events appended through the device's store (its
    views kept per append), then the stored tree and ``stored_health``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = await Store.open(tmp_path / "alice.sqlite3", create=True)
    try:
        async with store.write():
            await store.set_meta("person", "alice")
            for event in h.events:
                seq = await store.append(event)
                assert seq is not None
                await on_append(store, seq, event, event.recorded_at)
        tree = await stored_tree(store, "alice", now)
        healths = await stored_health(store, "alice", tree, now, settings)
    finally:
        await store.close()
    assert tree == goal_tree(rebuild(h.events), "alice", now)
    return {item: msgspec.to_builtins(found) for item, found in healths.items()}


async def test_status_and_the_board_show_the_same_health_for_the_same_item(
    tmp_path: Path,
) -> None:
    h = _history()
    state = rebuild(h.events)
    for day, settings in (
        ("2026-02-20", DEFAULT_SETTINGS),
        ("2026-03-10", DEFAULT_SETTINGS),
        ("2026-03-10", DriftSettings(behind_pace_points=5, stale_alert_periods=4)),
    ):
        now = at(day)
        folder = tmp_path / day / str(settings.behind_pace_points)
        cli = await _cli_health(folder, h, now, settings)
        # Pauses are private: bob's board shows what alice's status would without them.
        unpaused = History()
        unpaused.events = [e for e in h.events if not isinstance(e.body, b.PauseDeclared)]
        assert len(unpaused.events) == len(h.events) - 1
        cli_unpaused = await _cli_health(folder / "unpaused", unpaused, now, settings)
        assert cli_unpaused != cli  # the pause moves alice's own pace and staleness
        for viewer in ("alice", "bob"):
            board = team_board(state, "web", viewer, now, settings=settings)
            api = {item: msgspec.to_builtins(found) for item, found in board.health.items()}
            if viewer == "alice":
                assert api == cli
            else:  # bob sees every team item, with the same health; never the private one
                hidden = {m for m in cli if _private(state, m)}
                assert len(hidden) == 1 and set(api) == set(cli) - hidden
                assert all(api[item] == cli_unpaused[item] for item in api)
    # Every level and rule shows up somewhere on the last day.
    cli = await _cli_health(tmp_path / "last", h, at("2026-03-10"), DEFAULT_SETTINGS)
    levels = {str(v["level"]) for v in cli.values()}  # type: ignore[index]
    assert levels == {"off-track", "at-risk", "on-track", "done", "dropped"}
    reasons = " | ".join(str(v["reason"]) for v in cli.values())  # type: ignore[index]
    for rule in ("drift alert", "drift warning", "the cycle ended"):
        assert rule in reasons, rule


def _private(state: object, item: str) -> bool:
    from projections.state import ProjectionState

    assert isinstance(state, ProjectionState)
    body = state.body(item)
    return isinstance(body, b.MilestonePlanned) and body.title == "Mine only"


async def test_status_keeps_drift_only_while_events_day_and_settings_stay(tmp_path: Path) -> None:
    from client.health import health_of
    from client.views import stored_state

    h = _history()
    store = await Store.open(tmp_path / "alice.sqlite3", create=True)
    try:
        async with store.write():
            await store.set_meta("person", "alice")
            for event in h.events:
                seq = await store.append(event)
                assert seq is not None
                await on_append(store, seq, event, event.recorded_at)

        async def both(day: str, settings: DriftSettings) -> tuple[object, object]:
            now = at(day)
            tree = await stored_tree(store, "alice", now)
            shown = await stored_health(store, "alice", tree, now, settings)
            fresh = health_of(await stored_state(store, "alice"), "alice", tree, now, settings)
            return shown, fresh

        first = await both("2026-02-20", DEFAULT_SETTINGS)
        assert first[0] == first[1] and first == await both("2026-02-20", DEFAULT_SETTINGS)
        for day, settings in (
            ("2026-03-10", DEFAULT_SETTINGS),
            ("2026-03-10", DriftSettings(behind_pace_points=5)),
        ):
            shown, fresh = await both(day, settings)
            assert shown == fresh
        # A new event (a check-in on the late milestone) changes what status shows.
        tree = await stored_tree(store, "alice", at("2026-03-10"))
        [late] = [m for o in tree.objectives for k in o.key_results for m in k.milestones
                  if m.title == "SEO"]  # fmt: skip
        before, _ = await both("2026-03-10", DEFAULT_SETTINGS)
        event = h.make(b.MilestoneCompleted(milestone=late.id), when="2026-03-09")
        async with store.write():
            seq = await store.append(event)
            assert seq is not None
            await on_append(store, seq, event, event.recorded_at)
        after, fresh = await both("2026-03-10", DEFAULT_SETTINGS)
        assert after == fresh and after != before
    finally:
        await store.close()
