"""Kudos: a teammate's reaction to a completion, and the one rule that judges it.

A ``kudos.given`` event names a ``milestone.completed`` event by someone else:
it is the one body whose reference is *not* the actor's own. Its rule
(``kudos_refusal``), used by the server before it appends a kudos and by every
view that counts them:

* the reference is a live (unretracted) ``milestone.completed`` event;
* the giver is not its author;
* the giver may see it (``projections.visibility.can_see_item``);
* at most one per giver per completion: the giver's earliest kudos on it (by
  event id) is the one that counts, later ones are ignored.

Views judge at read time, so the count follows visibility (a giver who left the
team no longer counts) and does not depend on arrival order. Pure: no I/O.
"""

from __future__ import annotations

from events import bodies as b
from projections.state import ProjectionState
from projections.visibility import can_see_item


def kudos_refusal(
    state: ProjectionState, giver: str, completion_id: str, kudos_id: str | None = None
) -> str | None:
    """Why ``giver`` may not give kudos on ``completion_id`` (None: they may).

    ``kudos_id`` is the kudos event being judged when it is already folded in (it
    does not count against itself); earlier kudos by the same giver refuse it.
    """
    completion = state.events.get(completion_id)
    if completion is None or not isinstance(completion.body, b.MilestoneCompleted):
        return "kudos must name a milestone completion"
    if state.is_retracted(completion_id):
        return "that completion was retracted"
    if completion.actor == giver:
        return "kudos are for someone else's completion, not your own"
    if not can_see_item(state, giver, completion_id):
        return "kudos may only be given on a completion you can see"
    for other in state.kudos.get(completion_id, ()):
        if kudos_id is not None and other >= kudos_id:
            break  # sorted by id: only earlier ones come first
        if other != kudos_id and state.events[other].actor == giver:
            return "you already gave kudos on this completion"
    return None


def kudos_counts(state: ProjectionState, kudos_id: str) -> bool:
    """Whether a folded ``kudos.given`` event counts (``kudos_refusal`` finds nothing)."""
    event = state.events.get(kudos_id)
    if event is None or not isinstance(event.body, b.KudosGiven):
        return False
    if state.is_retracted(kudos_id):
        return False
    return kudos_refusal(state, event.actor, event.body.completion, kudos_id) is None


def kudos_givers(state: ProjectionState, completion_id: str) -> list[str]:
    """The distinct people whose kudos on a completion count, in the order given."""
    givers: dict[str, None] = {}
    for kudos_id in state.kudos.get(completion_id, ()):
        giver = state.events[kudos_id].actor
        if giver not in givers and kudos_counts(state, kudos_id):
            givers[giver] = None
    return list(givers)
