"""Generated Milepost histories: the one generator of random histories for benchmarks and
tests (the Hypothesis strategies for property tests are ``milepost_testkit.strategies``).

``generate_history`` simulates ``people`` people in ``teams`` teams, day by day
over ``months`` months from 2026-01-01, and yields about ``target_events``
valid events in recorded-time order. Everything comes from one seeded
``random.Random``, so a seed always yields the same events (ids included).

The history has two parts:

* **structure** — what each person plans and does on a rhythm: 2–4
  objectives per quarter, 2–4 key results each, 3–8 milestones per key result
  with their fates decided when planned (completed on time or late,
  rescheduled, reopened, dropped and restored, relinked), tasks, a weekly
  check-in session (key results and open milestones), a weekly journal entry,
  indicator observations, sharing changes, corrections, retractions, a
  two-week leave. When the target is small the structure is scaled down
  (fewer items, sparser check-ins, but still at least one check-in a week).
* **activity** — extra check-ins, tasks, observations and journal entries
  spread over the people, as many as needed each day to follow the target's
  daily trajectory, so the total lands on the target whatever the parameters.

Bodies are built directly (msgspec does not validate on construction), so the
code below keeps every value inside the limits declared in ``events.bodies``;
the tests round-trip a sample through the codec.

``person_history`` is the small, fixed-shape history of one person that the sync tests
and ``bench/sync.py`` import through the CLI.

Run ``python -m milepost_testkit.history --events N --out FILE`` to write JSON Lines.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import os
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import events
from events.bodies import (
    CADENCE_DAYS,
    Cadence,
    Changes,
    CheckInRecorded,
    Confidence,
    Corrected,
    IndicatorDefined,
    KeyResultAdded,
    KeyResultKind,
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
from events.clock import HybridLogicalClock

__all__ = [
    "GENERATOR_VERSION",
    "generate_history",
    "history_bytes",
    "history_path",
    "jsonl_file",
    "person_history",
    "write_jsonl",
]

GENERATOR_VERSION = 1
"""Bump when the output for given parameters changes (invalidates the cache)."""

DATA_DIR = Path(__file__).resolve().parent.parent / "bench" / "data"
"""The cache of generated histories (not committed)."""
START = date(2026, 1, 1)
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_START_MS = int((datetime(START.year, START.month, START.day, tzinfo=UTC) - _EPOCH).total_seconds())
_START_MS *= 1000


def history_wall() -> int:
    """A wall clock (Unix ms) at the end of the generated histories' year: the server judges
    clock stamps against its wall clock (at most 48 h ahead), so a benchmark that ingests a
    history dated ahead of today judges it as if it were then."""
    return int(datetime(START.year + 1, 1, 1, tzinfo=UTC).timestamp() * 1000)


ADMIN = "admin"
"""The person who writes team memberships (the server's administrator), and its device."""
ADMIN_DEVICE = "server"

# Structural events per person-month by structure scale, measured with the
# activity switched off (100 people, 12 months); _scale_for interpolates.
_STRUCTURE_TABLE: tuple[tuple[float, float], ...] = (
    (0.01, 7.4),
    (0.02, 8.0),
    (0.05, 9.8),
    (0.1, 15.2),
    (0.2, 27.2),
    (0.5, 81.1),
    (1.0, 198.7),
)
_STRUCTURE_SHARE = 0.6
"""Share of the target the structure aims at; activity makes up the rest."""

# --- vocabulary -------------------------------------------------------------------------

_FIRST_NAMES = (
    "ava", "ben", "chloe", "dev", "emma", "finn", "grace", "hugo", "ines", "jonas",
    "kira", "leo", "maya", "noah", "olga", "pablo", "quinn", "rosa", "sami", "tara",
    "umar", "vera", "wen", "xavi", "yara", "zoe", "amir", "bea", "cyril", "dana",
)  # fmt: skip
_TEAM_NAMES = (
    "platform", "mobile", "data", "design", "growth", "billing", "search", "infra",
    "support", "sales", "research", "security", "web", "api", "ops", "people",
)  # fmt: skip
_CADENCES: tuple[Cadence, Cadence, Cadence] = ("weekly", "biweekly", "monthly")
_DEVICE_KINDS = ("laptop", "phone", "desktop")
_AREAS = (
    "onboarding", "checkout", "search", "billing", "the mobile app", "support",
    "the API", "reporting", "the design system", "hiring", "docs", "observability",
    "the data pipeline", "pricing", "partner integrations", "accessibility",
)  # fmt: skip
_AMBITIONS = (
    "Make {a} effortless", "Make {a} reliable", "Win back trust in {a}",
    "Turn {a} into a strength", "Modernise {a}", "Make {a} fast",
    "Grow adoption of {a}", "Simplify {a}",
)  # fmt: skip
_UNICODE_OBJECTIVES = (
    "Lancer la version française de l'app", "Überarbeitung der Dokumentation",
    "Café ordering pilot ☕", "日本市場への展開を準備する", "Ñandú: rediseño del panel",
    "Zero-downtime deploys 🚀", "Rendre l'équipe autonome — étape 2",
)  # fmt: skip
_METRICS: tuple[tuple[str, str, float, float], ...] = (
    # title stem, unit, typical start, typical target for "increase"
    ("weekly active users", "users", 1200.0, 2000.0),
    ("activation rate", "%", 31.0, 45.0),
    ("NPS", "", 18.0, 35.0),
    ("self-serve revenue", "k€", 40.0, 65.0),
    ("test coverage", "%", 62.0, 80.0),
    ("docs pages rewritten", "pages", 0.0, 40.0),
    ("interviews run", "interviews", 0.0, 24.0),
    ("deploys per week", "deploys", 3.0, 10.0),
)
_DECREASING: tuple[tuple[str, str, float, float], ...] = (
    ("p95 latency", "ms", 850.0, 400.0),
    ("open support tickets", "tickets", 340.0, 150.0),
    ("churn", "%", 4.5, 3.0),
    ("build time", "min", 22.0, 9.0),
    ("incidents per month", "incidents", 9.0, 3.0),
)
_THRESHOLDS: tuple[tuple[str, str, float], ...] = (
    ("uptime", "%", 99.9),
    ("CSAT", "/5", 4.5),
    ("on-call pages per week", "pages", 5.0),
    ("error rate", "%", 0.5),
)
_QUALITATIVE_KRS = (
    "Team runs its own retros", "A playbook everyone uses", "Clear ownership of {a}",
    "Stakeholders sign off the {a} roadmap", "Hand over {a} to the new team",
)  # fmt: skip
_VERBS = (
    "Ship", "Draft", "Launch", "Migrate", "Review", "Pilot", "Prototype", "Document",
    "Benchmark", "Roll out", "Interview users about", "Clean up", "Design", "Audit",
)  # fmt: skip
_THINGS = (
    "billing v2", "the search index", "onboarding emails", "the new dashboard",
    "SSO for enterprise", "the pricing page", "offline mode", "the public API docs",
    "the alerting rules", "the export feature", "the data retention policy",
    "the mobile release train", "the hiring rubric", "feature flags", "the CI cache",
    "the A/B test framework", "dark mode", "the partner portal", "the status page",
)  # fmt: skip
_TASKS = (
    "Write the spec", "Get sign-off", "Write tests", "Update the docs", "Demo to the team",
    "Fix review comments", "Draft the announcement", "Check the metrics",
    "Pair with design", "Ask legal", "Plan the rollout", "Clean up the flags",
    "Book the room", "Collect feedback", "Write the runbook", "Triage bugs",
)  # fmt: skip
_CHECKIN_NOTES = (
    "", "", "", "Steady week.", "Blocked on review, unblocked Thursday.",
    "Good progress after the offsite.", "Slower than hoped; support load was high.",
    "Waiting on another team.", "Back on track.", "Scope cut to hit the date.",
    "Two people out sick.", "Found a simpler approach.", "Numbers jumped after the launch.",
    "Need a decision from leadership.", "Quiet week, mostly interviews.",
)  # fmt: skip
_DID = (
    "Shipped it to all customers behind a flag, then removed the flag.",
    "Wrote the doc, ran two review rounds and got sign-off.",
    "Paired with design for a week and shipped the first cut.",
    "Migrated the last three services and deleted the old path.",
    "Ran eight user interviews and summarised the patterns.",
    "Rolled it out region by region with a rollback plan.",
)
_WHY = (
    "It was the main blocker for the quarter's objective.",
    "Customers kept asking for it in support tickets.",
    "It removes a recurring source of incidents.",
    "Without it the team could not plan the next step.",
    "It makes the next three milestones cheaper.",
)
_OUTCOME = (
    "Tickets on the topic dropped by a third in two weeks.",
    "Activation went up two points in the first week.",
    "No incidents since; on-call is quieter.",
    "Sales used it in two deals already.",
    "Too early to tell; checking again next month.",
    "The team now owns it without me.",
)
_RESCHEDULE_REASONS = (
    "Dependency slipped.",
    "Scope grew after review.",
    "Holidays.",
    "Reprioritised.",
    "",
)
_DROP_REASONS = ("No longer needed.", "Superseded by another milestone.", "Deprioritised.", "")
_REOPEN_REASONS = ("Found a regression.", "Review asked for one more change.", "")
_INDICATORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Customer empathy", (
        "Team reads support tickets", "Team solicits feedback",
        "Team acts on feedback within a sprint", "Team anticipates needs unprompted",
        "Customers co-design features",
    )),
    ("Ownership", (
        "Tasks are assigned", "People pick up work unasked", "People own outcomes",
        "People own problems end to end", "People grow others' ownership",
    )),
    ("Written communication", (
        "Decisions are written down", "Docs are reviewed", "Docs are read before meetings",
        "Async by default", "Writing is how we think",
    )),
    ("Delegation", (
        "I hand over tasks", "I hand over projects", "I hand over decisions",
        "The team sets its own goals", "I am not the bottleneck",
    )),
    ("Mentoring", (
        "Ad-hoc help", "Regular 1:1s", "Mentee leads a project", "Mentee mentors others",
    )),
)  # fmt: skip
_OBS_POSITIVE = (
    "Noticed the team asking customers before building.",
    "Handled the incident calmly and wrote a clear postmortem.",
    "Got unprompted praise from the sales team.",
    "Delegated the release and it went fine without me.",
    "The doc answered every question before the meeting.",
    "A junior colleague led the planning session well.",
    "Said no to a distraction and explained why.",
)
_OBS_NEGATIVE = (
    "Jumped in and fixed it myself instead of coaching.",
    "We shipped without talking to a single user.",
    "Missed the signals that the project was slipping.",
    "Meeting ran long because nobody had read the doc.",
    "Let the scope creep without pushing back.",
)
_JOURNAL = (
    "Win: finally closed the loop with the partner team.",
    "Lesson: ask for help on day one, not day five.",
    "Win: the demo landed well with leadership.",
    "Lesson: estimates without a spike are guesses.",
    "Win: helped a teammate get unblocked on the migration.",
    "Lesson: write the rollback plan before the rollout.",
    "Win: shipped small and got real feedback within a day.",
    "Lesson: check the dashboard before the weekly, not during.",
    "Une bonne semaine : l'équipe a livré sans moi. 🎉",
)
_IMPACTS = ("", "", "Saved about a day of rework.", "Customer renewed.", "Team morale up.")
_PAUSE_REASONS = (
    "Vacation",
    "Parental leave",
    "Conference travel",
    "Sick leave",
    "Sabbatical week",
)
_CORRECTION_REASONS = ("Typo.", "Wrong number, read the old dashboard.", "Fat-fingered.", "")
_RETRACTION_REASONS = ("Logged on the wrong goal.", "Duplicate entry.", "")


# --- state ------------------------------------------------------------------------------


class _Objective:
    __slots__ = ("cycle", "id", "krs", "partners", "visibility")

    def __init__(self, oid: str, cycle: str, visibility: str, partners: tuple[str, ...]) -> None:
        self.id = oid
        self.cycle = cycle
        self.visibility = visibility
        self.partners = partners
        self.krs: list[_KeyResult] = []


class _KeyResult:
    __slots__ = ("cadence_days", "id", "kind", "objective", "start", "target", "unit_scale")

    def __init__(
        self,
        kid: str,
        objective: _Objective,
        kind: str,
        start: float | None,
        target: float | None,
        cadence_days: int,
        unit_scale: float,
    ) -> None:
        self.id = kid
        self.objective = objective
        self.kind = kind
        self.start = start
        self.target = target
        self.cadence_days = cadence_days
        self.unit_scale = unit_scale


class _Milestone:
    __slots__ = ("done_day", "due", "id", "kr", "late", "open", "percent", "planned", "until")

    def __init__(self, mid: str, kr: _KeyResult | None, planned: int, due: int) -> None:
        self.id = mid
        self.kr = kr
        self.planned = planned  # day it was planned
        self.due = due
        self.done_day = due  # the day it is expected to be (or was) completed
        self.open = True
        self.late = False
        self.percent = 0.0
        self.until = due + 21  # last day it is worked on when never completed


class _Indicator:
    __slots__ = ("day", "id", "stage", "stages")

    def __init__(self, iid: str, stages: int, day: int) -> None:
        self.id = iid
        self.day = day
        self.stages = stages
        self.stage = 0


class _Device:
    __slots__ = ("clock", "id")

    def __init__(self, did: str, wall: Callable[[], int]) -> None:
        self.id = did
        self.clock = HybridLogicalClock(wall=wall)


class _Person:
    __slots__ = (
        "active_ms",
        "checkins",
        "device_weights",
        "devices",
        "handle",
        "index",
        "indicators",
        "journals",
        "krs",
        "objectives",
        "pauses",
        "perf",
        "plan_day",
        "plan_end_ms",
        "planned_quarter",
        "schedule",
        "session_hour",
        "session_weekday",
        "weight",
    )

    def __init__(self, index: int, handle: str, devices: list[_Device]) -> None:
        self.index = index
        self.handle = handle
        self.devices = devices
        self.device_weights: tuple[float, ...] = (1.0,)
        self.weight = 1.0
        self.perf = 1.0
        self.session_weekday = 4
        self.session_hour = 15
        self.pauses: list[tuple[int, int]] = []
        self.planned_quarter = -1
        self.plan_day = -1  # the day of the last quarter planning session ...
        self.plan_end_ms = 0  # ... and when it ended: that day's other events come after
        self.objectives: list[_Objective] = []
        self.krs: list[_KeyResult] = []
        self.active_ms: list[_Milestone] = []
        self.indicators: list[_Indicator] = []
        # (event id, kind, day) of recent check-ins / journal entries, for corrections
        self.checkins: deque[tuple[str, str, int]] = deque(maxlen=24)
        self.journals: deque[tuple[str, int]] = deque(maxlen=8)
        # heap of (day, seq, action, payload)
        self.schedule: list[tuple[int, int, str, Any]] = []

    def paused(self, day: int) -> bool:
        return any(first <= day <= last for first, last in self.pauses)


# --- the generator ----------------------------------------------------------------------


def _scale_for(people: int, months: int, target_events: int) -> float:
    """Structure scale in (0, 1] so that structure takes about _STRUCTURE_SHARE of the target."""
    wanted = _STRUCTURE_SHARE * target_events / max(1, people * months)
    table = _STRUCTURE_TABLE
    if wanted >= table[-1][1]:
        return 1.0
    if wanted <= table[0][1]:
        return table[0][0]
    for (s0, v0), (s1, v1) in itertools.pairwise(table):
        if v0 <= wanted <= v1:
            t = math.log(wanted / v0) / math.log(v1 / v0)
            return math.exp(math.log(s0) + t * math.log(s1 / s0))
    return 1.0  # pragma: no cover - the table is increasing


def _add_months(day: date, months: int) -> date:
    year, month = divmod(day.month - 1 + months, 12)
    return date(day.year + year, month + 1, 1)


class _History:
    """One simulation run; ``run`` yields the events in recorded-time order."""

    def __init__(
        self,
        people: int,
        teams: int,
        months: int,
        target_events: int,
        seed: int,
        *,
        activity: bool = True,
        scale: float | None = None,
    ) -> None:
        if people < 1 or teams < 1 or months < 1 or target_events < 0:
            raise ValueError("people, teams and months must be positive, target_events >= 0")
        self.rng = random.Random(seed)
        self.target = target_events
        self.activity = activity
        self.scale = _scale_for(people, months, target_events) if scale is None else scale
        k = self.scale**0.3
        self.count_k = k  # multiplies counts of objectives, key results, milestones, tasks
        self.p_checkin = min(1.0, self.scale**0.5)
        self.p_journal = min(1.0, 0.9 * self.scale**0.5)
        self.p_observe = min(1.0, 0.6 * self.scale**0.5)
        self.days = (_add_months(START, months) - START).days
        self.wall = [0]
        wall_cell = self.wall
        self.wall_fn: Callable[[], int] = lambda: wall_cell[0]
        self.seq = 0
        self.batch: list[tuple[int, int, str, str, _Device, int, Any]] = []
        self.admin = _Device(ADMIN_DEVICE, self.wall_fn)
        self.team_names = self._team_names(teams)
        self.people = self._make_people(people)
        self.handles = [p.handle for p in self.people]
        self.memberships = self._assign_teams()
        self.admin_plan = self._plan_team_moves()
        # how much of the target should exist by the end of each day
        weights = [1.0 if (START + timedelta(d)).weekday() < 5 else 0.15 for d in range(self.days)]
        total = sum(weights)
        running = 0.0
        self.trajectory: list[int] = []
        for w in weights:
            running += w
            self.trajectory.append(round(target_events * running / total))

    # -- setup ---------------------------------------------------------------------------

    def _team_names(self, teams: int) -> list[str]:
        names = []
        for i in range(teams):
            base = _TEAM_NAMES[i % len(_TEAM_NAMES)]
            names.append(base if i < len(_TEAM_NAMES) else f"{base}-{i // len(_TEAM_NAMES) + 1}")
        return names

    def _make_people(self, count: int) -> list[_Person]:
        rng = self.rng
        people = []
        for i in range(count):
            name = _FIRST_NAMES[i % len(_FIRST_NAMES)]
            handle = name if i < len(_FIRST_NAMES) else f"{name}{i // len(_FIRST_NAMES) + 1}"
            n_devices = rng.choices((1, 2, 3), weights=(3, 5, 2))[0]
            devices = [
                _Device(f"{handle}-{_DEVICE_KINDS[j]}", self.wall_fn) for j in range(n_devices)
            ]
            person = _Person(i, handle, devices)
            # cumulative share of events per device: the laptop, then the phone, ...
            person.device_weights = [(1.0,), (0.72, 1.0), (0.7, 0.95, 1.0)][n_devices - 1]
            person.weight = rng.lognormvariate(0, 0.35)
            person.perf = rng.uniform(0.6, 1.15)
            person.session_weekday = rng.choice((0, 3, 4, 4, 4))
            person.session_hour = rng.randint(9, 16)
            self._plan_pauses(person)
            people.append(person)
        return people

    def _plan_pauses(self, person: _Person) -> None:
        rng = self.rng
        if self.days < 70:
            return
        if rng.random() < 0.6:  # a two-week leave starting on a Monday
            first = rng.randint(35, self.days - 20)
            first -= (START + timedelta(first)).weekday()
            person.pauses.append((first, first + 13))
        if rng.random() < 0.15:  # a short trip, away from the leave
            first = rng.randint(35, self.days - 10)
            if all(abs(first - a) > 30 for a, _ in person.pauses):
                person.pauses.append((first, first + rng.randint(2, 4)))
        for first, last in person.pauses:
            declared = max(1, first - rng.randint(3, 20))
            if person.paused(declared):
                declared = first - 1
            self._schedule(person, declared, "pause", (first, last))

    def _assign_teams(self) -> list[list[str]]:
        rng = self.rng
        order = list(range(len(self.people)))
        rng.shuffle(order)
        memberships: list[list[str]] = [[] for _ in self.people]
        for slot, index in enumerate(order):
            memberships[index].append(self.team_names[slot % len(self.team_names)])
        if len(self.team_names) > 1:
            for member in memberships:
                if rng.random() < 0.06:
                    other = rng.choice(self.team_names)
                    if other not in member:
                        member.append(other)
        return memberships

    def _plan_team_moves(self) -> list[tuple[int, str, str, str]]:
        """(day, kind, team, person) admin events after day 0: a few people move team."""
        rng = self.rng
        plan: list[tuple[int, str, str, str]] = []
        if len(self.team_names) < 2 or self.days < 30:
            return plan
        for person, member in zip(self.people, self.memberships, strict=True):
            if rng.random() < 0.04:
                day = rng.randint(20, self.days - 5)
                new = rng.choice([t for t in self.team_names if t not in member] or member)
                plan.append((day, "left", member[0], person.handle))
                plan.append((day, "joined", new, person.handle))
        plan.sort()
        return plan

    # -- helpers -------------------------------------------------------------------------

    def _schedule(self, person: _Person, day: int, action: str, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(person.schedule, (day, self.seq, action, payload))

    def _workday(self, day: int) -> int:
        weekday = (START + timedelta(day)).weekday()
        if weekday >= 5 and self.rng.random() < 0.85:
            return day + 7 - weekday
        return day

    def _at(self, day: int, lo_hour: float = 8.0, hi_hour: float = 19.0) -> int:
        lo = lo_hour * HOUR_MS
        return _START_MS + day * DAY_MS + int(lo + self.rng.random() * (hi_hour * HOUR_MS - lo))

    def _emit(
        self,
        person: _Person | None,
        rec_ms: int,
        body: Any,
        occ_ms: int = 0,
        device: _Device | None = None,
    ) -> str:
        """Queue one event of today's batch; return its (deterministic UUIDv7) id."""
        self.seq += 1
        seq = self.seq
        bits = self.rng.getrandbits(50)
        value = (
            (rec_ms & 0xFFFFFFFFFFFF) << 80
            | 0x7 << 76
            | (bits >> 38) << 64
            | 0b10 << 62
            | (seq & 0xFFFFFF) << 38
            | (bits & 0x3FFFFFFFFF)
        )
        h = f"{value:032x}"
        eid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        if person is None:
            actor, dev = ADMIN, self.admin
        else:
            actor = person.handle
            if device is not None:
                dev = device
            elif len(person.devices) == 1:
                dev = person.devices[0]
            else:
                r = self.rng.random()
                dev = person.devices[-1]
                for candidate, threshold in zip(person.devices, person.device_weights, strict=True):
                    if r < threshold:
                        dev = candidate
                        break
        self.batch.append((rec_ms, seq, eid, actor, dev, occ_ms or rec_ms, body))
        return eid

    def _occurred(self, person: _Person, day: int, rec_ms: int, since: int = -2) -> tuple[int, int]:
        """(recorded, occurred): mostly equal; sometimes logged later (yesterday's win).

        ``since`` is the day the subject was created: only older subjects get a
        win logged for yesterday (so nothing happens before its subject exists).
        """
        r = self.rng.random()
        if r < 0.05 and since < day - 1 and day > 0 and not person.paused(day - 1):
            occ = self._at(day - 1, 9, 18)
            return self._at(day, 7.5, 10), occ
        if r < 0.08 and since < day:
            day_start = _START_MS + day * DAY_MS
            return rec_ms, max(day_start, rec_ms - self.rng.randint(5 * MINUTE_MS, 3 * HOUR_MS))
        return rec_ms, rec_ms

    def _partners(self, person: _Person) -> tuple[str, ...]:
        handles = self.handles
        if len(handles) < 2:
            return ()
        chosen: list[str] = []
        for _ in range(self.rng.randint(1, 3)):
            other = handles[self.rng.randrange(len(handles))]
            if other != person.handle and other not in chosen:
                chosen.append(other)
        return tuple(chosen)

    def _sharing(self, person: _Person) -> tuple[Visibility, tuple[str, ...]]:
        r = self.rng.random()
        if r < 0.75:
            return "team", ()
        if r < 0.87:
            partners = self._partners(person)
            if partners:
                return "partners", partners
            return "team", ()
        return "private", ()

    # -- the simulation ------------------------------------------------------------------

    def run(self) -> Iterator[events.Event]:
        produced = 0
        rng = self.rng
        people = self.people
        admin_plan = self.admin_plan
        admin_index = 0
        for day in range(self.days):
            self.batch = []
            if day == 0:
                ms = _START_MS + 6 * HOUR_MS
                for person, member in zip(people, self.memberships, strict=True):
                    for team in member:
                        ms += rng.randint(200, 3000)
                        self._emit(None, ms, TeamMemberJoined(team=team, person=person.handle))
            while admin_index < len(admin_plan) and admin_plan[admin_index][0] <= day:
                _, kind, team, handle = admin_plan[admin_index]
                admin_index += 1
                ms = self._at(day, 7, 8) + (1000 if kind == "joined" else 0)
                body = TeamMemberJoined if kind == "joined" else TeamMemberLeft
                self._emit(None, ms, body(team=team, person=handle))
            for person in people:
                self._sync_devices(person)
                if not person.paused(day):
                    self._structure(person, day)
            if self.activity:
                quota = self.trajectory[day] - produced - len(self.batch)
                if quota > 0:
                    self._activity(day, quota)
            batch = self.batch
            batch.sort(key=_batch_key)
            produced += len(batch)
            yield from self._flush(batch)
        self.batch = []

    def _flush(
        self, batch: list[tuple[int, int, str, str, _Device, int, Any]]
    ) -> Iterator[events.Event]:
        wall = self.wall
        event = events.Event
        epoch = _EPOCH
        delta = timedelta
        for rec_ms, _seq, eid, actor, dev, occ_ms, body in batch:
            wall[0] = rec_ms
            recorded = epoch + delta(milliseconds=rec_ms)
            occurred = recorded if occ_ms == rec_ms else epoch + delta(milliseconds=occ_ms)
            yield event(
                id=eid,
                actor=actor,
                device=dev.id,
                clock=dev.clock.now(),
                recorded_at=recorded,
                occurred_at=occurred,
                body=body,
            )

    def _sync_devices(self, person: _Person) -> None:
        devices = person.devices
        if len(devices) < 2:
            return
        online = [d for d in devices if self.rng.random() < 0.9]
        if len(online) < 2:
            return
        latest = max(d.clock.last for d in online)
        for device in online:
            device.clock.observe(latest)

    def _structure(self, person: _Person, day: int) -> None:
        quarter = self._quarter_index(day)
        if person.planned_quarter < quarter:
            person.planned_quarter = quarter
            self._plan_quarter(person, day, quarter)
        schedule = person.schedule
        while schedule and schedule[0][0] <= day:
            _, _, action, payload = heapq.heappop(schedule)
            self._act(person, day, action, payload)
        if (START + timedelta(day)).weekday() == person.session_weekday:
            self._session(person, day)

    def _quarter_index(self, day: int) -> int:
        current = START + timedelta(day)
        return (current.year - START.year) * 4 + (current.month - 1) // 3

    def _quarter_bounds(self, quarter: int) -> tuple[str, int, int]:
        year = START.year + quarter // 4
        q = quarter % 4 + 1
        first = date(year, 3 * q - 2, 1)
        last = _add_months(first, 3) - timedelta(1)
        return f"{year}-Q{q}", (first - START).days, (last - START).days

    def _count(self, lo: int, hi: int, minimum: int = 1) -> int:
        return max(minimum, int(self.rng.uniform(lo, hi + 1) * self.count_k))

    # -- planning ------------------------------------------------------------------------

    def _plan_quarter(self, person: _Person, day: int, quarter: int) -> None:
        rng = self.rng
        cycle, q_first, q_last = self._quarter_bounds(quarter)
        ms = self._at(day, 9, 10)
        person.objectives = []
        person.krs = []
        for _ in range(self._count(2, 4)):
            ms += rng.randint(30_000, 240_000)
            visibility, partners = self._sharing(person)
            if rng.random() < 0.12:
                title = rng.choice(_UNICODE_OBJECTIVES)
            else:
                title = rng.choice(_AMBITIONS).format(a=rng.choice(_AREAS))
                title = title[0].upper() + title[1:]
            cadence = rng.choices(_CADENCES, weights=(80, 15, 5))[0]
            oid = self._emit(
                person,
                ms,
                ObjectiveCreated(
                    title=title,
                    cycle=cycle,
                    description="" if rng.random() < 0.6 else f"Why now: {rng.choice(_WHY)}",
                    cadence=cadence,
                    visibility=visibility,
                    partners=partners,
                ),
            )
            objective = _Objective(oid, cycle, visibility, partners)
            person.objectives.append(objective)
            cadence_days = CADENCE_DAYS[cadence]
            if rng.random() < 0.1:  # visibility changes during the quarter
                self._schedule(
                    person, self._workday(rng.randint(day + 1, q_last)), "share", objective
                )
            for _ in range(self._count(2, 4)):
                ms += rng.randint(20_000, 180_000)
                kr = self._add_key_result(person, objective, ms, cadence_days)
                person.krs.append(kr)
                n_ms = self._count(3, 8)
                span = max(1, q_last - q_first)
                for i in range(n_ms):
                    due = q_first + (i + 1) * span // (n_ms + 1) + rng.randint(-4, 4)
                    due = max(day + 2, due)
                    plan_day = max(day, due - rng.randint(14, 35))
                    if plan_day == day:
                        ms += rng.randint(10_000, 90_000)
                        self._plan_milestone(person, day, ms, kr, due, q_last)
                    else:
                        self._schedule(person, self._workday(plan_day), "plan", (kr, due, q_last))
        for _ in range(self._count(0, 2, 0)):  # standalone or objective-only milestones
            plan_day = self._workday(rng.randint(day, max(day, q_last - 14)))
            due = min(q_last + 10, plan_day + rng.randint(7, 40))
            self._schedule(person, plan_day, "plan", (None, due, q_last))
        if quarter % 2 == 0 and (quarter == 0 or rng.random() < 0.4):
            for _ in range(1 if rng.random() < 0.6 or self.scale < 0.2 else 2):
                ms += rng.randint(20_000, 120_000)
                self._define_indicator(person, day, ms)
        person.plan_day = day
        person.plan_end_ms = ms

    def _add_key_result(
        self, person: _Person, objective: _Objective, ms: int, cadence_days: int
    ) -> _KeyResult:
        rng = self.rng
        r = rng.random()
        scale = rng.choice((0.5, 1.0, 1.0, 2.0))
        start: float | None
        target: float | None
        kind: KeyResultKind
        unit = ""
        if r < 0.5:
            kind = "increase"
            stem, unit, a, b = rng.choice(_METRICS)
            start, target = round(a * scale, 1), round(b * scale, 1)
            title = f"Increase {stem} from {start:g} to {target:g}"
        elif r < 0.65:
            kind = "decrease"
            stem, unit, a, b = rng.choice(_DECREASING)
            start, target = round(a * scale, 1), round(b * scale, 1)
            title = f"Reduce {stem} from {start:g} to {target:g}"
        elif r < 0.8:
            stem, unit, threshold = rng.choice(_THRESHOLDS)
            kind = (
                "stay-below" if stem in ("on-call pages per week", "error rate") else "stay-above"
            )
            start, target = None, threshold
            word = "below" if kind == "stay-below" else "above"
            title = f"Keep {stem} {word} {threshold:g}{unit}"
        else:
            kind = "increase"
            start = target = None
            title = rng.choice(_QUALITATIVE_KRS).format(a=rng.choice(_AREAS))
        cadence: Cadence | None = None
        if rng.random() < 0.1:
            own: Cadence = rng.choice(_CADENCES[:2])
            cadence, cadence_days = own, CADENCE_DAYS[own]
        kid = self._emit(
            person,
            ms,
            KeyResultAdded(
                objective=objective.id,
                title=title,
                kind=kind,
                start=start,
                target=target,
                unit=unit,
                weight=rng.choice((1.0, 1.0, 1.0, 2.0, 0.5)),
                cadence=cadence,
            ),
        )
        kr = _KeyResult(kid, objective, kind, start, target, cadence_days, scale)
        objective.krs.append(kr)
        return kr

    def _define_indicator(self, person: _Person, day: int, ms: int) -> None:
        rng = self.rng
        title, stages = rng.choice(_INDICATORS)
        n = rng.randint(3, min(5, len(stages)))
        objective = (
            rng.choice(person.objectives) if person.objectives and rng.random() < 0.3 else None
        )
        visibility, partners = self._sharing(person)
        iid = self._emit(
            person,
            ms,
            IndicatorDefined(
                title=title,
                stages=stages[:n],
                objective=None if objective is None else objective.id,
                description="" if rng.random() < 0.5 else "How I know this is improving.",
                visibility=visibility,
                partners=partners,
            ),
        )
        person.indicators.append(_Indicator(iid, n, day))

    def _plan_milestone(
        self, person: _Person, day: int, ms: int, kr: _KeyResult | None, due: int, q_last: int
    ) -> None:
        rng = self.rng
        title = f"{rng.choice(_VERBS)} {rng.choice(_THINGS)}"
        if kr is None:
            objective = (
                rng.choice(person.objectives) if person.objectives and rng.random() < 0.4 else None
            )
            visibility, partners = self._sharing(person) if objective is None else ("private", ())
            body = MilestonePlanned(
                title=title,
                due_on=START + timedelta(due),
                objective=None if objective is None else objective.id,
                visibility=visibility,
                partners=partners,
            )
        else:
            body = MilestonePlanned(
                title=title,
                due_on=START + timedelta(due),
                key_result=kr.id,
                description="" if rng.random() < 0.7 else "Definition of done: in production.",
            )
        milestone = _Milestone(self._emit(person, ms, body), kr, day, due)
        person.active_ms.append(milestone)
        # decide its fate now and schedule it
        r = rng.random()
        if r < 0.70:
            done = max(day + 1, due + rng.randint(-5, 2))
        elif r < 0.85:
            done = due + rng.randint(3, 20)
            milestone.late = True
            if rng.random() < 0.5 and due - 3 > day:
                self._schedule(person, due - 3, "reschedule", (milestone, done + 2))
        elif r < 0.93:
            drop = max(day + 1, due + rng.randint(-10, 10))
            self._schedule(person, self._workday(drop), "drop", milestone)
            done = -1
            if rng.random() < 0.3:
                restore = drop + rng.randint(3, 15)
                self._schedule(person, restore, "restore", milestone)
                done = restore + rng.randint(5, 20)
        else:
            done = -1  # lingers open: goal fade
        if done >= 0:
            done = self._workday(done)
            milestone.done_day = done
            milestone.until = done
            self._schedule(person, done, "complete", milestone)
            if rng.random() < 0.04:
                reopen = done + rng.randint(1, 10)
                self._schedule(person, reopen, "reopen", milestone)
                self._schedule(person, reopen + rng.randint(2, 14), "complete", milestone)
        if kr is not None and rng.random() < 0.03 and len(kr.objective.krs) > 1:
            self._schedule(person, rng.randint(day + 1, max(day + 1, due)), "relink", milestone)
        last = done if done >= 0 else milestone.until
        for _ in range(self._count(0, 4, 0)):
            added = self._workday(rng.randint(day + 1, max(day + 1, min(last, day + 5))))
            self._schedule(person, added, "task", (milestone, last if done >= 0 else -1))

    # -- scheduled actions ---------------------------------------------------------------

    def _act(self, person: _Person, day: int, action: str, payload: Any) -> None:
        rng = self.rng
        ms = self._at(day)
        if person.plan_day == day:
            ms = max(ms, person.plan_end_ms + rng.randint(60_000, 900_000))
        if action == "plan":
            kr, due, q_last = payload
            self._plan_milestone(person, day, ms, kr, max(due, day + 2), q_last)
        elif action == "task":
            milestone, last = payload
            tid = self._emit(
                person, ms, TaskAdded(milestone=milestone.id, title=rng.choice(_TASKS))
            )
            if last >= 0 or rng.random() < 0.5:
                finish = rng.randint(day + 1, max(day + 1, last if last >= 0 else day + 20))
                self._schedule(person, self._workday(finish), "task_done", tid)
        elif action == "task_done":
            self._emit(person, ms, TaskCompleted(task=payload))
            if rng.random() < 0.03:
                self._schedule(person, day + rng.randint(1, 5), "task_reopen", payload)
        elif action == "task_reopen":
            self._emit(person, ms, TaskReopened(task=payload))
            self._schedule(person, day + rng.randint(1, 5), "task_done", payload)
        elif action == "complete":
            milestone = payload
            milestone.open = False
            milestone.percent = 100.0
            milestone.done_day = day
            rec, occ = self._occurred(person, day, ms, milestone.planned)
            cid = self._emit(
                person,
                rec,
                MilestoneCompleted(
                    milestone=milestone.id,
                    did=rng.choice(_DID),
                    why=rng.choice(_WHY) if rng.random() < 0.9 else "",
                    outcome=rng.choice(_OUTCOME) if rng.random() < 0.85 else "",
                ),
                occ,
            )
            if rng.random() < 0.02:
                self._schedule(person, day + rng.randint(1, 4), "fix_completion", cid)
        elif action == "fix_completion":
            self._emit(
                person,
                ms,
                Corrected(
                    target=payload,
                    changes=Changes(outcome=rng.choice(_OUTCOME)),
                    reason="Now I know the outcome.",
                ),
            )
        elif action == "reopen":
            milestone = payload
            milestone.open = True
            milestone.percent = 80.0
            if milestone not in person.active_ms:
                person.active_ms.append(milestone)
            self._emit(
                person,
                ms,
                MilestoneReopened(milestone=milestone.id, reason=rng.choice(_REOPEN_REASONS)),
            )
        elif action == "drop":
            payload.open = False
            self._emit(
                person, ms, MilestoneDropped(milestone=payload.id, reason=rng.choice(_DROP_REASONS))
            )
        elif action == "restore":
            payload.open = True
            if payload not in person.active_ms:
                person.active_ms.append(payload)
            self._emit(person, ms, MilestoneRestored(milestone=payload.id))
        elif action == "reschedule":
            milestone, new_due = payload
            milestone.due = new_due
            self._emit(
                person,
                ms,
                MilestoneRescheduled(
                    milestone=milestone.id,
                    due_on=START + timedelta(new_due),
                    reason=rng.choice(_RESCHEDULE_REASONS),
                ),
            )
        elif action == "relink":
            milestone = payload
            kr = milestone.kr
            if kr is not None:
                others = [k for k in kr.objective.krs if k is not kr]
                if others:
                    milestone.kr = rng.choice(others)
                    self._emit(
                        person,
                        ms,
                        MilestoneRelinked(milestone=milestone.id, key_result=milestone.kr.id),
                    )
        elif action == "share":
            objective = payload
            visibility: Visibility
            if objective.visibility == "team":
                partners = self._partners(person)
                visibility = "partners" if partners else "private"
            else:
                visibility, partners = "team", ()
            objective.visibility, objective.partners = visibility, partners
            self._emit(
                person,
                ms,
                SharingChanged(
                    subject=objective.id,
                    visibility=visibility,
                    partners=partners,
                ),
            )
        elif action == "pause":
            first, last = payload
            self._emit(
                person,
                ms,
                PauseDeclared(
                    starts_on=START + timedelta(first),
                    ends_on=START + timedelta(last),
                    reason=rng.choice(_PAUSE_REASONS),
                ),
            )
        else:  # pragma: no cover - programming error
            raise AssertionError(action)

    # -- check-ins and journal -----------------------------------------------------------

    def _kr_checkin(
        self, person: _Person, day: int, ms: int, kr: _KeyResult, since: int | None
    ) -> None:
        """A check-in on a key result; ``since`` (its creation day) allows a late log."""
        rng = self.rng
        cycle_first = self._quarter_bounds(self._quarter_index(day))[1]
        elapsed = min(1.0, max(0.0, (day - cycle_first) / 91))
        value: float | None = None
        confidence: Confidence = "on-track"
        if kr.target is not None and kr.start is not None:
            fraction = elapsed * person.perf + rng.gauss(0, 0.06)
            fraction = min(1.1, max(-0.1, fraction))
            value = round(kr.start + (kr.target - kr.start) * fraction, 2)
            gap = elapsed - fraction
            if gap > 0.25:
                confidence = "off-track"
            elif gap > 0.1:
                confidence = "at-risk"
            kind = "kr"
        elif kr.target is not None:
            noise = rng.gauss(0.004, 0.006) * abs(kr.target)
            value = round(kr.target + (noise if kr.kind == "stay-above" else -noise), 2)
            met = value >= kr.target if kr.kind == "stay-above" else value <= kr.target
            confidence = "on-track" if met else "at-risk"
            kind = "kr"
        else:
            kind = "note"
            confidence = "on-track" if person.perf > 0.8 else "at-risk"
        if rng.random() < 0.06:  # a sudden drop
            confidence = "off-track" if confidence != "on-track" else "at-risk"
        rec, occ = (ms, ms) if since is None else self._occurred(person, day, ms, since)
        cid = self._emit(
            person,
            rec,
            CheckInRecorded(
                subject=kr.id,
                confidence=confidence,
                value=value,
                note=rng.choice(_CHECKIN_NOTES),
            ),
            occ,
        )
        person.checkins.append((cid, kind, day))

    def _ms_checkin(
        self, person: _Person, day: int, ms: int, milestone: _Milestone, since: int | None
    ) -> None:
        """A check-in on a milestone; ``since`` (its creation day) allows a late log."""
        rng = self.rng
        span = max(1, milestone.done_day - milestone.planned)
        expected = min(95.0, 100.0 * (day - milestone.planned) / span)
        percent = max(milestone.percent, min(99.0, float(round(expected + rng.gauss(0, 6)))))
        percent = max(0.0, percent)
        milestone.percent = percent
        confidence: Confidence
        if milestone.late and day > milestone.due - 7:
            confidence = "off-track" if day > milestone.due else "at-risk"
        else:
            confidence = "on-track" if rng.random() < 0.88 else "at-risk"
        rec, occ = (ms, ms) if since is None else self._occurred(person, day, ms, since)
        cid = self._emit(
            person,
            rec,
            CheckInRecorded(
                subject=milestone.id,
                confidence=confidence,
                percent=percent,
                note=rng.choice(_CHECKIN_NOTES),
            ),
            occ,
        )
        person.checkins.append((cid, "ms", day))

    def _open_milestones(self, person: _Person, day: int) -> list[_Milestone]:
        active = [m for m in person.active_ms if m.open and m.until >= day]
        person.active_ms = active
        return [m for m in active if m.planned < day]

    def _session(self, person: _Person, day: int) -> None:
        """The weekly review: check-ins, a journal entry, maybe an observation or a fix."""
        rng = self.rng
        ms = (
            _START_MS
            + day * DAY_MS
            + person.session_hour * HOUR_MS
            + rng.randint(0, 50 * MINUTE_MS)
        )
        if person.plan_day == day:
            ms = max(ms, person.plan_end_ms + 60_000)
        p = self.p_checkin
        count = 0
        week = day // 7
        for kr in person.krs:
            if kr.cadence_days == 14 and week % 2:
                continue
            if kr.cadence_days == 30 and (START + timedelta(day)).day > 7:
                continue
            if rng.random() < p:
                ms += rng.randint(20_000, 150_000)
                self._kr_checkin(person, day, ms, kr, None)
                count += 1
        milestones = self._open_milestones(person, day)
        for milestone in milestones:
            if rng.random() < p:
                ms += rng.randint(20_000, 150_000)
                self._ms_checkin(person, day, ms, milestone, None)
                count += 1
        if count == 0:  # never skip a week entirely
            ms += rng.randint(20_000, 150_000)
            if milestones and (not person.krs or rng.random() < 0.5):
                self._ms_checkin(person, day, ms, rng.choice(milestones), None)
            elif person.krs:
                self._kr_checkin(person, day, ms, rng.choice(person.krs), None)
        if rng.random() < self.p_journal:
            ms += rng.randint(60_000, 600_000)
            self._journal(person, day, ms)
        if person.indicators and rng.random() < self.p_observe:
            ms += rng.randint(60_000, 600_000)
            self._observe(person, day, ms)
        # the odd mistake fixed later, from earlier days only
        if person.checkins and rng.random() < 0.12:
            cid, kind, when = person.checkins[rng.randrange(len(person.checkins))]
            if when < day:
                ms += rng.randint(60_000, 300_000)
                self._fix_checkin(person, ms, cid, kind)
        if person.journals and rng.random() < 0.02:
            jid, when = person.journals[-1]
            if when < day:
                ms += rng.randint(60_000, 300_000)
                if rng.random() < 0.5:
                    self._emit(person, ms, SharingChanged(subject=jid, visibility="team"))
                else:
                    self._emit(
                        person, ms, Retracted(target=jid, reason=rng.choice(_RETRACTION_REASONS))
                    )
                person.journals.pop()

    def _fix_checkin(self, person: _Person, ms: int, cid: str, kind: str) -> None:
        rng = self.rng
        if rng.random() < 0.2:
            self._emit(person, ms, Retracted(target=cid, reason=rng.choice(_RETRACTION_REASONS)))
            return
        if kind == "ms":
            changes = Changes(percent=float(rng.randint(0, 100)))
        elif kind == "kr" and rng.random() < 0.7:
            changes = Changes(value=float(rng.randint(0, 500)))
        elif rng.random() < 0.5:
            changes = Changes(confidence=rng.choice(("on-track", "at-risk", "off-track")))
        else:
            changes = Changes(note=rng.choice(_CHECKIN_NOTES[3:]))
        self._emit(
            person,
            ms,
            Corrected(target=cid, changes=changes, reason=rng.choice(_CORRECTION_REASONS)),
        )

    def _journal(self, person: _Person, day: int, ms: int) -> None:
        rng = self.rng
        r = rng.random()
        if r < 0.55:
            visibility: Visibility = "private"
            partners: tuple[str, ...] = ()
        elif r < 0.9:
            visibility, partners = "team", ()
        else:
            partners = self._partners(person)
            visibility = "partners" if partners else "private"
        rec, occ = self._occurred(person, day, ms)
        positive = rng.random() < 0.7
        jid = self._emit(
            person,
            rec,
            ObservationRecorded(
                text=rng.choice(_JOURNAL) if positive else rng.choice(_OBS_NEGATIVE),
                polarity="positive" if positive else "negative",
                impact=rng.choice(_IMPACTS),
                visibility=visibility,
                partners=partners,
            ),
            occ,
        )
        person.journals.append((jid, day))

    def _observe(self, person: _Person, day: int, ms: int) -> None:
        rng = self.rng
        indicator = rng.choice(person.indicators)
        positive = rng.random() < 0.75
        stage: int | None = None
        if rng.random() < 0.4:
            if positive and indicator.stage < indicator.stages - 1 and rng.random() < 0.25:
                indicator.stage += 1
            stage = indicator.stage
        rec, occ = self._occurred(person, day, ms, indicator.day)
        self._emit(
            person,
            rec,
            ObservationRecorded(
                text=rng.choice(_OBS_POSITIVE) if positive else rng.choice(_OBS_NEGATIVE),
                polarity="positive" if positive else "negative",
                indicator=indicator.id,
                stage=stage,
                impact=rng.choice(_IMPACTS),
            ),
            occ,
        )

    # -- activity ------------------------------------------------------------------------

    def _activity(self, day: int, quota: int) -> None:
        """``quota`` extra events today, spread over the people at work."""
        rng = self.rng
        present = [p for p in self.people if not p.paused(day)]
        if not present:
            return
        weights = [p.weight for p in present]
        open_cache: dict[int, list[_Milestone]] = {}
        for person in rng.choices(present, weights=weights, k=quota):
            milestones = open_cache.get(person.index)
            if milestones is None:
                milestones = self._open_milestones(person, day)
                open_cache[person.index] = milestones
            ms = self._at(day)
            if person.plan_day == day:
                ms = max(ms, person.plan_end_ms + rng.randint(60_000, 900_000))
            r = rng.random()
            if r < 0.42 and milestones:
                milestone = rng.choice(milestones)
                self._ms_checkin(person, day, ms, milestone, milestone.planned)
            elif r < 0.62 and person.krs:
                self._kr_checkin(person, day, ms, rng.choice(person.krs), person.plan_day)
            elif r < 0.82 and milestones:
                milestone = rng.choice(milestones)
                tid = self._emit(
                    person, ms, TaskAdded(milestone=milestone.id, title=rng.choice(_TASKS))
                )
                finish = day + rng.randint(1, 7)
                self._schedule(person, self._workday(finish), "task_done", tid)
            elif r < 0.93 and person.indicators:
                self._observe(person, day, ms)
            else:
                self._journal(person, day, ms)


def _batch_key(item: tuple[int, int, str, str, _Device, int, Any]) -> tuple[int, int]:
    return item[0], item[1]


# --- public API -------------------------------------------------------------------------


def generate_history(
    people: int = 100,
    teams: int = 10,
    months: int = 12,
    target_events: int = 1_000_000,
    seed: int = 1,
) -> Iterator[events.Event]:
    """Yield a realistic, valid history of about ``target_events`` events (±5%).

    Deterministic for a seed; events come in recorded-time order, each with a
    UUIDv7 id, the acting person's device and a hybrid-logical-clock stamp.
    """
    return _History(people, teams, months, target_events, seed).run()


def write_jsonl(path: str | os.PathLike[str], history: Iterable[events.Event]) -> int:
    """Write events as JSON Lines (one encoded event per line); return how many."""
    encode = events.encode
    count = 0
    chunk: list[bytes] = []
    with open(path, "wb") as out:
        for event in history:
            chunk.append(encode(event))
            if len(chunk) >= 8192:
                chunk.append(b"")
                out.write(b"\n".join(chunk))
                count += len(chunk) - 1
                chunk = []
        if chunk:
            chunk.append(b"")
            out.write(b"\n".join(chunk))
            count += len(chunk) - 1
    return count


def history_path(
    people: int = 100,
    teams: int = 10,
    months: int = 12,
    target_events: int = 1_000_000,
    seed: int = 1,
) -> Path:
    """Where the cached JSON Lines file for these parameters lives (``bench/data/``)."""
    name = f"history-v{GENERATOR_VERSION}-p{people}-t{teams}-m{months}-e{target_events}-s{seed}"
    return DATA_DIR / f"{name}.jsonl"


def history_bytes(
    people: int = 100,
    teams: int = 10,
    months: int = 12,
    target_events: int = 1_000_000,
    seed: int = 1,
    *,
    cache: bool = True,
) -> list[bytes]:
    """The encoded events of ``generate_history(...)``, cached under ``bench/data/``."""
    if not cache:
        encode = events.encode
        return [encode(e) for e in generate_history(people, teams, months, target_events, seed)]
    path = history_path(people, teams, months, target_events, seed)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        write_jsonl(partial, generate_history(people, teams, months, target_events, seed))
        os.replace(partial, path)
    lines = path.read_bytes().split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


def person_history(
    person: str, device: str, count: int, *, start: datetime | None = None
) -> list[events.Event]:
    """``count`` valid events by ``person``: objectives of 50 events each (9 milestones under
    each, 40 check-ins on them), one second apart from ``start``; ids are fresh UUIDv7s."""
    moment = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    clock = int(moment.timestamp() * 1000) << 16
    made: list[events.Event] = []

    def add(body: events.KnownBody) -> events.Event:
        nonlocal clock, moment
        clock += 1
        moment += timedelta(seconds=1)
        event = events.Event(
            id=events.new_event_id(), actor=person, device=device, clock=clock,
            recorded_at=moment, occurred_at=moment, body=body,
        )  # fmt: skip
        made.append(event)
        return event

    while len(made) < count:
        goal = add(ObjectiveCreated(title=f"Goal {len(made) // 50}", cycle="2026-Q1"))
        milestones = [
            add(MilestonePlanned(title=f"Milestone {i}", objective=goal.id)) for i in range(9)
        ]
        for i in range(40):
            target = milestones[i % len(milestones)]
            add(CheckInRecorded(subject=target.id, confidence="on-track", percent=float(i)))
    return made[:count]


def jsonl_file(path: Path, history: Iterable[events.Event]) -> Path:
    """Write events as an importable JSON Lines file; return its path."""
    write_jsonl(path, history)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a generated Milepost history as JSONL.")
    parser.add_argument("--events", type=int, default=1_000_000, help="target number of events")
    parser.add_argument("--out", required=True, help="output file (JSON Lines)")
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--teams", type=int, default=10)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    count = write_jsonl(
        args.out, generate_history(args.people, args.teams, args.months, args.events, args.seed)
    )
    elapsed = time.perf_counter() - began
    print(f"wrote {count} events to {args.out} in {elapsed:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
