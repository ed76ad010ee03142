"""Who may see what. Every view filters through ``can_see``.

An item's sharing comes from its *root*: a key result, a linked milestone,
their tasks and check-ins inherit the objective's; a standalone milestone,
an indicator without an objective, and a bare journal entry carry their own;
an observation on an indicator inherits the indicator's.
"""

from __future__ import annotations

from events import bodies as b
from projections.state import PRIVATE, ProjectionState, Sharing


def milestone_root_sharing(state: ProjectionState, milestone_id: str) -> Sharing:
    """Sharing of a milestone: its objective's when linked, else its own."""
    node = state.milestones.get(milestone_id)
    if node is None:
        return PRIVATE
    link = node.link.value
    if link is not None:
        key_result_id, objective_id = link
        if key_result_id is not None:
            key_result = state.key_results.get(key_result_id)
            if key_result is not None and isinstance(key_result.event.body, b.KeyResultAdded):
                objective_id = key_result.event.body.objective
        if objective_id is not None:
            return objective_sharing(state, objective_id)
    return state.own_sharing(milestone_id)


def objective_sharing(state: ProjectionState, objective_id: str) -> Sharing:
    """Sharing of an objective (private until its creating event arrives)."""
    return state.own_sharing(objective_id)


def indicator_sharing(state: ProjectionState, indicator_id: str) -> Sharing:
    """Sharing of an indicator: its objective's when tied to one, else its own."""
    node = state.indicators.get(indicator_id)
    if node is None:
        return PRIVATE
    objective_id = getattr(node.event.body, "objective", None)
    if objective_id is not None:
        return objective_sharing(state, objective_id)
    return state.own_sharing(indicator_id)


def item_sharing(state: ProjectionState, item_id: str) -> Sharing:
    """Sharing of any item or event by id (private when unknown)."""
    if item_id in state.objectives:
        return objective_sharing(state, item_id)
    if item_id in state.key_results:
        node = state.key_results[item_id]
        return objective_sharing(state, getattr(node.event.body, "objective", ""))
    if item_id in state.milestones:
        return milestone_root_sharing(state, item_id)
    if item_id in state.indicators:
        return indicator_sharing(state, item_id)
    event = state.events.get(item_id)
    if event is None:
        return PRIVATE
    body = event.body
    if isinstance(body, b.CheckInRecorded):
        return item_sharing(state, body.subject)
    if isinstance(body, b.TaskAdded):
        return milestone_root_sharing(state, body.milestone)
    if isinstance(body, b.MILESTONE_EVENTS):
        return milestone_root_sharing(state, body.milestone)
    if isinstance(body, b.ObservationRecorded):
        if body.indicator is not None:
            return indicator_sharing(state, body.indicator)
        return state.own_sharing(item_id)
    return PRIVATE


def can_see(state: ProjectionState, viewer: str, owner: str, sharing: Sharing) -> bool:
    """The visibility rule: owner always; partners if named; team if they share a team."""
    if viewer == owner:
        return True
    if sharing.visibility == "partners":
        return viewer in sharing.partners
    if sharing.visibility == "team":
        return bool(state.teams_of(viewer) & state.teams_of(owner))
    return False


def audience(state: ProjectionState, viewer: str, owner: str) -> tuple[object, ...]:
    """A key equal for two viewers whenever ``can_see`` lets them see the same of ``owner``'s
    items: the owner; else whether they share a team, and the viewer when the owner ever named
    them a partner (``partnered_by`` is a superset, so the key may split a class, never merge
    two). Views that depend on the viewer only through what they may see are memoized by it.
    """
    if viewer == owner:
        return ("owner",)
    shares_team = bool(state.teams_of(viewer) & state.teams_of(owner))
    named = viewer if owner in state.partnered_by.get(viewer, ()) else None
    return ("other", shares_team, named)


def can_see_item(state: ProjectionState, viewer: str, item_id: str) -> bool:
    """Whether ``viewer`` may see the item or event ``item_id``."""
    owner = owner_of(state, item_id)
    if owner is None:
        return False
    return can_see(state, viewer, owner, item_sharing(state, item_id))


def owner_of(state: ProjectionState, item_id: str) -> str | None:
    """The person who created an item (None when its creating event is unknown)."""
    event = state.events.get(item_id)
    return event.actor if event is not None else None


def _parent_of(state: ProjectionState, item_id: str, body: b.Body) -> str | None:
    """The next item up the chain towards the visibility root (None at the root)."""
    if isinstance(body, b.CheckInRecorded):
        return body.subject
    if isinstance(body, b.TaskAdded):
        return body.milestone
    if isinstance(body, b.MILESTONE_EVENTS):
        return body.milestone
    if isinstance(body, b.MilestonePlanned):
        node = state.milestones.get(item_id)
        link = node.link.value if node is not None else None
        if link is None:
            return None
        key_result: str | None = link[0]
        objective: str | None = link[1]
        return key_result if key_result is not None else objective
    if isinstance(body, b.KeyResultAdded):
        return body.objective
    if isinstance(body, b.ObservationRecorded):
        return body.indicator
    if isinstance(body, b.IndicatorDefined):
        return body.objective
    return None


def awaits_ancestor(state: ProjectionState, event_id: str) -> bool:
    """Whether the chain from this event up to its root names an event not folded yet.

    Such an event (a check-in stored before its milestone, say) is invisible to
    others only for now: it becomes visible once the ancestor arrives.
    """
    current: str | None = event_id
    for _ in range(8):  # roots are at most four links up; the bound guards bad data
        if current is None:
            return False
        event = state.events.get(current)
        if event is None:
            return True
        current = _parent_of(state, current, event.body)
    return False
