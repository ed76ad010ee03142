"""Health: every goal item's state derived from pace, due dates and drift, with the reason.

One rule (SPEC §3 *Health*), used by the CLI's ``milepost status``, the HTTP
API's team board and the team page alike, so the same item shows the same
health everywhere. Confidence is what the person said at their last check-in;
health is what the facts say today, shown beside it, never instead of it.

For an open item, every rule that holds is a candidate; the worst level wins
and, among rules of that level, the first in this order gives the reason
(once an item's cycle has ended, rule 3 gives it: that is the news then):

1. **drift** (``projections.drift``) about the item or an item under it: an
   alert → ``off-track``, a warning → at least ``at-risk`` (the reason cites an
   alert before a warning, the item's own before one under it, then overdue,
   behind-pace, stale, confidence-drop, unreviewed, orphan). Drift's own rules
   (stale per cadence, pauses excluded; overdue; behind pace; confidence drop;
   orphan; unreviewed) thus decide first, and a view never says ``on-track``
   for an item drift flags;
2. **overdue**: an open milestone past its due date → ``off-track``;
3. **ended cycle**: a key result short of its target, or a stay-above/below
   one not met, when its objective's cycle has ended → ``off-track``;
4. **threshold**: a stay-above/below key result not met at its last check-in
   → ``off-track``;
5. **behind pace**: expected minus actual progress more than
   ``DriftSettings.behind_pace_points`` → ``at-risk``, more than twice that →
   ``off-track`` (drift's behind-pace thresholds);
6. **under it**: the worst health of the items under it (a key result's
   milestones, an objective's key results and milestones).

Otherwise ``on-track``. Closed items are ``done`` (a completed milestone, a
key result at its target, a cycle ended with every key result reached) or
``dropped``. Each reason is one line citing the rule and its numbers. Pure:
views and signals in, ``Health`` out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Literal

import msgspec

from projections.drift import DriftSignal
from projections.goals import KeyResultView, MilestoneView, ObjectiveView
from projections.settings import DEFAULT_SETTINGS, DriftSettings

HealthLevel = Literal["on-track", "at-risk", "off-track", "done", "dropped"]
HEALTH_LEVELS: tuple[HealthLevel, ...] = ("off-track", "at-risk", "on-track", "done", "dropped")
"""Worst first (the order a filter lists them in)."""

_RANK: dict[str, int] = {"dropped": -1, "done": 0, "on-track": 1, "at-risk": 2, "off-track": 3}


_KIND_ORDER = {
    kind: rank
    for rank, kind in enumerate(
        ("overdue", "behind-pace", "stale", "confidence-drop", "unreviewed", "orphan")
    )
}
"""Which signal gives the reason among those of one severity: the item's own first, then
the most telling kind (an overdue date says more than the silence that came with it)."""


class Health(msgspec.Struct, frozen=True):
    """An item's health and why: the level, a one-line reason, the drift kinds behind it."""

    level: HealthLevel
    reason: str
    signals: tuple[str, ...] = ()


def _num(value: float) -> str:
    """A number as people write it: 14, 14.5, 1,200."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _days(count: int) -> str:
    return f"{count} day" if count == 1 else f"{count} days"


def _worse(a: Health | None, b: Health) -> Health:
    """The worse of two; the earlier one on a tie (rules are tried in order)."""
    return b if a is None or _RANK[b.level] > _RANK[a.level] else a


def health(
    *,
    state: str,
    progress: float,
    expected: float | None,
    today: date,
    due_on: date | None = None,
    ends_on: date | None = None,
    threshold: tuple[str, float | None, float | None, bool | None] | None = None,
    signals: Sequence[DriftSignal] = (),
    settings: DriftSettings = DEFAULT_SETTINGS,
    item_id: str | None = None,
    under: Iterable[tuple[str, Health]] = (),
) -> Health:
    """The health of one item (see the module's rules, in order).

    ``state``: ``open``, ``completed``/``done`` or ``dropped``. ``ends_on``: the
    end of the item's cycle (a key result's or an objective's). ``threshold``:
    ``(kind, current, target, met)`` of a stay-above/below key result.
    ``signals``: the drift signals about the item and the items under it (a
    signal about another item than ``item_id`` names that item in the reason).
    ``under``: the (title, health) of the items under it.
    """

    def about(signal: DriftSignal) -> str:
        if item_id is None or signal.subject == item_id or not signal.subject_title:
            return signal.explanation
        return f"'{signal.subject_title}': {signal.explanation}"

    if state in ("completed", "done"):
        return Health("done", "completed")
    if state == "dropped":
        return Health("dropped", "dropped")
    ordered = sorted(
        signals,
        key=lambda s: (
            0 if s.severity == "alert" else 1,
            0 if item_id is None or s.subject == item_id else 1,
            _KIND_ORDER.get(s.kind, len(_KIND_ORDER)),
        ),
    )
    kinds = tuple(dict.fromkeys(s.kind for s in ordered))
    found: Health | None = None
    ended = ends_on is not None and today > ends_on
    # 3. an ended cycle, first: once the cycle is over, that is the news
    if ended and threshold is None:
        found = Health(
            "off-track", f"the cycle ended on {ends_on} at {_num(progress)}%, target not reached"
        )
    elif ended and threshold is not None and threshold[3] is not True:
        kind, current, target, _ = threshold
        side = "above" if kind == "stay-above" else "below"
        shown = "no value" if current is None else _num(current)
        found = Health(
            "off-track",
            f"the cycle ended on {ends_on} with {shown}, not {side} {_num(target or 0)}",
        )
    # 1. drift
    if ordered:
        first = ordered[0]
        if first.severity == "alert":
            drift = Health("off-track", f"drift alert ({first.kind}): {about(first)}")
        else:
            drift = Health("at-risk", f"drift warning ({first.kind}): {about(first)}")
        found = _worse(found, drift)
    # 2. overdue
    if due_on is not None and due_on < today:
        late = _days((today - due_on).days)
        found = _worse(
            found,
            Health("off-track", f"overdue: due {due_on}, {late} late, {_num(progress)}% done"),
        )
    # 4. threshold
    if threshold is not None and threshold[3] is False and not ended:
        kind, current, target, _ = threshold
        side = "above" if kind == "stay-above" else "below"
        shown = "no value" if current is None else _num(current)
        found = _worse(
            found,
            Health(
                "off-track",
                f"threshold not met: last check-in {shown}, not {side} {_num(target or 0)}",
            ),
        )
    # 5. behind pace
    points = settings.behind_pace_points
    gap = None if expected is None or threshold is not None or ended else expected - progress
    if gap is not None and gap > points:
        level: HealthLevel = "off-track" if gap > 2 * points else "at-risk"
        limit = 2 * points if level == "off-track" else points
        found = _worse(
            found,
            Health(
                level,
                f"behind pace: {_num(progress)}% done, {_num(expected or 0)}% expected"
                f" ({_num(gap)} points behind, more than {_num(limit)})",
            ),
        )
    # 6. the items under it
    for title, child in under:
        if _RANK[child.level] > _RANK["on-track"]:
            found = _worse(found, Health(child.level, f"'{title}': {child.reason}"))
    if found is not None:
        return Health(found.level, found.reason, kinds)
    if expected is not None and not ended:
        return Health("on-track", f"on pace: {_num(progress)}% done, {_num(expected)}% expected")
    return Health("on-track", f"{_num(progress)}% done, no drift")


def signals_by_subject(signals: Iterable[DriftSignal]) -> dict[str, list[DriftSignal]]:
    """Drift signals grouped by the item they are about (order kept)."""
    grouped: dict[str, list[DriftSignal]] = {}
    for signal in signals:
        grouped.setdefault(signal.subject, []).append(signal)
    return grouped


def _under_milestones(
    milestones: Iterable[MilestoneView], by_subject: Mapping[str, list[DriftSignal]]
) -> list[DriftSignal]:
    return [s for m in milestones if m.state == "open" for s in by_subject.get(m.id, ())]


def milestone_health(
    view: MilestoneView,
    today: date,
    by_subject: Mapping[str, list[DriftSignal]] | None = None,
    *,
    settings: DriftSettings = DEFAULT_SETTINGS,
) -> Health:
    """A milestone's health: drift about it, its due date, its pace."""
    if view.state == "completed":
        when = f" on {view.completed_at.date()}" if view.completed_at else ""
        return Health("done", f"completed{when}")
    return health(
        state=view.state,
        progress=view.progress,
        expected=view.expected,
        due_on=view.due_on,
        today=today,
        signals=list((by_subject or {}).get(view.id, ())),
        settings=settings,
        item_id=view.id,
    )


def key_result_health(
    view: KeyResultView,
    today: date,
    by_subject: Mapping[str, list[DriftSignal]] | None = None,
    *,
    ends_on: date | None = None,
    settings: DriftSettings = DEFAULT_SETTINGS,
) -> Health:
    """A key result's health: drift about it and its open milestones, its cycle's end
    (``ends_on``), its threshold or pace, and its milestones' health."""
    by_subject = by_subject or {}
    stay = view.kind in ("stay-above", "stay-below")
    ended = ends_on is not None and today > ends_on
    if view.status == "dropped":
        return Health("dropped", "dropped")
    if view.status == "done":
        return Health("done", "target reached")
    if stay and ended and view.met:
        return Health("done", f"the cycle ended on {ends_on}, threshold held")
    live = [m for m in view.milestones if m.state == "open"]
    return health(
        state="open",
        progress=view.progress,
        expected=view.expected,
        ends_on=ends_on,
        threshold=(view.kind, view.current, view.target, view.met) if stay else None,
        today=today,
        signals=[*by_subject.get(view.id, ()), *_under_milestones(live, by_subject)],
        settings=settings,
        item_id=view.id,
        under=[(m.title, milestone_health(m, today, by_subject, settings=settings)) for m in live],
    )


def objective_health(
    view: ObjectiveView,
    today: date,
    by_subject: Mapping[str, list[DriftSignal]] | None = None,
    *,
    settings: DriftSettings = DEFAULT_SETTINGS,
) -> Health:
    """An objective's health: drift about it or anything under it, its cycle's end, and
    the worst of its key results' and milestones' health."""
    by_subject = by_subject or {}
    ends_on = view.ends_on
    children = [
        (kr.title, key_result_health(kr, today, by_subject, ends_on=ends_on, settings=settings))
        for kr in view.key_results
    ] + [
        (m.title, milestone_health(m, today, by_subject, settings=settings))
        for m in view.milestones
    ]
    live = [(title, h) for title, h in children if h.level != "dropped"]
    ended = today > ends_on
    if live and all(h.level == "done" for _, h in live):
        if ended:
            return Health("done", f"the cycle ended on {ends_on}; everything reached")
        return Health("done", "every key result and milestone reached")
    signals = list(by_subject.get(view.id, ()))
    for kr in view.key_results:
        signals += by_subject.get(kr.id, ())
        signals += _under_milestones(kr.milestones, by_subject)
    signals += _under_milestones(view.milestones, by_subject)
    if not live and not signals:
        if ended:
            return Health("off-track", f"the cycle ended on {ends_on} with nothing to show")
        return Health("on-track", "nothing planned yet")
    return health(
        state="open",
        progress=view.progress,
        expected=view.expected if live else None,
        ends_on=ends_on,
        today=today,
        signals=signals,
        settings=settings,
        item_id=view.id,
        under=live,
    )


def tree_health(
    objectives: Iterable[ObjectiveView],
    standalone: Iterable[MilestoneView],
    today: date,
    signals: Iterable[DriftSignal] = (),
    *,
    settings: DriftSettings = DEFAULT_SETTINGS,
) -> dict[str, Health]:
    """Health of every objective, key result and milestone shown, by item id.

    ``signals``: the drift signals the caller may show (the owner's own for
    ``milepost status``; those the viewer may see for the board)."""
    by_subject = signals_by_subject(signals)
    found: dict[str, Health] = {}
    for objective in objectives:
        found[objective.id] = objective_health(objective, today, by_subject, settings=settings)
        for kr in objective.key_results:
            found[kr.id] = key_result_health(
                kr, today, by_subject, ends_on=objective.ends_on, settings=settings
            )
            for milestone in kr.milestones:
                found[milestone.id] = milestone_health(
                    milestone, today, by_subject, settings=settings
                )
        for milestone in objective.milestones:
            found[milestone.id] = milestone_health(milestone, today, by_subject, settings=settings)
    for milestone in standalone:
        found[milestone.id] = milestone_health(milestone, today, by_subject, settings=settings)
    return found
