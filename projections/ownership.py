"""The ownership rule: which events a person may write. Defined here once; the fold,
the server's ingest and index, and the client's commands and sync all ask ``judge``.

No device and no person is trusted (docs/security.md). An event names other events
(its *references*: the objective a key result belongs to, the milestone a check-in
is about, the event a correction fixes, ...). The rule:

* **only an item's owner writes to it, moves it or links it**: every event a body
  references must have been written by the same actor — linking needs both ends to
  be the actor's;
* each reference names an event of the right kind (a check-in's subject is a key
  result or a milestone, a task's milestone is a milestone, ...);
* team membership is written only by the server's ``admin``.

A verdict depends only on the referenced events' actors and types, which never
change, so it is the same on every replica and device whatever the arrival order:

* every reference present and allowed: **accepted**;
* some present reference is someone else's, or of the wrong kind: **refused**, with
  a reason (the server dead-letters it; every fold ignores it);
* otherwise (some reference not seen yet): **waiting** on that id; judged again
  when it arrives. A reference to a refused or waiting event is not present.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

from events import AnyEvent, OpaqueEvent
from events import bodies as b

ADMIN = "admin"
"""The actor of membership events: a reserved name no person can take."""

ADMIN_ONLY = frozenset({b.TeamMemberJoined, b.TeamMemberLeft})
"""Bodies only ``ADMIN`` may write: team membership is decided by the server's operator."""


class Referent(NamedTuple):
    """What the rule needs to know of a referenced event: who wrote it, and its type tag."""

    actor: str
    type: str


class Refused(NamedTuple):
    """The event breaks the rule; ``reason`` is one line for the person who wrote it."""

    reason: str


class Waiting(NamedTuple):
    """The event references ``missing``, not seen yet: judge it again when it arrives."""

    missing: str


Verdict = Refused | Waiting | None
"""None: accepted."""


_OBJECTIVE = frozenset({"objective.created"})
_KEY_RESULT = frozenset({"key_result.added"})
_MILESTONE = frozenset({"milestone.planned"})
_TASK = frozenset({"task.added"})
_INDICATOR = frozenset({"indicator.defined"})
_SHAREABLE = frozenset(
    {"objective.created", "milestone.planned", "indicator.defined", "observation.recorded"}
)
_CHECKED = frozenset({"key_result.added", "milestone.planned"})
_ANY: frozenset[str] = frozenset()
"""Any type (corrections and retractions may name any event of the actor's)."""

_KIND_NAMES = {
    _OBJECTIVE: "an objective",
    _KEY_RESULT: "a key result",
    _MILESTONE: "a milestone",
    _TASK: "a task",
    _INDICATOR: "an indicator",
    _SHAREABLE: "an objective, milestone, indicator or journal entry",
    _CHECKED: "a key result or milestone",
    frozenset({"milestone.completed"}): "a milestone completion",
}

REFERENCES: dict[type[b.Body], tuple[tuple[str, frozenset[str]], ...]] = {
    b.ObjectiveCreated: (),
    b.KeyResultAdded: (("objective", _OBJECTIVE),),
    b.MilestonePlanned: (("key_result", _KEY_RESULT), ("objective", _OBJECTIVE)),
    b.MilestoneRescheduled: (("milestone", _MILESTONE),),
    b.MilestoneCompleted: (("milestone", _MILESTONE),),
    b.MilestoneReopened: (("milestone", _MILESTONE),),
    b.MilestoneDropped: (("milestone", _MILESTONE),),
    b.MilestoneRestored: (("milestone", _MILESTONE),),
    b.MilestoneRelinked: (
        ("milestone", _MILESTONE),
        ("key_result", _KEY_RESULT),
        ("objective", _OBJECTIVE),
    ),
    b.TaskAdded: (("milestone", _MILESTONE),),
    b.TaskCompleted: (("task", _TASK),),
    b.TaskReopened: (("task", _TASK),),
    b.CheckInRecorded: (("subject", _CHECKED),),
    b.IndicatorDefined: (("objective", _OBJECTIVE),),
    b.ObservationRecorded: (("indicator", _INDICATOR),),
    b.SharingChanged: (("subject", _SHAREABLE),),
    b.Corrected: (("target", _ANY),),
    b.Retracted: (("target", _ANY),),
    b.PauseDeclared: (),
    b.TeamMemberJoined: (),
    b.TeamMemberLeft: (),
    b.KudosGiven: (),
}
"""For each body type, the fields naming another event of the actor's own and the types
they may name."""

REACTIONS: dict[type[b.Body], tuple[tuple[str, frozenset[str]], ...]] = {
    b.KudosGiven: (("completion", frozenset({"milestone.completed"})),),
}
"""The one exception to "the actor's own": a reaction names someone else's event, which
must be present, of the right type and *not* the actor's. Whether the giver may see it,
and one per giver, are judged when read (``projections.kudos``): both follow visibility,
which changes over time."""


ALLOWED_BODIES: dict[type[b.Body], tuple[tuple[str, frozenset[type[b.Body]]], ...]] = {
    body_type: tuple(
        (field, frozenset(b.BODY_TYPES[tag] for tag in allowed) if allowed else frozenset())
        for field, allowed in refs
    )
    for body_type, refs in REFERENCES.items()
}
"""``REFERENCES`` with body classes instead of type tags, for the fold's fast path (an
event whose every named event is folded, the actor's own and of an allowed class is
accepted without calling ``judge``; reactions and admin-only bodies always call it)."""

JUDGED_IN_FULL = frozenset(ADMIN_ONLY | REACTIONS.keys())
"""Bodies the fold's fast path never accepts on its own."""


ELSEWHERE: dict[str, tuple[str, ...]] = {
    "milestone.planned": ("key_result", "objective"),
    "milestone.relinked": ("key_result", "objective"),
    "kudos.given": ("completion",),
}
"""By type tag, the references that may name an event someone who may see the referencing
event may not see. Every other reference names an event under the same visibility root
(``server.indexing``: a key result, task, check-in, observation, correction... takes its
root from what it names), so whoever sees the one sees the other. A milestone moves: its
planning and its older relinks keep naming where it was, maybe a private objective; a
reaction names someone else's completion, which its giver may no longer see. For these
the server vouches (``events.wire.WireReferent``; docs/security.md "Referents")."""


def references(body: b.Body) -> Iterator[tuple[str, str, frozenset[str]]]:
    """(field, referenced id, allowed types) of every reference the body makes (its own and
    its reactions')."""
    body_type = type(body)
    for field, allowed in (*REFERENCES[body_type], *REACTIONS.get(body_type, ())):
        ref = getattr(body, field)
        if ref is not None:
            yield field, ref, allowed


def referenced_ids(event: AnyEvent) -> list[str]:
    """The ids an event references (none for an event of an unknown type)."""
    if isinstance(event, OpaqueEvent):
        return []
    return [ref for _, ref, _ in references(event.body)]


def refusal(
    actor: str, field: str, ref: str, allowed: frozenset[str], target: Referent
) -> str | None:
    """Why ``actor`` may not reference ``target`` (named ``ref``) in ``field``; None if allowed."""
    if target.actor != actor:
        return f"{field} {ref} belongs to {target.actor}: only its owner may write to it or link it"
    if allowed and target.type not in allowed:
        return f"{field} {ref} is a {target.type} event, not {_KIND_NAMES[allowed]}"
    return None


def judge(event: AnyEvent, lookup: Callable[[str], Referent | None]) -> Verdict:
    """The verdict on ``event`` given what ``lookup`` knows of referenced events
    (None: not seen, refused or waiting). Events of unknown types are accepted:
    they are kept and synced untouched, and no projection reads them."""
    if isinstance(event, OpaqueEvent):
        return None
    body = event.body
    body_type = type(body)
    if body_type in ADMIN_ONLY and event.actor != ADMIN:
        return Refused(f"{event.type} is written only by the server's {ADMIN}")
    missing: str | None = None
    for field, ref, allowed in references(body):
        target = lookup(ref)
        if target is None:
            missing = missing or ref
            continue
        if body_type in REACTIONS:
            reason = reaction_refusal(event.actor, field, ref, allowed, target)
        else:
            reason = refusal(event.actor, field, ref, allowed, target)
        if reason is not None:
            return Refused(reason)
    return Waiting(missing) if missing is not None else None


def reaction_refusal(
    actor: str, field: str, ref: str, allowed: frozenset[str], target: Referent
) -> str | None:
    """Why ``actor`` may not react to ``target`` in ``field``; None if allowed."""
    if target.type not in allowed:
        return f"{field} {ref} is a {target.type} event, not {_KIND_NAMES[allowed]}"
    if target.actor == actor:
        return f"{field} {ref} is your own: a reaction is for someone else's"
    return None
