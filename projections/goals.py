"""Goal state: a person's tree of objectives, key results, milestones and tasks with progress.

Rules (docs/contract.md#projections): KR progress = (current − start) / (target − start), clamped
to 0–100 (so *decrease to* works too); a *stay above/below* KR is met or not
at its last check-in; a KR without numbers takes the share of its milestones
completed; a milestone takes its last check-in's percent, or its share of
tasks done, and 100 once completed; an objective is the weighted average of
its KRs and its status the worst of theirs. Each node carries its expected
progress (share of its time elapsed, pauses excluded).

Pauses are private (a ``pause.declared`` reaches nobody but its author): they count only
in a view computed for the owner themself. A view for anyone else shows the owner's
shared items' expected progress without them, as that viewer's own device computes it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import msgspec

from events import Event, cycle_bounds
from events import bodies as b
from projections.state import PLACEHOLDER, ProjectionState
from projections.timeline import expected_percent, pauses_of
from projections.visibility import can_see, milestone_root_sharing

Status = Literal["done", "on-track", "at-risk", "off-track", "dropped"]
STATUS_RANK: dict[str, int] = {
    "dropped": -1,
    "done": 0,
    "on-track": 1,
    "at-risk": 2,
    "off-track": 3,
}


class CheckInView(msgspec.Struct, frozen=True):
    id: str
    subject: str
    occurred_at: datetime
    confidence: str
    value: float | None
    percent: float | None
    note: str


class TaskView(msgspec.Struct, frozen=True):
    id: str
    title: str
    done: bool


class Answers(msgspec.Struct, frozen=True):
    """The three sentences asked at completion."""

    did: str
    why: str
    outcome: str


class MilestoneView(msgspec.Struct, frozen=True):
    id: str
    owner: str
    title: str
    due_on: date | None
    state: Literal["open", "completed", "dropped"]
    status: Status
    progress: float
    expected: float | None
    confidence: str | None
    last_checkin: date | None
    key_result: str | None
    objective: str | None
    completed_at: datetime | None
    answers: Answers | None
    visibility: str
    tasks: list[TaskView]


class KeyResultView(msgspec.Struct, frozen=True):
    id: str
    title: str
    kind: str
    start: float | None
    target: float | None
    current: float | None
    unit: str
    weight: float
    met: bool | None
    status: Status
    progress: float
    expected: float | None
    confidence: str | None
    last_checkin: date | None
    cadence: str
    milestones: list[MilestoneView]


class ObjectiveView(msgspec.Struct, frozen=True):
    id: str
    owner: str
    title: str
    cycle: str
    starts_on: date
    ends_on: date
    cadence: str
    visibility: str
    partners: list[str]
    status: Status
    progress: float
    expected: float
    confidence: str | None
    last_checkin: date | None
    key_results: list[KeyResultView]
    milestones: list[MilestoneView]


class Unavailable(msgspec.Struct, frozen=True):
    """An item whose view could not be computed, and why: the rest of the response stands."""

    id: str
    title: str
    reason: str


class GoalTree(msgspec.Struct, frozen=True, omit_defaults=True):
    """What ``milepost status`` shows and ``GET /people/{p}/goals`` returns.

    ``unavailable`` (omitted when empty) lists items whose view failed: one bad item
    degrades that item, never the tree. The codec's ranges make every view total, so
    this stays empty; it is the guard should a rule ever fail on some input.
    """

    person: str
    as_of: datetime
    objectives: list[ObjectiveView]
    standalone_milestones: list[MilestoneView]
    unavailable: list[Unavailable] = []


def _checkin_view(state: ProjectionState, subject: str, event: Event) -> CheckInView | None:
    """The corrected check-in, or None when retracted or not by the subject's owner."""
    checkin_id = event.id
    owner_event = state.events.get(subject)
    if owner_event is not None and event.actor != owner_event.actor:
        return None  # only the owner checks in on their own goals
    if checkin_id in state.retracted and state.is_retracted(checkin_id):
        return None
    body = state.body(checkin_id) if checkin_id in state.corrections else event.body
    assert isinstance(body, b.CheckInRecorded)
    return CheckInView(
        checkin_id, subject, event.occurred_at, body.confidence, body.value, body.percent, body.note
    )


def checkins_for(state: ProjectionState, subject: str) -> list[CheckInView]:
    """Live check-ins of a subject, oldest first by (occurred_at, clock, id), corrected."""
    views = []
    for checkin in state.checkins_by_subject.get(subject, ()):
        view = _checkin_view(state, subject, checkin)
        if view is not None:
            views.append(view)
    return views


def last_checkins(
    state: ProjectionState, subject: str, count: int = 1, *, with_value: bool = False
) -> list[CheckInView]:
    """The latest ``count`` live check-ins of a subject, newest first (reads from the end)."""
    found: list[CheckInView] = []
    for checkin in reversed(state.checkins_by_subject.get(subject, ())):
        view = _checkin_view(state, subject, checkin)
        if view is None or (with_value and view.value is None):
            continue
        found.append(view)
        if len(found) == count:
            break
    return found


def _clamp(value: float) -> float:
    return max(0.0, min(100.0, value))


def worst(statuses: list[str]) -> Status:
    """The worst status among several (dropped ones ignored); on-track when empty."""
    live = [s for s in statuses if s != "dropped"]
    if not live:
        return "on-track"
    result = max(live, key=STATUS_RANK.__getitem__)
    return result  # type: ignore[return-value]


class _Context:
    """Per-call inputs shared by every node of one tree."""

    __slots__ = ("now", "paused_by", "pauses", "person", "state", "today")

    def __init__(
        self, state: ProjectionState, person: str, now: datetime, viewer: str | None = None
    ) -> None:
        self.state = state
        self.person = person  # the tree's owner
        self.now = now
        self.today = now.date()
        # Whose pauses count: the owner's, in the owner's own view only (pauses are private).
        # Views memoize by it; without pauses the owner's views equal everyone's, so share.
        own = viewer is None or viewer == person
        self.pauses = pauses_of(state, person) if own else []
        self.paused_by = person if self.pauses else ""

    def unpaused(self) -> _Context:
        """The same inputs without pauses (as anyone but the owner sees the owner's items)."""
        return _Context(self.state, self.person, self.now, viewer="")


def milestone_view(
    state: ProjectionState, milestone_id: str, now: datetime, viewer: str | None = None
) -> MilestoneView:
    """One milestone's view for ``viewer`` (default: its owner, whose pauses then count)."""
    owner = state.events[milestone_id].actor
    return _milestone_view(_Context(state, owner, now, viewer), milestone_id)


def _milestone_view(ctx: _Context, milestone_id: str) -> MilestoneView:
    # A milestone's view depends on the state, the day and whose pauses count; pauses
    # move only ``expected``, so the owner's is the pause-free view with it recomputed.
    # Kept across events of others: it reads only its owner's items (the ownership rule).
    owner = ctx.state.milestones[milestone_id].event.actor
    if ctx.pauses:
        paced: MilestoneView = ctx.state.memoized(
            ("milestone", milestone_id, ctx.paused_by, ctx.today),
            lambda: _paced_milestone(ctx, _milestone_view(ctx.unpaused(), milestone_id)),
            owner,
        )
        return paced
    view: MilestoneView = ctx.state.memoized(
        ("milestone", milestone_id, "", ctx.today),
        lambda: _compute_milestone_view(ctx, milestone_id),
        owner,
    )
    return view


def _paced_milestone(ctx: _Context, view: MilestoneView) -> MilestoneView:
    """A pause-free milestone view with ``expected`` recomputed with the context's pauses."""
    if view.due_on is None or view.completed_at is not None:
        return view  # no expected progress to move
    planned_on = ctx.state.events[view.id].occurred_at.date()
    expected = round(expected_percent(planned_on, view.due_on, ctx.today, ctx.pauses), 2)
    return view if expected == view.expected else msgspec.structs.replace(view, expected=expected)


def _paced_objective(ctx: _Context, view: ObjectiveView) -> ObjectiveView:
    """A pause-free objective view with every ``expected`` recomputed with the pauses."""
    expected = round(expected_percent(view.starts_on, view.ends_on, ctx.today, ctx.pauses), 2)
    replace = msgspec.structs.replace
    return replace(
        view,
        expected=expected,
        key_results=[
            replace(
                kr,
                expected=expected,
                milestones=[_paced_milestone(ctx, m) for m in kr.milestones],
            )
            for kr in view.key_results
        ],
        milestones=[_paced_milestone(ctx, m) for m in view.milestones],
    )


def _compute_milestone_view(ctx: _Context, milestone_id: str) -> MilestoneView:
    state = ctx.state
    node = state.milestones[milestone_id]
    event = node.event
    corrections = state.corrections
    body = state.body(milestone_id) if milestone_id in corrections else event.body
    assert isinstance(body, b.MilestonePlanned)
    tasks: list[TaskView] = []
    # The hot loop of every goal view: ``is_retracted`` and ``body`` are only
    # called for the rare task that a retraction or a correction names.
    retracted = state.retracted
    add_task = tasks.append
    for task in node.tasks:
        task_id = task.id
        if task_id in retracted and state.is_retracted(task_id):
            continue
        if task_id in corrections:
            task_body = state.body(task_id)
            assert isinstance(task_body, b.TaskAdded)
            title = task_body.title
        else:
            added = task.added  # ``TaskNode.title``, inlined for an event: every task
            title = added.body.title if type(added) is Event else task.title  # type: ignore[union-attr]
        add_task(TaskView(task_id, title, task.done))
    latest = last_checkins(state, milestone_id)
    last = latest[0] if latest else None
    completion_id = node.completed.value
    completion = None
    if completion_id is not None and not (
        completion_id in retracted and state.is_retracted(completion_id)
    ):
        completion = state.events[completion_id]
    dropped = bool(node.dropped.value)
    due_on = node.due_on.value
    if completion is not None:
        progress = 100.0
    elif last is not None and last.percent is not None:
        progress = last.percent
    elif tasks:
        progress = 100.0 * sum(t.done for t in tasks) / len(tasks)
    else:
        progress = 0.0
    expected = None
    if due_on is not None and completion is None:
        expected = expected_percent(event.occurred_at.date(), due_on, ctx.today, ctx.pauses)
    answers = None
    if completion is not None:
        answer_body = state.body(completion.id) if completion.id in corrections else completion.body
        assert isinstance(answer_body, b.MilestoneCompleted)
        answers = Answers(answer_body.did, answer_body.why, answer_body.outcome)
    state_name: Literal["open", "completed", "dropped"]
    if dropped:
        state_name, status = "dropped", "dropped"
    elif completion is not None:
        state_name, status = "completed", "done"
    else:
        state_name = "open"
        status = last.confidence if last is not None else "on-track"
    link = node.link.value or (None, None)
    return MilestoneView(
        id=milestone_id,
        owner=event.actor,
        title=body.title,
        due_on=due_on,
        state=state_name,
        status=status,  # type: ignore[arg-type]
        progress=round(progress, 2),
        expected=None if expected is None else round(expected, 2),
        confidence=last.confidence if last is not None else None,
        last_checkin=last.occurred_at.date() if last is not None else None,
        key_result=link[0],
        objective=link[1],
        completed_at=completion.occurred_at if completion is not None else None,
        answers=answers,
        visibility=milestone_root_sharing(state, milestone_id).visibility,
        tasks=tasks,
    )


def _live_milestones(ctx: _Context, ids: set[str]) -> list[MilestoneView]:
    state = ctx.state
    views = [
        _milestone_view(ctx, m)
        for m in ids
        if state.milestones[m].event is not PLACEHOLDER and not state.is_retracted(m)
    ]
    views.sort(key=lambda v: (v.due_on or date.max, v.title, v.id))
    return views


def _key_result_view(
    ctx: _Context, key_result_id: str, starts_on: date, ends_on: date, cadence: str
) -> KeyResultView:
    state = ctx.state
    node = state.key_results[key_result_id]
    body = state.body(key_result_id)
    assert isinstance(body, b.KeyResultAdded)
    milestones = _live_milestones(ctx, node.milestones)
    latest = last_checkins(state, key_result_id, with_value=True)
    last = latest[0] if latest else None
    met: bool | None = None
    current = last.value if last is not None else body.start
    if body.kind in ("stay-above", "stay-below"):
        assert body.target is not None
        if last is not None and last.value is not None:
            if body.kind == "stay-above":
                met = last.value >= body.target
            else:
                met = last.value <= body.target
        progress = 100.0 if met else 0.0
    elif body.start is not None and body.target is not None:
        value = current if current is not None else body.start
        progress = _clamp(100.0 * (value - body.start) / (body.target - body.start))
    else:
        counted = [m for m in milestones if m.state != "dropped"]
        done = sum(1 for m in counted if m.state == "completed")
        progress = 100.0 * done / len(counted) if counted else 0.0
    expected = expected_percent(starts_on, ends_on, ctx.today, ctx.pauses)
    confidence = last.confidence if last is not None else None
    if met is False:
        status: str = "off-track"
    elif progress >= 100.0 and body.kind in ("increase", "decrease"):
        status = "done"
    else:
        status = confidence or "on-track"
    return KeyResultView(
        id=key_result_id,
        title=body.title,
        kind=body.kind,
        start=body.start,
        target=body.target,
        current=current,
        unit=body.unit,
        weight=body.weight,
        met=met,
        status=status,  # type: ignore[arg-type]
        progress=round(progress, 2),
        expected=round(expected, 2),
        confidence=confidence,
        last_checkin=last.occurred_at.date() if last is not None else None,
        cadence=body.cadence or cadence,
        milestones=milestones,
    )


def objective_view(
    state: ProjectionState, objective_id: str, now: datetime, viewer: str | None = None
) -> ObjectiveView:
    """One objective with its key results and milestones, for ``viewer`` (default: its owner,
    whose pauses then count)."""
    owner = state.events[objective_id].actor
    return _objective_view(_Context(state, owner, now, viewer), objective_id)


def _objective_view(ctx: _Context, objective_id: str) -> ObjectiveView:
    # Depends on the viewer only through whose pauses count (``paused_by``; they move only
    # ``expected``): who may see the objective is decided by the caller.
    owner = ctx.state.objectives[objective_id].event.actor  # as a milestone's, above
    if ctx.pauses:
        paced: ObjectiveView = ctx.state.memoized(
            ("objective", objective_id, ctx.paused_by, ctx.today),
            lambda: _paced_objective(ctx, _objective_view(ctx.unpaused(), objective_id)),
            owner,
        )
        return paced
    view: ObjectiveView = ctx.state.memoized(
        ("objective", objective_id, "", ctx.today),
        lambda: _compute_objective_view(ctx, objective_id),
        owner,
    )
    return view


def _compute_objective_view(ctx: _Context, objective_id: str) -> ObjectiveView:
    state = ctx.state
    node = state.objectives[objective_id]
    body = state.body(objective_id)
    assert isinstance(body, b.ObjectiveCreated)
    starts_on, ends_on = cycle_bounds(body.cycle)
    key_results = [
        _key_result_view(ctx, kr, starts_on, ends_on, body.cadence)
        for kr in node.key_results
        if state.key_results[kr].event is not PLACEHOLDER
        and not state.is_retracted(kr)
        and state.key_results[kr].event.actor == node.event.actor
    ]
    milestones = _live_milestones(ctx, node.milestones)
    if key_results:
        total_weight = sum(kr.weight for kr in key_results)
        progress = sum(kr.progress * kr.weight for kr in key_results) / total_weight
        status = worst([kr.status for kr in key_results])
    elif milestones:
        counted = [m for m in milestones if m.state != "dropped"]
        progress = sum(m.progress for m in counted) / len(counted) if counted else 0.0
        status = worst([m.status for m in milestones])
    else:
        progress, status = 0.0, "on-track"
    dated: list[tuple[date, str | None]] = [
        (kr.last_checkin, kr.confidence) for kr in key_results if kr.last_checkin is not None
    ] + [(m.last_checkin, m.confidence) for m in milestones if m.last_checkin is not None]
    last_checkin, confidence = max(dated, key=lambda d: d[0]) if dated else (None, None)
    sharing = state.own_sharing(objective_id)
    return ObjectiveView(
        id=objective_id,
        owner=node.event.actor,
        title=body.title,
        cycle=body.cycle,
        starts_on=starts_on,
        ends_on=ends_on,
        cadence=body.cadence,
        visibility=sharing.visibility,
        partners=list(sharing.partners),
        status=status,
        progress=round(progress, 2),
        expected=round(expected_percent(starts_on, ends_on, ctx.today, ctx.pauses), 2),
        confidence=confidence,
        last_checkin=last_checkin,
        key_results=key_results,
        milestones=milestones,
    )


CURRENT = "current"
"""Cycle filter: objectives whose cycle contains the view's day."""

ALL = "all"
"""Cycle filter: every objective."""


def _in_cycle(objective_cycle: str, wanted: str | None, today: date) -> bool:
    if wanted is None or wanted == ALL:
        return True
    if wanted == CURRENT:
        starts_on, ends_on = cycle_bounds(objective_cycle)
        return starts_on <= today <= ends_on
    return objective_cycle == wanted


def goal_tree(
    state: ProjectionState,
    person: str,
    now: datetime,
    viewer: str | None = None,
    cycle: str | None = None,
) -> GoalTree:
    """The person's goals as ``viewer`` (default: the person) may see them.

    Expected progress counts the person's pauses only when the viewer is the person.

    ``cycle``: None or ``all`` for every objective, ``current`` for those whose
    cycle contains ``now``'s day, or one cycle such as ``2026-Q1``.
    """
    viewer = person if viewer is None else viewer
    ctx = _Context(state, person, now, viewer)
    index = state.person(person)
    objectives = []
    unavailable: list[Unavailable] = []
    for objective_id in index.objectives:
        if state.is_retracted(objective_id):
            continue
        sharing = state.own_sharing(objective_id)
        if not can_see(state, viewer, person, sharing):
            continue
        body = state.body(objective_id)
        assert isinstance(body, b.ObjectiveCreated)
        if not _in_cycle(body.cycle, cycle, ctx.today):
            continue
        try:
            objectives.append(_objective_view(ctx, objective_id))
        except Exception as exc:  # one bad item must not take the tree down
            unavailable.append(Unavailable(objective_id, body.title, _failure(exc)))
    objectives.sort(key=lambda o: (o.starts_on, o.title, o.id))
    standalone = []
    for milestone_id in index.milestones:
        node = state.milestones[milestone_id]
        if node.link.value not in (None, (None, None)) or state.is_retracted(milestone_id):
            continue
        if not can_see(state, viewer, person, milestone_root_sharing(state, milestone_id)):
            continue
        try:
            standalone.append(_milestone_view(ctx, milestone_id))
        except Exception as exc:  # one bad item must not take the tree down
            planned = state.body(milestone_id)
            title = planned.title if isinstance(planned, b.MilestonePlanned) else ""
            unavailable.append(Unavailable(milestone_id, title, _failure(exc)))
    standalone.sort(key=lambda v: (v.due_on or date.max, v.title, v.id))
    unavailable.sort(key=lambda u: u.id)
    return GoalTree(person, now, objectives, standalone, unavailable)


def _failure(exc: Exception) -> str:
    """The reason an item's view is unavailable, e.g. ``OverflowError: date value out of range``."""
    return f"{type(exc).__name__}: {exc}"[:200]
