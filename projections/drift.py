"""Drift signals: the early warnings of docs/contract.md#projections, for one person's own items.

Every rule reads only the person's items (``state.person(p)`` indexes and the
sorted per-subject check-ins), so drift for one person costs what that person
owns, not what the log holds. Thresholds come from ``DriftSettings``.

Judgement calls (where docs/contract.md is silent), stated once here:

* Days are calendar days between dates (``now.date()``); pause days never count
  towards staleness (``stale``, ``unreviewed``, ``quiet``) nor pace
  (``behind-pace``, ``slowdown`` use active weeks) — in the owner's own view only:
  pauses are private (a ``pause.declared`` reaches nobody but its author), so drift
  computed for anyone else ignores them, as that viewer's device does.
* Drift for a viewer other than the owner reads only the owner's items that viewer may
  see (``projections.visibility.can_see_item``): the person-wide signals (``overload``,
  ``underplanned``, ``slowdown``) count those items alone and name only them.
* ``since`` is the first day the condition held: the day the threshold was
  crossed (stale, unreviewed, quiet, one-sided, behind-pace), the first day
  overdue, the day of the check-in that fell, the day the milestone lost its
  link, the start of the recent window (slowdown).
* Severity: stale follows the warning/alert periods; overdue is an alert;
  an off-track check-in is an alert, a fall to at-risk a warning; the other
  kinds are warnings that become alerts at twice their threshold (slowdown:
  when nothing was completed recently; underplanned: never).
* A key result is open while its objective's cycle is current and it is not
  done; its staleness counts from the cycle start at the earliest, and a
  check-in on one of its milestones counts for a key result without numbers.
* A milestone's staleness restarts when it is reopened or restored; a
  milestone linked only to a retracted parent is an orphan; a milestone past
  its (pause-extended) due date is overdue rather than behind pace; a
  *stay above/below* key result is met or not, never behind pace.
* Touches (``unreviewed``) are any event about the milestone, its tasks or its
  check-ins, corrections and retractions included, at their recorded time.
* Observations count only when made by the indicator's owner (as check-ins
  do); an indicator tied to an objective whose cycle has ended is retired.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from functools import partial
from typing import Literal

import msgspec

from events import Event, cycle_bounds
from events import bodies as b
from projections.goals import CheckInView, KeyResultView, last_checkins, milestone_view
from projections.goals import objective_view as _objective_view
from projections.settings import DEFAULT_SETTINGS, DriftSettings
from projections.state import PLACEHOLDER, MilestoneNode, ProjectionState
from projections.timeline import active_days, after_active_days, expected_percent
from projections.visibility import can_see_item

DriftKind = Literal[
    "stale",
    "behind-pace",
    "overdue",
    "overload",
    "underplanned",
    "confidence-drop",
    "orphan",
    "slowdown",
    "unreviewed",
    "one-sided",
    "quiet",
]
Severity = Literal["warning", "alert"]

_CONFIDENCE_RANK = b.CONFIDENCE_RANK
_ONE_DAY = timedelta(days=1)


class DriftSignal(msgspec.Struct, frozen=True):
    """One drift signal: what drifts, whose, how badly, since when, why, and what to do."""

    kind: DriftKind
    subject: str
    subject_title: str
    owner: str
    severity: Severity
    since: date
    explanation: str
    events: tuple[str, ...]
    action: str


def _sort_key(signal: DriftSignal) -> tuple[int, date, str, str, str]:
    return (
        0 if signal.severity == "alert" else 1,
        signal.since,
        signal.kind,
        signal.subject,
        signal.owner,
    )


def _num(value: float) -> str:
    """A number without trailing zeros: 20.0 -> 20, 20.10 -> 20.1, 2.142 -> 2.14."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# --- pauses -----------------------------------------------------------------------------

Pause = tuple[date, date, tuple[str, ...]]
"""A merged pause: first and last day (inclusive) and the pause events behind it."""


def _pauses(state: ProjectionState, person: str) -> list[Pause]:
    """The person's live pauses merged into disjoint inclusive ranges, oldest first."""
    raw: list[tuple[date, date, str]] = []
    for pause_id in state.person(person).pauses:
        if state.is_retracted(pause_id):
            continue
        body = state.events[pause_id].body
        assert isinstance(body, b.PauseDeclared)
        raw.append((body.starts_on, body.ends_on, pause_id))
    raw.sort()
    merged: list[Pause] = []
    for start, end, pause_id in raw:
        if merged and start <= merged[-1][1] + _ONE_DAY:
            first, last, ids = merged[-1]
            merged[-1] = (first, max(last, end), (*ids, pause_id))
        else:
            merged.append((start, end, (pause_id,)))
    return merged


def _extended_due(due: date, pauses: list[Pause]) -> tuple[date, int, tuple[str, ...]]:
    """A pause spanning the due date moves it by the pause's length (repeatedly)."""
    effective, extra = due, 0
    ids: tuple[str, ...] = ()
    for start, end, pause_ids in pauses:
        if start <= effective <= end:
            length = (end - start).days + 1
            effective += timedelta(days=length)
            extra += length
            ids += pause_ids
    return effective, extra, ids


# --- the per-call context ----------------------------------------------------------------


class _Context:
    """What every rule of one ``drift_signals`` call shares."""

    __slots__ = (
        "now",
        "pause_ids",
        "pauses",
        "person",
        "ranges",
        "seen",
        "settings",
        "state",
        "today",
        "viewer",
        "visible_in",
    )

    def __init__(
        self,
        state: ProjectionState,
        person: str,
        now: datetime,
        settings: DriftSettings,
        viewer: str,
        visible_in: ProjectionState,
    ) -> None:
        self.state = state
        self.person = person
        self.viewer = viewer
        self.visible_in = visible_in
        self.seen: dict[str, bool] = {}
        self.now = now
        self.today = now.date()
        self.settings = settings
        # Pauses are private: they count in the owner's own view only.
        self.pauses = _pauses(state, person) if viewer == person else []
        self.ranges = [(start, end) for start, end, _ in self.pauses]
        self.pause_ids = tuple(i for _, _, ids in self.pauses for i in ids)

    def counts(self, item_id: str) -> bool:
        """Whether the item counts in this view: always for the owner, else if the viewer
        may see it (judged on ``visible_in``, cached per call)."""
        if self.viewer == self.person:
            return True
        seen = self.seen.get(item_id)
        if seen is None:
            seen = self.seen[item_id] = can_see_item(self.visible_in, self.viewer, item_id)
        return seen

    def active(self, start: date, end: date) -> int:
        """Unpaused days in [start, end)."""
        return active_days(start, end, self.ranges)

    def paused(self, start: date, end: date) -> int:
        """Paused days in [start, end)."""
        return max(0, (end - start).days) - self.active(start, end)

    def crossing(self, start: date, days: float) -> date:
        """The first day on which ``days`` active days had passed since ``start``."""
        return after_active_days(start, max(1, math.ceil(days)), self.ranges)

    def signal(
        self,
        kind: DriftKind,
        subject: str,
        title: str,
        severity: Severity,
        since: date,
        explanation: str,
        event_ids: Iterable[str],
        action: str,
    ) -> DriftSignal:
        """A signal owned by this person; event ids deduplicated in order."""
        return DriftSignal(
            kind=kind,
            subject=subject,
            subject_title=title,
            owner=self.person,
            severity=severity,
            since=since,
            explanation=explanation,
            events=tuple(dict.fromkeys(i for i in event_ids if i)),
            action=action,
        )

    def live(self, item_id: str) -> bool:
        """The item's creating event has arrived and is not retracted."""
        event = self.state.events.get(item_id)
        return event is not None and not self.state.is_retracted(item_id)


def _day(event_id: str, state: ProjectionState) -> date:
    return state.events[event_id].occurred_at.date()


# --- goals: cadence, parents, cycles -------------------------------------------------------


def _objective_body(ctx: _Context, objective_id: str | None) -> b.ObjectiveCreated | None:
    if objective_id is None or not ctx.live(objective_id):
        return None
    body = ctx.state.body(objective_id)
    return body if isinstance(body, b.ObjectiveCreated) else None


def _key_result_body(ctx: _Context, key_result_id: str | None) -> b.KeyResultAdded | None:
    if key_result_id is None or not ctx.live(key_result_id):
        return None
    body = ctx.state.body(key_result_id)
    return body if isinstance(body, b.KeyResultAdded) else None


def _link(node: MilestoneNode) -> tuple[str | None, str | None]:
    link = node.link.value
    return (None, None) if link is None else (link[0], link[1])


def _milestone_parent(
    ctx: _Context, node: MilestoneNode
) -> tuple[b.KeyResultAdded | None, b.ObjectiveCreated | None]:
    """The live key result and objective a milestone hangs under (either may be None)."""
    key_result_id, objective_id = _link(node)
    key_result = _key_result_body(ctx, key_result_id)
    if key_result is not None:
        return key_result, _objective_body(ctx, key_result.objective)
    return None, _objective_body(ctx, objective_id)


def _milestone_cadence(ctx: _Context, node: MilestoneNode) -> str:
    """A milestone inherits its key result's cadence, else its objective's; weekly by default."""
    key_result, objective = _milestone_parent(ctx, node)
    if key_result is not None and key_result.cadence is not None:
        return key_result.cadence
    if objective is not None:
        return objective.cadence
    return "weekly"


def _is_orphan(ctx: _Context, node: MilestoneNode) -> bool:
    """Linked to nothing, or only to parents that were retracted (not merely not yet arrived)."""
    for parent_id in _link(node):
        if parent_id is None:
            continue
        event = ctx.state.events.get(parent_id)
        if event is None or not ctx.state.is_retracted(parent_id):
            return False
    return True


def _completion(ctx: _Context, node: MilestoneNode) -> str | None:
    completion_id = node.completed.value
    if completion_id is None or ctx.state.is_retracted(completion_id):
        return None
    return str(completion_id)


# --- stale -------------------------------------------------------------------------------


def _stale(
    ctx: _Context,
    subject: str,
    title: str,
    cadence: str,
    reference: date,
    reference_what: str,
    event_ids: list[str],
) -> DriftSignal | None:
    """Stale: no check-in for one cadence period (warning) or two (alert), pauses excluded."""
    settings = ctx.settings
    period = b.CADENCE_DAYS[cadence]
    days = ctx.active(reference, ctx.today)
    warn_days = settings.stale_warning_periods * period
    alert_days = settings.stale_alert_periods * period
    if days < warn_days:
        return None
    severity: Severity = "alert" if days >= alert_days else "warning"
    periods = math.floor(100 * days / period) / 100
    paused = ctx.paused(reference, ctx.today)
    pause_note = f", {paused} paused days not counted" if paused else ""
    explanation = (
        f"no check-in for {_plural(days, 'day')} (since {reference_what} on {reference}"
        f"{pause_note}); cadence {cadence} → {_num(periods)} period{'' if periods == 1 else 's'} "
        f"(warning at {_num(settings.stale_warning_periods)}, "
        f"alert at {_num(settings.stale_alert_periods)})"
    )
    return ctx.signal(
        "stale",
        subject,
        title,
        severity,
        ctx.crossing(reference, warn_days),
        explanation,
        event_ids,
        f"Check in on '{title}' or reschedule it",
    )


def _last_checkin_day(checkins: list[CheckInView]) -> tuple[date, str] | None:
    if not checkins:
        return None
    return checkins[0].occurred_at.date(), checkins[0].id


# --- behind pace -------------------------------------------------------------------------


def _behind_pace(
    ctx: _Context,
    subject: str,
    title: str,
    progress: float,
    start: date,
    due: date,
    progress_since: date,
    event_ids: list[str],
) -> DriftSignal | None:
    """Behind pace: expected progress (pauses excluded) minus progress exceeds the points."""
    points = ctx.settings.behind_pace_points

    def gap_on(day: date) -> float:
        return round(expected_percent(start, due, day, ctx.ranges) - progress, 2)

    gap = gap_on(ctx.today)
    if gap <= points:
        return None
    # Expected progress only grows with time and progress has not moved since
    # ``progress_since``: the first day the gap exceeded the threshold.
    low, high = min(max(progress_since, start), ctx.today), ctx.today
    while low < high:
        middle = low + timedelta(days=(high - low).days // 2)
        if gap_on(middle) > points:
            high = middle
        else:
            low = middle + _ONE_DAY
    expected = round(expected_percent(start, due, ctx.today, ctx.ranges), 2)
    severity: Severity = "alert" if gap > 2 * points else "warning"
    # Pauses are private: only the owner's own view has any to leave out.
    pauses_note = ", pauses excluded" if ctx.ranges else ""
    explanation = (
        f"progress {_num(progress)}% vs {_num(expected)}% expected by now "
        f"({start} → {due}{pauses_note}): {_num(gap)} points behind "
        f"(more than {_num(points)})"
    )
    return ctx.signal(
        "behind-pace",
        subject,
        title,
        severity,
        low,
        explanation,
        event_ids,
        f"Re-plan '{title}': cut scope, move the date or ask for help",
    )


# --- confidence drop ---------------------------------------------------------------------


def _confidence_drop(ctx: _Context, subject: str, title: str) -> DriftSignal | None:
    """Confidence drop: the last check-in is off-track, or less confident than the one before."""
    state = ctx.state
    latest = last_checkins(state, subject, 2)
    if not latest:
        return None
    last = latest[0]
    previous = latest[1] if len(latest) > 1 else None
    if last.confidence == "off-track":
        # The condition began with the first check-in of the trailing off-track run.
        count = 2
        run = latest
        while True:
            first_on = next((i for i, c in enumerate(run) if c.confidence != "off-track"), None)
            if first_on is not None or len(run) < count:
                break
            count *= 2
            run = last_checkins(state, subject, count)
        run = run[:first_on] if first_on is not None else run
        since = run[-1].occurred_at.date()
        before = f"; {len(run)} off-track check-ins in a row" if len(run) > 1 else ""
        explanation = f"last check-in ({last.occurred_at.date()}) is off-track{before}"
        if previous is not None and previous.confidence != "off-track":
            explanation += f" (was {previous.confidence} on {previous.occurred_at.date()})"
        severity: Severity = "alert"
        ids = [c.id for c in reversed(run)]
        if previous is not None and previous.confidence != "off-track":
            ids.insert(0, previous.id)
    elif previous is not None and (
        _CONFIDENCE_RANK[last.confidence] > _CONFIDENCE_RANK[previous.confidence]
    ):
        since = last.occurred_at.date()
        explanation = (
            f"confidence fell from {previous.confidence} ({previous.occurred_at.date()}) "
            f"to {last.confidence} ({last.occurred_at.date()})"
        )
        severity = "warning"
        ids = [previous.id, last.id]
    else:
        return None
    corrections = [
        c
        for checkin_id in list(ids)
        for c in state.corrections.get(checkin_id, ())
        if not state.is_retracted(c) and state.events[c].actor == state.events[checkin_id].actor
    ]
    return ctx.signal(
        "confidence-drop",
        subject,
        title,
        severity,
        since,
        explanation,
        [*ids, *corrections],
        f"Ask what changed on '{title}' and what would help",
    )


# --- milestones -----------------------------------------------------------------------------


def _touched(ctx: _Context, milestone_id: str, node: MilestoneNode) -> tuple[datetime, str]:
    """The latest recorded event about a milestone, its tasks or its check-ins (and fixes)."""
    state = ctx.state
    events = state.events
    corrections = state.corrections
    retracted = state.retracted
    best_at, best_id = node.event.recorded_at, milestone_id
    touched = node.touched
    touched_id = ""
    if touched is not None:
        touched_id = touched.id
        if (touched.recorded_at, touched_id) > (best_at, best_id):
            best_at, best_id = touched.recorded_at, touched_id
    # One pass over the events the indexes hold, a lookup only for fixes: an open
    # milestone can have dozens of tasks. Its check-ins (a year of them, weekly) and
    # their fixes are one event the fold keeps (``checkin_touch``).
    related: list[Event] = []
    checkin_touch = state.checkin_touched(milestone_id)
    if checkin_touch is not None:
        related.append(checkin_touch)
    fixed = [milestone_id, touched_id]
    for task in node.tasks:
        related.append(task.done_by)
        task_id = task.id
        if task_id in corrections or task_id in retracted:
            fixed.append(task_id)
    for target in fixed:
        for fix in (*corrections.get(target, ()), *retracted.get(target, ())):
            event = events.get(fix)
            if event is not None:
                related.append(event)
    for event in related:
        at = event.recorded_at
        if at > best_at or (at == best_at and event.id > best_id):
            best_at, best_id = at, event.id
    return best_at, best_id


def _restart(ctx: _Context, node: MilestoneNode) -> tuple[date, str, str] | None:
    """The latest live reopen or restore of a milestone (its staleness restarts there)."""
    found: tuple[date, str, str] | None = None
    for register, what in ((node.completed, "reopen"), (node.dropped, "restore")):
        source = register.source
        if register.value or source == node.event.id or source not in ctx.state.events:
            continue
        if ctx.state.is_retracted(source):
            continue
        candidate = (_day(source, ctx.state), what, source)
        if found is None or candidate > found:
            found = candidate
    return found


class _OpenMilestone(msgspec.Struct):
    id: str
    created: datetime
    cycle: str | None


def _milestone_signals(
    ctx: _Context,
    milestone_id: str,
    node: MilestoneNode,
    out: list[DriftSignal],
) -> None:
    """Stale, overdue, behind-pace, confidence-drop, orphan and unreviewed for one milestone."""
    state, settings, today = ctx.state, ctx.settings, ctx.today
    view = milestone_view(state, milestone_id, ctx.now, ctx.viewer)
    title = view.title
    created = node.event.occurred_at.date()
    latest = last_checkins(state, milestone_id, 1)
    last = _last_checkin_day(latest)

    # stale
    cadence = _milestone_cadence(ctx, node)
    reference, reference_what, ids = created, "creation", [milestone_id]
    if last is not None and last[0] >= reference:
        reference, reference_what, ids = last[0], "the last check-in", [milestone_id, last[1]]
    restart = _restart(ctx, node)
    if restart is not None and restart[0] > reference:
        reference, reference_what = restart[0], f"the {restart[1]}"
        ids = [milestone_id, restart[2]]
    signal = _stale(ctx, milestone_id, title, cadence, reference, reference_what, ids)
    if signal is not None:
        out.append(signal)

    # overdue, then behind-pace for what is not overdue yet
    due = view.due_on
    if due is not None:
        effective, extra, pause_ids = _extended_due(due, ctx.pauses)
        due_source = node.due_on.source
        if today > effective:
            late = (today - effective).days
            extension = f", extended by {extra} paused days to {effective}" if extra else ""
            explanation = (
                f"due {due}{extension}; {_plural(late, 'day')} overdue and not completed "
                f"(progress {_num(view.progress)}%)"
            )
            out.append(
                ctx.signal(
                    "overdue",
                    milestone_id,
                    title,
                    "alert",
                    effective + _ONE_DAY,
                    explanation,
                    [milestone_id, due_source, *pause_ids],
                    f"Complete, reschedule or drop '{title}'",
                )
            )
        else:
            progress_since = last[0] if last is not None else created
            ids = [milestone_id, due_source] + ([last[1]] if last is not None else [])
            signal = _behind_pace(
                ctx, milestone_id, title, view.progress, created, effective, progress_since, ids
            )
            if signal is not None:
                out.append(signal)

    signal = _confidence_drop(ctx, milestone_id, title)
    if signal is not None:
        out.append(signal)

    # orphan
    if _is_orphan(ctx, node):
        source = node.link.source
        since = created if source in ("", milestone_id) else _day(source, state)
        what = "planned without a link" if source in ("", milestone_id) else "unlinked"
        out.append(
            ctx.signal(
                "orphan",
                milestone_id,
                title,
                "warning",
                since,
                f"open milestone linked to no live key result or objective ({what} on {since})",
                [milestone_id, source],
                f"Link '{title}' to a key result or objective, or drop it",
            )
        )

    # unreviewed
    touched_at, touched_by = _touched(ctx, milestone_id, node)
    touched_on = touched_at.date()
    idle = ctx.active(touched_on, today)
    limit = settings.unreviewed_days
    if idle >= limit:
        paused = ctx.paused(touched_on, today)
        pause_note = f", {paused} paused days not counted" if paused else ""
        out.append(
            ctx.signal(
                "unreviewed",
                milestone_id,
                title,
                "alert" if idle >= 2 * limit else "warning",
                ctx.crossing(touched_on, limit),
                f"nobody touched it for {_plural(idle, 'day')} (last event on {touched_on}"
                f"{pause_note}; threshold {limit} days)",
                [milestone_id, touched_by],
                f"Review '{title}': check in, add tasks, reschedule or drop it",
            )
        )


def _milestone_cycle(ctx: _Context, node: MilestoneNode) -> str | None:
    _, objective = _milestone_parent(ctx, node)
    return objective.cycle if objective is not None else None


# --- key results ------------------------------------------------------------------------------


def _key_result_signals(
    ctx: _Context,
    objective: b.ObjectiveCreated,
    view: KeyResultView,
    starts_on: date,
    ends_on: date,
    out: list[DriftSignal],
) -> None:
    """Stale, behind-pace and confidence-drop for one open key result of a current cycle."""
    state = ctx.state
    kr_id, title = view.id, view.title
    body = state.body(kr_id)
    assert isinstance(body, b.KeyResultAdded)
    created = state.events[kr_id].occurred_at.date()
    reference, what = max(created, starts_on), "creation"
    if created < starts_on:
        what = "the cycle start"
    ids = [kr_id]
    latest = _last_checkin_day(last_checkins(state, kr_id, 1))
    candidates = [latest] if latest is not None else []
    if body.start is None and body.kind in ("increase", "decrease"):
        for milestone in view.milestones:  # no numbers: a milestone check-in counts
            if milestone.state == "open":
                found = _last_checkin_day(last_checkins(state, milestone.id, 1))
                if found is not None:
                    candidates.append(found)
    if candidates:
        best = max(candidates)
        if best[0] >= reference:
            reference, what, ids = best[0], "the last check-in", [kr_id, best[1]]
    signal = _stale(ctx, kr_id, title, view.cadence, reference, what, ids)
    if signal is not None:
        out.append(signal)

    if body.kind in ("increase", "decrease"):
        valued = last_checkins(state, kr_id, 1, with_value=True)
        since = valued[0].occurred_at.date() if valued else starts_on
        pace_ids = [kr_id] + ([valued[0].id] if valued else [])
        signal = _behind_pace(ctx, kr_id, title, view.progress, starts_on, ends_on, since, pace_ids)
        if signal is not None:
            out.append(signal)

    signal = _confidence_drop(ctx, kr_id, title)
    if signal is not None:
        out.append(signal)


# --- load: overload / underplanned, slowdown -----------------------------------------------


def _load_signals(
    ctx: _Context,
    current_cycles: dict[str, list[str]],
    open_by_cycle: dict[str, list[_OpenMilestone]],
    closed_on: dict[str, tuple[date, str]],
    out: list[DriftSignal],
) -> None:
    """Overload / underplanned: open milestones per current cycle above / below the limits."""
    settings = ctx.settings
    high, low = settings.overload_open_milestones, settings.underplanned_open_milestones
    for cycle, objective_ids in sorted(current_cycles.items()):
        milestones = sorted(open_by_cycle.get(cycle, []), key=lambda m: (m.created, m.id))
        count = len(milestones)
        subject = f"{ctx.person}:{cycle}"
        ids = [m.id for m in milestones]
        if count > high:
            out.append(
                ctx.signal(
                    "overload",
                    subject,
                    f"{cycle} milestones",
                    "alert" if count > 2 * high else "warning",
                    milestones[high].created.date(),
                    f"{count} open milestones in {cycle} (more than {high})",
                    ids,
                    f"Finish, defer or drop some of the {count} open milestones of {cycle}",
                )
            )
        elif count < low:
            starts_on = cycle_bounds(cycle)[0]
            closing = closed_on.get(cycle)
            since = starts_on
            closing_ids: list[str] = []
            if closing is not None and closing[0] > starts_on:
                since, closing_ids = closing[0], [closing[1]]
            out.append(
                ctx.signal(
                    "underplanned",
                    subject,
                    f"{cycle} milestones",
                    "warning",
                    min(since, ctx.today),
                    f"{_plural(count, 'open milestone')} in {cycle} (fewer than {low})",
                    [*objective_ids, *ids, *closing_ids],
                    f"Plan the next deliveries of {cycle}: at least {low} open milestones",
                )
            )


def _slowdown(ctx: _Context, completions: list[tuple[date, str]]) -> DriftSignal | None:
    """Slowdown: the recent weekly completion rate is below ratio × the baseline's rate."""
    settings, today = ctx.settings, ctx.today
    recent_weeks, baseline_weeks = settings.slowdown_recent_weeks, settings.slowdown_baseline_weeks
    recent_start = today - timedelta(days=7 * recent_weeks - 1)
    baseline_start = recent_start - timedelta(days=7 * baseline_weeks)
    recent = [c for c in completions if recent_start <= c[0] <= today]
    baseline = [c for c in completions if baseline_start <= c[0] < recent_start]
    recent_days = ctx.active(recent_start, today + _ONE_DAY)
    baseline_days = ctx.active(baseline_start, recent_start)
    if not baseline or recent_days == 0 or baseline_days == 0:
        return None
    # recent/recent_weeks < ratio × baseline/baseline_weeks, in active weeks, cross-multiplied.
    if len(recent) * baseline_days >= settings.slowdown_ratio * len(baseline) * recent_days:
        return None
    recent_rate = 7 * len(recent) / recent_days
    baseline_rate = 7 * len(baseline) / baseline_days
    paused = (7 * recent_weeks - recent_days) + (7 * baseline_weeks - baseline_days)
    pause_note = f"; {paused} paused days not counted" if paused else ""
    explanation = (
        f"{_plural(len(recent), 'milestone')} completed in the last {recent_weeks} weeks "
        f"({_num(recent_rate)}/week) vs {len(baseline)} in the {baseline_weeks} weeks before "
        f"({_num(baseline_rate)}/week): below {_num(settings.slowdown_ratio)} × the baseline rate"
        f"{pause_note}"
    )
    return ctx.signal(
        "slowdown",
        ctx.person,
        f"{ctx.person}'s completions",
        "alert" if not recent else "warning",
        recent_start,
        explanation,
        [i for _, i in sorted(baseline + recent)],
        "Look for what blocks the open milestones: split them, unblock them or re-plan",
    )


# --- indicators ------------------------------------------------------------------------------


def _indicator_signals(ctx: _Context, indicator_id: str, out: list[DriftSignal]) -> None:
    """One-sided (last N observations all positive) and quiet (no observation for N days)."""
    state, settings, today = ctx.state, ctx.settings, ctx.today
    node = state.indicators[indicator_id]
    owner = node.event.actor
    body = state.body(indicator_id)
    assert isinstance(body, b.IndicatorDefined)
    if body.objective is not None and state.events.get(body.objective) is not None:
        objective = _objective_body(ctx, body.objective)
        if objective is None or cycle_bounds(objective.cycle)[1] < today:
            return  # tied to a retracted objective or one whose cycle has ended
    title = body.title
    # Walk back from the latest (the fold keeps them in (occurred_at, clock, id)
    # order) over live observations by the owner: the trailing run of positives,
    # ended by the first live observation that is not positive.
    latest: Event | None = None
    streak: list[Event] = []
    for observation in reversed(node.observations):
        observation_id = observation.id
        if observation.actor != owner or state.is_retracted(observation_id):
            continue
        if latest is None:
            latest = observation
        observed = state.body(observation_id)
        assert isinstance(observed, b.ObservationRecorded)
        if observed.polarity != "positive":
            break
        streak.append(observation)
    streak.reverse()

    needed = settings.one_sided_observations
    run = len(streak)
    if run >= needed:
        out.append(
            ctx.signal(
                "one-sided",
                indicator_id,
                title,
                "alert" if run >= 2 * needed else "warning",
                streak[needed - 1].occurred_at.date(),
                f"the last {run} observations are all positive (threshold {needed})",
                [o.id for o in streak],
                f"Look for disconfirming evidence on '{title}': record what did not go well",
            )
        )

    limit = settings.quiet_days
    if latest is not None:
        reference, what, ids = (
            latest.occurred_at.date(),
            "the last observation",
            [indicator_id, latest.id],
        )
    else:
        reference, what, ids = node.event.occurred_at.date(), "creation", [indicator_id]
    idle = ctx.active(reference, today)
    if idle >= limit:
        paused = ctx.paused(reference, today)
        pause_note = f", {paused} paused days not counted" if paused else ""
        out.append(
            ctx.signal(
                "quiet",
                indicator_id,
                title,
                "alert" if idle >= 2 * limit else "warning",
                ctx.crossing(reference, limit),
                f"no observation for {_plural(idle, 'day')} (since {what} on {reference}"
                f"{pause_note}; threshold {limit} days)",
                ids,
                f"Record an observation on '{title}' or retire the indicator",
            )
        )


# --- entry points ------------------------------------------------------------------------------


def drift_signals(
    state: ProjectionState,
    person: str,
    now: datetime,
    settings: DriftSettings = DEFAULT_SETTINGS,
    failures: list[tuple[str, str]] | None = None,
    *,
    viewer: str | None = None,
    visible_in: ProjectionState | None = None,
) -> list[DriftSignal]:
    """Every drift signal on the person's own items, alerts first, then by since, kind, subject.

    ``viewer`` (default: the person) is whose view this is. The person's own view counts
    their pauses and every item. Anyone else's ignores the pauses (they are private) and
    reads only the person's items the viewer may see, judged on ``visible_in`` (default:
    ``state``; a review folding the past judges on today's state): the person-wide
    signals count and name those alone. Callers still keep only what the viewer may be
    shown (``projections.team.visible_signals``).

    A rule that fails on one item drops that item's signals, never the list; ``failures``
    (if given) receives ``(item id, reason)`` for each. The codec's ranges make every
    rule total, so it stays empty; the property tests check that it does.
    """
    index = state.people.get(person)
    if index is None:
        return []
    viewer = person if viewer is None else viewer
    judged_on = state if visible_in is None else visible_in
    ctx = _Context(state, person, now, settings, viewer, judged_on)
    counts = ctx.counts
    today = ctx.today
    out: list[DriftSignal] = []

    def attempt(item_id: str, rule: Callable[[], object]) -> None:
        mark = len(out)
        try:
            rule()
        except Exception as exc:  # one bad item must not take the list down
            del out[mark:]
            if failures is not None:
                failures.append((item_id, f"{type(exc).__name__}: {exc}"[:200]))

    # An item's own signals depend on the viewer only through the pauses counted: one
    # computation per item, day, settings and pauses serves the owner and everyone else
    # (when the owner has none) at this position.
    pauses_key = person if ctx.ranges else ""

    def per_item(item_id: str, rule: Callable[[list[DriftSignal]], None]) -> None:
        def compute() -> tuple[DriftSignal, ...]:
            found: list[DriftSignal] = []
            rule(found)
            return tuple(found)

        # Kept across events of others: an item's rules read only its owner's items.
        key = ("drift-item", item_id, today, settings, pauses_key)
        out.extend(state.memoized(key, compute, person))

    def key_results(
        objective_id: str,
        objective: b.ObjectiveCreated,
        first: date,
        last: date,
        found: list[DriftSignal],
    ) -> None:
        view = _objective_view(state, objective_id, now, viewer)
        for kr_view in view.key_results:
            if kr_view.status != "done":
                _key_result_signals(ctx, objective, kr_view, first, last, found)

    def slowdown() -> None:
        signal = _slowdown(ctx, list(completions.values()))
        if signal is not None:
            out.append(signal)

    # Objectives of a current cycle: their key results, and the cycles to weigh load in.
    current_cycles: dict[str, list[str]] = {}
    for objective_id in index.objectives:
        objective = _objective_body(ctx, objective_id)
        if objective is None or not counts(objective_id):
            continue
        starts_on, ends_on = cycle_bounds(objective.cycle)
        if not starts_on <= today <= ends_on:
            continue
        current_cycles.setdefault(objective.cycle, []).append(objective_id)
        rule = partial(key_results, objective_id, objective, starts_on, ends_on)
        attempt(objective_id, partial(per_item, objective_id, rule))

    # Milestones: the per-item rules for open ones; load and pace over all of them.
    first_current_day = min((cycle_bounds(cycle)[0] for cycle in current_cycles), default=date.max)
    open_by_cycle: dict[str, list[_OpenMilestone]] = {}
    closed_on: dict[str, tuple[date, str]] = {}
    completions: dict[str, tuple[date, str]] = {}
    for milestone_id in index.milestones:
        node = state.milestones[milestone_id]
        if node.event is PLACEHOLDER or state.is_retracted(milestone_id):
            continue
        if not counts(milestone_id):
            continue
        completion = _completion(ctx, node)
        dropped = bool(node.dropped.value)
        if completion is None and not dropped:
            rule = partial(_milestone_signals, ctx, milestone_id, node)
            attempt(milestone_id, partial(per_item, milestone_id, rule))
            cycle = _milestone_cycle(ctx, node)
            if cycle is not None:
                open_by_cycle.setdefault(cycle, []).append(
                    _OpenMilestone(milestone_id, node.event.occurred_at, cycle)
                )
            continue
        if completion is not None and not dropped:
            closing_id = completion
            completions[milestone_id] = (_day(completion, state), completion)
        else:
            closing_id = node.dropped.source
        if closing_id not in state.events:
            continue
        closing = (_day(closing_id, state), closing_id)
        if closing[0] < first_current_day:
            continue  # closed before any current cycle began: cannot lower its load
        cycle = _milestone_cycle(ctx, node)
        if cycle in current_cycles and (cycle not in closed_on or closing > closed_on[cycle]):
            closed_on[cycle] = closing

    attempt(person, lambda: _load_signals(ctx, current_cycles, open_by_cycle, closed_on, out))
    attempt(person, slowdown)

    for indicator_id in index.indicators:
        node_i = state.indicators.get(indicator_id)
        if node_i is None or node_i.event is PLACEHOLDER or state.is_retracted(indicator_id):
            continue
        if not counts(indicator_id):
            continue
        attempt(
            indicator_id,
            partial(per_item, indicator_id, partial(_indicator_signals, ctx, indicator_id)),
        )

    out.sort(key=_sort_key)
    return out


def drift_for_people(
    state: ProjectionState,
    people: Iterable[str],
    now: datetime,
    settings: DriftSettings = DEFAULT_SETTINGS,
) -> list[DriftSignal]:
    """Drift of several people (e.g. a team) in one list, in the same order as for one."""
    signals = [
        signal
        for person in dict.fromkeys(people)
        for signal in drift_signals(state, person, now, settings)
    ]
    signals.sort(key=_sort_key)
    return signals
