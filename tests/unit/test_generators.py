"""The event generators produce valid, coherent histories.

``milepost_testkit/strategies.py`` (hypothesis) and ``milepost_testkit/history.py``
feed many other tests; here we check that what they make is what they claim.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings

import events
from events.bodies import (
    CheckInRecorded,
    Corrected,
    KeyResultAdded,
    MilestonePlanned,
    PauseDeclared,
    Retracted,
)
from milepost_testkit.history import generate_history, history_bytes, write_jsonl
from milepost_testkit.strategies import ADMIN, History, events_strategy, histories, references

# --- single events ----------------------------------------------------------------------


def _round_trips(event: events.Event) -> None:
    data = events.encode(event)
    decoded = events.decode(data)
    assert decoded == event
    assert events.encode(decoded) == data


@given(events_strategy())
def test_every_generated_event_round_trips(event: events.Event) -> None:
    _round_trips(event)


@pytest.mark.parametrize(
    "body_type", sorted(events.BODY_TYPES.values(), key=str), ids=lambda t: t.__name__
)
def test_every_body_type_is_generated(body_type: type[events.bodies.Body]) -> None:
    @given(events_strategy([body_type]))
    def check(event: events.Event) -> None:
        assert type(event.body) is body_type
        _round_trips(event)

    check()


# --- histories --------------------------------------------------------------------------

_REFERENCE_TYPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("key_result.added", "objective"): ("objective.created",),
    ("milestone.planned", "key_result"): ("key_result.added",),
    ("milestone.planned", "objective"): ("objective.created",),
    ("milestone.relinked", "key_result"): ("key_result.added",),
    ("milestone.relinked", "objective"): ("objective.created",),
    ("indicator.defined", "objective"): ("objective.created",),
    ("checkin.recorded", "subject"): ("key_result.added", "milestone.planned"),
    ("observation.recorded", "indicator"): ("indicator.defined",),
    ("sharing.changed", "subject"): (
        "objective.created",
        "milestone.planned",
        "indicator.defined",
        "observation.recorded",
    ),
    ("task.completed", "task"): ("task.added",),
    ("task.reopened", "task"): ("task.added",),
    ("kudos.given", "completion"): ("milestone.completed",),
}
_MILESTONE_EDITS = {
    "milestone.completed",
    "milestone.reopened",
    "milestone.dropped",
    "milestone.restored",
    "milestone.rescheduled",
    "milestone.relinked",
    "task.added",
}


def _check_history(history: History) -> None:
    ids = [e.id for e in history]
    assert len(set(ids)) == len(ids), "event ids repeat"
    assert not history.dangling & set(ids)
    seen: dict[str, events.Event] = {}
    for event in history:
        _round_trips(event)
        if event.actor == ADMIN:
            assert event.type.startswith("team.member_")
            assert event.body.person in history.people  # type: ignore[union-attr]
        else:
            assert event.device in history.devices[event.actor]
        for field, ref in references(event.body).items():
            if ref in history.dangling or event.id in history.hostile:
                continue
            assert ref in seen, f"{event.type}.{field} names a later or unknown event"
            target = seen[ref]
            assert target.clock < event.clock, "a reference must be causally earlier"
            if field == "milestone" and event.type in _MILESTONE_EDITS:
                assert target.type == "milestone.planned"
            elif isinstance(event.body, Corrected | Retracted):
                assert target.actor == event.actor
            else:
                assert target.type in _REFERENCE_TYPES[(event.type, field)], (event.type, field)
        if isinstance(event.body, CheckInRecorded) and event.body.subject in seen:
            subject = seen[event.body.subject].body
            if isinstance(subject, KeyResultAdded):
                assert event.body.percent is None
            elif isinstance(subject, MilestonePlanned):
                assert event.body.value is None
        seen[event.id] = event


@given(histories())
def test_histories_are_coherent(history: History) -> None:
    _check_history(history)


@given(histories(max_people=6, max_devices=3, max_teams=3, max_events=80))
def test_larger_histories_are_coherent(history: History) -> None:
    _check_history(history)


def test_histories_cover_the_interesting_cases() -> None:
    """Across a few hundred histories every body type and a concurrent edit appear."""
    types: set[str] = set()
    concurrent = dangling = 0

    @settings(max_examples=250, deadline=None)
    @given(histories())
    def collect(history: History) -> None:
        nonlocal concurrent, dangling
        types.update(e.type for e in history)
        dangling += bool(history.dangling)
        by_milestone: dict[str, list[events.Event]] = defaultdict(list)
        for e in history:
            milestone = getattr(e.body, "milestone", None)
            if milestone is not None and e.type.startswith("milestone."):
                by_milestone[milestone].append(e)
        for edits in by_milestone.values():
            for a, b in itertools.pairwise(edits):
                close = abs((a.clock >> 16) - (b.clock >> 16)) <= 5000
                if a.device != b.device and a.actor == b.actor and close:
                    concurrent += 1

    collect()
    assert types >= set(events.BODY_TYPES), set(events.BODY_TYPES) - types
    assert concurrent > 0
    assert dangling > 0


# --- the benchmark history --------------------------------------------------------------

_TARGET = 20_000


@pytest.fixture(scope="module")
def small_history() -> list[events.Event]:
    return list(generate_history(target_events=_TARGET, seed=7))


def test_history_hits_its_target(small_history: list[events.Event]) -> None:
    assert abs(len(small_history) - _TARGET) <= _TARGET * 0.05


@pytest.mark.parametrize(("people", "months", "target"), [(10, 3, 4000), (5, 12, 60_000)])
def test_history_hits_other_targets(people: int, months: int, target: int) -> None:
    count = sum(1 for _ in generate_history(people, 2, months, target, seed=3))
    assert abs(count - target) <= target * 0.05


def test_history_is_deterministic(small_history: list[events.Event]) -> None:
    again = list(generate_history(target_events=_TARGET, seed=7))
    assert [events.encode(e) for e in again] == [events.encode(e) for e in small_history]
    other = [e.id for e in generate_history(target_events=_TARGET, seed=8)]
    assert other != [e.id for e in small_history]


def test_history_sample_round_trips(small_history: list[events.Event]) -> None:
    rng = random.Random(0)
    for event in rng.sample(small_history, 2000):
        _round_trips(event)
    by_type: dict[str, events.Event] = {}
    for event in small_history:
        by_type.setdefault(event.type, event)
    for event in by_type.values():
        _round_trips(event)


def test_history_is_coherent(small_history: list[events.Event]) -> None:
    ids = [e.id for e in small_history]
    assert len(set(ids)) == len(ids)
    recorded = [e.recorded_at for e in small_history]
    assert recorded == sorted(recorded), "events come in recorded-time order"
    seen: dict[str, events.Event] = {}
    last_clock: dict[str, int] = {}
    for event in small_history:
        assert event.occurred_at <= event.recorded_at
        assert event.clock > last_clock.get(event.device, -1)
        last_clock[event.device] = event.clock
        for field, ref in references(event.body).items():
            assert ref in seen, f"{event.type}.{field} names an unknown or later event"
            assert seen[ref].actor == event.actor
            assert seen[ref].occurred_at <= event.occurred_at or event.type in (
                "correction",
                "retraction",
                "sharing.changed",
            )
        seen[event.id] = event
    people = {e.actor for e in small_history} - {"admin"}
    assert len(people) == 100
    teams = {e.body.team for e in small_history if e.type == "team.member_joined"}  # type: ignore[union-attr]
    assert len(teams) == 10


def test_every_person_checks_in_every_month_outside_pauses(
    small_history: list[events.Event],
) -> None:
    checkin_months: dict[str, set[tuple[int, int]]] = defaultdict(set)
    paused: dict[str, set[date]] = defaultdict(set)
    for event in small_history:
        if isinstance(event.body, CheckInRecorded):
            when = event.occurred_at
            checkin_months[event.actor].add((when.year, when.month))
        elif isinstance(event.body, PauseDeclared):
            day = event.body.starts_on
            while day <= event.body.ends_on:
                paused[event.actor].add(day)
                day += timedelta(days=1)
    people = {e.actor for e in small_history} - {"admin"}
    assert sum(1 for p in people if paused[p]) >= 30, "about half the people take a leave"
    for person in people:
        for month in range(1, 13):
            day = date(2026, month, 1)
            free_run = longest = 0
            while day.month == month:  # a week without pause always holds a check-in day
                free_run = 0 if day in paused[person] else free_run + 1
                longest = max(longest, free_run)
                day += timedelta(days=1)
            if longest >= 7:
                assert (2026, month) in checkin_months[person], (person, month)


def test_history_bytes_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import milepost_testkit.history as history

    monkeypatch.setattr(history, "DATA_DIR", tmp_path)
    first = history_bytes(people=5, teams=2, months=2, target_events=1500, seed=2)
    files = list(tmp_path.iterdir())
    assert len(files) == 1
    assert history_bytes(people=5, teams=2, months=2, target_events=1500, seed=2) == first
    assert first == history_bytes(5, 2, 2, 1500, 2, cache=False)
    assert all(isinstance(events.decode(line), events.Event) for line in first)
    out = tmp_path / "copy.jsonl"
    assert write_jsonl(out, generate_history(5, 2, 2, 1500, 2)) == len(first)
    assert out.read_bytes() == b"\n".join(first) + b"\n"
