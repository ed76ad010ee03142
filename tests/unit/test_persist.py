"""Snapshots of the projection state (``projections.persist``): a snapshot loads to the
state a fold gives (every view equal), a snapshot plus the tail folded equals a fold of
everything, and a corrupt snapshot or one of another fold is refused, never loaded."""

from __future__ import annotations

import ast
import importlib.util
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import Event
from events.bodies import CheckInRecorded
from milepost_testkit.history import generate_history
from milepost_testkit.strategies import histories
from projections import persist
from projections.compact import HeldEvents, compact, held_as_rows
from projections.state import Feed, ProjectionState, apply, rebuild
from server.rebuild import views

NOW = datetime(2026, 9, 15, 12, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent.parent


def same_views(left: ProjectionState, right: ProjectionState) -> int:
    """Assert every view of every person and team is equal; return how many there are."""
    mine = dict(views(left, NOW))
    theirs = dict(views(right, NOW))
    assert mine.keys() == theirs.keys()
    differ = [name for name in mine if mine[name] != theirs[name]]
    assert differ == []
    return len(mine)


def round_trip(
    state: ProjectionState, position: int = 0, *, compacted: bool = False
) -> ProjectionState:
    """``state`` through a snapshot; ``compacted``: compacted first, so its rows are kept as
    columns and it loads compacted."""
    if compacted:
        compact(state)
    blob = persist.encode(state, persist.Follower(position))
    loaded, follower = persist.decode(blob, persist.checksum(blob))
    assert follower.position == position
    assert held_as_rows(loaded) == held_as_rows(state)
    assert isinstance(loaded.events, HeldEvents) == isinstance(state.events, HeldEvents)
    return loaded


def listed(feeds: dict[str, Feed]) -> dict[str, list[Event]]:
    return {owner: list(feed.events) for owner, feed in feeds.items()}


LAYOUTS = pytest.mark.parametrize("compacted", [False, True], ids=["objects", "compacted"])


@pytest.fixture(scope="module")
def history() -> list[Event]:
    """A long history with corrections, retractions, relinks, sharing and team changes."""
    return list(generate_history(people=8, teams=2, target_events=4000, seed=5))


@LAYOUTS
def test_a_snapshot_loads_to_the_state_it_was_taken_of(
    history: list[Event], compacted: bool
) -> None:
    state = rebuild(history)
    loaded = round_trip(state, len(history), compacted=compacted)
    assert same_views(state, loaded) > 50
    assert set(loaded.events.keys()) == set(state.events.keys())
    assert loaded.event_count() == state.event_count()
    assert loaded.memberships == state.memberships
    assert loaded.teams_by_person == state.teams_by_person
    # The indexes (rebuilt from the events, or a compacted state's kept) are the fold's.
    assert list(listed(loaded.feeds).items()) == list(listed(state.feeds).items())
    assert {s: list(c) for s, c in loaded.checkins_by_subject.items()} == {
        s: list(c) for s, c in state.checkins_by_subject.items()
    }
    assert list(loaded.checkins_by_subject) == list(state.checkins_by_subject)
    assert touches(loaded) == touches(state)
    assert any(
        type(e.body) is not CheckInRecorded
        for s in state.checkin_touch
        if (e := state.checkin_touched(s)) is not None
    )
    assert {i: list(n.observations) for i, n in loaded.indicators.items()} == {
        i: list(n.observations) for i, n in state.indicators.items()
    }
    assert {t: (n.done, n.done_by) for t, n in loaded.tasks.items()} == {
        t: (n.done, n.done_by) for t, n in state.tasks.items()
    }
    # References to an event are the one decoded event, as after a fold.
    for node in loaded.milestones.values():
        if node.event.id in loaded.events:
            assert node.event is loaded.events[node.event.id]
        assert all(loaded.tasks[task.event.id] is task for task in node.tasks)


@LAYOUTS
@pytest.mark.parametrize("cut", [1, 700, 2500, 3999])
def test_a_snapshot_and_the_tail_equal_a_fold_of_everything(
    history: list[Event], cut: int, compacted: bool
) -> None:
    head = rebuild(history[:cut])
    resumed = round_trip(head, cut, compacted=compacted)
    for event in history[cut:]:
        assert apply(resumed, event)  # none is taken for one the snapshot holds
    full = rebuild(history)
    same_views(full, resumed)
    assert touches(resumed) == touches(full)
    # And another snapshot of the resumed state (its tail as objects beside the rows, or
    # compacted into them: the touches loaded as rows renumbered) still loads to the same.
    same_views(full, round_trip(resumed, len(history)))
    again = round_trip(resumed, len(history), compacted=compacted)
    assert touches(resumed) == touches(full) == touches(again)
    same_views(full, again)


def touches(state: ProjectionState) -> dict[str, object]:
    """Every subject's and milestone's latest touch, as events."""
    found: dict[str, object] = {s: state.checkin_touched(s) for s in state.checkin_touch}
    found.update((f"milestone {m}", node.touched) for m, node in state.milestones.items())
    return found


@given(
    histories(max_events=60, extreme=True),
    st.integers(min_value=0, max_value=60),
    st.randoms(use_true_random=False),
    st.booleans(),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_history_cut_anywhere_resumes_to_the_same_views(
    history: list[Event], cut: int, rng: random.Random, compacted: bool
) -> None:
    # Shuffled: children before parents wait (pending); extreme: odd instants and offsets.
    history = list(history)
    rng.shuffle(history)
    cut = min(cut, len(history))
    resumed = round_trip(rebuild(history[:cut]), cut, compacted=compacted)
    for event in history[cut:]:
        apply(resumed, event)
    full = rebuild(history)
    assert listed(resumed.feeds) == listed(full.feeds)
    assert {s: list(c) for s, c in resumed.checkins_by_subject.items()} == {
        s: list(c) for s, c in full.checkins_by_subject.items()
    }
    assert touches(resumed) == touches(full)
    assert resumed.pending.keys() == full.pending.keys()
    assert resumed.refused.keys() == full.refused.keys()
    same_views(full, resumed)
    if compacted:
        # The tail compacted into the loaded rows, in the middle of them (shuffled ids):
        # every row renumbered, the touches loaded as rows too.
        compact(resumed)
        assert touches(resumed) == touches(full)
        same_views(full, resumed)


def test_a_tail_compacted_into_loaded_rows_renumbers_what_names_them(
    history: list[Event],
) -> None:
    # Shuffled: the tail's ids fall between the loaded rows', so every row moves.
    shuffled = list(history)
    random.Random(7).shuffle(shuffled)
    resumed = round_trip(rebuild(shuffled[:2000]), 2000, compacted=True)
    named_by_rows = sum(isinstance(t, int) for t in resumed.checkin_touch.values())
    named_by_rows += sum(isinstance(m.touch, int) for m in resumed.milestones.values())
    assert named_by_rows > 20  # the touches loaded as rows
    for event in shuffled[2000:]:
        apply(resumed, event)
    assert compact(resumed) > 500
    full = rebuild(shuffled)
    assert touches(resumed) == touches(full)
    same_views(full, resumed)


def test_a_view_asking_for_someone_unknown_is_not_kept(history: list[Event]) -> None:
    state = rebuild(history)
    state.person("nobody-yet")  # what a view of an unknown person leaves behind
    loaded = round_trip(state)
    assert "nobody-yet" not in loaded.people


@pytest.mark.parametrize("where", [0.0, 0.3, 0.5, 0.9, 0.9999])
def test_a_flipped_byte_is_refused(history: list[Event], where: float) -> None:
    blob = persist.encode(rebuild(history), persist.Follower(len(history)))
    digest = persist.checksum(blob)
    damaged = bytearray(blob)
    damaged[int(len(blob) * where)] ^= 0x01
    with pytest.raises(persist.SnapshotInvalid, match="checksum"):
        persist.decode(bytes(damaged), digest)


def test_a_truncated_snapshot_is_refused_even_without_a_digest(history: list[Event]) -> None:
    blob = persist.encode(rebuild(history[:500]), persist.Follower(500))
    with pytest.raises(persist.SnapshotInvalid, match="does not decode"):
        persist.decode(blob[: len(blob) // 2])


def test_a_snapshot_of_another_fold_is_refused(
    history: list[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(persist, "FOLD_VERSION", "0-older")
    blob = persist.encode(rebuild(history[:300]), persist.Follower(300))
    monkeypatch.undo()
    with pytest.raises(persist.SnapshotInvalid, match="fold 0-older"):
        persist.decode(blob, persist.checksum(blob))


def test_an_inconsistent_snapshot_is_refused(history: list[Event]) -> None:
    state = rebuild(history[:800])
    state.events.pop(next(iter(state.tasks)))  # a task whose event is missing
    blob = persist.encode(state, persist.Follower(800))
    with pytest.raises(persist.SnapshotInvalid, match="inconsistent"):
        persist.decode(blob, persist.checksum(blob))


def _project_imports(module: str) -> set[str]:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            if name.split(".")[0] in {"events", "projections"}:
                if name in {"events", "projections"}:
                    continue
                found.add(name)
    return found


def test_the_fold_version_covers_every_module_the_fold_runs() -> None:
    # A change to any of them must invalidate old snapshots: walk the imports.
    todo = ["projections.state", "events.codec", "events.envelope"]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += _project_imports(module)
    package_init = _project_imports("events")
    seen |= package_init
    assert seen - set(persist.FOLD_MODULES) == set()
    assert persist.FOLD_VERSION.startswith(f"{persist.FORMAT}-")
