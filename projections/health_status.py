"""Health: one judgement per goal, derived from the facts, beside the self-reported confidence.

Confidence is what the person said at their last check-in; health is what the
numbers say today. A milestone 0% done and overdue is *off-track* whatever its
owner last said. Rules, each with the reason shown to the person:

* dropped → ``dropped``; a completed milestone, a key result at its target →
  ``done``;
* a milestone past its due date → ``off-track`` ("overdue since ...");
* an ended cycle: a key result short of its target, or a stay-above/below one
  not met at the end → ``off-track`` ("the cycle ended on ... at 14%");
* a stay-above/below key result not met at its last check-in → ``off-track``;
* behind pace: progress below expected by ``behind_pace_points`` → ``at-risk``,
  by twice that → ``off-track``;
* no check-in for ``stale_warning_periods`` cadence periods → ``at-risk``
  (``stale_alert_periods`` → ``off-track``), counted from the last check-in, or
  from when the key result was added (``created``), not before its cycle began;
* drift signals about the item, when the caller has them (``signals``): an
  alert → ``off-track``, a warning → ``at-risk``;
* otherwise ``on-track``.

The worst rule wins; its reason is the one shown. An objective's health is the
worst of its key results' (or, without key results, its milestones'), and an
ended cycle says so. Pure: views and signals in, ``Health`` out — the CLI and
the web page both call ``health``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Literal

import msgspec

from projections.goals import KeyResultView, MilestoneView, ObjectiveView
from projections.settings import DEFAULT_SETTINGS, DriftSettings

Level = Literal["done", "on-track", "at-risk", "off-track", "dropped"]
_RANK: dict[str, int] = {"dropped": -1, "done": 0, "on-track": 1, "at-risk": 2, "off-track": 3}
_CADENCE_DAYS = {"weekly": 7, "biweekly": 14, "monthly": 30}


class Health(msgspec.Struct, frozen=True):
    """What the facts say about an item, and why."""

    level: Level
    reason: str


class Signal(msgspec.Struct, frozen=True):
    """The part of a drift signal health reads (``projections.drift.DriftSignal`` fits)."""

    kind: str
    subject: str
    severity: str
    explanation: str


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:g}"


def _worst(candidates: Iterable[Health]) -> Health:
    best: Health | None = None
    for candidate in candidates:
        if best is None or _RANK[candidate.level] > _RANK[best.level]:
            best = candidate
    return best or Health("on-track", "on pace")


def _pace(progress: float, expected: float | None, settings: DriftSettings) -> Health | None:
    if expected is None:
        return None
    gap = expected - progress
    if gap < settings.behind_pace_points:
        return None
    level: Level = "off-track" if gap >= 2 * settings.behind_pace_points else "at-risk"
    return Health(level, f"behind pace: {progress:.0f}% done, {expected:.0f}% expected by now")


def _stale(
    last: date | None, since: date, cadence: str, today: date, settings: DriftSettings
) -> Health | None:
    period = _CADENCE_DAYS.get(cadence, 7)
    start = last or since
    days = (today - start).days
    if days < period * settings.stale_warning_periods:
        return None
    level: Level = "off-track" if days >= period * settings.stale_alert_periods else "at-risk"
    what = f"no check-in for {days} days" if last else f"no check-in since {since}"
    return Health(level, f"{what} ({cadence} cadence)")


def _from_signals(subject: str, signals: Iterable[Signal]) -> list[Health]:
    return [
        Health("off-track" if s.severity == "alert" else "at-risk", s.explanation)
        for s in signals
        if s.subject == subject
    ]


def milestone_health(
    view: MilestoneView,
    today: date,
    *,
    cadence: str = "weekly",
    settings: DriftSettings = DEFAULT_SETTINGS,
    signals: Iterable[Signal] = (),
) -> Health:
    """A milestone's health on ``today``."""
    if view.state == "dropped":
        return Health("dropped", "dropped")
    if view.state == "completed":
        when = f" on {view.completed_at.date()}" if view.completed_at else ""
        return Health("done", f"completed{when}")
    found: list[Health] = []
    if view.due_on is not None and view.due_on < today:
        days = (today - view.due_on).days
        found.append(
            Health(
                "off-track",
                f"overdue since {view.due_on + timedelta(days=1)}"
                f" ({days} {'day' if days == 1 else 'days'}), {view.progress:.0f}% done",
            )
        )
    pace = _pace(view.progress, view.expected, settings)
    if pace is not None:
        found.append(pace)
    if view.last_checkin is not None:
        stale = _stale(view.last_checkin, view.last_checkin, cadence, today, settings)
        if stale is not None:
            found.append(stale)
    found.extend(_from_signals(view.id, signals))
    return _worst(found) if found else Health("on-track", "on pace")


def key_result_health(
    view: KeyResultView,
    today: date,
    *,
    starts_on: date | None = None,
    ends_on: date | None = None,
    settings: DriftSettings = DEFAULT_SETTINGS,
    signals: Iterable[Signal] = (),
) -> Health:
    """A key result's health on ``today``: ``ends_on`` is its cycle's end, ``starts_on``
    the day staleness starts counting (its cycle's start, or the day it was added)."""
    threshold = view.kind in ("stay-above", "stay-below")
    if view.status == "dropped":
        return Health("dropped", "dropped")
    if not threshold and view.progress >= 100.0:
        return Health("done", "target reached")
    ended = ends_on is not None and today > ends_on
    found: list[Health] = []
    if threshold and view.met is False:
        side = "above" if view.kind == "stay-above" else "below"
        current = "-" if view.current is None else _num(view.current)
        target = _num(view.target or 0)
        when = f"the cycle ended on {ends_on} with" if ended else "last check-in:"
        found.append(Health("off-track", f"{when} {current}, not {side} {target}"))
    elif ended:
        found.append(Health("off-track", f"the cycle ended on {ends_on} at {view.progress:.0f}%"))
    if ended:
        if threshold and view.met:
            return Health("done", f"the cycle ended on {ends_on}, threshold held")
        return _worst(found) if found else Health("done", f"the cycle ended on {ends_on}")
    if not threshold:
        pace = _pace(view.progress, view.expected, settings)
        if pace is not None:
            found.append(pace)
    if starts_on is not None and today >= starts_on:
        stale = _stale(view.last_checkin, starts_on, view.cadence, today, settings)
        if stale is not None:
            found.append(stale)
    found.extend(_from_signals(view.id, signals))
    return _worst(found) if found else Health("on-track", "on pace")


def objective_health(
    view: ObjectiveView,
    today: date,
    *,
    settings: DriftSettings = DEFAULT_SETTINGS,
    signals: Iterable[Signal] = (),
    created: Mapping[str, date] | None = None,
) -> Health:
    """An objective's health: the worst of its key results' (or milestones'); says when
    its cycle has ended."""
    signals = list(signals)
    created = created or {}
    ended = today > view.ends_on
    children = [
        (
            kr.title,
            key_result_health(
                kr,
                today,
                starts_on=max(view.starts_on, created.get(kr.id, view.starts_on)),
                ends_on=view.ends_on,
                settings=settings,
                signals=signals,
            ),
        )
        for kr in view.key_results
    ]
    if not view.key_results:
        children = [
            (
                m.title,
                milestone_health(
                    m, today, cadence=view.cadence, settings=settings, signals=signals
                ),
            )
            for m in view.milestones
        ]
    live = [(title, h) for title, h in children if h.level != "dropped"]
    if not live:
        if ended:
            return Health("off-track", f"the cycle ended on {view.ends_on} with nothing to show")
        return Health("on-track", "nothing planned yet")
    worst = _worst(h for _, h in live)
    if ended:
        if worst.level == "done":
            return Health("done", f"the cycle ended on {view.ends_on}; all reached")
        return Health("off-track", f"the cycle ended on {view.ends_on} at {view.progress:.0f}%")
    if worst.level == "done":
        return Health("done", "every key result reached")
    if worst.level == "on-track":
        return worst
    title = next(title for title, h in live if h is worst)
    return Health(worst.level, f"{title}: {worst.reason}")


def health(
    view: ObjectiveView | KeyResultView | MilestoneView,
    today: date,
    *,
    settings: DriftSettings = DEFAULT_SETTINGS,
    signals: Iterable[Signal] = (),
) -> Health:
    """The health of any goal view (a key result without its cycle: pace and threshold only)."""
    if isinstance(view, ObjectiveView):
        return objective_health(view, today, settings=settings, signals=signals)
    if isinstance(view, KeyResultView):
        return key_result_health(view, today, settings=settings, signals=signals)
    return milestone_health(view, today, settings=settings, signals=signals)


def tree_health(
    objectives: Iterable[ObjectiveView],
    standalone: Iterable[MilestoneView],
    today: date,
    *,
    settings: DriftSettings = DEFAULT_SETTINGS,
    signals: Iterable[Signal] = (),
    created: Mapping[str, date] | None = None,
) -> dict[str, Health]:
    """Health of every node of a goal tree, by id (``created``: the day each key result
    was added, so a new one is not stale from its cycle's first day)."""
    created = created or {}
    signals = list(signals)
    out: dict[str, Health] = {}
    for objective in objectives:
        out[objective.id] = objective_health(
            objective, today, settings=settings, signals=signals, created=created
        )
        for kr in objective.key_results:
            out[kr.id] = key_result_health(
                kr,
                today,
                starts_on=max(objective.starts_on, created.get(kr.id, objective.starts_on)),
                ends_on=objective.ends_on,
                settings=settings,
                signals=signals,
            )
            for m in kr.milestones:
                out[m.id] = milestone_health(
                    m, today, cadence=objective.cadence, settings=settings, signals=signals
                )
        for m in objective.milestones:
            out[m.id] = milestone_health(
                m, today, cadence=objective.cadence, settings=settings, signals=signals
            )
    for m in standalone:
        out[m.id] = milestone_health(m, today, settings=settings, signals=signals)
    return out
