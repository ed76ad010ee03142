"""Every event body Milepost knows: frozen Structs in one tagged union.

Limits live on the fields (``Meta``) or in ``__post_init__`` for rules that
span fields, so the codec enforces them on every decode. Evolution rule: only
add fields with defaults; never change a field's type (bump the schema
version and add an upcaster instead).
"""

from __future__ import annotations

import typing
from datetime import date
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from events.cycles import CYCLE_PATTERN

# --- field types with their declared limits -------------------------------------------

EventId = Annotated[
    str,
    Meta(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z",
        description="A lowercase UUID naming an event (and the item it created).",
    ),
]
EventRef = Annotated[
    str,
    Meta(
        min_length=36,
        max_length=36,
        description="The id of another event (an EventId) named by a body.",
    ),
]
"""A reference to another event, checked by length only.

Decoding is the hot path of every rebuild, and a regex per reference cost a
third of it. A malformed reference cannot do harm: no event has that id, so it
dangles like a reference to an event not yet received (projections and the
server index treat unknown ids as missing). Event ids themselves, the envelope's
``id``, keep the full pattern.
"""
# Patterns end in \Z: msgspec searches with ``re``, where ``$`` also matches
# before a trailing newline.
PERSON_PATTERN = r"^[a-z][a-z0-9_-]{0,62}\Z"
DEVICE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}\Z"
PersonId = Annotated[
    str, Meta(pattern=PERSON_PATTERN, description="A person's handle, e.g. alice.")
]
DeviceId = Annotated[str, Meta(pattern=DEVICE_PATTERN)]
TeamId = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_-]{0,62}\Z")]
Title = Annotated[str, Meta(min_length=1, max_length=200)]
Note = Annotated[str, Meta(max_length=4000)]
Text = Annotated[str, Meta(min_length=1, max_length=4000)]
Unit = Annotated[str, Meta(max_length=40)]
Cycle = Annotated[str, Meta(pattern=CYCLE_PATTERN)]
Percent = Annotated[float, Meta(ge=0, le=100)]
Weight = Annotated[float, Meta(gt=0, le=1000)]
Measure = Annotated[float, Meta(ge=-1e15, le=1e15)]
StageIndex = Annotated[int, Meta(ge=0, le=49)]
Partners = Annotated[tuple[PersonId, ...], Meta(max_length=50)]

Visibility = Literal["private", "partners", "team"]
Cadence = Literal["weekly", "biweekly", "monthly"]
Confidence = Literal["on-track", "at-risk", "off-track"]
KeyResultKind = Literal["increase", "decrease", "stay-above", "stay-below"]
Polarity = Literal["positive", "negative"]

# --- the date range -------------------------------------------------------------------
#
# Every date in a body, every instant in the envelope (as written, in its own offset)
# and every cycle's year lies in MIN_DATE..MAX_DATE. Views add a pause's length or a
# day to these dates; within this range that arithmetic can never leave what
# ``datetime.date`` represents (year 1..9999), however the dates combine. msgspec
# has no bounds for dates, so the bodies with dates check them in ``__post_init__``
# (only those bodies pay; the envelope checks its two instants the same way).

MIN_DATE = date(1970, 1, 1)
"""The earliest date (and local date of an instant) an event may carry."""
MAX_DATE = date(2199, 12, 31)
"""The latest date an event may carry (the same bound as the clock's ``MAX_PHYSICAL_MS``)."""
DATE_RANGE_ERROR = f"date must be between {MIN_DATE} and {MAX_DATE}"


def check_date(field: str, value: date | None) -> None:
    """ValueError naming ``field`` unless ``value`` is None or within MIN_DATE..MAX_DATE."""
    if value is not None and not MIN_DATE <= value <= MAX_DATE:
        raise ValueError(f"{field}: {DATE_RANGE_ERROR}")


CADENCE_DAYS: dict[str, int] = {"weekly": 7, "biweekly": 14, "monthly": 30}
CONFIDENCE_RANK: dict[str, int] = {"on-track": 0, "at-risk": 1, "off-track": 2}


class Body(msgspec.Struct, frozen=True, tag_field="type", forbid_unknown_fields=False, gc=False):
    """Base of every event body; the ``type`` tag selects the variant.

    ``gc=False``: bodies hold only scalars and tuples of strings, so they can
    never be part of a reference cycle; untracked, a million of them cost the
    cyclic collector nothing.
    """


def _check_sharing(visibility: str, partners: tuple[str, ...]) -> None:
    if partners and visibility != "partners":
        raise ValueError("partners may only be named with visibility 'partners'")
    if len(set(partners)) != len(partners):
        raise ValueError("partners must not repeat")


# --- objectives and key results -------------------------------------------------------


class ObjectiveCreated(Body, frozen=True, tag="objective.created"):
    """An objective for a cycle; its id is the event id."""

    title: Title
    cycle: Cycle
    description: Note = ""
    cadence: Cadence = "weekly"
    visibility: Visibility = "private"
    partners: Partners = ()

    def __post_init__(self) -> None:
        _check_sharing(self.visibility, self.partners)
        if not MIN_DATE.year <= int(self.cycle[:4]) <= MAX_DATE.year:
            raise ValueError(f"cycle: year must be between {MIN_DATE.year} and {MAX_DATE.year}")


class KeyResultAdded(Body, frozen=True, tag="key_result.added"):
    """A measurable result under an objective.

    ``increase``/``decrease`` run from ``start`` to ``target``; ``stay-above``/
    ``stay-below`` hold ``target`` as a threshold. Without numbers (both None)
    progress comes from the milestones linked to it.
    """

    objective: EventRef
    title: Title
    kind: KeyResultKind = "increase"
    start: Measure | None = None
    target: Measure | None = None
    unit: Unit = ""
    weight: Weight = 1.0
    cadence: Cadence | None = None

    def __post_init__(self) -> None:
        if self.kind in ("increase", "decrease"):
            if (self.start is None) != (self.target is None):
                raise ValueError("start and target must be given together")
            if self.start is not None and self.target is not None:
                if self.start == self.target:
                    raise ValueError("target must differ from start")
                if self.kind == "increase" and self.target < self.start:
                    raise ValueError("an 'increase' key result needs target above start")
                if self.kind == "decrease" and self.target > self.start:
                    raise ValueError("a 'decrease' key result needs target below start")
        elif self.target is None:
            raise ValueError(f"a '{self.kind}' key result needs a target threshold")


# --- milestones and tasks -------------------------------------------------------------


class MilestonePlanned(Body, frozen=True, tag="milestone.planned"):
    """A delivery with a due date, linked to a key result, an objective, or nothing."""

    title: Title
    due_on: date | None = None
    key_result: EventRef | None = None
    objective: EventRef | None = None
    description: Note = ""
    # Sharing of a standalone milestone; a linked one inherits its objective's.
    visibility: Visibility = "private"
    partners: Partners = ()

    def __post_init__(self) -> None:
        _check_sharing(self.visibility, self.partners)
        check_date("due_on", self.due_on)


class MilestoneRescheduled(Body, frozen=True, tag="milestone.rescheduled"):
    milestone: EventRef
    due_on: date | None
    reason: Note = ""

    def __post_init__(self) -> None:
        check_date("due_on", self.due_on)


class MilestoneCompleted(Body, frozen=True, tag="milestone.completed"):
    """A completion with the three answers: what was done, why it mattered, the outcome."""

    milestone: EventRef
    did: Note = ""
    why: Note = ""
    outcome: Note = ""


class MilestoneReopened(Body, frozen=True, tag="milestone.reopened"):
    milestone: EventRef
    reason: Note = ""


class MilestoneDropped(Body, frozen=True, tag="milestone.dropped"):
    milestone: EventRef
    reason: Note = ""


class MilestoneRestored(Body, frozen=True, tag="milestone.restored"):
    milestone: EventRef


class MilestoneRelinked(Body, frozen=True, tag="milestone.relinked"):
    """Moves a milestone to another key result or objective (both None: unlink)."""

    milestone: EventRef
    key_result: EventRef | None = None
    objective: EventRef | None = None


class TaskAdded(Body, frozen=True, tag="task.added"):
    milestone: EventRef
    title: Title


class TaskCompleted(Body, frozen=True, tag="task.completed"):
    task: EventRef


class TaskReopened(Body, frozen=True, tag="task.reopened"):
    task: EventRef


# --- check-ins ------------------------------------------------------------------------


class CheckInRecorded(Body, frozen=True, tag="checkin.recorded"):
    """Progress on a key result (``value``) or a milestone (``percent``)."""

    subject: EventRef
    confidence: Confidence
    value: Measure | None = None
    percent: Percent | None = None
    note: Note = ""

    def __post_init__(self) -> None:
        if self.value is not None and self.percent is not None:
            raise ValueError("give a value (key result) or a percent (milestone), not both")


# --- qualitative benchmarks -----------------------------------------------------------


class IndicatorDefined(Body, frozen=True, tag="indicator.defined"):
    """A capability with ordered stages, e.g. customer empathy."""

    title: Title
    stages: Annotated[tuple[Title, ...], Meta(min_length=1, max_length=50)]
    objective: EventRef | None = None
    description: Note = ""
    visibility: Visibility = "private"
    partners: Partners = ()

    def __post_init__(self) -> None:
        _check_sharing(self.visibility, self.partners)
        if len({s.casefold() for s in self.stages}) != len(self.stages):
            raise ValueError("stages must be distinct")


class ObservationRecorded(Body, frozen=True, tag="observation.recorded"):
    """A journal entry; with an indicator (and optionally the stage reached) it is evidence."""

    text: Text
    polarity: Polarity = "positive"
    indicator: EventRef | None = None
    stage: StageIndex | None = None
    impact: Note = ""
    # Sharing of a bare journal entry; one tied to an indicator inherits the indicator's.
    visibility: Visibility = "private"
    partners: Partners = ()

    def __post_init__(self) -> None:
        _check_sharing(self.visibility, self.partners)
        if self.stage is not None and self.indicator is None:
            raise ValueError("a stage needs an indicator")


# --- sharing, corrections, pauses, teams ----------------------------------------------


class SharingChanged(Body, frozen=True, tag="sharing.changed"):
    """New visibility for an objective, a standalone milestone or indicator, or an observation."""

    subject: EventRef
    visibility: Visibility
    partners: Partners = ()

    def __post_init__(self) -> None:
        _check_sharing(self.visibility, self.partners)


class Changes(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, gc=False
):
    """Replacement values carried by a correction; unset fields stay as they were."""

    title: Title | None = None
    description: Note | None = None
    note: Note | None = None
    value: Measure | None = None
    percent: Percent | None = None
    confidence: Confidence | None = None
    start: Measure | None = None
    target: Measure | None = None
    unit: Unit | None = None
    weight: Weight | None = None
    cadence: Cadence | None = None
    text: Text | None = None
    polarity: Polarity | None = None
    stage: StageIndex | None = None
    impact: Note | None = None
    did: Note | None = None
    why: Note | None = None
    outcome: Note | None = None


class Corrected(Body, frozen=True, tag="correction"):
    """Fixes fields of an earlier event, which stays in the log untouched."""

    target: EventRef
    changes: Changes
    reason: Note = ""

    def __post_init__(self) -> None:
        if all(value is None for value in msgspec.structs.astuple(self.changes)):
            raise ValueError("a correction must change at least one field")


class Retracted(Body, frozen=True, tag="retraction"):
    """Withdraws an earlier event: projections ignore it from then on."""

    target: EventRef
    reason: Note = ""


class PauseDeclared(Body, frozen=True, tag="pause.declared"):
    """Leave or travel: pace and staleness do not count between the two dates (inclusive)."""

    starts_on: date
    ends_on: date
    reason: Note = ""

    def __post_init__(self) -> None:
        check_date("starts_on", self.starts_on)
        check_date("ends_on", self.ends_on)
        if self.ends_on < self.starts_on:
            raise ValueError("a pause must end on or after its start")


class TeamMemberJoined(Body, frozen=True, tag="team.member_joined"):
    team: TeamId
    person: PersonId


class TeamMemberLeft(Body, frozen=True, tag="team.member_left"):
    team: TeamId
    person: PersonId


class KudosGiven(Body, frozen=True, tag="kudos.given"):
    """A teammate's reaction to a completion: ``completion`` is the ``milestone.completed``
    event it names, an event by someone else (the one reference that is not the actor's
    own: it must be visible to the giver, see ``projections.kudos``)."""

    completion: EventRef
    note: Annotated[str, Meta(max_length=280)] = ""


MILESTONE_EVENTS = (
    MilestoneRescheduled,
    MilestoneCompleted,
    MilestoneReopened,
    MilestoneDropped,
    MilestoneRestored,
    MilestoneRelinked,
)
"""Bodies that change an existing milestone (each has a ``milestone`` field)."""

KnownBody = (
    ObjectiveCreated
    | KeyResultAdded
    | MilestonePlanned
    | MilestoneRescheduled
    | MilestoneCompleted
    | MilestoneReopened
    | MilestoneDropped
    | MilestoneRestored
    | MilestoneRelinked
    | TaskAdded
    | TaskCompleted
    | TaskReopened
    | CheckInRecorded
    | IndicatorDefined
    | ObservationRecorded
    | SharingChanged
    | Corrected
    | Retracted
    | PauseDeclared
    | TeamMemberJoined
    | TeamMemberLeft
    | KudosGiven
)

BODY_TYPES: dict[str, type[Body]] = {
    str(cls.__struct_config__.tag): cls for cls in typing.get_args(KnownBody)
}
