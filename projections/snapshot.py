"""Goal state in small stored pieces, so a client reads its goal tree without a replay.

The goal tree splits into *roots*: an objective (its key results, the
milestones linked to them or to it, their tasks and check-ins) or a
standalone milestone, plus one ``@pauses:<person>`` root for pauses. For each
root a store keeps

* a **slice**: the few events that reproduce the root's views exactly when
  folded on their own (in arrival order): creating events, the winning write
  of every register, corrections and retractions of what is kept, and the
  last ``CHECKIN_WINDOW`` live check-ins of each subject (plus its last one
  with a value) — a fold needs no more, because views read only the latest;
* a **part**: the root's view computed from that slice (``root_part``).

Views depend on time only through ``expected`` progress and ``as_of``;
``assemble_tree`` recomputes those for any ``now`` and yields exactly what
``goal_tree(state, person, now)`` yields for the full state. Pure: no I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import date, datetime

import msgspec

from events import bodies as b
from projections.goals import (
    GoalTree,
    KeyResultView,
    MilestoneView,
    ObjectiveView,
    last_checkins,
    milestone_view,
    objective_view,
)
from projections.ownership import referenced_ids
from projections.state import PLACEHOLDER, ProjectionState, checkin_key
from projections.timeline import expected_percent, pauses_of

CHECKIN_WINDOW = 3
"""Live check-ins kept per subject; more than the one views read, as a margin."""

PAUSES_PREFIX = "@pauses:"


def pauses_root(person: str) -> str:
    """The root holding a person's pauses."""
    return PAUSES_PREFIX + person


class RootPart(msgspec.Struct, frozen=True):
    """The stored view of one root; ``planned`` holds each milestone's planning day."""

    root: str
    owner: str
    objective: ObjectiveView | None = None
    milestone: MilestoneView | None = None
    planned: dict[str, date] = msgspec.field(default_factory=dict)
    pauses: list[tuple[date, date]] = msgspec.field(default_factory=list)


# --- which roots a node belongs to -------------------------------------------------------


def node_roots(state: ProjectionState, node_id: str) -> set[str]:
    """Roots showing an objective, key result or milestone (empty when unknown)."""
    if node_id in state.objectives:
        return {node_id}
    key_result = state.key_results.get(node_id)
    if key_result is not None:
        body = key_result.event.body
        return {body.objective} if isinstance(body, b.KeyResultAdded) else set()
    milestone = state.milestones.get(node_id)
    if milestone is None:
        return set()
    link = milestone.link.value
    if link is None or link == (None, None):
        return {node_id}
    key_result_id, objective_id = link
    roots = node_roots(state, key_result_id) if key_result_id is not None else set()
    if objective_id is not None:
        roots.add(objective_id)
    return roots


def all_roots(state: ProjectionState) -> dict[str, set[str]]:
    """Every objective, key result and milestone with its roots."""
    out: dict[str, set[str]] = {}
    for table in (state.objectives, state.key_results, state.milestones):
        for node_id, node in table.items():
            if node.event is not PLACEHOLDER:
                out[node_id] = node_roots(state, node_id)
    return out


# --- slices ----------------------------------------------------------------------------


def _keep(state: ProjectionState, ids: set[str], event_id: str | None) -> None:
    """Keep an event with the corrections and retractions naming it, and the events it
    references (so the ownership rule admits it when the slice is folded alone)."""
    if not event_id or event_id not in state.events:
        return
    ids.add(event_id)
    for correction in state.corrections.get(event_id, ()):
        ids.add(correction)
        ids.update(state.retracted.get(correction, ()))
    ids.update(state.retracted.get(event_id, ()))
    for referenced in referenced_ids(state.events[event_id]):
        _keep_referenced(state, ids, referenced)


def _keep_referenced(state: ProjectionState, ids: set[str], event_id: str) -> None:
    """Keep a referenced event and, in turn, what it references (not its corrections:
    the slice needs it present, not shown)."""
    event = state.events.get(event_id)
    if event is None or event_id in ids:
        return
    ids.add(event_id)
    for referenced in referenced_ids(event):
        _keep_referenced(state, ids, referenced)


def _keep_checkins(state: ProjectionState, ids: set[str], subject: str) -> None:
    checkins = state.checkins_by_subject.get(subject)
    if not checkins:
        return
    needed = last_checkins(state, subject, CHECKIN_WINDOW)
    valued = last_checkins(state, subject, 1, with_value=True)
    if len(needed) < CHECKIN_WINDOW:
        start = 0  # fewer live ones than the window: keep them all
    else:
        oldest = min((state.events[v.id] for v in needed + valued), key=checkin_key)
        start = bisect.bisect_left(checkins, checkin_key(oldest), key=checkin_key)
    for checkin in checkins[start:]:
        _keep(state, ids, checkin.id)


def _keep_sharing(state: ProjectionState, ids: set[str], item_id: str) -> None:
    for writer in state.sharing.get(item_id, ()):
        _keep(state, ids, writer.id)


def _keep_milestone(state: ProjectionState, ids: set[str], milestone_id: str) -> None:
    node = state.milestones.get(milestone_id)
    if node is None:
        return
    if node.event is not PLACEHOLDER:
        _keep(state, ids, milestone_id)
    for register in (node.due_on, node.link, node.completed, node.dropped):
        _keep(state, ids, register.source)
    completion = node.completed.value
    if isinstance(completion, str):
        _keep(state, ids, completion)
    # Every completion and reopen, so a later retraction can fall back to an earlier one.
    for write in node.completion_writes or ():
        _keep(state, ids, write.id)
    _keep_sharing(state, ids, milestone_id)
    for task in node.tasks:
        _keep(state, ids, task.id)
        _keep(state, ids, task.done_by.id)
    _keep_checkins(state, ids, milestone_id)


def slice_ids(state: ProjectionState, root: str) -> set[str]:
    """Ids of the events that reproduce ``root``'s part when folded alone, in arrival order."""
    ids: set[str] = set()
    if root.startswith(PAUSES_PREFIX):
        for pause_id in state.person(root[len(PAUSES_PREFIX) :]).pauses:
            _keep(state, ids, pause_id)
        return ids
    objective = state.objectives.get(root)
    if objective is not None:
        if objective.event is not PLACEHOLDER:
            _keep(state, ids, root)
        _keep_sharing(state, ids, root)
        for key_result_id in objective.key_results:
            key_result = state.key_results.get(key_result_id)
            if key_result is None:
                continue
            _keep(state, ids, key_result_id)
            _keep_checkins(state, ids, key_result_id)
            for milestone_id in key_result.milestones:
                _keep_milestone(state, ids, milestone_id)
        for milestone_id in objective.milestones:
            _keep_milestone(state, ids, milestone_id)
    elif root in state.milestones:
        _keep_milestone(state, ids, root)
    return ids


# --- parts -----------------------------------------------------------------------------


def _planned(state: ProjectionState, milestones: Iterable[MilestoneView]) -> dict[str, date]:
    return {m.id: state.events[m.id].occurred_at.date() for m in milestones}


def root_part(state: ProjectionState, root: str, now: datetime) -> RootPart:
    """The root's view as ``goal_tree`` would show it (empty when hidden or unknown)."""
    if root.startswith(PAUSES_PREFIX):
        person = root[len(PAUSES_PREFIX) :]
        return RootPart(root, person, pauses=pauses_of(state, person))
    objective = state.objectives.get(root)
    if objective is not None and objective.event is not PLACEHOLDER:
        owner = objective.event.actor
        if state.is_retracted(root):
            return RootPart(root, owner)
        view = objective_view(state, root, now)
        shown = [m for kr in view.key_results for m in kr.milestones] + view.milestones
        return RootPart(root, owner, objective=view, planned=_planned(state, shown))
    milestone = state.milestones.get(root)
    if milestone is not None and milestone.event is not PLACEHOLDER:
        owner = milestone.event.actor
        link = milestone.link.value
        if link not in (None, (None, None)) or state.is_retracted(root):
            return RootPart(root, owner)
        standalone = milestone_view(state, root, now)
        return RootPart(root, owner, milestone=standalone, planned=_planned(state, [standalone]))
    return RootPart(root, "")


# --- refreshing time-dependent fields ------------------------------------------------------


def _refresh_milestone(
    view: MilestoneView, planned: dict[str, date], today: date, pauses: list[tuple[date, date]]
) -> MilestoneView:
    expected = None
    if view.due_on is not None and view.completed_at is None:
        expected = round(expected_percent(planned[view.id], view.due_on, today, pauses), 2)
    if expected == view.expected:
        return view
    return msgspec.structs.replace(view, expected=expected)


def _refresh_objective(
    view: ObjectiveView, planned: dict[str, date], today: date, pauses: list[tuple[date, date]]
) -> ObjectiveView:
    expected = round(expected_percent(view.starts_on, view.ends_on, today, pauses), 2)
    key_results: list[KeyResultView] = [
        msgspec.structs.replace(
            kr,
            expected=expected,
            milestones=[_refresh_milestone(m, planned, today, pauses) for m in kr.milestones],
        )
        for kr in view.key_results
    ]
    return msgspec.structs.replace(
        view,
        expected=expected,
        key_results=key_results,
        milestones=[_refresh_milestone(m, planned, today, pauses) for m in view.milestones],
    )


def assemble_tree(person: str, now: datetime, parts: Iterable[RootPart]) -> GoalTree:
    """The person's own goal tree at ``now`` from stored parts (same as ``goal_tree``)."""
    mine = [part for part in parts if part.owner == person]
    pauses = [pause for part in mine for pause in part.pauses]
    today = now.date()
    objectives = [
        _refresh_objective(part.objective, part.planned, today, pauses)
        for part in mine
        if part.objective is not None
    ]
    objectives.sort(key=lambda o: (o.starts_on, o.title, o.id))
    standalone = [
        _refresh_milestone(part.milestone, part.planned, today, pauses)
        for part in mine
        if part.milestone is not None
    ]
    standalone.sort(key=lambda v: (v.due_on or date.max, v.title, v.id))
    return GoalTree(person, now, objectives, standalone)
