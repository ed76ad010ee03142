"""Hypothesis strategies for Milepost events.

* ``events_strategy()`` — any single valid ``events.Event`` of any body type,
  every field inside its declared limits, boundaries included (titles of 1
  and 200 characters, notes of 4000, percent 0 and 100, measures ±1e15, 50
  stages, 50 partners, unicode everywhere).
* ``histories()`` — a coherent history of a few people, devices and teams:
  creations before references, concurrent edits of one milestone from two
  devices with close clock stamps, sharing changes, team joins and leaves,
  corrections and retractions of earlier events, pauses, indicator
  observations, and now and then a reference to an event that is not in the
  history (listed in ``History.dangling``).

Every event is built with the Struct constructors, which run the cross-field
checks (``__post_init__``) but not the field limits: the strategies keep the
values inside the limits themselves, and the tests round-trip them.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, TypeVar

from hypothesis import strategies as st

import events
from events.bodies import (
    MAX_DATE,
    MIN_DATE,
    Body,
    Changes,
    CheckInRecorded,
    Corrected,
    IndicatorDefined,
    KeyResultAdded,
    KnownBody,
    KudosGiven,
    MilestoneCompleted,
    MilestoneDropped,
    MilestonePlanned,
    MilestoneRelinked,
    MilestoneReopened,
    MilestoneRescheduled,
    MilestoneRestored,
    ObjectiveCreated,
    ObservationRecorded,
    PauseDeclared,
    Retracted,
    SharingChanged,
    TaskAdded,
    TaskCompleted,
    TaskReopened,
    TeamMemberJoined,
    TeamMemberLeft,
    Visibility,
)
from events.clock import MAX_STAMP, HybridLogicalClock
from events.codec import MAX_EVENT_BYTES
from milepost_testkit.history import ADMIN, ADMIN_DEVICE

__all__ = [
    "ADMIN",
    "ADMIN_DEVICE",
    "History",
    "body_strategy",
    "events_strategy",
    "histories",
    "references",
]

T = TypeVar("T")
Draw = Callable[[st.SearchStrategy[Any]], Any]


# --- leaves: every field type within its limits ---------------------------------------

_LOWER = string.ascii_lowercase
_HANDLE_TAIL = _LOWER + string.digits + "_-"

event_ids: st.SearchStrategy[str] = st.uuids().map(str)
person_ids: st.SearchStrategy[str] = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(_LOWER),
    st.one_of(st.text(_HANDLE_TAIL, max_size=8), st.text(_HANDLE_TAIL, min_size=62, max_size=62)),
)
team_ids = person_ids
device_ids: st.SearchStrategy[str] = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(_LOWER + string.digits),
    st.text(_HANDLE_TAIL, max_size=12),
)


def _long(size: int) -> st.SearchStrategy[str]:
    """A string of exactly ``size`` characters, cheap to generate (one draw)."""
    return st.sampled_from(["a", "é", "日", "😀", " ", "\n", "\\", '"']).map(lambda c: c * size)


titles: st.SearchStrategy[str] = st.one_of(
    st.text(min_size=1, max_size=40),
    st.text(min_size=1, max_size=1),
    st.text(min_size=150, max_size=200),
    _long(200),
    _long(1),
)
notes: st.SearchStrategy[str] = st.one_of(st.just(""), st.text(max_size=300), _long(4000))
texts: st.SearchStrategy[str] = st.one_of(st.text(min_size=1, max_size=300), _long(4000), _long(1))
units: st.SearchStrategy[str] = st.one_of(st.text(max_size=8), _long(40), st.just(""))
measures: st.SearchStrategy[float] = st.one_of(
    st.floats(min_value=-1e15, max_value=1e15, allow_nan=False, allow_infinity=False),
    st.sampled_from([-1e15, 1e15, 0.0, -0.0, 0.5, 5e-324]),
)
percents: st.SearchStrategy[float] = st.one_of(
    st.floats(min_value=0, max_value=100, allow_nan=False), st.sampled_from([0.0, 100.0])
)
weights: st.SearchStrategy[float] = st.one_of(
    st.floats(min_value=0, max_value=1000, exclude_min=True, allow_nan=False),
    st.sampled_from([1000.0, 1.0, 5e-324]),
)
stage_indexes: st.SearchStrategy[int] = st.integers(min_value=0, max_value=49)
cycles: st.SearchStrategy[str] = st.builds(
    lambda year, suffix: f"{year:04d}{suffix}",
    st.one_of(
        st.integers(min_value=MIN_DATE.year, max_value=MAX_DATE.year),
        st.sampled_from([MIN_DATE.year, MAX_DATE.year]),
    ),
    st.sampled_from(
        ["", "-Q1", "-Q2", "-Q3", "-Q4", "-H1", "-H2"] + [f"-{m:02d}" for m in range(1, 13)]
    ),
)
dates: st.SearchStrategy[date] = st.one_of(
    st.dates(min_value=MIN_DATE, max_value=MAX_DATE), st.sampled_from([MIN_DATE, MAX_DATE])
)
"""Any date an event may carry, the two ends of the range included."""
visibilities = st.sampled_from(["private", "partners", "team"])
cadences = st.sampled_from(["weekly", "biweekly", "monthly"])
confidences = st.sampled_from(["on-track", "at-risk", "off-track"])
polarities = st.sampled_from(["positive", "negative"])
timezones: st.SearchStrategy[timezone] = st.one_of(
    st.just(UTC),
    st.integers(min_value=-14 * 60, max_value=14 * 60).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    ),
)
_FIRST_INSTANT = datetime.combine(MIN_DATE, time.min)
_LAST_INSTANT = datetime.combine(MAX_DATE, time.max)
instants: st.SearchStrategy[datetime] = st.one_of(
    st.datetimes(min_value=_FIRST_INSTANT, max_value=_LAST_INSTANT, timezones=timezones),
    st.builds(
        datetime.replace,
        st.sampled_from([_FIRST_INSTANT, _LAST_INSTANT]),
        tzinfo=st.sampled_from([timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))]),
    ),
)
"""Any instant an event may carry: its date as written in 1970..2199, extreme offsets too."""
stamps: st.SearchStrategy[int] = st.one_of(
    st.integers(min_value=0, max_value=MAX_STAMP), st.sampled_from([0, MAX_STAMP])
)


@st.composite
def _sharing(draw: Draw) -> tuple[str, tuple[str, ...]]:
    visibility: str = draw(visibilities)
    if visibility != "partners":
        return visibility, ()
    partners = draw(
        st.one_of(
            st.lists(person_ids, max_size=4, unique=True),
            st.lists(person_ids, min_size=50, max_size=50, unique=True),
        )
    )
    return visibility, tuple(partners)


def _optional(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.one_of(st.none(), strategy)


# --- bodies -----------------------------------------------------------------------------


@st.composite
def _objective_created(draw: Draw) -> ObjectiveCreated:
    visibility, partners = draw(_sharing())
    return ObjectiveCreated(
        title=draw(titles),
        cycle=draw(cycles),
        description=draw(notes),
        cadence=draw(cadences),
        visibility=visibility,
        partners=partners,
    )


@st.composite
def _key_result_added(draw: Draw) -> KeyResultAdded:
    kind = draw(st.sampled_from(["increase", "decrease", "stay-above", "stay-below"]))
    start: float | None = None
    target: float | None = None
    if kind in ("increase", "decrease"):
        if draw(st.booleans()):
            a, b = draw(st.lists(measures, min_size=2, max_size=2, unique=True))
            if a == b:  # 0.0 and -0.0
                a, b = 0.0, 1.0
            low, high = sorted((a, b))
            start, target = (low, high) if kind == "increase" else (high, low)
    else:
        start = draw(_optional(measures))
        target = draw(measures)
    return KeyResultAdded(
        objective=draw(event_ids),
        title=draw(titles),
        kind=kind,
        start=start,
        target=target,
        unit=draw(units),
        weight=draw(weights),
        cadence=draw(_optional(cadences)),
    )


@st.composite
def _milestone_planned(draw: Draw) -> MilestonePlanned:
    visibility, partners = draw(_sharing())
    return MilestonePlanned(
        title=draw(titles),
        due_on=draw(_optional(dates)),
        key_result=draw(_optional(event_ids)),
        objective=draw(_optional(event_ids)),
        description=draw(notes),
        visibility=visibility,
        partners=partners,
    )


@st.composite
def _checkin(draw: Draw) -> CheckInRecorded:
    which = draw(st.sampled_from(["value", "percent", "neither"]))
    return CheckInRecorded(
        subject=draw(event_ids),
        confidence=draw(confidences),
        value=draw(measures) if which == "value" else None,
        percent=draw(percents) if which == "percent" else None,
        note=draw(notes),
    )


@st.composite
def _indicator(draw: Draw) -> IndicatorDefined:
    visibility, partners = draw(_sharing())
    stages = draw(
        st.one_of(
            st.lists(titles, min_size=1, max_size=6, unique_by=str.casefold),
            # fifty distinct stages, some at the full 200 characters
            st.integers(min_value=1, max_value=150).map(
                lambda width: [f"{i:02d} " + "é" * width for i in range(50)]
            ),
        )
    )
    return IndicatorDefined(
        title=draw(titles),
        stages=tuple(stages),
        objective=draw(_optional(event_ids)),
        description=draw(notes),
        visibility=visibility,
        partners=partners,
    )


@st.composite
def _observation(draw: Draw) -> ObservationRecorded:
    visibility, partners = draw(_sharing())
    indicator = draw(_optional(event_ids))
    return ObservationRecorded(
        text=draw(texts),
        polarity=draw(polarities),
        indicator=indicator,
        stage=None if indicator is None else draw(_optional(stage_indexes)),
        impact=draw(notes),
        visibility=visibility,
        partners=partners,
    )


@st.composite
def _sharing_changed(draw: Draw) -> SharingChanged:
    visibility, partners = draw(_sharing())
    return SharingChanged(subject=draw(event_ids), visibility=visibility, partners=partners)


_CHANGE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "title": titles,
    "description": notes,
    "note": notes,
    "value": measures,
    "percent": percents,
    "confidence": confidences,
    "start": measures,
    "target": measures,
    "unit": units,
    "weight": weights,
    "cadence": cadences,
    "text": texts,
    "polarity": polarities,
    "stage": stage_indexes,
    "impact": notes,
    "did": notes,
    "why": notes,
    "outcome": notes,
}


@st.composite
def _changes(draw: Draw) -> Changes:
    names = draw(
        st.lists(st.sampled_from(sorted(_CHANGE_FIELDS)), min_size=1, max_size=5, unique=True)
    )
    return Changes(**{name: draw(_CHANGE_FIELDS[name]) for name in names})


@st.composite
def _pause(draw: Draw) -> PauseDeclared:
    a, b = sorted(draw(st.lists(dates, min_size=2, max_size=2)))
    return PauseDeclared(starts_on=a, ends_on=b, reason=draw(notes))


BODY_STRATEGIES: dict[type[Body], st.SearchStrategy[Body]] = {
    ObjectiveCreated: _objective_created(),
    KeyResultAdded: _key_result_added(),
    MilestonePlanned: _milestone_planned(),
    MilestoneRescheduled: st.builds(
        MilestoneRescheduled, milestone=event_ids, due_on=_optional(dates), reason=notes
    ),
    MilestoneCompleted: st.builds(
        MilestoneCompleted, milestone=event_ids, did=notes, why=notes, outcome=notes
    ),
    MilestoneReopened: st.builds(MilestoneReopened, milestone=event_ids, reason=notes),
    MilestoneDropped: st.builds(MilestoneDropped, milestone=event_ids, reason=notes),
    MilestoneRestored: st.builds(MilestoneRestored, milestone=event_ids),
    MilestoneRelinked: st.builds(
        MilestoneRelinked,
        milestone=event_ids,
        key_result=_optional(event_ids),
        objective=_optional(event_ids),
    ),
    TaskAdded: st.builds(TaskAdded, milestone=event_ids, title=titles),
    TaskCompleted: st.builds(TaskCompleted, task=event_ids),
    TaskReopened: st.builds(TaskReopened, task=event_ids),
    CheckInRecorded: _checkin(),
    IndicatorDefined: _indicator(),
    ObservationRecorded: _observation(),
    SharingChanged: _sharing_changed(),
    Corrected: st.builds(Corrected, target=event_ids, changes=_changes(), reason=notes),
    Retracted: st.builds(Retracted, target=event_ids, reason=notes),
    PauseDeclared: _pause(),
    TeamMemberJoined: st.builds(TeamMemberJoined, team=team_ids, person=person_ids),
    TeamMemberLeft: st.builds(TeamMemberLeft, team=team_ids, person=person_ids),
    KudosGiven: st.builds(KudosGiven, completion=event_ids, note=st.sampled_from(["", "Nice!"])),
}
assert set(BODY_STRATEGIES) == set(events.BODY_TYPES.values()), "a body type has no strategy"


def body_strategy(types: Iterable[type[Body]] | None = None) -> st.SearchStrategy[KnownBody]:
    """Any valid body (of the given types, default all)."""
    chosen = list(BODY_STRATEGIES) if types is None else list(types)
    strategy: st.SearchStrategy[Any] = st.one_of([BODY_STRATEGIES[t] for t in chosen])
    return strategy


def _fits(event: events.Event) -> bool:
    # A few bodies can be valid field by field yet encode to more than the codec
    # accepts (e.g. a correction with seven 4000-character notes of 4-byte
    # characters): those are not valid events.
    return len(events.encode(event)) <= MAX_EVENT_BYTES


def events_strategy(types: Iterable[type[Body]] | None = None) -> st.SearchStrategy[events.Event]:
    """Any single valid ``events.Event`` (bodies of the given types, default all)."""
    return st.builds(
        events.Event,
        id=event_ids,
        actor=person_ids,
        device=device_ids,
        clock=stamps,
        recorded_at=instants,
        occurred_at=instants,
        body=body_strategy(types),
    ).filter(_fits)


# --- coherent histories -----------------------------------------------------------------

_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
_TITLES = ("Ship it", "Café ☕ launch", "Cut latency", "日本語ドキュメント", "Hire 2", "x")
_BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
_DAY_MS = 86_400_000


class History(list[events.Event]):
    """The events of a generated history, in the order they were made.

    ``dangling`` holds ids that events reference on purpose but that are not in
    the history; every other reference names an earlier event of the right
    type whose clock stamp is lower than the referencing event's.
    """

    dangling: frozenset[str]
    hostile: frozenset[str]
    """Ids of events that break the ownership rule on purpose (every replica refuses them)."""
    people: tuple[str, ...]
    teams: tuple[str, ...]
    devices: dict[str, tuple[str, ...]]


_REFERENCE_FIELDS = (
    "objective",
    "key_result",
    "milestone",
    "task",
    "subject",
    "indicator",
    "target",
    "completion",
)


def references(body: Body) -> dict[str, str]:
    """The event ids a body names, by field (``target`` of a key result is a number)."""
    found: dict[str, str] = {}
    for name in _REFERENCE_FIELDS:
        value = getattr(body, name, None)
        if isinstance(value, str):
            found[name] = value
    return found


class _Device:
    __slots__ = ("clock", "id", "person", "skew")

    def __init__(self, person: str, did: str, skew: int, wall: list[int]) -> None:
        self.person = person
        self.id = did
        self.skew = skew
        self.clock = HybridLogicalClock(wall=lambda: wall[0] + skew)


class _Builder:
    """Mutable state of one history under construction."""

    def __init__(self, draw: Draw, extreme: bool = False) -> None:
        self.draw = draw
        self.extreme = extreme
        self.wall = [_BASE_MS]
        self.now = _BASE_MS
        self.events = History()
        self.by_id: dict[str, events.Event] = {}
        self.dangling: set[str] = set()
        self.hostile: set[str] = set()
        self.counter = 0
        # per person: ids of items by kind
        self.items: dict[str, dict[str, list[str]]] = {}
        self.milestone_kr: dict[str, str | None] = {}
        self.kr_objective: dict[str, str] = {}
        self.indicator_stages: dict[str, int] = {}
        self.members: dict[str, set[str]] = {}

    def new_id(self, ms: int) -> str:
        self.counter += 1
        rand_a = self.draw(st.integers(min_value=0, max_value=0xFFF))
        value = (
            (ms & 0xFFFFFFFFFFFF) << 80
            | 0x7 << 76
            | rand_a << 64
            | 0b10 << 62
            | self.counter << 20
            | (self.counter * 2654435761) & 0xFFFFF
        )
        h = f"{value:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def emit(
        self,
        device: _Device,
        body: KnownBody,
        refs: Iterable[str] = (),
        *,
        far_ahead: bool = False,
    ) -> str:
        """Make an event on ``device`` now; the device first learns of what it references.
        ``far_ahead``: a forged stamp a year ahead (the device's clock does not keep it)."""
        for ref in refs:
            known = self.by_id.get(ref)
            if known is not None:
                device.clock.observe(known.clock)
        self.wall[0] = self.now
        stamp = device.clock.now()
        if far_ahead:
            stamp += (365 * _DAY_MS) << 16
        recorded_ms = self.now + device.skew
        recorded = datetime.fromtimestamp(recorded_ms / 1000, UTC)
        occurred = recorded
        if self.draw(st.integers(0, 9)) == 0:  # logged later: yesterday's win
            occurred = recorded - timedelta(milliseconds=self.draw(st.integers(1, 2 * _DAY_MS)))
        if self.extreme and self.draw(st.integers(0, 4)) == 0:
            # built by hand: any instant and any stamp the codec accepts
            occurred = self.draw(instants)
            if self.draw(st.booleans()):
                recorded = self.draw(instants)
            if self.draw(st.booleans()):
                stamp = self.draw(stamps)
        event = events.Event(
            id=self.new_id(recorded_ms),
            actor=device.person,
            device=device.id,
            clock=stamp,
            recorded_at=recorded,
            occurred_at=occurred,
            body=body,
        )
        self.events.append(event)
        self.by_id[event.id] = event
        if device.person != ADMIN and not far_ahead:
            self.items.setdefault(device.person, {}).setdefault(event.type, []).append(event.id)
        return event.id

    def wild(self, anything: st.SearchStrategy[T], usual: st.SearchStrategy[T]) -> T:
        """A value of ``usual``; in an extreme history, now and then one of ``anything``."""
        rare = self.extreme and self.draw(st.integers(0, 2)) == 0
        value: T = self.draw(anything if rare else usual)
        return value

    def pick(self, person: str, *kinds: str) -> str | None:
        """An existing item of the person (or, now and then, a dangling id)."""
        if self.draw(st.integers(0, 39)) == 0:
            dangling = self.new_id(self.now - _DAY_MS)
            self.dangling.add(dangling)
            return dangling
        mine = self.items.get(person, {})
        pool = [i for kind in kinds for i in mine.get(kind, ())]
        if not pool:
            return None
        chosen: str = self.draw(st.sampled_from(pool))
        return chosen


_ACTIONS = (
    "objective",
    "kr",
    "kr",
    "milestone",
    "milestone",
    "task",
    "task_state",
    "checkin",
    "checkin",
    "checkin",
    "milestone_edit",
    "concurrent",
    "concurrent",
    "indicator",
    "observe",
    "journal",
    "share",
    "team",
    "correct",
    "retract",
    "pause",
    "hostile",
    "hostile",
    "kudos",
)


def _in_2026(days: int) -> date:
    return date(2026, 1, 1) + timedelta(days=days)


@st.composite
def histories(
    draw: Draw,
    max_people: int = 4,
    max_devices: int = 2,
    max_teams: int = 2,
    max_events: int = 60,
    extreme: bool = False,
) -> History:
    """A coherent random history of several people, devices and teams.

    ``extreme``: now and then a date, cycle, number, instant or clock stamp is drawn
    from the whole range the codec accepts (as a hostile or broken client would send).
    """
    b = _Builder(draw, extreme)
    n_people = draw(st.integers(1, max(1, max_people)))
    people = (
        list(_NAMES[:n_people]) if n_people <= len(_NAMES) else [f"p{i}" for i in range(n_people)]
    )
    teams = [f"team-{c}" for c in _LOWER[: draw(st.integers(1, max(1, max_teams)))]]
    devices: dict[str, list[_Device]] = {}
    for person in people:
        count = draw(st.integers(1, max(1, max_devices)))
        devices[person] = [
            _Device(person, f"{person}-d{j}", draw(st.integers(-2000, 2000)), b.wall)
            for j in range(count)
        ]
    admin = _Device(ADMIN, ADMIN_DEVICE, 0, b.wall)
    # everyone joins a team first (a few join two)
    for person in people:
        first = draw(st.sampled_from(teams))
        joined = [first]
        if len(teams) > 1 and draw(st.integers(0, 4)) == 0:
            joined.append(draw(st.sampled_from([t for t in teams if t != first])))
        for team in joined:
            b.now += 1000
            b.emit(admin, TeamMemberJoined(team=team, person=person))
            b.members.setdefault(person, set()).add(team)

    steps = draw(st.integers(0, max(0, max_events - len(b.events))))
    while len(b.events) < max_events and steps > 0:
        steps -= 1
        b.now += draw(st.sampled_from([0, 1, 3, 1000, 60_000, 3_600_000, _DAY_MS, 3 * _DAY_MS]))
        person = draw(st.sampled_from(people))
        device = draw(st.sampled_from(devices[person]))
        if draw(st.booleans()):  # synced: knows everything its person's devices made
            for other in devices[person]:
                device.clock.observe(other.clock.last)
        action: str | None = draw(st.sampled_from(_ACTIONS))
        while action is not None:  # when an action lacks its subject, create one instead
            if _step(b, action, person, device, devices, people, teams, admin):
                break
            action = _PREREQUISITE.get(action)

    b.events.dangling = frozenset(b.dangling)
    b.events.hostile = frozenset(b.hostile)
    b.events.people = tuple(people)
    b.events.teams = tuple(teams)
    b.events.devices = {p: tuple(d.id for d in ds) for p, ds in devices.items()}
    return b.events


def _partners_of(b: _Builder, person: str, people: list[str]) -> tuple[Visibility, tuple[str, ...]]:
    """A visibility and, for ``partners``, partners drawn among the other people."""
    visibility: Visibility = b.draw(visibilities)
    partners: tuple[str, ...] = ()
    if visibility == "partners":
        others = [p for p in people if p != person]
        partners = tuple(b.draw(st.lists(st.sampled_from(others), unique=True))) if others else ()
    return visibility, partners


_PREREQUISITE = {
    "kr": "objective",
    "task": "milestone",
    "task_state": "task",
    "checkin": "milestone",
    "milestone_edit": "milestone",
    "concurrent": "milestone",
    "observe": "indicator",
    "share": "journal",
    "correct": "checkin",
    "retract": "checkin",
    "kudos": "milestone_edit",
}


def _step(
    b: _Builder,
    action: str,
    person: str,
    device: _Device,
    devices: dict[str, list[_Device]],
    people: list[str],
    teams: list[str],
    admin: _Device,
) -> bool:
    """Make the events of one action; False when it has nothing to act on."""
    draw = b.draw
    if action == "objective":
        visibility, partners = _partners_of(b, person, people)
        b.emit(
            device,
            ObjectiveCreated(
                title=draw(st.sampled_from(_TITLES)),
                cycle=b.wild(
                    cycles, st.sampled_from(["2026-Q1", "2026-Q2", "2026", "2026-H2", "2026-03"])
                ),
                cadence=draw(cadences),
                visibility=visibility,
                partners=partners,
            ),
        )
    elif action == "kr":
        objective = b.pick(person, "objective.created")
        if objective is None:
            return False
        kind = draw(st.sampled_from(["increase", "decrease", "stay-above", "stay-below", "none"]))
        start: float | None = float(draw(st.integers(0, 50)))
        target: float | None = float(draw(st.integers(51, 100)))
        if b.extreme and draw(st.booleans()):
            start, target = sorted(draw(st.lists(measures, min_size=2, max_size=2, unique=True)))
            if start == target:  # 0.0 and -0.0
                start, target = 0.0, 1e15
        if kind == "decrease":
            start, target = target, start
        elif kind in ("stay-above", "stay-below"):
            start = None
        elif kind == "none":
            kind, start, target = "increase", None, None
        kid = b.emit(
            device,
            KeyResultAdded(
                objective=objective,
                title=draw(st.sampled_from(_TITLES)),
                kind=kind,
                start=start,
                target=target,
                weight=float(draw(st.integers(1, 3))),
            ),
            [objective],
        )
        b.kr_objective[kid] = objective
    elif action == "milestone":
        link = draw(st.sampled_from(["kr", "kr", "objective", "none"]))
        kr = b.pick(person, "key_result.added") if link == "kr" else None
        objective = b.pick(person, "objective.created") if link == "objective" else None
        visibility, partners = (
            _partners_of(b, person, people) if kr is None and objective is None else ("private", ())
        )
        due = b.wild(dates, st.integers(0, 400).map(_in_2026))
        mid = b.emit(
            device,
            MilestonePlanned(
                title=draw(st.sampled_from(_TITLES)),
                due_on=due if draw(st.integers(0, 5)) else None,
                key_result=kr,
                objective=objective,
                visibility=visibility,
                partners=partners,
            ),
            [r for r in (kr, objective) if r],
        )
        b.milestone_kr[mid] = kr
    elif action == "task":
        milestone = b.pick(person, "milestone.planned")
        if milestone is None:
            return False
        b.emit(device, TaskAdded(milestone=milestone, title=draw(titles)), [milestone])
    elif action == "task_state":
        task = b.pick(person, "task.added")
        if task is None:
            return False
        state: KnownBody = (
            TaskCompleted(task=task) if draw(st.booleans()) else TaskReopened(task=task)
        )
        b.emit(device, state, [task])
    elif action == "checkin":
        subject = b.pick(person, "key_result.added", "milestone.planned")
        if subject is None:
            return False
        known = b.by_id.get(subject)
        is_kr = known is not None and isinstance(known.body, KeyResultAdded)
        b.emit(
            device,
            CheckInRecorded(
                subject=subject,
                confidence=draw(confidences),
                value=b.wild(measures, st.integers(-10, 120).map(float)) if is_kr else None,
                percent=b.wild(percents, st.integers(0, 100).map(float)) if not is_kr else None,
                note=draw(st.sampled_from(["", "ok", "blocked ⛔"])),
            ),
            [subject],
        )
    elif action in ("milestone_edit", "concurrent"):
        milestone = b.pick(person, "milestone.planned")
        if milestone is None:
            return False
        pair = [device]
        if action == "concurrent" and len(devices[person]) > 1:
            # two devices that both know the milestone but not each other's edit
            first, second = draw(st.permutations(devices[person]))[:2]
            pair = [first, second]
        for index, dev in enumerate(pair):
            if index:
                b.now += draw(st.integers(0, 3))
            body = _milestone_edit(b, person, milestone)
            b.emit(dev, body, references(body).values())
    elif action == "indicator":
        visibility, partners = _partners_of(b, person, people)
        stages = draw(st.integers(1, 5))
        objective = b.pick(person, "objective.created") if draw(st.booleans()) else None
        iid = b.emit(
            device,
            IndicatorDefined(
                title=draw(st.sampled_from(_TITLES)),
                stages=tuple(f"Stage {i}" for i in range(stages)),
                objective=objective,
                visibility=visibility,
                partners=partners,
            ),
            [objective] if objective else [],
        )
        b.indicator_stages[iid] = stages
    elif action == "observe":
        indicator = b.pick(person, "indicator.defined")
        if indicator is None:
            return False
        stages = b.indicator_stages.get(indicator, 1)
        b.emit(
            device,
            ObservationRecorded(
                text=draw(st.sampled_from(["Asked users first", "Skipped review", "👍"])),
                polarity=draw(polarities),
                indicator=indicator,
                stage=draw(_optional(st.integers(0, stages - 1))),
            ),
            [indicator],
        )
    elif action == "journal":
        visibility, partners = _partners_of(b, person, people)
        b.emit(
            device,
            ObservationRecorded(
                text=draw(texts),
                polarity=draw(polarities),
                visibility=visibility,
                partners=partners,
            ),
        )
    elif action == "share":
        subject = b.pick(
            person,
            "objective.created",
            "milestone.planned",
            "indicator.defined",
            "observation.recorded",
        )
        if subject is None:
            return False
        visibility, partners = _partners_of(b, person, people)
        b.emit(
            device,
            SharingChanged(subject=subject, visibility=visibility, partners=partners),
            [subject],
        )
    elif action == "team":
        team = draw(st.sampled_from(teams))
        member = b.members.setdefault(person, set())
        if team in member and draw(st.booleans()):
            member.discard(team)
            b.emit(admin, TeamMemberLeft(team=team, person=person))
        else:
            member.add(team)
            b.emit(admin, TeamMemberJoined(team=team, person=person))
    elif action == "correct":
        fixed = b.pick(
            person, "checkin.recorded", "objective.created", "observation.recorded",
            "milestone.completed", "key_result.added",
        )  # fmt: skip
        if fixed is None:
            return False
        b.emit(
            device,
            Corrected(target=fixed, changes=_changes_for(b, fixed), reason="fix"),
            [fixed],
        )
    elif action == "retract":
        fixed = b.pick(
            person, "checkin.recorded", "observation.recorded", "milestone.completed",
            "task.completed",
        )  # fmt: skip
        if fixed is None:
            return False
        b.emit(device, Retracted(target=fixed, reason=draw(notes)), [fixed])
    elif action == "hostile":
        return _hostile(b, person, device, people)
    elif action == "pause":
        pause_from = _in_2026(draw(st.integers(0, 360)))
        pause_to = pause_from + timedelta(days=draw(st.integers(0, 21)))
        if b.extreme and draw(st.booleans()):
            pause_from, pause_to = sorted(draw(st.lists(dates, min_size=2, max_size=2)))
        b.emit(
            device,
            PauseDeclared(
                starts_on=pause_from,
                ends_on=pause_to,
                reason=draw(st.sampled_from(["", "leave", "travel"])),
            ),
        )
    elif action == "kudos":
        # Someone's completion (now and then the giver's own, or a repeat: both ignored).
        author = draw(st.sampled_from(people))
        completion = b.pick(author, "milestone.completed")
        if completion is None:
            return False
        b.emit(device, KudosGiven(completion=completion), [completion])
    else:  # pragma: no cover - programming error
        raise AssertionError(action)
    return True


def _hostile(b: _Builder, person: str, device: _Device, people: list[str]) -> bool:
    """One write that breaks the ownership rule: ``person`` writes to, moves, links or shares
    another person's item, sometimes with a clock far ahead. Every replica must refuse it."""
    draw = b.draw
    others = [p for p in people if p != person]
    if not others:
        return False
    victim = draw(st.sampled_from(others))
    theirs = b.items.get(victim, {})

    def their(*kinds: str) -> str | None:
        pool = [i for kind in kinds for i in theirs.get(kind, ())]
        return draw(st.sampled_from(pool)) if pool else None

    def mine(*kinds: str) -> str | None:
        pool = [i for kind in kinds for i in b.items.get(person, {}).get(kind, ())]
        return draw(st.sampled_from(pool)) if pool else None

    body: KnownBody | None = None
    attack = draw(
        st.sampled_from(["relink", "plant", "kr", "checkin", "task", "share", "correct", "edit"])
    )
    if attack == "relink":
        milestone, objective = (
            their("milestone.planned", "objective.created"),
            mine("objective.created"),
        )
        if milestone is not None:
            body = MilestoneRelinked(milestone=milestone, objective=objective)
    elif attack == "plant":
        target = their("objective.created", "key_result.added")
        if target is not None:
            is_kr = b.by_id[target].type == "key_result.added"
            body = MilestonePlanned(
                title="Planted",
                key_result=target if is_kr else None,
                objective=None if is_kr else target,
            )
    elif attack == "kr":
        objective = their("objective.created")
        if objective is not None:
            body = KeyResultAdded(objective=objective, title="Planted")
    elif attack == "checkin":
        subject = their("milestone.planned", "key_result.added")
        if subject is not None:
            body = CheckInRecorded(subject=subject, confidence="off-track", note="forged")
    elif attack == "task":
        milestone = their("milestone.planned")
        if milestone is not None:
            body = TaskAdded(milestone=milestone, title="Planted")
    elif attack == "share":
        subject = their("objective.created", "milestone.planned", "observation.recorded")
        if subject is not None:
            body = SharingChanged(subject=subject, visibility="partners", partners=(person,))
    elif attack == "correct":
        target = their("objective.created", "checkin.recorded", "milestone.planned")
        if target is not None:
            body = (
                Retracted(target=target)
                if draw(st.booleans())
                else Corrected(target=target, changes=Changes(title="Forged"))
            )
    else:
        milestone = their("milestone.planned")
        if milestone is not None:
            body = _milestone_edit(b, victim, milestone)
    if body is None:
        return False
    b.hostile.add(b.emit(device, body, references(body).values(), far_ahead=draw(st.booleans())))
    return True


def _milestone_edit(b: _Builder, person: str, milestone: str) -> KnownBody:
    draw = b.draw
    op = draw(st.sampled_from(["done", "reopen", "drop", "restore", "reschedule", "relink"]))
    if op == "done":
        return MilestoneCompleted(milestone=milestone, did="did", why="why", outcome="outcome")
    if op == "reopen":
        return MilestoneReopened(milestone=milestone, reason="again")
    if op == "drop":
        return MilestoneDropped(milestone=milestone)
    if op == "restore":
        return MilestoneRestored(milestone=milestone)
    if op == "reschedule":
        due = b.wild(dates, st.integers(0, 400).map(_in_2026))
        return MilestoneRescheduled(
            milestone=milestone, due_on=due if draw(st.booleans()) else None
        )
    kr = b.pick(person, "key_result.added")
    if kr is not None and draw(st.booleans()):
        return MilestoneRelinked(milestone=milestone, key_result=kr)
    objective = b.pick(person, "objective.created")
    return MilestoneRelinked(milestone=milestone, objective=objective)


def _changes_for(b: _Builder, target: str) -> Changes:
    draw = b.draw
    known = b.by_id.get(target)
    body = None if known is None else known.body
    if isinstance(body, CheckInRecorded):
        if body.value is not None:
            return Changes(value=float(draw(st.integers(-10, 120))))
        if body.percent is not None:
            return Changes(percent=float(draw(st.integers(0, 100))))
        return Changes(confidence=draw(confidences))
    if isinstance(body, ObservationRecorded):
        return Changes(polarity=draw(polarities), text="Actually: it went fine")
    if isinstance(body, MilestoneCompleted):
        return Changes(outcome="Measured later: +3 points")
    if isinstance(body, KeyResultAdded):
        return Changes(title="Renamed key result", weight=2.0)
    return Changes(title=draw(st.sampled_from(_TITLES)))
