"""The fold: every event lands in one ``ProjectionState`` that all views read.

Conflict rules (docs/contract.md#projections), applied here and in ``projections.rules``:

* Every mutable field is a last-writer-wins register keyed by
  ``(clock, event id)``: the event with the greater HLC stamp wins, ties go to
  the greater event id. Registers merge commutatively, so any arrival order
  of the same events yields the same state::

      register = max(writes, key=lambda w: (w.clock, w.id))

* A completion stands until a *later* reopen, a drop until a *later* restore:
  completion and drop are each one boolean register written by the pair of
  events that set and clear it.
* A correction overrides the named fields of the event it targets; several
  corrections of one event apply in (clock, id) order. A retraction hides the
  event it names (and, for a creating event, the item) — including a
  correction or a check-in. A retraction of a retraction is ignored.
* Every event is judged by the ownership rule (``projections.ownership``)
  before it is folded: only an item's owner writes to it, moves it or links
  it. A refused event is kept aside (``refused``) and changes nothing; an
  event naming one not seen yet waits (``pending``) and is judged again when
  that one arrives. A verdict depends only on the named events' actors and
  types, so the result does not depend on arrival order, and a handler only
  ever sees events whose references are present and the actor's own.
* A device may lack an event that one it holds names (a milestone moved from a
  private objective to a shared one still names the private one in its
  planning). The server vouches for such events (``events.wire.WireReferent``):
  their actor and type, which is all the rule reads. The fold takes them as
  ``referents`` (``rebuild``, ``vouch``): the rule judges with them when the
  event itself is not here; they are never folded, never shown.

Nothing here does I/O; ``now`` is always an argument of the views.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Callable, Hashable, Iterable, Mapping, MutableSequence
from datetime import date, datetime
from typing import Any, Protocol

import msgspec
from msgspec.structs import force_setattr

from events import AnyEvent, Event, OpaqueEvent
from events import bodies as b
from projections.ownership import (
    ADMIN_ONLY,
    ALLOWED_BODIES,
    JUDGED_IN_FULL,
    REACTIONS,
    REFERENCES,
    Referent,
    Refused,
    judge,
)

Stamp = tuple[int, str]
"""(clock, event id): the order of last-writer-wins."""

FeedKey = tuple[datetime, str]
"""(occurred_at, event id): the order of the feed, newest last in storage."""

NO_STAMP: Stamp = (-1, "")

Handler = Callable[["ProjectionState", Event, Any], None]
"""Folds one event of one body type into the state."""


def stamp_of(event: Event) -> Stamp:
    """The last-writer-wins order of an event."""
    return (event.clock, event.id)


# The two sort keys are ``attrgetter``s, not functions: a sort or a merge calls them once
# per event, and a C call that builds the tuple costs a third of a Python function's
# (a partition's restore sorts every feed and every subject's check-ins).
feed_key: Callable[[Event], FeedKey] = operator.attrgetter("occurred_at", "id")
"""The order of a feed: (occurred_at, event id)."""

checkin_key: Callable[[Event], tuple[datetime, int, str]] = operator.attrgetter(
    "occurred_at", "clock", "id"
)
"""The order of a subject's check-ins and an indicator's observations:
(occurred_at, clock, event id)."""


touch_key: Callable[[Event], tuple[datetime, str]] = operator.attrgetter("recorded_at", "id")
"""The order of ``ProjectionState.checkin_touch``: (recorded_at, event id)."""


def later(event: Event, than: Event) -> bool:
    """Whether ``event`` is later than ``than`` in last-writer-wins order (no tuple built:
    this runs for most events of a fold)."""
    clock = event.clock
    other = than.clock
    return clock > other or (clock == other and event.id > than.id)


def add_in_order(events: MutableSequence[Event], event: Event, key: Callable[[Event], Any]) -> None:
    """Insert keeping ``key`` order (``feed_key`` or ``checkin_key``); in-order arrival
    (the common case) is an append. An event already there is not added twice."""
    # Both keys lead with occurred_at: a later one is later by key, no tuples built.
    at = event.occurred_at
    if not events or at > events[-1].occurred_at:
        events.append(event)
        return
    # A late arrival is mostly recent: step back from the end in doubling strides to an
    # earlier occurred_at (all before it are less by key), then bisect only that stretch.
    low = len(events) - 1
    stride = 1
    while low > 0 and events[low].occurred_at >= at:
        low = max(0, low - stride)
        stride *= 2
    new = key(event)
    index = bisect.bisect_left(events, new, low, key=key)
    if index == len(events) or events[index].id != event.id:
        events.insert(index, event)


class Register(msgspec.Struct, gc=False):
    """A last-writer-wins register: the value written by the latest event.

    It keeps the writing event itself, not its stamp: the event is held anyway, so a
    write costs no tuple.
    """

    writer: Event | None = None
    value: Any = None

    @property
    def stamp(self) -> Stamp:
        writer = self.writer
        return NO_STAMP if writer is None else (writer.clock, writer.id)

    @property
    def source(self) -> str:
        """The id of the event that wrote the value ("" before any write)."""
        writer = self.writer
        return "" if writer is None else writer.id

    def write(self, event: Event, value: Any) -> bool:
        """Keep ``value`` if ``event`` is later than the current writer; say whether it was."""
        writer = self.writer
        if writer is None or later(event, writer):
            self.writer = event
            self.value = value
            return True
        return False


class Sharing(msgspec.Struct, frozen=True, gc=False):
    """Who may see an item besides its owner."""

    visibility: str = "private"
    partners: tuple[str, ...] = ()


PRIVATE = Sharing()


def sharing(visibility: str, partners: tuple[str, ...]) -> Sharing:
    """The Sharing of these values (the one ``PRIVATE`` for most items)."""
    if visibility == "private" and not partners:
        return PRIVATE
    return Sharing(visibility, partners)


# ``gc=False`` on the nodes: they hold events, registers, strings and lists or sets of
# those, never another node or anything that leads back to one, so they can never be part
# of a reference cycle; untracked, the cyclic collector skips them.


class ObjectiveNode(msgspec.Struct, gc=False):
    event: Event
    key_results: list[str] = msgspec.field(default_factory=list)
    milestones: set[str] = msgspec.field(default_factory=set)  # linked directly
    indicators: list[str] = msgspec.field(default_factory=list)


class KeyResultNode(msgspec.Struct, gc=False):
    event: Event
    milestones: set[str] = msgspec.field(default_factory=set)


class EventRows(Protocol):
    """Events held as rows (``projections.compact.RowTable``): a row's event, made again."""

    def event(self, row: int) -> Event: ...

    def text(self, row: int) -> str | None: ...


def made_again(rows: EventRows | None, ref: Event | int) -> Event:
    """The event ``ref`` is: itself, or a row of ``rows`` made again."""
    if isinstance(ref, int):
        assert rows is not None
        return rows.event(ref)
    return ref


class TaskNode(msgspec.Struct, gc=False):
    """A task and its done flag: a last-writer-wins register held inline (a sixth of all
    events write one), written first by the task's own adding.

    Every milestone's view reads its tasks' ids and titles: the id is held here, the title
    read from where the adding event is held. That event (``added``) and the writer are
    events, or in a compacted state (``projections.compact``) rows of ``rows``: read them
    as ``event`` and ``done_by``.
    """

    id: str
    added: Event | int
    writer: Event | int  # the latest completion or reopen by stamp, or the adding event
    done: bool = False
    rows: EventRows | None = None

    @property
    def title(self) -> str:
        """The title the task was added with (a correction's: ``ProjectionState.body``)."""
        added = self.added
        if isinstance(added, int):
            assert self.rows is not None
            title = self.rows.text(added)
            assert title is not None
            return title
        return added.body.title  # type: ignore[union-attr]

    @property
    def event(self) -> Event:
        """The task's adding event."""
        return made_again(self.rows, self.added)

    @property
    def done_by(self) -> Event:
        """The latest completion or reopen by stamp, or the adding event."""
        return made_again(self.rows, self.writer)


def task_id(task: TaskNode) -> str:
    """The order of a milestone's tasks: their ids."""
    return task.id


class MilestoneNode(msgspec.Struct, gc=False):
    event: Event
    due_on: Register
    link: Register  # value: (key_result id | None, objective id | None)
    completed: Register  # value: the completion's id, or None after a reopen
    dropped: Register  # value: bool
    tasks: list[TaskNode] = msgspec.field(default_factory=list)  # sorted by ``task_id``
    # Latest event (by stamp) naming this milestone directly; check-ins and task events
    # are folded in at read time (they may arrive before the milestone does). In a state
    # loaded compacted (``projections.persist``) it may be a row of ``rows``: read
    # ``touched``.
    touch: Event | int | None = None
    # Every completion and reopen applied to ``completed`` (each wrote its
    # ``completion_value``). The register holds the latest *live* one, so retracting a
    # completion (or a reopen) falls back to the write before it.
    completion_writes: list[Event] | None = None
    rows: EventRows | None = None

    @property
    def touched(self) -> Event | None:
        """The latest event (by stamp) naming this milestone directly."""
        return None if self.touch is None else made_again(self.rows, self.touch)


class IndicatorNode(msgspec.Struct, gc=False):
    event: Event
    # Sorted by ``checkin_key``: the latest observations are the last entries.
    observations: MutableSequence[Event] = msgspec.field(default_factory=list)


class PersonIndex(msgspec.Struct, gc=False):
    """Everything a person owns, by kind, for per-person views (their check-ins and
    observations are in their ``Feed``)."""

    objectives: list[str] = msgspec.field(default_factory=list)
    milestones: list[str] = msgspec.field(default_factory=list)
    indicators: list[str] = msgspec.field(default_factory=list)
    completions: list[str] = msgspec.field(default_factory=list)
    pauses: list[str] = msgspec.field(default_factory=list)


class Feed(msgspec.Struct, gc=False):
    """One owner's feed items sorted by ``feed_key`` (occurred_at, id), oldest first."""

    events: MutableSequence[Event] = msgspec.field(default_factory=list)


FEED_TYPES = frozenset(
    {
        "milestone.planned",
        "milestone.completed",
        "checkin.recorded",
        "observation.recorded",
        "kudos.given",
    }
)
"""Event types that appear in feeds."""


class ProjectionState:
    """All projection state. Mutated only by ``apply``; read by the view modules."""

    __slots__ = (
        "checkin_touch",
        "checkins_by_subject",
        "corrections",
        "events",
        "feeds",
        "indicators",
        "key_results",
        "kudos",
        "memberships",
        "memo",
        "milestones",
        "objectives",
        "opaque",
        "partnered_by",
        "pending",
        "people",
        "refused",
        "retracted",
        "sharing",
        "tasks",
        "team_changes",
        "teams_by_person",
        "versions",
        "vouched",
        "waiting_on",
    )

    def __init__(self, referents: Mapping[str, Referent] | None = None) -> None:
        # What the server vouched for of events this replica may not hold (their actor
        # and type): the ownership rule's fallback when an event named is not here.
        self.vouched: dict[str, Referent] = dict(referents) if referents else {}
        # Folded events: accepted by the ownership rule (``projections.ownership``).
        self.events: dict[str, Event] = {}
        # Events that name one not seen yet, by id; ``waiting_on``: missing id -> their ids.
        self.pending: dict[str, Event] = {}
        self.waiting_on: dict[str, list[str]] = {}
        # Events the ownership rule refuses, with the reason; they change nothing.
        self.refused: dict[str, tuple[Event, str]] = {}
        self.opaque: dict[str, OpaqueEvent] = {}
        self.objectives: dict[str, ObjectiveNode] = {}
        self.key_results: dict[str, KeyResultNode] = {}
        self.milestones: dict[str, MilestoneNode] = {}
        self.tasks: dict[str, TaskNode] = {}
        self.indicators: dict[str, IndicatorNode] = {}
        # subject id -> its check-ins sorted by ``checkin_key``: the last entries are
        # the latest check-ins, so views read them without a scan.
        self.checkins_by_subject: dict[str, MutableSequence[Event]] = {}
        # subject id -> the latest recorded (by (recorded_at, id)) of its check-ins and of
        # the corrections and retractions naming them: drift's last touch of a milestone
        # reads it instead of walking a year of check-ins.
        # In a state loaded compacted (``projections.persist``) a touch may be a row of
        # ``events.rows``: read ``checkin_touched``.
        self.checkin_touch: dict[str, Event | int] = {}
        # target event id -> ids of corrections naming it (order fixed at read time)
        self.corrections: dict[str, list[str]] = {}
        # target event id -> ids of retractions naming it
        self.retracted: dict[str, list[str]] = {}
        # completion event id -> ids of kudos naming it, sorted (which count: projections.kudos)
        self.kudos: dict[str, list[str]] = {}
        self.people: dict[str, PersonIndex] = {}
        # (team, person) -> register of "is a member"
        self.memberships: dict[tuple[str, str], Register] = {}
        self.teams_by_person: dict[str, frozenset[str]] = {}
        # item id -> every event writing its own Sharing (objectives, standalone
        # milestones, indicators, journal entries): its creation and sharing.changed,
        # whose bodies hold what they wrote. Kept whole because only the owner's writes
        # count, and the owner is known only once the creating event has arrived.
        self.sharing: dict[str, list[Event]] = {}
        self.feeds: dict[str, Feed] = {}
        # person -> everyone who ever named them as a partner in a sharing write: a
        # superset of whose items they may see as a partner (views still check).
        self.partnered_by: dict[str, set[str]] = {}
        # Sub-views, shared by the views that read them (a member's objectives serve both
        # their goal tree and the team board): key -> (the stamp it was computed at, it).
        self.memo: dict[Hashable, tuple[Hashable, Any]] = {}
        # person -> how many of their events were folded; and how many team changes. A
        # person's own items depend on nothing else (the ownership rule: only the owner
        # writes to an item) but who is in which team: ``memoized`` keeps a person's
        # sub-views across events of everyone else.
        self.versions: dict[str, int] = {}
        self.team_changes = 0

    # --- reading helpers shared by every view -------------------------------------------

    def referent(self, event_id: str) -> Referent | None:
        """What the ownership rule needs of a folded (or unknown-type) event, or of one the
        server vouched for (``vouched``); None if unseen."""
        event = self.events.get(event_id)
        if event is not None:
            return Referent(event.actor, event.body.__struct_config__.tag)  # type: ignore[arg-type]
        opaque = self.opaque.get(event_id)
        if opaque is not None:
            return Referent(opaque.actor, opaque.type)
        return self.vouched.get(event_id)

    def all_events(self) -> list[AnyEvent]:
        """Every event received, whatever its verdict (folded, pending, refused, unknown type)."""
        return [
            *self.events.values(),
            *self.pending.values(),
            *(event for event, _ in self.refused.values()),
            *self.opaque.values(),
        ]

    def event_count(self) -> int:
        """How many distinct events were received, whatever their verdict."""
        return len(self.events) + len(self.pending) + len(self.refused) + len(self.opaque)

    def is_retracted(self, event_id: str) -> bool:
        """Whether a retraction by the event's own author names this event.

        A retraction cannot itself be retracted (that would make the rule
        recursive); withdraw a mistaken retraction by logging the item again.
        """
        retractions = self.retracted.get(event_id)
        if not retractions:
            return False
        target = self.events.get(event_id)
        if target is None:
            return False
        return any(self.events[r].actor == target.actor for r in retractions)

    def body(self, event_id: str) -> Any:
        """The event's body with its corrections applied (in (clock, id) order)."""
        event = self.events[event_id]
        correction_ids = self.corrections.get(event_id)
        if not correction_ids:
            return event.body
        # Only the author may correct an event; a retracted correction is void.
        live = sorted(
            (
                self.events[c]
                for c in correction_ids
                if self.events[c].actor == event.actor and not self.is_retracted(c)
            ),
            key=stamp_of,
        )
        body = event.body
        for correction in live:
            assert isinstance(correction.body, b.Corrected)
            try:
                body = corrected(body, correction.body.changes)
            except InvalidCorrection:
                continue  # a correction the rule refuses is ignored
        return body

    def own_sharing(self, item_id: str) -> Sharing:
        """The item's own sharing: the latest write by its owner (private if unknown)."""
        item = self.events.get(item_id)
        writes = self.sharing.get(item_id)
        if item is None or not writes:
            return PRIVATE
        owner = item.actor
        best: Event | None = None
        for write in writes:
            if write.actor == owner and (best is None or later(write, best)):
                best = write
        if best is None:
            return PRIVATE
        written: Any = best.body
        return sharing(written.visibility, written.partners)

    def memoized(self, key: Hashable, compute: Callable[[], Any], owner: str | None = None) -> Any:
        """``compute()``, remembered under ``key`` until the state changes in a way it can
        see: until another event is folded in, or with ``owner``, until another event of
        that person or another team change is.

        Only for pure sub-views whose ``key`` names every input besides the state (and,
        with ``owner``, that read nothing of the state but that person's items and who is
        in which team). The stamp is read before ``compute`` runs and stored with what it
        returns, so an entry computed before a fold can never be read after it, even if a
        view computed in another thread stores it late.
        """
        if owner is None:
            stamp: Hashable = len(self.events) + len(self.opaque)
        else:
            stamp = (owner, self.versions.get(owner, 0), self.team_changes)
        memo = self.memo
        stored = memo.get(key)
        if stored is not None and stored[0] == stamp:
            return stored[1]
        value = compute()
        if len(memo) >= max(_MEMO_MIN, len(self.events) // _EVENTS_PER_MEMO_ENTRY):
            memo.clear()  # a server up for days sees many days: entries of past ones go
        memo[key] = (stamp, value)
        return value

    def checkin_touched(self, subject: str) -> Event | None:
        """The latest recorded check-in of ``subject`` or fix of one (``checkin_touch``)."""
        touch = self.checkin_touch.get(subject)
        if touch is None:
            return None
        # Only a compacted state (``events`` a ``HeldEvents``) holds touches as rows.
        return made_again(getattr(self.events, "rows", None), touch)

    def person(self, person: str) -> PersonIndex:
        """The index of a person's items (created empty on first use)."""
        index = self.people.get(person)
        if index is None:
            index = self.people[person] = PersonIndex()
        return index

    def teams_of(self, person: str) -> frozenset[str]:
        """Teams the person currently belongs to."""
        return self.teams_by_person.get(person, _NO_TEAMS)

    def members_of(self, team: str) -> set[str]:
        """People currently in a team."""
        return {
            member
            for (t, member), register in self.memberships.items()
            if t == team and register.value
        }


_MEMO_MIN = 4096
_EVENTS_PER_MEMO_ENTRY = 16
"""Entries kept at most (each sub-view of each item viewed, per day viewed, survives the
events of others): one per 16 events folded, at least 4,096. Measured at 1M events, a
team's board and its ten members' goal trees are 2,520 entries, 1.2 KB each with what
they hold: one day of a team is ~3 MB, and the memo of a 110,000-event partition stays
under ~8 MB (its state is ~57 MB) however many days a server stays up."""


class InvalidCorrection(ValueError):
    """A correction that names a field its target lacks, or would make the target invalid."""


def corrected(body: Any, changes: b.Changes) -> Any:
    """``body`` with the fields ``changes`` sets replaced, validated again like any body
    (limits and cross-field rules). The one rule for corrections: the fold ignores a
    correction this refuses, and the client refuses to record it."""
    updates = {
        name: value
        for name in changes.__struct_fields__
        if (value := getattr(changes, name)) is not None
    }
    unknown = [name for name in updates if not hasattr(body, name)]
    if unknown:
        tag = body.__struct_config__.tag
        raise InvalidCorrection(f"a {tag} event has no field {unknown[0]!r} to correct")
    merged = msgspec.structs.asdict(body) | updates
    try:
        return msgspec.convert(
            {"type": body.__struct_config__.tag, **merged}, b.KnownBody, from_attributes=False
        )
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        raise InvalidCorrection(f"invalid correction: {str(exc).replace('`', '')}") from None


# --- the fold ---------------------------------------------------------------------------


def add_sorted(ids: list[str], item: str) -> None:
    """Insert keeping id order, so no index depends on arrival order.

    UUIDv7 ids mostly arrive in order, which makes this an append.
    """
    if not ids or item > ids[-1]:
        ids.append(item)
    else:
        bisect.insort(ids, item)


def _touch(node: MilestoneNode, event: Event) -> None:
    touch = node.touch
    if touch is None:
        node.touch = event
        return
    touched = touch if type(touch) is Event else node.touched  # a row, made again
    assert touched is not None
    if later(event, touched):
        node.touch = event


def _write_sharing(state: ProjectionState, item_id: str, event: Event) -> None:
    """Record ``event`` (its body holds visibility and partners) as a sharing write."""
    writes = state.sharing.get(item_id)
    if writes is None:
        state.sharing[item_id] = [event]
    else:
        writes.append(event)
    written: Any = event.body
    for partner in written.partners:
        owners = state.partnered_by.get(partner)
        if owners is None:
            state.partnered_by[partner] = {event.actor}
        else:
            owners.add(event.actor)


def _on_objective(state: ProjectionState, event: Event, body: b.ObjectiveCreated) -> None:
    existing = state.objectives.get(event.id)
    _write_sharing(state, event.id, event)
    node = ObjectiveNode(event)
    if existing is not None:  # placeholders created by children that came first
        node.key_results = existing.key_results
        node.milestones = existing.milestones
        node.indicators = existing.indicators
    state.objectives[event.id] = node
    add_sorted(state.person(event.actor).objectives, event.id)


def _objective_slot(state: ProjectionState, objective_id: str) -> ObjectiveNode:
    """The objective, or a placeholder collecting children until it arrives."""
    node = state.objectives.get(objective_id)
    if node is None:
        node = state.objectives[objective_id] = ObjectiveNode(PLACEHOLDER)
    return node


def _on_key_result(state: ProjectionState, event: Event, body: b.KeyResultAdded) -> None:
    existing = state.key_results.get(event.id)
    node = KeyResultNode(event)
    if existing is not None:
        node.milestones = existing.milestones
    state.key_results[event.id] = node
    add_sorted(_objective_slot(state, body.objective).key_results, event.id)


def _key_result_slot(state: ProjectionState, key_result_id: str) -> KeyResultNode:
    node = state.key_results.get(key_result_id)
    if node is None:
        node = state.key_results[key_result_id] = KeyResultNode(PLACEHOLDER)
    return node


def _set_link(
    state: ProjectionState, milestone_id: str, node: MilestoneNode, event: Event, link: Any
) -> None:
    # The milestone's id is passed in: a relink may arrive before the milestone
    # (its node then holds a placeholder event whose id is not the milestone's).
    old = node.link.value
    if node.link.write(event, link):
        if old is not None:
            old_kr, old_objective = old
            if old_kr is not None:
                _key_result_slot(state, old_kr).milestones.discard(milestone_id)
            if old_objective is not None:
                _objective_slot(state, old_objective).milestones.discard(milestone_id)
        new_kr, new_objective = link
        if new_kr is not None:
            _key_result_slot(state, new_kr).milestones.add(milestone_id)
        if new_objective is not None:
            _objective_slot(state, new_objective).milestones.add(milestone_id)


def _milestone_slot(state: ProjectionState, milestone_id: str) -> MilestoneNode:
    node = state.milestones.get(milestone_id)
    if node is None:
        node = state.milestones[milestone_id] = MilestoneNode(
            PLACEHOLDER, Register(), Register(), Register(), Register()
        )
    return node


def _owned_milestone(state: ProjectionState, milestone_id: str) -> MilestoneNode:
    """The milestone a write names: present and the writer's own (the ownership rule
    admits the write only then)."""
    return state.milestones[milestone_id]


def _on_milestone_planned(state: ProjectionState, event: Event, body: b.MilestonePlanned) -> None:
    node = _milestone_slot(state, event.id)
    node.event = event
    node.due_on.write(event, body.due_on)
    _set_link(state, event.id, node, event, (body.key_result, body.objective))
    node.completed.write(event, None)
    node.dropped.write(event, False)
    _write_sharing(state, event.id, event)
    _touch(node, event)
    add_sorted(state.person(event.actor).milestones, event.id)


def _on_rescheduled(state: ProjectionState, event: Event, body: b.MilestoneRescheduled) -> None:
    node = _owned_milestone(state, body.milestone)
    node.due_on.write(event, body.due_on)
    _touch(node, event)


def _write_completed(
    state: ProjectionState, node: MilestoneNode, event: Event, value: str | None
) -> None:
    """Record a completion (``value``: its id) or a reopen (None) of an owned milestone.

    ``completed`` is the latest write that is not retracted: a write already
    retracted when it arrives is only remembered, and a retraction arriving
    later refolds the register from the remembered writes (``_refold_completed``),
    so the result does not depend on arrival order.
    """
    writes = node.completion_writes
    if writes is None:
        node.completion_writes = [event]
    else:
        writes.append(event)
    if not (event.id in state.retracted and state.is_retracted(event.id)):
        node.completed.write(event, value)


def _refold_completed(state: ProjectionState, target: Event) -> None:
    """After a retraction of a completion or reopen: the register falls back to the
    latest live write (the planning event's ``None`` at the bottom)."""
    node = state.milestones.get(getattr(target.body, "milestone", ""))
    if node is None or node.completion_writes is None or node.event is PLACEHOLDER:
        return
    register = Register()
    register.write(node.event, None)
    for write in node.completion_writes:
        if not (write.id in state.retracted and state.is_retracted(write.id)):
            register.write(write, completion_value(write))
    node.completed = register


def completion_value(write: Event) -> str | None:
    """What a completion or reopen writes to ``completed``: the completion's id, or None."""
    return write.id if type(write.body) is b.MilestoneCompleted else None


def _on_completed(state: ProjectionState, event: Event, body: b.MilestoneCompleted) -> None:
    node = _owned_milestone(state, body.milestone)
    _write_completed(state, node, event, event.id)
    _touch(node, event)
    add_sorted(state.person(event.actor).completions, event.id)


def _on_reopened(state: ProjectionState, event: Event, body: b.MilestoneReopened) -> None:
    node = _owned_milestone(state, body.milestone)
    _write_completed(state, node, event, None)
    _touch(node, event)


def _on_dropped(state: ProjectionState, event: Event, body: b.MilestoneDropped) -> None:
    node = _owned_milestone(state, body.milestone)
    node.dropped.write(event, True)
    _touch(node, event)


def _on_restored(state: ProjectionState, event: Event, body: b.MilestoneRestored) -> None:
    node = _owned_milestone(state, body.milestone)
    node.dropped.write(event, False)
    _touch(node, event)


def _on_relinked(state: ProjectionState, event: Event, body: b.MilestoneRelinked) -> None:
    node = _owned_milestone(state, body.milestone)
    link = (body.key_result, body.objective)
    _set_link(state, body.milestone, node, event, link)
    _touch(node, event)


def _on_task_added(state: ProjectionState, event: Event, body: b.TaskAdded) -> None:
    node = state.milestones[body.milestone]
    task = state.tasks[event.id] = TaskNode(event.id, event, event)
    # Views walk a milestone's task nodes directly (no lookup per task).
    tasks = node.tasks
    if not tasks or event.id > tasks[-1].id:
        tasks.append(task)
    else:
        tasks.insert(bisect.bisect_left(tasks, event.id, key=task_id), task)
    _touch(node, event)


def _on_task_done(state: ProjectionState, event: Event, body: Any) -> None:
    task = state.tasks[body.task]  # present and the writer's own (the ownership rule)
    writer = task.writer
    if isinstance(writer, int):
        writer = task.done_by  # a row of a compacted state, made again
    clock = event.clock
    # ``later``, inlined: a sixth of all events.
    if clock > writer.clock or (clock == writer.clock and event.id > writer.id):
        task.writer = event
        task.done = type(body) is _TASK_COMPLETED


def _on_checkin(state: ProjectionState, event: Event, body: b.CheckInRecorded) -> None:
    subject = body.subject
    checkins = state.checkins_by_subject.get(subject)
    if checkins is None:
        state.checkins_by_subject[subject] = [event]
    elif event.occurred_at > checkins[-1].occurred_at:
        checkins.append(event)  # add_in_order's common case, inlined: half of all events
    else:
        add_in_order(checkins, event, checkin_key)
    # A person's check-ins are the check-ins of their feed (``FEED_TYPES``): no index of
    # their own (half of all events are check-ins; each index costs the fold).
    event_id = event.id
    touch = state.checkin_touch.get(subject)
    if touch is None:
        state.checkin_touch[subject] = event
    elif type(touch) is not Event:
        touch_checkin(state, subject, event)  # a row: made again to compare
    else:
        # ``touch_key`` order, inlined (no tuples): half of all events.
        recorded_at = event.recorded_at
        other = touch.recorded_at
        if recorded_at > other or (recorded_at == other and event_id > touch.id):
            state.checkin_touch[subject] = event
    # Fixes fold after what they name, unless the server vouched for it (``vouch``).
    if event_id in state.corrections or event_id in state.retracted:
        for fix in (*state.corrections.get(event_id, ()), *state.retracted.get(event_id, ())):
            touch_checkin(state, subject, state.events[fix])


def touch_checkin(state: ProjectionState, subject: str, event: Event) -> None:
    """Keep ``event`` (a check-in of ``subject`` or a fix naming one) as the subject's
    ``checkin_touch`` if it was recorded later (ties: the greater id)."""
    touch = state.checkin_touched(subject)
    if touch is None or touch_key(event) > touch_key(touch):
        state.checkin_touch[subject] = event


def touch_fixed_checkin(state: ProjectionState, event: Event, target_id: str) -> None:
    """A correction or retraction of a check-in touches the check-in's subject."""
    target = state.events.get(target_id)
    if target is not None and type(target.body) is _CHECKIN:
        touch_checkin(state, target.body.subject, event)


def _on_indicator(state: ProjectionState, event: Event, body: b.IndicatorDefined) -> None:
    existing = state.indicators.get(event.id)
    _write_sharing(state, event.id, event)
    node = IndicatorNode(event)
    if existing is not None:
        node.observations = existing.observations
    state.indicators[event.id] = node
    add_sorted(state.person(event.actor).indicators, event.id)
    if body.objective is not None:
        add_sorted(_objective_slot(state, body.objective).indicators, event.id)


def _on_observation(state: ProjectionState, event: Event, body: b.ObservationRecorded) -> None:
    # A person's observations are those of their feed: no index of their own.
    if body.indicator is None:
        _write_sharing(state, event.id, event)
    else:
        node = state.indicators.get(body.indicator)
        if node is None:
            node = state.indicators[body.indicator] = IndicatorNode(PLACEHOLDER)
        add_in_order(node.observations, event, checkin_key)


def _on_sharing(state: ProjectionState, event: Event, body: b.SharingChanged) -> None:
    # The subject may not have arrived yet: the register waits for it. Whether the
    # author owns the subject is checked at read time (``sharing_of``).
    _write_sharing(state, body.subject, event)


def _on_correction(state: ProjectionState, event: Event, body: b.Corrected) -> None:
    add_sorted(state.corrections.setdefault(body.target, []), event.id)
    touch_fixed_checkin(state, event, body.target)


def _on_retraction(state: ProjectionState, event: Event, body: b.Retracted) -> None:
    add_sorted(state.retracted.setdefault(body.target, []), event.id)
    touch_fixed_checkin(state, event, body.target)
    target = state.events.get(body.target)
    if target is not None and type(target.body) in _COMPLETION_WRITES:
        _refold_completed(state, target)


def _on_pause(state: ProjectionState, event: Event, body: b.PauseDeclared) -> None:
    add_sorted(state.person(event.actor).pauses, event.id)


def _on_kudos(state: ProjectionState, event: Event, body: b.KudosGiven) -> None:
    add_sorted(state.kudos.setdefault(body.completion, []), event.id)


def _on_membership(state: ProjectionState, event: Event, body: Any) -> None:
    key = (body.team, body.person)
    register = state.memberships.get(key)
    if register is None:
        register = state.memberships[key] = Register()
    if register.write(event, isinstance(body, b.TeamMemberJoined)):
        state.team_changes += 1
        person = body.person
        state.teams_by_person[person] = frozenset(
            team
            for (team, member), membership in state.memberships.items()
            if member == person and membership.value
        )


_NO_TEAMS: frozenset[str] = frozenset()
_COMPLETION_WRITES = (b.MilestoneCompleted, b.MilestoneReopened)
_TASK_COMPLETED = b.TaskCompleted
_CHECKIN = b.CheckInRecorded

PLACEHOLDER = Event(
    id="00000000-0000-0000-0000-000000000000",
    actor="nobody",
    device="none",
    clock=0,
    recorded_at=datetime(1970, 1, 1).astimezone(),
    occurred_at=datetime(1970, 1, 1).astimezone(),
    body=b.PauseDeclared(starts_on=date(1970, 1, 1), ends_on=date(1970, 1, 1)),
)
"""Stands in for an item referenced before its creating event arrived."""


HANDLERS: dict[type, Handler] = {
    b.ObjectiveCreated: _on_objective,
    b.KeyResultAdded: _on_key_result,
    b.MilestonePlanned: _on_milestone_planned,
    b.MilestoneRescheduled: _on_rescheduled,
    b.MilestoneCompleted: _on_completed,
    b.MilestoneReopened: _on_reopened,
    b.MilestoneDropped: _on_dropped,
    b.MilestoneRestored: _on_restored,
    b.MilestoneRelinked: _on_relinked,
    b.TaskAdded: _on_task_added,
    b.TaskCompleted: _on_task_done,
    b.TaskReopened: _on_task_done,
    b.CheckInRecorded: _on_checkin,
    b.IndicatorDefined: _on_indicator,
    b.ObservationRecorded: _on_observation,
    b.SharingChanged: _on_sharing,
    b.Corrected: _on_correction,
    b.Retracted: _on_retraction,
    b.PauseDeclared: _on_pause,
    b.TeamMemberJoined: _on_membership,
    b.TeamMemberLeft: _on_membership,
    b.KudosGiven: _on_kudos,
}


_FEED_BODIES = frozenset(b.BODY_TYPES[tag] for tag in FEED_TYPES)


def apply(state: ProjectionState, event: AnyEvent) -> bool:
    """Judge one event and fold it in if the ownership rule accepts it (see the module
    docstring); a duplicate (same id) changes nothing. Returns whether it was new."""
    event_id = event.id
    if type(event) is not Event and isinstance(event, OpaqueEvent):
        if event_id in state.opaque:
            return False
        state.opaque[event_id] = event
        if event_id in state.waiting_on:
            _release(state, event_id)
        return True
    if event_id in state.events or event_id in state.pending or event_id in state.refused:
        return False
    body = event.body
    body_type = type(body)
    if body_type in _JUDGED:
        # The fast path of ``judge`` (most events name a folded event of their own): only
        # when it cannot accept at once is the event judged in full.
        events = state.events
        actor = event.actor
        verdict = None
        for field, allowed in ALLOWED_BODIES[body_type]:
            ref = getattr(body, field)
            if ref is None:
                continue
            target = events.get(ref)
            if (
                target is None
                or target.actor != actor
                or (allowed and type(target.body) not in allowed)
            ):
                verdict = judge(event, state.referent)
                break
            if ref is not target.id:
                # The body then holds the named event's own id string, not an equal copy:
                # a string less per reference, and later lookups by it match by identity.
                force_setattr(body, field, target.id)
        else:
            if body_type in JUDGED_IN_FULL:
                verdict = judge(event, state.referent)
        if verdict is not None:
            if isinstance(verdict, Refused):
                state.refused[event_id] = (event, verdict.reason)
            else:
                state.pending[event_id] = event
                state.waiting_on.setdefault(verdict.missing, []).append(event_id)
            return True
    _fold(state, event, body, body_type)
    if event_id in state.waiting_on:
        _release(state, event_id)
    return True


def _fold(state: ProjectionState, event: Event, body: Any, body_type: type) -> None:
    """Fold an accepted event into the state."""
    event_id = event.id
    state.events[event_id] = event
    versions = state.versions
    actor = event.actor
    versions[actor] = versions.get(actor, 0) + 1
    HANDLERS[body_type](state, event, body)
    if body_type in _FEED_BODIES:
        feed = state.feeds.get(event.actor)
        if feed is None:
            state.feeds[event.actor] = Feed([event])
        else:
            feed_events = feed.events
            if event.occurred_at > feed_events[-1].occurred_at:
                feed_events.append(event)  # add_in_order's common case, inlined: the hot path
            else:
                add_in_order(feed_events, event, feed_key)


def _release(state: ProjectionState, arrived: str) -> None:
    """Judge again the events that waited for ``arrived`` (and, in turn, for them)."""
    todo = [arrived]
    while todo:
        for waiting_id in state.waiting_on.pop(todo.pop(), ()):
            event = state.pending.pop(waiting_id)
            verdict = judge(event, state.referent)
            if verdict is None:
                _fold(state, event, event.body, type(event.body))
                if waiting_id in state.waiting_on:
                    todo.append(waiting_id)
            elif isinstance(verdict, Refused):
                state.refused[waiting_id] = (event, verdict.reason)
            else:
                state.pending[waiting_id] = event
                state.waiting_on.setdefault(verdict.missing, []).append(waiting_id)


_JUDGED = frozenset(
    body_type
    for body_type, refs in REFERENCES.items()
    if refs or body_type in ADMIN_ONLY or body_type in REACTIONS
)
"""Body types the ownership rule has something to check on."""


def vouch(state: ProjectionState, referents: Mapping[str, Referent]) -> None:
    """Take what the server vouched for (``ProjectionState.vouched``); events waiting for one
    of them are judged again. Folding the same events with the same referents in any order,
    all at once or piecemeal, gives the same state."""
    fresh = [ref for ref in referents if ref not in state.vouched]
    if not fresh:
        return
    for ref in fresh:
        state.vouched[ref] = referents[ref]
    for ref in fresh:
        if ref in state.waiting_on:
            _release(state, ref)


def rebuild(
    events: Iterable[AnyEvent], referents: Mapping[str, Referent] | None = None
) -> ProjectionState:
    """A fresh state with every event folded in, judged with ``referents`` (what the
    server vouched for of events not among them; see ``vouch``)."""
    state = ProjectionState(referents)
    for event in events:
        apply(state, event)
    return state


def as_of(state: ProjectionState, moment: datetime) -> ProjectionState:
    """The state as it was known at ``moment``: only events recorded by then (with the same
    referents: what an event was, once vouched for, never changes)."""
    return rebuild((e for e in state.all_events() if e.recorded_at <= moment), state.vouched)
