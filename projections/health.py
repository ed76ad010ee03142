"""Health: every goal item's state derived from pace, due dates and drift, with the reason.

One rule, used by the HTTP API's board and by the team page (SPEC §3 *Health*):

* ``done`` / ``dropped`` for closed items;
* ``off-track`` when a drift **alert** names the item (or, for an objective or
  key result, one of the items under it), or an open milestone is past its due
  date;
* ``at-risk`` when a drift **warning** names the item (or one under it), or
  progress trails the expected progress by more than the pace threshold;
* ``on-track`` otherwise.

Health sits beside the self-reported confidence, never replaces it, and never
says ``on-track`` for an item that drift flags: any signal about the item or one
under it makes it at least ``at-risk``. The reason is one line citing the rule
and the numbers (the first signal's explanation when drift decides).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Literal

import msgspec

from projections.drift import DriftSignal
from projections.goals import KeyResultView, MilestoneView, ObjectiveView

HealthLevel = Literal["on-track", "at-risk", "off-track", "done", "dropped"]
HEALTH_LEVELS: tuple[HealthLevel, ...] = ("off-track", "at-risk", "on-track", "done", "dropped")
"""Worst first (the order a filter lists them in)."""

_RANK: dict[str, int] = {"dropped": -1, "done": 0, "on-track": 1, "at-risk": 2, "off-track": 3}

PACE_POINTS = 20.0
"""How far (percentage points) progress may trail expected progress before it is at-risk."""


class Health(msgspec.Struct, frozen=True):
    """An item's health and why: the level, a one-line reason, the drift kinds behind it."""

    level: HealthLevel
    reason: str
    signals: tuple[str, ...] = ()


def _num(value: float) -> str:
    return f"{value:.0f}"


def health(
    *,
    state: str,
    progress: float,
    expected: float | None,
    due_on: date | None,
    today: date,
    signals: Sequence[DriftSignal] = (),
    pace_points: float = PACE_POINTS,
    item_id: str | None = None,
) -> Health:
    """The health of one item from its state, pace, due date and the drift signals about it.

    ``state`` is ``open``, ``completed``/``done`` or ``dropped``; ``signals`` are the drift
    signals about the item and the items under it (alerts first, as drift sorts them); a
    signal about an item under ``item_id`` names that item in the reason.
    """

    def about(signal: DriftSignal) -> str:
        if item_id is None or signal.subject == item_id or not signal.subject_title:
            return signal.explanation
        return f"'{signal.subject_title}': {signal.explanation}"

    if state in ("completed", "done"):
        return Health("done", "completed")
    if state == "dropped":
        return Health("dropped", "dropped")
    kinds = tuple(dict.fromkeys(s.kind for s in signals))
    alerts = [s for s in signals if s.severity == "alert"]
    if alerts:
        return Health("off-track", f"drift alert ({alerts[0].kind}) {about(alerts[0])}", kinds)
    if due_on is not None and due_on < today:
        days = (today - due_on).days
        late = f"{days} day{'s' if days != 1 else ''}"
        return Health("off-track", f"overdue: due {due_on.isoformat()}, {late} ago", kinds)
    if signals:
        return Health("at-risk", f"drift warning ({signals[0].kind}) {about(signals[0])}", kinds)
    if expected is not None and expected - progress > pace_points:
        return Health(
            "at-risk",
            f"behind pace: {_num(progress)}% done, {_num(expected)}% expected"
            f" (more than {_num(pace_points)} points behind)",
        )
    if expected is not None:
        return Health("on-track", f"on pace: {_num(progress)}% done, {_num(expected)}% expected")
    return Health("on-track", f"{_num(progress)}% done, no drift")


def signals_by_subject(signals: Iterable[DriftSignal]) -> dict[str, list[DriftSignal]]:
    """Drift signals grouped by the item they are about (order kept)."""
    grouped: dict[str, list[DriftSignal]] = {}
    for signal in signals:
        grouped.setdefault(signal.subject, []).append(signal)
    return grouped


def _sorted(signals: list[DriftSignal]) -> list[DriftSignal]:
    return sorted(signals, key=lambda s: 0 if s.severity == "alert" else 1)


def milestone_health(
    view: MilestoneView, today: date, by_subject: Mapping[str, list[DriftSignal]]
) -> Health:
    """A milestone's health."""
    return health(
        state=view.state,
        progress=view.progress,
        expected=view.expected,
        due_on=view.due_on,
        today=today,
        signals=_sorted(list(by_subject.get(view.id, ()))),
    )


def key_result_health(
    view: KeyResultView, today: date, by_subject: Mapping[str, list[DriftSignal]]
) -> Health:
    """A key result's health: its own signals and those of its milestones count."""
    signals = list(by_subject.get(view.id, ()))
    for milestone in view.milestones:
        if milestone.state == "open":
            signals += by_subject.get(milestone.id, ())
    state = "done" if view.status == "done" else "open"
    if view.met is False:  # a stay-above/below threshold not held is off-track by definition
        return Health("off-track", "threshold not met at the last check-in")
    return health(
        state=state,
        progress=view.progress,
        expected=view.expected,
        due_on=None,
        today=today,
        signals=_sorted(signals),
        item_id=view.id,
    )


def objective_health(
    view: ObjectiveView, today: date, by_subject: Mapping[str, list[DriftSignal]]
) -> Health:
    """An objective's health: its signals and those of every item under it."""
    signals = list(by_subject.get(view.id, ()))
    for key_result in view.key_results:
        signals += by_subject.get(key_result.id, ())
        signals += (s for m in key_result.milestones for s in by_subject.get(m.id, ()))
    signals += (s for m in view.milestones for s in by_subject.get(m.id, ()))
    worst_child = max(
        (key_result_health(k, today, by_subject) for k in view.key_results),
        key=lambda h: _RANK[h.level],
        default=None,
    )
    state = "done" if view.status == "done" else "open"
    own = health(
        state=state,
        progress=view.progress,
        expected=view.expected,
        due_on=None,
        today=today,
        signals=_sorted(signals),
        item_id=view.id,
    )
    if worst_child is not None and _RANK[worst_child.level] > _RANK[own.level]:
        return Health(worst_child.level, worst_child.reason, own.signals)
    return own


def tree_health(
    objectives: Iterable[ObjectiveView],
    standalone: Iterable[MilestoneView],
    today: date,
    signals: Iterable[DriftSignal],
) -> dict[str, Health]:
    """Health of every objective, key result and milestone shown, by item id."""
    by_subject = signals_by_subject(signals)
    found: dict[str, Health] = {}
    for objective in objectives:
        found[objective.id] = objective_health(objective, today, by_subject)
        for key_result in objective.key_results:
            found[key_result.id] = key_result_health(key_result, today, by_subject)
            for milestone in key_result.milestones:
                found[milestone.id] = milestone_health(milestone, today, by_subject)
        for milestone in objective.milestones:
            found[milestone.id] = milestone_health(milestone, today, by_subject)
    for milestone in standalone:
        found[milestone.id] = milestone_health(milestone, today, by_subject)
    return found
