"""Which visibility root an event belongs to, and what it changes in the server's indexes.

Pure: no I/O. Both store backends apply the ``IndexUpdate`` this module
returns, so the access-control rule is written once.

Vocabulary:

- An *item* is anything an event creates (objective, key result, milestone,
  task, check-in, indicator, observation); its id is the creating event's id.
- A *root* is the item whose sharing decides who sees a subtree: an objective,
  or a standalone milestone, indicator or observation.
- Every event names a ``ref``: the id whose root it takes. A root item names
  itself; a key result names its objective; a check-in names its subject; a
  correction names the event it corrects. The store resolves ``ref`` to a root
  by following refs; when the referenced event has not arrived yet (events
  arrive out of order) the root stays unknown and the event is visible to its
  actor only until the missing event arrives and the store fixes it up.
- An event with no ref (a pause, a team change, an unknown type) has no root:
  it is visible to its actor (and team changes to the team's members).

Milestones can move (``milestone.relinked``): their parent is last-writer-wins
by (clock, event id), recorded as a ``LinkUpdate``; the store re-roots the
milestone's subtree when the winning parent changes.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from events import (
    AnyEvent,
    CheckInRecorded,
    Corrected,
    Event,
    IndicatorDefined,
    KeyResultAdded,
    KudosGiven,
    MilestoneCompleted,
    MilestoneDropped,
    MilestonePlanned,
    MilestoneRelinked,
    MilestoneReopened,
    MilestoneRescheduled,
    MilestoneRestored,
    ObjectiveCreated,
    ObservationRecorded,
    OpaqueEvent,
    PauseDeclared,
    Retracted,
    SharingChanged,
    TaskAdded,
    TaskCompleted,
    TaskReopened,
    TeamMemberJoined,
    TeamMemberLeft,
)

ItemKind = Literal[
    "objective", "key_result", "milestone", "task", "checkin", "indicator", "observation"
]


class SharingUpdate(msgspec.Struct, frozen=True):
    """Visibility of ``subject`` as set by the event's actor; LWW by (clock, event id)."""

    subject: str
    visibility: str
    partners: tuple[str, ...]


class LinkUpdate(msgspec.Struct, frozen=True):
    """A milestone's parent (None: standalone); LWW by (clock, event id)."""

    milestone: str
    parent: str | None


class TeamUpdate(msgspec.Struct, frozen=True):
    """Membership of ``person`` in ``team``; LWW by (clock, event id)."""

    team: str
    person: str
    joined: bool


class IndexUpdate(msgspec.Struct, frozen=True):
    """What one event means for the server's indexes."""

    event_id: str
    actor: str
    clock: int
    type: str
    creates: ItemKind | None = None
    ref: str | None = None
    sharing: SharingUpdate | None = None
    link: LinkUpdate | None = None
    team: TeamUpdate | None = None


def index_update(event: AnyEvent) -> IndexUpdate:
    """The index changes one event implies (unknown types: none; actor-only)."""
    if isinstance(event, OpaqueEvent):
        return IndexUpdate(event.id, event.actor, event.clock, event.type)
    return _known(event)


def _known(event: Event) -> IndexUpdate:
    own = event.id

    def update(
        ref: str | None,
        creates: ItemKind | None = None,
        sharing: SharingUpdate | None = None,
        link: LinkUpdate | None = None,
        team: TeamUpdate | None = None,
    ) -> IndexUpdate:
        return IndexUpdate(
            own, event.actor, event.clock, event.type, creates, ref, sharing, link, team
        )

    match event.body:
        case ObjectiveCreated(visibility=visibility, partners=partners):
            return update(own, "objective", SharingUpdate(own, visibility, partners))
        case KeyResultAdded(objective=objective):
            return update(objective, "key_result")
        case MilestonePlanned(
            key_result=key_result, objective=objective, visibility=visibility, partners=partners
        ):
            parent = key_result or objective
            # A linked milestone's own sharing is kept: it applies if it is unlinked later.
            return update(
                parent or own,
                "milestone",
                SharingUpdate(own, visibility, partners),
                LinkUpdate(own, parent),
            )
        case MilestoneRelinked(milestone=milestone, key_result=key_result, objective=objective):
            return update(milestone, link=LinkUpdate(milestone, key_result or objective))
        case (
            MilestoneRescheduled(milestone=milestone)
            | MilestoneCompleted(milestone=milestone)
            | MilestoneReopened(milestone=milestone)
            | MilestoneDropped(milestone=milestone)
            | MilestoneRestored(milestone=milestone)
        ):
            return update(milestone)
        case TaskAdded(milestone=milestone):
            return update(milestone, "task")
        case TaskCompleted(task=task) | TaskReopened(task=task):
            return update(task)
        case CheckInRecorded(subject=subject):
            return update(subject, "checkin")
        case IndicatorDefined(objective=objective, visibility=visibility, partners=partners):
            return update(objective or own, "indicator", SharingUpdate(own, visibility, partners))
        case ObservationRecorded(indicator=indicator, visibility=visibility, partners=partners):
            return update(indicator or own, "observation", SharingUpdate(own, visibility, partners))
        case SharingChanged(subject=subject, visibility=visibility, partners=partners):
            return update(subject, sharing=SharingUpdate(subject, visibility, partners))
        case Corrected(target=target) | Retracted(target=target):
            return update(target)
        case TeamMemberJoined(team=team, person=person):
            return update(None, team=TeamUpdate(team, person, True))
        case TeamMemberLeft(team=team, person=person):
            return update(None, team=TeamUpdate(team, person, False))
        case PauseDeclared():
            return update(None)
        case KudosGiven(completion=completion):
            # Seen by whoever sees the completion (its author included).
            return update(completion)
    raise AssertionError(f"unhandled event type {event.type!r}")  # pragma: no cover


def resolve_roots(
    refs: dict[str, str | None], known_roots: dict[str, str | None]
) -> dict[str, str | None]:
    """Roots of the events in ``refs`` (event id → ref), following refs inside the batch
    first and then ``known_roots`` (stored events' roots); None where a link is missing."""
    resolved: dict[str, str | None] = {}

    def root_of(event_id: str, seen: frozenset[str]) -> str | None:
        if event_id in resolved:
            return resolved[event_id]
        ref = refs[event_id]
        if ref is None:
            root: str | None = None
        elif ref == event_id:
            root = event_id
        elif ref in refs:
            # A cycle of refs can only come from forged ids: leave it unresolved.
            root = None if ref in seen else root_of(ref, seen | {event_id})
        else:
            root = known_roots.get(ref)
        resolved[event_id] = root
        return root

    for event_id in refs:
        root_of(event_id, frozenset())
    return resolved
