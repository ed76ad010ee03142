"""A ``ProjectionState`` as bytes and back: snapshots a restart loads instead of folding.

What a rebuild costs is the fold (the ownership rule, the handlers, the indexes), not
reading the events: a snapshot keeps every event (decoded again by msgspec's typed JSON
decoder, the rebuild's fast path) and every index the fold built, with each reference
to an event written as its id and resolved to the one decoded object on load. The
indexes that list events in an order (each owner's feed, each subject's check-ins, each
indicator's observations) are not stored: one pass over the events rebuilds them.

A compacted state (``projections.compact``: its bulk events held as rows of columns)
is kept as it is held, and loads as it was: the events held as objects as above, the
rows as their columns' bytes (``_Rows``), the ordered indexes as arrays of row numbers
(``_Lists``), and a reference to an event held as a row as its row's number. Loading it
makes no object per row: a partition of 100,000 events loads in a third of the time.

JSON rather than msgpack: msgpack's timestamps are UTC, and an event's instants keep
the offset they were written with. The document is built in pieces (``encode_pieces``),
each a short call into msgspec, so a caller on an event loop can yield between them.

``FOLD_VERSION`` names the fold: a digest of the source of every module that decides
what the state holds, with ``FORMAT`` (this layout). A snapshot of another version is
never loaded. ``decode`` checks the digest of the blob and its structure; any doubt
raises ``SnapshotInvalid`` and the caller folds from the start instead.

Pure: no I/O besides reading this package's own source at import.
"""

from __future__ import annotations

import hashlib
import importlib
import operator
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, MutableSequence
from datetime import date
from pathlib import Path
from typing import Any, TypeVar, cast

import msgspec
from msgspec.structs import force_setattr

from events import Event, OpaqueEvent
from events.bodies import (
    BODY_TYPES,
    CheckInRecorded,
    Corrected,
    KnownBody,
    KudosGiven,
    MilestoneCompleted,
    MilestoneReopened,
    ObservationRecorded,
    Retracted,
    TaskAdded,
)
from projections.compact import HeldEvents, RowList, RowTable
from projections.feed_log import FeedLog
from projections.ownership import ALLOWED_BODIES, Referent
from projections.state import (
    FEED_TYPES,
    PLACEHOLDER,
    Feed,
    IndicatorNode,
    KeyResultNode,
    MilestoneNode,
    ObjectiveNode,
    PersonIndex,
    ProjectionState,
    Register,
    Stamp,
    TaskNode,
    checkin_key,
    feed_key,
    touch_fixed_checkin,
    touch_key,
)

FORMAT = 5
"""The layout below; bump it when the snapshot's structure changes."""

FOLD_MODULES = (
    "events.bodies",
    "events.clock",
    "events.codec",
    "events.cycles",
    "events.envelope",
    "events.ids",
    "events.upcast",
    "projections.ownership",
    "projections.state",
    "projections.compact",
    "projections.feed_log",
    "projections.persist",
)
"""Every module whose code decides what the state holds after a fold (the decoder, the
ownership rule, the fold) and this layout; views only read it, so they are not here."""


def _fold_version() -> str:
    digest = hashlib.blake2b(f"format {FORMAT}".encode(), digest_size=12)
    for name in FOLD_MODULES:
        module = importlib.import_module(name)
        digest.update(name.encode())
        digest.update(Path(str(module.__file__)).read_bytes())
    return f"{FORMAT}-{digest.hexdigest()}"


class SnapshotInvalid(ValueError):
    """A snapshot that must not be loaded: corrupt, of another fold, or inconsistent."""


# --- the layout (positional JSON arrays: compact and fast to decode) ------------------------


class _Due(msgspec.Struct, array_like=True):
    stamp: Stamp
    value: date | None
    source: str


class _Link(msgspec.Struct, array_like=True):
    stamp: Stamp
    value: tuple[str | None, str | None] | None
    source: str


class _Text(msgspec.Struct, array_like=True):
    stamp: Stamp
    value: str | None
    source: str


class _Flag(msgspec.Struct, array_like=True):
    stamp: Stamp
    value: bool | None
    source: str


class _Objective(msgspec.Struct, array_like=True):
    id: str
    event: str | None  # None: a placeholder (children came first)
    key_results: list[str]
    milestones: list[str]
    indicators: list[str]


class _KeyResult(msgspec.Struct, array_like=True):
    id: str
    event: str | None
    milestones: list[str]


# A reference to an event is its id, or in a compacted state (``projections.compact``)
# the number of the row that holds it: made again on load without looking for its id.
_Ref = str | int


class _Milestone(msgspec.Struct, array_like=True):
    id: str
    event: str | None
    due_on: _Due
    link: _Link
    completed: _Text
    dropped: _Flag
    tasks: list[str]
    touched: _Ref | None  # the latest event naming it


class _Task(msgspec.Struct, array_like=True):
    id: str
    added: _Ref  # its adding event
    done: bool
    done_by: _Ref  # the event that wrote ``done``


class _Indicator(msgspec.Struct, array_like=True):
    id: str
    event: str | None


class _Rows(msgspec.Struct, array_like=True):
    """A compacted state's ``RowTable``: its array columns as bytes."""

    byteorder: str
    columns: list[bytes]
    texts: bytes
    bodies: dict[int, KnownBody]  # by row: the rows held whole
    handles: list[str]
    words: list[str]
    confidences: list[str]
    zone_offsets: list[int]


class _RefList(msgspec.Struct, array_like=True):
    """A ``RowList``: its refs (rows, or ``-1 - i`` for ``objects[i]``) and the ids of
    the events held as objects it lists."""

    refs: bytes
    objects: list[str]


class _Lists(msgspec.Struct, array_like=True):
    """A compacted state's ordered indexes, kept rather than rebuilt: rebuilding them
    would make every row's event again."""

    feeds: dict[str, _RefList]
    checkins: dict[str, _RefList]
    observations: dict[str, _RefList]
    touches: dict[str, _Ref]


class Document(msgspec.Struct, array_like=True):
    """A whole snapshot; the follower's own fields ride along."""

    fold_version: str
    position: int
    undecodable: int
    feed: tuple[str, bytes, bytes]  # FeedLog.to_bytes
    events: list[Event]
    pending: list[Event]
    waiting_on: dict[str, list[str]]
    refused: list[tuple[Event, str]]
    opaque: list[OpaqueEvent]
    objectives: list[_Objective]
    key_results: list[_KeyResult]
    milestones: list[_Milestone]
    tasks: list[_Task]
    indicators: list[_Indicator]
    corrections: dict[str, list[str]]
    retracted: dict[str, list[str]]
    people: dict[str, PersonIndex]
    memberships: list[tuple[str, str, _Flag]]
    teams_by_person: dict[str, list[str]]
    sharing: dict[str, list[str]]  # ids of the writing events
    partnered_by: dict[str, list[str]]
    vouched: dict[str, tuple[str, str]]
    partition_people: list[str]
    partition_roots: list[str]
    rows: _Rows | None = None  # a compacted state's (the events above are its objects)
    lists: _Lists | None = None


class Follower(msgspec.Struct, frozen=True):
    """What the server's follower keeps beside the state (``server.projection``)."""

    position: int
    undecodable: int = 0
    feed: FeedLog = msgspec.field(default_factory=FeedLog)
    partition_people: list[str] = msgspec.field(default_factory=list)
    """A working-set partition's people (``server.working_set``); empty for all history."""
    partition_roots: list[str] = msgspec.field(default_factory=list)
    """A partition's adopted foreign roots."""


_T = TypeVar("_T")
_K = TypeVar("_K", str, int)
_FEED_BODIES = frozenset(BODY_TYPES[tag] for tag in FEED_TYPES)
_CHECKIN = CheckInRecorded
_COMPLETION_WRITES = frozenset({MilestoneCompleted, MilestoneReopened})
_KUDOS = KudosGiven
_OBSERVATION = ObservationRecorded
_FIXES = frozenset({Corrected, Retracted})
_ID = operator.attrgetter("id")
_REF_FIELDS = {kind: tuple(field for field, _ in fields) for kind, fields in ALLOWED_BODIES.items()}
"""Per body type, the fields naming another event (``ALLOWED_BODIES``)."""
_encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder(Document)
CHUNK = 5_000
"""Items per msgspec call while encoding (a few ms each)."""


def _event_id(event: Event) -> str | None:
    return None if event is PLACEHOLDER else event.id


def _list(items: Iterable[_T], convert: Callable[[_T], Any] | None = None) -> Iterator[bytes]:
    """A JSON array encoded ``CHUNK`` items at a time."""
    yield b"["
    first = True
    chunk: list[Any] = []

    def flush() -> bytes:
        body = _encode(chunk)[1:-1]
        chunk.clear()
        return body

    for item in items:
        chunk.append(convert(item) if convert is not None else item)
        if len(chunk) >= CHUNK:
            yield flush() if first else b"," + flush()
            first = False
    if chunk:
        yield flush() if first else b"," + flush()
    yield b"]"


def _dict(items: dict[_K, _T], convert: Callable[[_T], Any] | None = None) -> Iterator[bytes]:
    """A JSON object encoded ``CHUNK`` entries at a time (int keys as strings)."""
    yield b"{"
    first = True
    chunk: dict[_K, Any] = {}
    for key, value in items.items():
        chunk[key] = convert(value) if convert is not None else value
        if len(chunk) >= CHUNK:
            body = _encode(chunk)[1:-1]
            chunk = {}
            yield body if first else b"," + body
            first = False
    if chunk:
        body = _encode(chunk)[1:-1]
        yield body if first else b"," + body
    yield b"}"


def _due(r: Register) -> _Due:
    return _Due(r.stamp, r.value, r.source)


def _link(r: Register) -> _Link:
    return _Link(r.stamp, r.value, r.source)


def _text(r: Register) -> _Text:
    return _Text(r.stamp, r.value, r.source)


def _flag(r: Register) -> _Flag:
    return _Flag(r.stamp, r.value, r.source)


_NOBODY = PersonIndex()


def _people(state: ProjectionState) -> dict[str, PersonIndex]:
    """The people with items: a view asking for someone unknown adds an empty index
    (``ProjectionState.person``), which a fold never leaves and a snapshot does not keep.
    Copied first: a view in a worker thread may add one meanwhile."""
    return {person: index for person, index in list(state.people.items()) if index != _NOBODY}


def _row_ref(held: HeldEvents | None, event: Event) -> _Ref:
    """A reference to ``event``: its row if a compacted state holds it as one, else its id."""
    if held is not None and not dict.__contains__(held, event.id):
        row = held.rows.find(event.id)
        if row >= 0:
            return row
    return event.id


def _touch_ref(held: HeldEvents | None, touch: Event | int | None) -> _Ref | None:
    """A touch (``checkin_touch``, a milestone's): a row it is one already, else as
    ``_row_ref``."""
    if touch is None or isinstance(touch, int):
        return touch
    return _row_ref(held, touch)


def _ref_list(held: HeldEvents, events: Iterable[Event]) -> _RefList:
    """An ordered index of a compacted state as its refs and its objects' ids."""
    ids: list[str] = []
    if isinstance(events, RowList) and events.table is held.rows:
        refs = array("i", events.refs)
        if events.objects:
            objects = events.objects
            for index, ref in enumerate(refs):
                if ref < 0:
                    ids.append(objects[-1 - ref].id)
                    refs[index] = -len(ids)
    else:
        refs = array("i")
        for event in events:
            found = _row_ref(held, event)
            if isinstance(found, str):
                ids.append(found)
                found = -len(ids)
            refs.append(found)
    return _RefList(refs.tobytes(), ids)


def _rows_pieces(table: RowTable) -> Iterator[bytes]:
    """``_Rows`` of ``table``, its bodies ``CHUNK`` at a time."""
    yield b"[" + _encode(sys.byteorder) + b"," + _encode(table.columns()) + b","
    yield _encode(bytes(table.texts)) + b","
    yield from _dict(table.bodies)
    tables = (table.handles, table.words, table.confidences, table.zone_offsets())
    yield b"," + _encode(tables)[1:-1] + b"]"


def _lists_pieces(state: ProjectionState, held: HeldEvents) -> Iterator[bytes]:
    """``_Lists`` of a compacted state."""

    def ref_list(events: Iterable[Event]) -> _RefList:
        return _ref_list(held, events)

    yield b"["
    yield from _dict({owner: feed.events for owner, feed in state.feeds.items()}, ref_list)
    yield b","
    yield from _dict(state.checkins_by_subject, ref_list)
    yield b","
    observed = {key: node.observations for key, node in state.indicators.items()}
    yield from _dict({key: listed for key, listed in observed.items() if listed}, ref_list)
    yield b","
    yield from _dict(state.checkin_touch, lambda touch: _touch_ref(held, touch))
    yield b"]"


def encode_pieces(state: ProjectionState, follower: Follower) -> Iterator[bytes]:
    """The snapshot of ``state`` (with the follower's fields) as pieces to concatenate.

    A compacted state's rows are kept as their columns (``_Rows``), its ordered indexes
    as refs (``_Lists``). The state must not change until the last piece is taken.
    """
    s = state
    held = s.events if isinstance(s.events, HeldEvents) else None

    def row_ref(event: Event) -> _Ref:
        return _row_ref(held, event)

    def task(kv: tuple[str, TaskNode]) -> _Task:
        node = kv[1]
        added, writer = node.added, node.writer
        return _Task(
            kv[0],
            added if isinstance(added, int) else added.id,
            node.done,
            writer if isinstance(writer, int) else writer.id,
        )

    sections: list[Callable[[], Iterator[bytes]]] = [
        lambda: iter([_encode(FOLD_VERSION)]),
        lambda: iter([_encode(follower.position)]),
        lambda: iter([_encode(follower.undecodable)]),
        lambda: iter([_encode(follower.feed.to_bytes())]),
        lambda: _list(s.events.values() if held is None else dict.values(held)),
        lambda: _list(s.pending.values()),
        lambda: _dict(s.waiting_on),
        lambda: _list(s.refused.values()),
        lambda: _list(s.opaque.values()),
        lambda: _list(
            s.objectives.items(),
            lambda kv: _Objective(
                kv[0],
                _event_id(kv[1].event),
                kv[1].key_results,
                sorted(kv[1].milestones),
                kv[1].indicators,
            ),
        ),
        lambda: _list(
            s.key_results.items(),
            lambda kv: _KeyResult(kv[0], _event_id(kv[1].event), sorted(kv[1].milestones)),
        ),
        lambda: _list(
            s.milestones.items(),
            lambda kv: _Milestone(
                kv[0],
                _event_id(kv[1].event),
                _due(kv[1].due_on),
                _link(kv[1].link),
                _text(kv[1].completed),
                _flag(kv[1].dropped),
                [task.id for task in kv[1].tasks],
                _touch_ref(held, kv[1].touch),
            ),
        ),
        lambda: _list(s.tasks.items(), task),
        lambda: _list(
            s.indicators.items(),
            lambda kv: _Indicator(kv[0], _event_id(kv[1].event)),
        ),
        lambda: _dict(s.corrections),
        lambda: _dict(s.retracted),
        lambda: _dict(_people(s)),
        lambda: _list(s.memberships.items(), lambda kv: (kv[0][0], kv[0][1], _flag(kv[1]))),
        lambda: _dict(s.teams_by_person, sorted),
        lambda: _dict(s.sharing, lambda writes: [e.id for e in writes]),
        lambda: _dict(s.partnered_by, sorted),
        lambda: _dict(s.vouched, tuple),
        lambda: _list(sorted(follower.partition_people)),
        lambda: _list(sorted(follower.partition_roots)),
        lambda: iter([b"null"]) if held is None else _rows_pieces(held.rows),
        lambda: iter([b"null"]) if held is None else _lists_pieces(s, held),
    ]
    yield b"["
    for index, section in enumerate(sections):
        if index:
            yield b","
        yield from section()
    yield b"]"


def encode(state: ProjectionState, follower: Follower) -> bytes:
    """The whole snapshot at once (``encode_pieces`` joined)."""
    return b"".join(encode_pieces(state, follower))


def checksum(blob: bytes | bytearray) -> str:
    """The digest stored beside a blob; a blob that does not match it is corrupt."""
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def checksum_parts(parts: Iterable[bytes]) -> str:
    """``checksum`` of the parts' concatenation."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def _register(events: dict[str, Event], r: _Due | _Link | _Text | _Flag) -> Register:
    """The register, holding its writing event (the stamp is the event's)."""
    if not r.source:
        return Register()
    writer = events[r.source]
    if (writer.clock, writer.id) != tuple(r.stamp):
        raise ValueError(f"a register's stamp is not its writer's: {r.source}")
    return Register(writer, r.value)


CORRUPT = "the snapshot's checksum does not match its bytes"
"""Why a snapshot whose bytes changed since it was written cannot be loaded, ever."""


def decode(blob: bytes | bytearray, digest: str | None = None) -> tuple[ProjectionState, Follower]:
    """The state and follower fields of a snapshot; ``SnapshotInvalid`` if ``digest`` is
    given and does not match, if it is another fold's, or if it does not hold together."""
    if digest is not None and checksum(blob) != digest:
        raise SnapshotInvalid(CORRUPT)
    try:
        doc = _decoder.decode(blob)
    except (msgspec.MsgspecError, UnicodeDecodeError, ValueError) as exc:
        raise SnapshotInvalid(f"the snapshot does not decode: {exc}") from None
    if doc.fold_version != FOLD_VERSION:
        raise SnapshotInvalid(
            f"the snapshot is of fold {doc.fold_version}, this server folds {FOLD_VERSION}"
        )
    try:
        return _restore(doc)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise SnapshotInvalid(f"the snapshot is inconsistent: {exc!r}") from None


def _restore(doc: Document) -> tuple[ProjectionState, Follower]:
    state = ProjectionState()
    objects = dict(zip(map(_ID, doc.events), doc.events, strict=True))
    rows = doc.rows
    if (rows is None) != (doc.lists is None):
        raise ValueError("a compacted state's rows and lists come together")
    table = None if rows is None else _table(rows)
    events: dict[str, Event] = objects if table is None else HeldEvents(objects, table)
    state.events = events
    state.pending = {event.id: event for event in doc.pending}
    state.waiting_on = doc.waiting_on
    state.refused = {event.id: (event, reason) for event, reason in doc.refused}
    state.opaque = {event.id: event for event in doc.opaque}

    def event(event_id: str | None) -> Event:
        return PLACEHOLDER if event_id is None else events[event_id]

    row_count = 0 if table is None else len(table)

    def row_or_event(ref: _Ref) -> Event | int:
        """The event ``ref`` names, or its row: a task's or a touch's, made again when read."""
        if isinstance(ref, str):
            return events[ref]
        if not 0 <= ref < row_count:
            raise ValueError(f"a reference to row {ref}, which is not held")
        return ref

    def tasks_of(listed: list[_Task]) -> dict[str, TaskNode]:
        found: dict[str, TaskNode] = {}
        for t in listed:  # one of the most numerous items: a loop of its own
            added = row_or_event(t.added)
            if isinstance(added, int):
                task_id = t.id
                if table is None or not table.adds_a_task(added):
                    raise ValueError(f"row {added} is not a task's adding")
            else:
                task_id = added.id  # the event's own id string
                if type(added.body) is not TaskAdded or task_id != t.id:
                    raise ValueError(f"{t.id} is not a task's adding")
            writer = row_or_event(t.done_by)
            found[task_id] = TaskNode(task_id, added, writer, t.done, table)
        return found

    tasks = state.tasks = tasks_of(doc.tasks)
    # A compacted state's names as the events' own id strings, as a fold holds them (the
    # document decodes each as a copy of its own; a partition names ~100,000 things).
    same: Callable[[str], str] = _same_strings(objects, tasks) if table is not None else str
    state.objectives = {
        same(o.id): ObjectiveNode(
            event(o.event),
            [same(k) for k in o.key_results],
            {same(m) for m in o.milestones},
            [same(i) for i in o.indicators],
        )
        for o in doc.objectives
    }
    state.key_results = {
        same(k.id): KeyResultNode(event(k.event), {same(m) for m in k.milestones})
        for k in doc.key_results
    }
    state.milestones = {
        same(m.id): MilestoneNode(
            event(m.event),
            _register(events, m.due_on),
            _register(events, m.link),
            _register(events, m.completed),
            _register(events, m.dropped),
            [tasks[task] for task in m.tasks],
            None if m.touched is None else row_or_event(m.touched),
            rows=table,
        )
        for m in doc.milestones
    }
    state.indicators = {same(i.id): IndicatorNode(event(i.event)) for i in doc.indicators}
    _derive(state, doc.events, objects.get, index=doc.lists is None)
    if doc.lists is not None:
        assert rows is not None and table is not None
        table.words = [same(word) for word in table.words]
        _relist(state, doc.lists, table, rows.byteorder, row_or_event, same)
    state.corrections = doc.corrections
    state.retracted = doc.retracted
    state.people = doc.people
    if table is not None:
        for index in doc.people.values():
            for field in _PERSON_LISTS:
                setattr(index, field, [same(item) for item in getattr(index, field)])
    state.memberships = {
        (team, person): _register(events, r) for team, person, r in doc.memberships
    }
    state.teams_by_person = {p: frozenset(teams) for p, teams in doc.teams_by_person.items()}
    state.sharing = {
        same(item): [events[w] for w in writes] for item, writes in doc.sharing.items()
    }
    state.partnered_by = {p: set(owners) for p, owners in doc.partnered_by.items()}
    state.vouched = {ref: Referent(*referent) for ref, referent in doc.vouched.items()}
    follower = Follower(
        doc.position,
        doc.undecodable,
        FeedLog.from_bytes(*doc.feed),
        doc.partition_people,
        doc.partition_roots,
    )
    return state, follower


_PERSON_LISTS = tuple(PersonIndex.__struct_fields__)


def _same_strings(objects: dict[str, Event], tasks: dict[str, TaskNode]) -> Callable[[str], str]:
    """Each id as the one string the events held as objects and the tasks hold."""
    canonical = {event_id: event_id for event_id in objects}
    canonical.update((task_id, task_id) for task_id in tasks)
    get = canonical.get
    return lambda name: get(name, name)


def _table(rows: _Rows) -> RowTable:
    tables = (rows.handles, rows.words, rows.confidences, rows.zone_offsets)
    return RowTable.from_columns(rows.columns, rows.byteorder, rows.texts, rows.bodies, tables)


def _relist(
    state: ProjectionState,
    lists: _Lists,
    table: RowTable,
    byteorder: str,
    touch: Callable[[_Ref], Event | int],
    same: Callable[[str], str],
) -> None:
    """A compacted state's ordered indexes and touches, as kept."""
    events = state.events
    count = len(table)
    held = dict.__getitem__.__get__(events)  # every id a list names is of an object

    def relisted(stored: _RefList) -> RowList:
        refs: array[int] = array("i")
        refs.frombytes(stored.refs)
        if byteorder != sys.byteorder:
            refs.byteswap()
        objects = [held(event_id) for event_id in stored.objects]
        if refs and (max(refs) >= count or min(refs) < -len(objects)):
            raise ValueError("a list refers to an event it does not hold")
        return RowList(table, refs, objects)

    state.feeds = {owner: Feed(relisted(stored)) for owner, stored in lists.feeds.items()}
    state.checkins_by_subject = {
        same(subject): relisted(stored) for subject, stored in lists.checkins.items()
    }
    indicators = state.indicators
    for indicator, stored in lists.observations.items():
        indicators[indicator].observations = relisted(stored)
    # Touches are kept as rows: read rarely (a drift signal), made again when read.
    state.checkin_touch = {same(subject): touch(ref) for subject, ref in lists.touches.items()}
    # An observation's indicator as the indicator's own id string.
    for body in table.bodies.values():
        node = indicators.get(body.indicator or "") if type(body) is _OBSERVATION else None
        if node is not None and node.event is not PLACEHOLDER and node.event.id == body.indicator:
            force_setattr(body, "indicator", node.event.id)


def _derive(
    state: ProjectionState,
    accepted: list[Event],
    get: Callable[[str], Event | None],
    *,
    index: bool = True,
) -> None:
    """The indexes of events, from the accepted events in fold order, as the fold builds
    them: each owner's feed, each subject's check-ins and its latest touch, each
    indicator's observations (``index``: a compacted state's are kept, ``_relist``), each
    milestone's completions and reopens, each completion's kudos (all sorted). Rebuilt
    rather than stored: they hold the events themselves. And, as the fold does, each
    reference in a body becomes the named event's own id string (``get``: the events
    held as objects). Half of all events are check-ins: they are handled first and alone."""
    feeds: dict[str, Feed] = {}
    checkins: dict[str, list[Event]] = {}
    observed: dict[str, list[Event]] = {}
    kudos: dict[str, list[str]] = {}
    fixes: list[tuple[Event, str]] = []  # a correction or retraction, and what it names
    ref_fields = _REF_FIELDS
    for e in accepted:
        body: Any = e.body
        kind = type(body)
        for field in ref_fields[kind]:
            ref = getattr(body, field)
            if ref is not None and (target := get(ref)) is not None and ref is not target.id:
                force_setattr(body, field, target.id)
        if kind is _CHECKIN:
            if index:
                _append_feed(feeds, e)
                _append(checkins, body.subject, e)
            continue
        if kind in _COMPLETION_WRITES:  # every completion and reopen, as _write_completed
            milestone = state.milestones[body.milestone]
            if milestone.completion_writes is None:
                milestone.completion_writes = [e]
            else:
                milestone.completion_writes.append(e)
        elif kind is _KUDOS:
            kudos.setdefault(body.completion, []).append(e.id)
        elif kind in _FIXES:
            fixes.append((e, body.target))
        if index and kind in _FEED_BODIES:
            _append_feed(feeds, e)
            if kind is _OBSERVATION and body.indicator is not None:
                _append(observed, body.indicator, e)
    for given in kudos.values():
        given.sort()
    state.kudos = kudos
    if not index:
        return
    for feed in feeds.values():
        cast(list[Event], feed.events).sort(key=feed_key)  # built as a list just above
    touches = state.checkin_touch
    for subject, subject_checkins in checkins.items():
        subject_checkins.sort(key=checkin_key)
        touches[subject] = max(subject_checkins, key=touch_key)
    for fix, named in fixes:  # the latest touch is a maximum: in any order
        touch_fixed_checkin(state, fix, named)
    indicators = state.indicators
    for indicator, observations in observed.items():
        observations.sort(key=checkin_key)
        indicators[indicator].observations = observations
    state.feeds = feeds
    state.checkins_by_subject = cast(dict[str, MutableSequence[Event]], checkins)


def _append_feed(feeds: dict[str, Feed], event: Event) -> None:
    feed = feeds.get(event.actor)
    if feed is None:
        feeds[event.actor] = Feed([event])
    else:
        feed.events.append(event)


def _append(index: dict[str, list[Event]], key: str, event: Event) -> None:
    found = index.get(key)
    if found is None:
        index[key] = [event]
    else:
        found.append(event)


FOLD_VERSION = _fold_version()
"""This code's fold: snapshots of any other are ignored."""
