"""Review: one person's record over a period, month by month, without recency bias.

What it holds (docs/contract.md#projections): completed milestones with their what/why/outcome by
objective and month; the check-in history; observations, positive and
negative; a month-by-month activity count that shows the gaps; the drift
that occurred; and how well the person's confidence predicted the outcomes.

Dates are calendar days in UTC (events carry UTC); ``start`` and ``end`` are
inclusive. Everything past ``now`` is unknown: months after it are marked
``future`` rather than ``gap``, and milestones due after it are not scored.
A viewer other than the person sees only what ``can_see`` allows.

Two readings of the past, each where it fits:

* the drift that occurred is evaluated at each month end on what was *known*
  then (events recorded by then, as ``projections.state.as_of``): the
  signals the person would have seen;
* an objective's final progress and status are how things *stood* at the
  end: events that happened by then, late-logged ones included, with every
  correction and retraction applied.

Both fold only the person's own events (the only ones their views read), so a
review costs one pass over the log plus the person's share of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta

import msgspec

from events import bodies as b
from events import cycle_bounds
from events.envelope import Event
from projections.drift import DriftSignal, drift_signals
from projections.goals import checkins_for, objective_view
from projections.kudos import kudos_givers
from projections.ownership import Referent
from projections.settings import DEFAULT_SETTINGS, DriftSettings
from projections.state import PLACEHOLDER, ProjectionState, apply, rebuild
from projections.team import SubjectResolver, visible_signals

CONFIDENCE_PROBABILITY: dict[str, float] = {"on-track": 0.8, "at-risk": 0.5, "off-track": 0.2}
"""The chance of finishing on time each confidence is taken to state (see ``Calibration``)."""


class CompletedMilestone(msgspec.Struct, frozen=True):
    """A milestone completed in the period, with the three answers."""

    id: str
    title: str
    completed_on: date
    due_on: date | None
    on_time: bool | None  # None without a due date
    did: str
    why: str
    outcome: str
    kudos: tuple[str, ...] = ()  # teammates whose kudos count (projections.kudos)


class MonthOfCompletions(msgspec.Struct, frozen=True):
    month: str  # YYYY-MM
    milestones: list[CompletedMilestone]


class ReviewObjective(msgspec.Struct, frozen=True):
    """An objective of the period with its standing at the period's end."""

    id: str
    title: str
    cycle: str
    progress: float  # as things stood at the end of the period (or now, if earlier)
    status: str
    completed: list[MonthOfCompletions]


class CheckInEntry(msgspec.Struct, frozen=True):
    id: str
    occurred_at: datetime
    confidence: str
    value: float | None
    percent: float | None
    note: str


class CheckInHistory(msgspec.Struct, frozen=True):
    """Every check-in on one subject in the period, oldest first."""

    subject: str
    kind: str  # "key_result" or "milestone"
    title: str
    objective_title: str | None
    entries: list[CheckInEntry]


class ReviewObservation(msgspec.Struct, frozen=True):
    id: str
    occurred_at: datetime
    polarity: str
    text: str
    impact: str
    indicator: str | None
    indicator_title: str | None
    stage: int | None
    stage_name: str | None


class MonthActivity(msgspec.Struct, frozen=True):
    """Counts for one month; ``gap`` when nothing at all happened in a past month."""

    month: str  # YYYY-MM
    checkins: int
    milestones_planned: int
    milestones_completed: int
    observations: int
    gap: bool
    future: bool


class DriftOccurrence(msgspec.Struct, frozen=True):
    """A drift signal seen at one or more month ends of the period."""

    kind: str
    subject: str
    subject_title: str
    severity: str
    first_seen: date
    last_seen: date
    times_seen: int
    explanation: str  # from the last time it was seen


class CalibrationBucket(msgspec.Struct, frozen=True):
    confidence: str  # on-track | at-risk | off-track | none
    predicted: float | None  # the probability the confidence is taken to mean
    milestones: int
    on_time: int
    share_on_time: float | None


class CalibrationCase(msgspec.Struct, frozen=True):
    milestone: str
    title: str
    due_on: date
    confidence: str | None  # the last stated on or before the due date
    on_time: bool


class Calibration(msgspec.Struct, frozen=True):
    """How well stated confidence predicted finishing on time.

    Cases: the milestones due in the period (by their current due date) and
    no later than now, not dropped. For each, the confidence of the last
    check-in on or before the due date is the prediction and "completed on
    or before the due date" the outcome (1 or 0).

    ``buckets`` give, per confidence, the share completed on time: a
    well-calibrated person finishes most of what they call on-track and few
    of what they call off-track.

    ``brier`` is a Brier score over the cases with a stated confidence: each
    confidence is read as a probability of finishing on time — on-track 0.8,
    at-risk 0.5, off-track 0.2 (confident but not certain, a coin toss,
    unlikely but possible) — and the score is the mean of
    ``(probability − outcome)²``. 0 is perfect, 0.25 is what always saying
    "at-risk" earns, higher is worse than that; the best a three-level scale
    can reach is 0.04 (on-track for each success, off-track for each miss).
    """

    buckets: list[CalibrationBucket]
    scored: int
    brier: float | None
    cases: list[CalibrationCase]


class Review(msgspec.Struct, frozen=True):
    """One person's record over ``start``..``end`` (inclusive), as ``viewer`` may see it."""

    person: str
    viewer: str
    start: date
    end: date
    generated_at: datetime
    objectives: list[ReviewObjective]
    other_completed: list[MonthOfCompletions]  # milestones tied to no objective
    checkins: list[CheckInHistory]
    observations: list[ReviewObservation]
    months: list[MonthActivity]
    drift: list[DriftOccurrence]
    calibration: Calibration
    kudos_received: int = 0  # kudos on the completions listed, one per giver and completion


# --- calendar ---------------------------------------------------------------------------


def _month(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _months(start: date, end: date) -> list[tuple[date, date]]:
    """Each month touching [start, end] as (first day, last day), clipped to the period."""
    spans = []
    first = start
    while first <= end:
        following = _next_month(first)
        spans.append((first, min(end, following - timedelta(days=1))))
        first = following
    return spans


def _end_of(day: date) -> datetime:
    """The last instant of a UTC day."""
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC) - timedelta(microseconds=1)


def _day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


# --- gathering --------------------------------------------------------------------------


class _Gather:
    """The live, visible facts about one person in the period, read from the current state."""

    def __init__(
        self, state: ProjectionState, person: str, viewer: str, start: date, end: date
    ) -> None:
        self.state = state
        self.person = person
        self.start = start
        self.end = end
        self.resolver = SubjectResolver(state, viewer)

    def in_period(self, moment: datetime) -> bool:
        return self.start <= _day(moment) <= self.end

    def visible(self, item_id: str) -> bool:
        found = self.resolver.visible_subject(item_id)
        return found is not None and found.owner == self.person

    def milestone_objective(self, milestone_id: str) -> str | None:
        """The objective a milestone counts under (through its key result), if any."""
        state = self.state
        link = state.milestones[milestone_id].link.value or (None, None)
        key_result_id, objective_id = link
        if key_result_id is not None:
            key_result = state.key_results.get(key_result_id)
            if key_result is not None and isinstance(key_result.event.body, b.KeyResultAdded):
                objective_id = key_result.event.body.objective
        return objective_id

    def completions(self) -> list[tuple[str, Event]]:
        """(milestone id, standing completion) for milestones completed in the period."""
        state = self.state
        found = []
        for completion_id in state.person(self.person).completions:
            event = state.events[completion_id]
            body = event.body
            assert isinstance(body, b.MilestoneCompleted)
            node = state.milestones.get(body.milestone)
            if node is None or node.completed.value != completion_id:
                continue  # reopened later, or superseded by a later completion
            if state.is_retracted(completion_id) or bool(node.dropped.value):
                continue
            if self.in_period(event.occurred_at) and self.visible(body.milestone):
                found.append((body.milestone, event))
        found.sort(key=lambda pair: (pair[1].occurred_at, pair[1].id))
        return found

    def completed_milestone(self, milestone_id: str, completion: Event) -> CompletedMilestone:
        state = self.state
        planned = state.body(milestone_id)
        assert isinstance(planned, b.MilestonePlanned)
        answers = state.body(completion.id)
        assert isinstance(answers, b.MilestoneCompleted)
        due_on = state.milestones[milestone_id].due_on.value
        completed_on = _day(completion.occurred_at)
        return CompletedMilestone(
            id=milestone_id,
            title=planned.title,
            completed_on=completed_on,
            due_on=due_on,
            on_time=None if due_on is None else completed_on <= due_on,
            did=answers.did,
            why=answers.why,
            outcome=answers.outcome,
            kudos=tuple(kudos_givers(state, completion.id)),
        )

    def planned(self) -> list[Event]:
        state = self.state
        found = []
        for milestone_id in state.person(self.person).milestones:
            event = state.events[milestone_id]
            if self.in_period(event.occurred_at) and self.visible(milestone_id):
                found.append(event)
        return found

    def checkins(self) -> list[CheckInHistory]:
        state = self.state
        first_seen: dict[str, tuple[datetime, str]] = {}
        feed = state.feeds.get(self.person)
        for event in feed.events if feed is not None else ():
            checkin_id = event.id
            body = event.body  # the feed holds every check-in the person logged
            if not isinstance(body, b.CheckInRecorded):
                continue
            if not self.in_period(event.occurred_at) or state.is_retracted(checkin_id):
                continue
            key = (event.occurred_at, checkin_id)
            if body.subject not in first_seen or key < first_seen[body.subject]:
                first_seen[body.subject] = key
        histories = []
        for subject in sorted(first_seen, key=first_seen.__getitem__):
            if not self.visible(subject):
                continue
            found = self.resolver.visible_subject(subject)
            assert found is not None and found.title is not None
            entries = [
                CheckInEntry(v.id, v.occurred_at, v.confidence, v.value, v.percent, v.note)
                for v in checkins_for(state, subject)
                if self.in_period(v.occurred_at)
            ]
            if entries:
                kind = "key_result" if subject in state.key_results else "milestone"
                histories.append(
                    CheckInHistory(subject, kind, found.title, found.objective_title, entries)
                )
        return histories

    def observations(self) -> list[ReviewObservation]:
        state = self.state
        found = []
        feed = state.feeds.get(self.person)
        for event in feed.events if feed is not None else ():
            observation_id = event.id
            if not isinstance(event.body, b.ObservationRecorded):
                continue  # the feed holds every observation the person recorded
            if not self.in_period(event.occurred_at) or state.is_retracted(observation_id):
                continue
            body = state.body(observation_id)
            assert isinstance(body, b.ObservationRecorded)
            subject = body.indicator if body.indicator is not None else observation_id
            if not self.visible(subject):
                continue
            indicator_title = stage_name = None
            if body.indicator is not None:
                indicator = self.resolver.visible_subject(body.indicator)
                assert indicator is not None
                indicator_title = indicator.title
                if body.stage is not None and body.stage < len(indicator.stages):
                    stage_name = indicator.stages[body.stage]
            found.append(
                ReviewObservation(
                    id=observation_id,
                    occurred_at=event.occurred_at,
                    polarity=body.polarity,
                    text=body.text,
                    impact=body.impact,
                    indicator=body.indicator,
                    indicator_title=indicator_title,
                    stage=body.stage,
                    stage_name=stage_name,
                )
            )
        found.sort(key=lambda o: (o.occurred_at, o.id))
        return found


# --- the standing at month ends: one incremental fold of the person's own events ---------


def _checkpoints(start: date, end: date, now: datetime) -> list[datetime]:
    """The end of each month of the period that has begun by ``now`` (capped at now)."""
    moments = []
    for first, last in _months(start, end):
        moment = _end_of(last)
        if datetime.combine(first, time(), tzinfo=UTC) > now:
            break
        moments.append(min(moment, now))
    return moments


def _own_events(state: ProjectionState, person: str) -> list[Event]:
    """The events a person's own goal and drift views depend on, in recorded order.

    Only the owner's events count on their items: check-ins, corrections,
    retractions and sharing changes by others are ignored by those views.
    """
    own = [event for event in state.events.values() if event.actor == person]
    own.sort(key=lambda e: (e.recorded_at, e.clock, e.id))
    return own


class _Snapshots:
    """Folds the person's events in recorded order, stopping at each checkpoint."""

    def __init__(self, own: list[Event], referents: Mapping[str, Referent]) -> None:
        self.events = own
        self.position = 0
        self.state = ProjectionState(referents)

    def until(self, moment: datetime) -> ProjectionState:
        """The state as known at ``moment`` (moments must not go back)."""
        events = self.events
        while self.position < len(events) and events[self.position].recorded_at <= moment:
            apply(self.state, events[self.position])
            self.position += 1
        return self.state


_FIXES = (b.Corrected, b.Retracted)


def _standing(
    own: list[Event], moment: datetime, referents: Mapping[str, Referent]
) -> ProjectionState:
    """The person's goals as they stood at ``moment``, as the record now tells it.

    Unlike ``as_of`` (what was *known* then), this takes what *happened* by
    then, late-logged check-ins included, with every correction and
    retraction applied whenever it was made: fixes apply to the past.
    """
    return rebuild(
        (e for e in own if e.occurred_at <= moment or isinstance(e.body, _FIXES)), referents
    )


SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "alert": 2}


def _drift(
    state: ProjectionState,
    person: str,
    viewer: str,
    checkpoints: list[datetime],
    snapshots: _Snapshots,
    settings: DriftSettings,
    resolver: SubjectResolver,
) -> list[DriftOccurrence]:
    seen: dict[tuple[str, str], list[DriftSignal]] = {}
    first: dict[tuple[str, str], date] = {}
    last: dict[tuple[str, str], date] = {}
    for moment in checkpoints:
        snapshot = snapshots.until(moment)
        # Visibility is judged on today's state: what the viewer may see now (the person-wide
        # signals count only those items; pauses count in the person's own review only).
        signals = drift_signals(snapshot, person, moment, settings, viewer=viewer, visible_in=state)
        for signal in visible_signals(state, person, viewer, signals, resolver):
            key: tuple[str, str] = (signal.kind, signal.subject)
            seen.setdefault(key, []).append(signal)
            first.setdefault(key, _day(moment))
            last[key] = _day(moment)
    occurrences = []
    for key, sightings in seen.items():
        latest = sightings[-1]
        severity = max((s.severity for s in sightings), key=lambda s: SEVERITY_RANK.get(s, 0))
        occurrences.append(
            DriftOccurrence(
                kind=key[0],
                subject=key[1],
                subject_title=latest.subject_title,
                severity=severity,
                first_seen=first[key],
                last_seen=last[key],
                times_seen=len(sightings),
                explanation=latest.explanation,
            )
        )
    occurrences.sort(key=lambda o: (o.first_seen, o.kind, o.subject))
    return occurrences


# --- calibration ------------------------------------------------------------------------


def _calibration(gather: _Gather, today: date) -> Calibration:
    state = gather.state
    cases = []
    for milestone_id in state.person(gather.person).milestones:
        node = state.milestones[milestone_id]
        due_on = node.due_on.value
        if due_on is None or not gather.start <= due_on <= gather.end or due_on > today:
            continue
        if bool(node.dropped.value) or not gather.visible(milestone_id):
            continue
        confidence = None
        for view in reversed(checkins_for(state, milestone_id)):
            if _day(view.occurred_at) <= due_on:
                confidence = view.confidence
                break
        completion_id = node.completed.value
        on_time = False
        if completion_id is not None and not state.is_retracted(completion_id):
            on_time = _day(state.events[completion_id].occurred_at) <= due_on
        planned = state.body(milestone_id)
        assert isinstance(planned, b.MilestonePlanned)
        cases.append(CalibrationCase(milestone_id, planned.title, due_on, confidence, on_time))
    cases.sort(key=lambda c: (c.due_on, c.title, c.milestone))
    buckets = []
    for confidence in (*CONFIDENCE_PROBABILITY, None):
        group = [c for c in cases if c.confidence == confidence]
        done = sum(c.on_time for c in group)
        buckets.append(
            CalibrationBucket(
                confidence=confidence or "none",
                predicted=CONFIDENCE_PROBABILITY.get(confidence or ""),
                milestones=len(group),
                on_time=done,
                share_on_time=round(done / len(group), 4) if group else None,
            )
        )
    scored = [c for c in cases if c.confidence is not None]
    brier = None
    if scored:
        total = sum(
            (CONFIDENCE_PROBABILITY[c.confidence] - float(c.on_time)) ** 2
            for c in scored
            if c.confidence is not None
        )
        brier = round(total / len(scored), 4)
    return Calibration(buckets, len(scored), brier, cases)


# --- the review -------------------------------------------------------------------------


def _by_month(milestones: Iterable[CompletedMilestone]) -> list[MonthOfCompletions]:
    groups: dict[str, list[CompletedMilestone]] = {}
    for milestone in milestones:
        groups.setdefault(_month(milestone.completed_on), []).append(milestone)
    return [MonthOfCompletions(month, groups[month]) for month in sorted(groups)]


def review(
    state: ProjectionState,
    person: str,
    start: date,
    end: date,
    now: datetime,
    viewer: str | None = None,
    settings: DriftSettings = DEFAULT_SETTINGS,
) -> Review:
    """The person's record over ``start``..``end`` (inclusive) as ``viewer`` may see it."""
    if end < start:
        raise ValueError("a review period must end on or after its start")
    viewer = person if viewer is None else viewer
    gather = _Gather(state, person, viewer, start, end)
    today = _day(now)

    completions = gather.completions()
    by_objective: dict[str | None, list[CompletedMilestone]] = {}
    kudos_received = 0
    for milestone_id, completion in completions:
        objective_id = gather.milestone_objective(milestone_id)
        if objective_id is not None and not gather.visible(objective_id):
            objective_id = None  # linked elsewhere (or hidden): listed on its own
        completed = gather.completed_milestone(milestone_id, completion)
        kudos_received += len(completed.kudos)
        by_objective.setdefault(objective_id, []).append(completed)

    own = _own_events(state, person)
    checkpoints = _checkpoints(start, end, now)
    snapshots = _Snapshots(own, state.vouched)
    drift = _drift(state, person, viewer, checkpoints, snapshots, settings, gather.resolver)
    standing_at = min(now, _end_of(end))
    snapshot = _standing(own, standing_at, state.vouched)

    objectives = []
    for objective_id in state.person(person).objectives:
        if not gather.visible(objective_id):
            continue
        body = state.body(objective_id)
        assert isinstance(body, b.ObjectiveCreated)
        cycle_start, cycle_end = cycle_bounds(body.cycle)
        overlaps = cycle_start <= end and start <= cycle_end
        if not overlaps and objective_id not in by_objective:
            continue
        node = snapshot.objectives.get(objective_id)
        if node is not None and node.event is not PLACEHOLDER:
            standing = objective_view(snapshot, objective_id, standing_at, viewer)
        else:  # created after the period, for a cycle overlapping it
            standing = objective_view(state, objective_id, standing_at, viewer)
        objectives.append(
            ReviewObjective(
                id=objective_id,
                title=body.title,
                cycle=body.cycle,
                progress=standing.progress,
                status=standing.status,
                completed=_by_month(by_objective.get(objective_id, [])),
            )
        )
    objectives.sort(key=lambda o: (cycle_bounds(o.cycle)[0], o.title, o.id))

    checkins = gather.checkins()
    observations = gather.observations()
    planned = gather.planned()
    counts: dict[str, list[int]] = {}
    for history in checkins:
        for entry in history.entries:
            counts.setdefault(_month(_day(entry.occurred_at)), [0, 0, 0, 0])[0] += 1
    for event in planned:
        counts.setdefault(_month(_day(event.occurred_at)), [0, 0, 0, 0])[1] += 1
    for _, completion in completions:
        counts.setdefault(_month(_day(completion.occurred_at)), [0, 0, 0, 0])[2] += 1
    for observation in observations:
        counts.setdefault(_month(_day(observation.occurred_at)), [0, 0, 0, 0])[3] += 1
    months = []
    for first, _ in _months(start, end):
        month = _month(first)
        checkin_count, planned_count, completed_count, observed = counts.get(month, [0, 0, 0, 0])
        future = first > today
        months.append(
            MonthActivity(
                month=month,
                checkins=checkin_count,
                milestones_planned=planned_count,
                milestones_completed=completed_count,
                observations=observed,
                gap=not future and checkin_count + planned_count + completed_count + observed == 0,
                future=future,
            )
        )

    return Review(
        person=person,
        viewer=viewer,
        start=start,
        end=end,
        generated_at=now,
        objectives=objectives,
        other_completed=_by_month(by_objective.get(None, [])),
        checkins=checkins,
        observations=observations,
        months=months,
        drift=drift,
        calibration=_calibration(gather, today),
        kudos_received=kudos_received,
    )


# --- Markdown ---------------------------------------------------------------------------

MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _month_title(month: str) -> str:
    year, number = month.split("-")
    return f"{MONTH_NAMES[int(number) - 1]} {year}"


def _inline(text: str) -> str:
    """One line of text safe inside Markdown lists and tables."""
    return " ".join(text.split()).replace("|", "\\|")


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{round(100 * share)}%"


def _completed_lines(groups: list[MonthOfCompletions]) -> list[str]:
    lines: list[str] = []
    for group in groups:
        lines += ["", f"#### {_month_title(group.month)}", ""]
        for m in group.milestones:
            when = f"completed {m.completed_on.isoformat()}"
            if m.due_on is not None:
                when += ", on time" if m.on_time else f", due {m.due_on.isoformat()}"
            lines.append(f"- **{_inline(m.title)}** ({when})")
            lines.append(f"  - What I did: {_inline(m.did) or '—'}")
            lines.append(f"  - Why it mattered: {_inline(m.why) or '—'}")
            lines.append(f"  - Outcome: {_inline(m.outcome) or '—'}")
            if m.kudos:
                lines.append(f"  - Kudos from: {', '.join(m.kudos)}")
    return lines


def _number(value: float) -> str:
    return f"{value:g}"


def review_markdown(review: Review) -> str:
    """The review as a readable Markdown document."""
    r = review
    lines = [f"# Review: {r.person}, {r.start.isoformat()} to {r.end.isoformat()}", ""]
    seen_by = f" · as seen by {r.viewer}" if r.viewer != r.person else ""
    lines.append(f"_Generated {r.generated_at.isoformat(timespec='minutes')}{seen_by}._")

    lines += ["", "## Month by month", ""]
    lines.append("| Month | Check-ins | Planned | Completed | Observations |")
    lines.append("|---|---:|---:|---:|---:|")
    for m in r.months:
        name = _month_title(m.month)
        if m.future:
            lines.append(f"| {name} | — not yet — | | | |")
        elif m.gap:
            lines.append(f"| {name} | — no activity — | | | |")
        else:
            lines.append(
                f"| {name} | {m.checkins} | {m.milestones_planned} | "
                f"{m.milestones_completed} | {m.observations} |"
            )
    if r.kudos_received:
        lines += ["", f"Kudos received from teammates: {r.kudos_received}."]
    gaps = [_month_title(m.month) for m in r.months if m.gap]
    if gaps:
        lines += ["", f"Months with no activity at all: {', '.join(gaps)}."]

    lines += ["", "## Objectives"]
    if not r.objectives:
        lines += ["", "No objectives in this period."]
    for o in r.objectives:
        lines += ["", f"### {_inline(o.title)} ({o.cycle}): {_number(o.progress)}%, {o.status}"]
        if o.completed:
            lines += _completed_lines(o.completed)
        else:
            lines += ["", "No milestone completed in this period."]
    if r.other_completed:
        lines += ["", "### Milestones outside any objective"]
        lines += _completed_lines(r.other_completed)

    lines += ["", "## Check-ins"]
    if not r.checkins:
        lines += ["", "No check-ins in this period."]
    for history in r.checkins:
        under = f" (under {_inline(history.objective_title)})" if history.objective_title else ""
        kind = "key result" if history.kind == "key_result" else "milestone"
        lines += ["", f"### {_inline(history.title)}: {kind}{under}", ""]
        for entry in history.entries:
            parts = []
            if entry.value is not None:
                parts.append(_number(entry.value))
            if entry.percent is not None:
                parts.append(f"{_number(entry.percent)}%")
            parts.append(entry.confidence)
            note = f": {_inline(entry.note)}" if entry.note else ""
            lines.append(f"- {_day(entry.occurred_at).isoformat()} · {', '.join(parts)}{note}")

    lines += ["", "## Observations"]
    for polarity, heading in (("positive", "Wins"), ("negative", "Lessons")):
        chosen = [o for o in r.observations if o.polarity == polarity]
        lines += ["", f"### {heading} ({len(chosen)})", ""]
        if not chosen:
            lines.append("- none recorded")
        for seen in chosen:
            about = ""
            if seen.indicator_title is not None:
                stage = f", stage: {_inline(seen.stage_name)}" if seen.stage_name else ""
                about = f" [{_inline(seen.indicator_title)}{stage}]"
            impact = f" Impact: {_inline(seen.impact)}" if seen.impact else ""
            day = _day(seen.occurred_at).isoformat()
            lines.append(f"- {day}{about} {_inline(seen.text)}{impact}")

    lines += ["", "## Drift", ""]
    if not r.drift:
        lines.append("No drift signals at any month end of the period.")
    for d in r.drift:
        span = d.first_seen.isoformat()
        if d.last_seen != d.first_seen:
            span += f" to {d.last_seen.isoformat()}"
        about = f" on '{_inline(d.subject_title)}'" if d.subject_title else ""
        lines.append(f"- **{d.kind}**{about} ({d.severity}, {span}): {_inline(d.explanation)}")

    c = r.calibration
    lines += ["", "## Calibration", ""]
    if not c.cases:
        lines.append("No milestone came due in this period.")
    else:
        lines.append("| Confidence before the due date | Milestones | On time | Share |")
        lines.append("|---|---:|---:|---:|")
        for bucket in c.buckets:
            if bucket.milestones:
                lines.append(
                    f"| {bucket.confidence} | {bucket.milestones} | {bucket.on_time} | "
                    f"{_percent(bucket.share_on_time)} |"
                )
        if c.brier is not None:
            lines += [
                "",
                f"Brier score {c.brier:.3f} over {c.scored} "
                f"{'milestone' if c.scored == 1 else 'milestones'} "
                "(on-track = 0.8, at-risk = 0.5, off-track = 0.2; 0 is perfect, "
                "0.25 is what always saying at-risk earns).",
            ]
    return "\n".join(lines) + "\n"
