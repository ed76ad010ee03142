"""Compaction: a state's bulk events held as rows of columns instead of one object each.

Half of all events are check-ins, a third a task's adding, completion or reopening, a
tenth observations of an indicator. Folded, each is an ``Event`` (80 B), its id string
(85 B), an instant (48 B), a body, an entry in ``ProjectionState.events`` and a slot in
each list that orders it. ``compact`` moves the folded ones into a ``RowTable``: the id
as two integers, the handles, offsets and names as indexes into small tables, the
instants and the clock as integers, and the body as columns too (a note, a title, an
observation's text as UTF-8 in one column of texts; a body the columns cannot give back
exactly is kept whole). The lists that order them (``checkins_by_subject``, the feeds,
the indicators' observations) become ``RowList``s of row numbers, and a task's node names
the rows of its adding and its latest completion or reopening. An ``Event`` is made
again from its row when a view reads it (a board reads a few hundred); it equals the one
folded, field for field.

Every milestone's view reads each of its tasks: a task's node holds its id and reads its
title from the row, so views never make a task's adding event again.

What is held elsewhere as an object stays one: a journal entry (``sharing`` keeps it),
a subject's ``checkin_touch``, a milestone's ``touch`` (rows when a compacted snapshot
loaded them), and everything pending or
refused. Events folded after a compaction are held as objects until the next one, which
merges them into a new table.

Compaction never changes a view (``tests/unit/test_compact.py`` compares every view of
compacted states with a rebuild's). It is two steps: ``prepare`` builds the new table and
lists beside the old ones, reading the state only (views may go on reading it, in
another thread), and ``Compaction.swap`` puts them in (quick: a reader must not run
meanwhile). Nothing may fold into the state between the two: ``folded`` tells (a
compaction prepared while the state grew is built again).

Pure: no I/O. The server compacts the partitions it holds (``server.working_set``).
"""

from __future__ import annotations

import bisect
import itertools
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableSequence, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, overload

import msgspec
from msgspec.structs import force_setattr

from events import Event
from events import bodies as b
from events.ids import id_text
from projections.state import Feed, IndicatorNode, MilestoneNode, ProjectionState, TaskNode

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MAX_SMALL_TABLE = 255
_MAX_HANDLES = 65_535  # actors and devices are named by two bytes a row

# A row's body: kept as it is (``OBJECT``), or as columns, by kind (the low bits of a
# row's ``flags``); a check-in's number (its value or its percent: never both) in
# ``numbers``, with the flags above the kind saying which and whether an int.
_OBJECT = 0
_CHECKIN_KIND = 1
_TASK_COMPLETED_KIND = 2
_TASK_REOPENED_KIND = 3
_TASK_ADDED_KIND = 4
_OBSERVATION_KIND = 5
_KIND = 7
_NUMBER = 8
_PERCENT = 16
_INT = 32
_TEXT = 64  # the row has a text (a check-in's note, a task's title) in ``texts``
_PAIR = 128  # an observation's text is its text and impact, as a JSON array
_encode_pair = msgspec.json.Encoder().encode
_decode_pair = msgspec.json.Decoder(tuple[str, str]).decode

_CHECKIN = b.CheckInRecorded
_OBSERVATION = b.ObservationRecorded
_TASK_COMPLETED = b.TaskCompleted
_TASK_REOPENED = b.TaskReopened
_TASK_ADDED = b.TaskAdded
_ROW_BODIES = frozenset({_CHECKIN, _TASK_COMPLETED, _TASK_REOPENED, _TASK_ADDED})


def compactable(event: Event) -> bool:
    """Whether a folded event is held as a row: a check-in, a task's adding, completion or
    reopening, or an observation of an indicator (a journal entry stays an object: its
    sharing writes hold it)."""
    body = event.body
    kind = type(body)
    if kind in _ROW_BODIES:
        return True
    return kind is _OBSERVATION and body.indicator is not None  # type: ignore[union-attr]


def _id_parts(event_id: str) -> tuple[int, int] | None:
    """The two 64-bit halves of a lowercase UUID, or None if ``event_id`` is not one."""
    if len(event_id) != 36:
        return None
    try:
        high = int(event_id[0:8] + event_id[9:13] + event_id[14:18], 16)
        low = int(event_id[19:23] + event_id[24:36], 16)
    except ValueError:
        return None
    return high, low


def _id_text(high: int, low: int) -> str:
    return id_text(((high << 64) | low).to_bytes(16, "big"))


def _micros(instant: datetime) -> int:
    return (instant - _EPOCH) // _MICROSECOND


class _Tables:
    """The small tables of a ``RowTable`` being built: value -> index."""

    def __init__(self, old: RowTable | None) -> None:
        self.zones: dict[tzinfo, int] = {}
        self.handles: dict[str, int] = {}
        self.words: dict[str, int] = {}
        self.confidences: dict[str, int] = {}
        if old is not None:
            self.zones = {zone: index for index, zone in enumerate(old.zones)}
            self.handles = {handle: index for index, handle in enumerate(old.handles)}
            self.words = {word: index for index, word in enumerate(old.words)}
            self.confidences = {word: index for index, word in enumerate(old.confidences)}


def _index(value: Any, indexes: dict[Any, int], table: list[Any]) -> int:
    """The index of ``value`` in ``table`` (``indexes`` maps them), added if new."""
    index = indexes.get(value)
    if index is None:
        index = indexes[value] = len(table)
        table.append(value)
    return index


_KINDS_OF_FLAGS = bytes(flags & _KIND for flags in range(256))
"""``bytes.translate`` table: a row's flags to its kind."""

COLUMNS = (
    "high",
    "low",
    "actors",
    "devices",
    "clocks",
    "recorded",
    "occurred",
    "recorded_zones",
    "occurred_zones",
    "schemas",
    "flags",
    "subjects",
    "confidence_of",
    "numbers",
    "text_ends",
)
"""A ``RowTable``'s array columns, in the order ``columns`` gives them."""


class RowTable:
    """Events as rows of columns, sorted by id; read-only once built (``merged``)."""

    __slots__ = (
        "actors",
        "bodies",
        "clocks",
        "confidence_of",
        "confidences",
        "devices",
        "flags",
        "handles",
        "high",
        "last_id",
        "low",
        "numbers",
        "occurred",
        "occurred_zones",
        "recorded",
        "recorded_zones",
        "schemas",
        "subjects",
        "text_ends",
        "texts",
        "words",
        "zones",
    )

    def __init__(self) -> None:
        self.high = array("Q")
        self.low = array("Q")
        self.actors = array("H")
        self.devices = array("H")
        self.clocks = array("q")
        self.recorded = array("q")
        self.occurred = array("q")
        self.recorded_zones = array("B")
        self.occurred_zones = array("B")
        self.schemas = array("B")
        self.flags = array("B")
        # A body held as columns: what it names (its subject, milestone, task or
        # indicator) as an index into ``words``, a check-in's confidence or an
        # observation's polarity as an index into ``confidences``, a check-in's number or
        # an observation's stage, its note, title or text as UTF-8 in ``texts``
        # (``text_ends``: where each row's text ends; a string costs 49 B before its
        # first character); any other body is held whole in ``bodies``.
        self.subjects = array("I")
        self.confidence_of = array("B")
        self.numbers = array("d")
        self.text_ends = array("I")
        self.texts: bytes | bytearray = bytearray()  # bytes once built
        self.bodies: dict[int, Any] = {}
        self.handles: list[str] = []
        self.words: list[str] = []
        self.confidences: list[str] = []
        self.zones: list[tzinfo] = []
        self.last_id = ""  # the greatest id held: a new event's is mostly greater

    def __len__(self) -> int:
        return len(self.high)

    def columns(self) -> list[bytes]:
        """The array columns' bytes (``COLUMNS``' order, this machine's byte order): what a
        snapshot keeps, with ``texts``, ``bodies``, the small tables and ``zone_offsets``."""
        return [getattr(self, name).tobytes() for name in COLUMNS]

    def zone_offsets(self) -> list[int]:
        """Each zone's offset from UTC in microseconds (every zone is a fixed offset)."""
        return [zone.utcoffset(None) // _MICROSECOND for zone in self.zones]  # type: ignore[operator]

    @classmethod
    def from_columns(
        cls,
        columns: Sequence[bytes],
        byteorder: str,
        texts: bytes,
        bodies: dict[int, Any],
        tables: tuple[list[str], list[str], list[str], list[int]],
    ) -> RowTable:
        """The table ``columns``, ``texts``, ``bodies`` and ``tables`` (handles, words,
        confidences, zone offsets) describe; ``ValueError`` if they do not hold together.
        The bodies and texts are taken as given: what a row's kind says it holds (a
        snapshot is checked whole by its digest; this checks that no index can fall
        outside what it indexes)."""
        table = cls()
        if len(columns) != len(COLUMNS):
            raise ValueError(f"{len(columns)} row columns, not {len(COLUMNS)}")
        for name, data in zip(COLUMNS, columns, strict=True):
            column = getattr(table, name)
            column.frombytes(data)  # ValueError unless whole items
            if byteorder != sys.byteorder:
                column.byteswap()
        count = len(table.high)
        if any(len(getattr(table, name)) != count for name in COLUMNS):
            raise ValueError("the row columns differ in length")
        kinds = bytes(table.flags).translate(_KINDS_OF_FLAGS)
        if kinds and max(kinds) > _OBSERVATION_KIND:
            raise ValueError("a row's flags are not a kind this code reads")
        # Each row held whole has its body, and only those: a body per row of kind 0.
        if len(bodies) != kinds.count(_OBJECT) or any(
            not 0 <= row < count or kinds[row] != _OBJECT for row in bodies
        ):
            raise ValueError("the bodies held whole are not those of the rows held whole")
        handles, words, confidences, offsets = tables
        if len(offsets) > _MAX_SMALL_TABLE or len(confidences) > _MAX_SMALL_TABLE:
            raise ValueError("a small table holds more than a byte indexes")
        if len(handles) > _MAX_HANDLES:
            raise ValueError("the table of handles holds more than two bytes index")
        table.handles, table.words, table.confidences = handles, words, confidences
        table.zones = [timezone(offset * _MICROSECOND) for offset in offsets]
        if count:
            bounds = (
                (table.actors, handles),
                (table.devices, handles),
                (table.recorded_zones, table.zones),
                (table.occurred_zones, table.zones),
                (table.subjects, words or [""]),
                (table.confidence_of, confidences or [""]),
            )
            if any(max(column) >= len(named) for column, named in bounds):
                raise ValueError("a row names an entry beyond its table")
            if max(table.text_ends) > len(texts):
                raise ValueError("a row's text ends beyond the texts")
            table.last_id = table.id_of(count - 1)
        table.texts = texts
        table.bodies = bodies
        return table

    def event(self, row: int) -> Event:
        """The event held in ``row``, made again (equal to the one folded)."""
        recorded_micros = self.recorded[row]
        recorded_zone = self.zones[self.recorded_zones[row]]
        recorded = (_EPOCH + recorded_micros * _MICROSECOND).astimezone(recorded_zone)
        occurred_micros = self.occurred[row]
        occurred_zone = self.zones[self.occurred_zones[row]]
        if occurred_micros == recorded_micros and occurred_zone is recorded_zone:
            occurred = recorded
        else:
            occurred = (_EPOCH + occurred_micros * _MICROSECOND).astimezone(occurred_zone)
        flags = self.flags[row]
        kind = flags & _KIND
        if not kind:
            body = self.bodies[row]
        else:
            named = self.words[self.subjects[row]]
            text = self.text(row) if flags & _TEXT else None
            if kind == _CHECKIN_KIND:
                number: float | None = None
                if flags & _NUMBER:
                    number = self.numbers[row]
                    if flags & _INT:
                        number = int(number)
                percent = flags & _PERCENT
                body = _CHECKIN(
                    subject=named,
                    confidence=self.confidences[self.confidence_of[row]],  # type: ignore[arg-type]
                    value=None if percent else number,
                    percent=number if percent else None,
                    note=text or "",  # every check-in has a note ("" at least)
                )
            elif kind == _TASK_ADDED_KIND:
                body = _TASK_ADDED(milestone=named, title=text or "")
            elif kind == _OBSERVATION_KIND:
                impact = ""
                if flags & _PAIR:
                    text, impact = _decode_pair(text or "")
                body = _OBSERVATION(
                    text=text or "",
                    polarity=self.confidences[self.confidence_of[row]],  # type: ignore[arg-type]
                    indicator=named,
                    stage=int(self.numbers[row]) if flags & _NUMBER else None,
                    impact=impact,
                )
            elif kind == _TASK_COMPLETED_KIND:
                body = _TASK_COMPLETED(task=named)
            else:
                body = _TASK_REOPENED(task=named)
        return Event(
            id=_id_text(self.high[row], self.low[row]),
            actor=self.handles[self.actors[row]],
            device=self.handles[self.devices[row]],
            clock=self.clocks[row],
            recorded_at=recorded,
            occurred_at=occurred,
            body=body,
            schema=self.schemas[row],
        )

    def text(self, row: int) -> str | None:
        """The row's text (a check-in's note, a task's title), if it has one."""
        if not self.flags[row] & _TEXT:
            return None
        ends = self.text_ends
        return str(self.texts[ends[row - 1] if row else 0 : ends[row]], "utf-8")

    def adds_a_task(self, row: int) -> bool:
        """Whether the row holds a task's adding."""
        return self.flags[row] & _KIND == _TASK_ADDED_KIND

    def id_of(self, row: int) -> str:
        return _id_text(self.high[row], self.low[row])

    def find(self, event_id: str) -> int:
        """The row holding ``event_id``, or -1."""
        if event_id > self.last_id:
            return -1  # the common case for a new event: ids grow with time
        parts = _id_parts(event_id)
        if parts is None:
            return -1
        high, low = parts
        high_ids = self.high
        row = bisect.bisect_left(high_ids, high)
        low_ids = self.low
        count = len(high_ids)
        while row < count and high_ids[row] == high:
            if low_ids[row] == low:
                # The halves parse from uppercase digits too: only the id itself matches.
                return row if _id_text(high, low) == event_id else -1
            row += 1
        return -1

    def rows(self) -> Iterator[Event]:
        return map(self.event, range(len(self)))

    @classmethod
    def merged(
        cls, old: RowTable | None, fresh: list[Event], stop: Callable[[], bool] = lambda: False
    ) -> tuple[RowTable, array[int], dict[str, int]]:
        """A table of ``old``'s rows and the ``fresh`` events that fit, sorted by id.

        Returns it, each old row's new row, and each fresh event's row by id; a fresh event
        that does not fit (an instant's offset beyond the 255 a table names, say) is left
        out: it stays an object.
        """
        table = cls()
        tables = _Tables(old)
        if old is not None:
            table.zones = list(old.zones)
            table.handles = list(old.handles)
            table.words = list(old.words)
            table.confidences = list(old.confidences)
        keyed: list[tuple[int, int, Event]] = []
        for count, event in enumerate(fresh):
            if not count & _CHECK_EVERY and stop():
                raise Stopped
            parts = _id_parts(event.id)
            if parts is not None and table._fits(event, tables):
                keyed.append((parts[0], parts[1], event))
        keyed.sort(key=lambda item: (item[0], item[1]))
        old_count = len(old) if old is not None else 0
        old_rows: array[int] = array("i", bytes(4 * old_count))
        fresh_rows: dict[str, int] = {}
        # Merge the old rows (already in id order) with the sorted fresh ones: the old
        # rows between two fresh ones are copied as one slice of each column.
        old_index = 0
        position = 0
        for count, (high, low, event) in enumerate(keyed):
            if not count & _CHECK_EVERY and stop():
                raise Stopped
            if old is not None and old_index < old_count:
                until = old.before(high, low, old_index)
                if until > old_index:
                    table._copy_rows(old, old_index, until, old_rows, position)
                    position += until - old_index
                    old_index = until
            table._add(high, low, event, tables)
            fresh_rows[event.id] = position
            position += 1
        if old is not None and old_index < old_count:
            table._copy_rows(old, old_index, old_count, old_rows, position)
            position += old_count - old_index
        if old is not None:
            table.bodies.update((old_rows[row], body) for row, body in old.bodies.items())
        if position:
            table.last_id = table.id_of(position - 1)
        table.texts = bytes(table.texts)  # read-only from here
        return table, old_rows, fresh_rows

    def _fits(self, event: Event, tables: _Tables) -> bool:
        """Whether the small tables can name what ``event`` needs (adding it if so)."""
        for zone in (event.recorded_at.tzinfo, event.occurred_at.tzinfo):
            if type(zone) is not timezone:
                return False  # only fixed offsets (what the codec decodes) are named
            if zone not in tables.zones:
                if len(self.zones) >= _MAX_SMALL_TABLE:
                    return False
                _index(zone, tables.zones, self.zones)
        new_handles = {event.actor, event.device} - tables.handles.keys()
        if new_handles:
            if len(self.handles) + len(new_handles) > _MAX_HANDLES:
                return False
            for handle in sorted(new_handles):
                _index(handle, tables.handles, self.handles)
        return True

    def before(self, high: int, low: int, start: int) -> int:
        """The first row from ``start`` whose id is greater than (``high``, ``low``)."""
        row = bisect.bisect_right(self.high, high, start)
        low_ids = self.low
        while row > start and self.high[row - 1] == high and low_ids[row - 1] > low:
            row -= 1
        return row

    def _copy_rows(
        self, old: RowTable, start: int, stop: int, old_rows: array[int], position: int
    ) -> None:
        """Append ``old``'s rows ``start:stop``, noting where each went in ``old_rows``."""
        for name in COLUMNS[:-1]:
            getattr(self, name).extend(getattr(old, name)[start:stop])
        ends = old.text_ends
        first = ends[start - 1] if start else 0
        shift = len(self.texts) - first
        self.texts += old.texts[first : ends[stop - 1]]
        self.text_ends.extend(array("I", [end + shift for end in ends[start:stop]]))
        old_rows[start:stop] = array("i", range(position, position + stop - start))

    def _add(self, high: int, low: int, event: Event, tables: _Tables) -> None:
        self.high.append(high)
        self.low.append(low)
        self.actors.append(_index(event.actor, tables.handles, self.handles))
        self.devices.append(_index(event.device, tables.handles, self.handles))
        self.clocks.append(event.clock)
        recorded, occurred = event.recorded_at, event.occurred_at
        self.recorded.append(_micros(recorded))
        self.occurred.append(_micros(occurred))
        self.recorded_zones.append(tables.zones[recorded.tzinfo])  # type: ignore[index]
        self.occurred_zones.append(tables.zones[occurred.tzinfo])  # type: ignore[index]
        self.schemas.append(event.schema)
        body: Any = event.body
        kind = type(body)
        flags = _OBJECT
        named = ""
        number = 0.0
        confidence = 0
        held: Any = body
        text: str | None = None
        if kind is _CHECKIN:
            flags = self._checkin_flags(body, tables)
            if flags:
                named, held, text = body.subject, None, body.note
                given = body.value if body.percent is None else body.percent
                number = 0.0 if given is None else given
                confidence = tables.confidences[body.confidence]
        elif kind is _TASK_ADDED:
            flags, named, held, text = _TASK_ADDED_KIND, body.milestone, None, body.title
        elif kind is _TASK_COMPLETED:
            flags, named, held = _TASK_COMPLETED_KIND, body.task, None
        elif kind is _TASK_REOPENED:
            flags, named, held = _TASK_REOPENED_KIND, body.task, None
        elif kind is _OBSERVATION and self._observation_fits(body, tables):
            flags, named, held, text = _OBSERVATION_KIND, body.indicator, None, body.text
            confidence = tables.confidences[body.polarity]
            if body.stage is not None:
                flags, number = flags | _NUMBER | _INT, float(body.stage)
            if body.impact:
                flags, text = flags | _PAIR, _encode_pair((body.text, body.impact)).decode()
        if text is not None:
            flags |= _TEXT
            self.texts += text.encode()
        self.text_ends.append(len(self.texts))
        self.flags.append(flags)
        self.subjects.append(_index(named, tables.words, self.words) if flags else 0)
        self.confidence_of.append(confidence)
        self.numbers.append(number)
        if not flags:
            self.bodies[len(self.flags) - 1] = held

    def _observation_fits(self, body: b.ObservationRecorded, tables: _Tables) -> bool:
        """Whether an observation of an indicator is held as columns: its sharing is the
        indicator's (the defaults) and its polarity is named in the table."""
        if body.visibility != "private" or body.partners or body.indicator is None:
            return False
        if body.polarity not in tables.confidences:
            if len(self.confidences) >= _MAX_SMALL_TABLE:
                return False
            _index(body.polarity, tables.confidences, self.confidences)
        return True

    def _checkin_flags(self, body: b.CheckInRecorded, tables: _Tables) -> int:
        """How a check-in's body is held as columns (0: whole, as an object: a number of a
        type the columns cannot give back exactly, or a confidence beyond the table)."""
        flags = _CHECKIN_KIND
        number: Any = body.value
        if body.percent is not None:
            if number is not None:
                return 0  # both: the codec never lets one through
            number, flags = body.percent, flags | _PERCENT
        if number is not None:
            kind = type(number)
            if kind is int and abs(number) <= 2**53:
                flags |= _NUMBER | _INT
            elif kind is float:
                flags |= _NUMBER
            else:
                return 0
        if body.confidence not in tables.confidences:
            if len(self.confidences) >= _MAX_SMALL_TABLE:
                return 0
            _index(body.confidence, tables.confidences, self.confidences)
        return flags


class HeldEvents(dict[str, Event]):
    """``ProjectionState.events`` of a compacted state: the events held as objects (the
    dictionary itself) and those held as rows (``rows``), read as one mapping."""

    __slots__ = ("rows",)

    def __init__(self, objects: dict[str, Event], rows: RowTable) -> None:
        super().__init__(objects)
        self.rows = rows

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or (isinstance(key, str) and self.rows.find(key) >= 0)

    def __getitem__(self, key: str) -> Event:
        event = dict.get(self, key)
        if event is not None:
            return event
        row = self.rows.find(key)
        if row < 0:
            raise KeyError(key)
        return self.rows.event(row)

    @overload  # type: ignore[override]
    def get(self, key: str, default: None = None, /) -> Event | None: ...
    @overload
    def get(self, key: str, default: Event, /) -> Event: ...
    def get(self, key: str, default: Event | None = None, /) -> Event | None:
        event = dict.get(self, key)
        if event is not None:
            return event
        row = self.rows.find(key)
        return default if row < 0 else self.rows.event(row)

    def __len__(self) -> int:
        return dict.__len__(self) + len(self.rows)

    def __iter__(self) -> Iterator[str]:
        rows = self.rows
        return itertools.chain(dict.__iter__(self), map(rows.id_of, range(len(rows))))

    # One pass each, made as they are read: a snapshot encodes the events in chunks and
    # yields to the event loop between them.
    def keys(self) -> Any:
        return iter(self)

    def values(self) -> Any:
        return itertools.chain(dict.values(self), self.rows.rows())

    def items(self) -> Any:
        return itertools.chain(dict.items(self), ((event.id, event) for event in self.rows.rows()))

    def objects(self) -> dict[str, Event]:
        """The events held as objects."""
        return dict(dict.items(self))


class RowList(MutableSequence[Event]):
    """A list of events some of which are rows of a ``RowTable`` (``refs``: a row number,
    or ``-1 - i`` for ``objects[i]``); indexing makes a row's ``Event`` again."""

    __slots__ = ("objects", "refs", "table")

    def __init__(self, table: RowTable, refs: array[int], objects: list[Event]) -> None:
        self.table = table
        self.refs = refs
        self.objects = objects

    def _at(self, ref: int) -> Event:
        return self.table.event(ref) if ref >= 0 else self.objects[-1 - ref]

    def __len__(self) -> int:
        return len(self.refs)

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...
    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        if isinstance(index, slice):
            return [self._at(ref) for ref in self.refs[index]]
        return self._at(self.refs[index])

    def __iter__(self) -> Iterator[Event]:
        return map(self._at, self.refs)

    def __reversed__(self) -> Iterator[Event]:
        refs = self.refs
        return map(self._at, (refs[i] for i in range(len(refs) - 1, -1, -1)))

    def _ref(self, event: Event) -> int:
        self.objects.append(event)
        return -len(self.objects)

    def append(self, value: Event) -> None:
        self.refs.append(self._ref(value))

    def insert(self, index: int, value: Event) -> None:
        self.refs.insert(index, self._ref(value))

    @overload
    def __setitem__(self, index: int, value: Event) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[Event]) -> None: ...
    def __setitem__(self, index: int | slice, value: Event | Iterable[Event]) -> None:
        if isinstance(index, slice):
            assert not isinstance(value, Event)
            self.refs[index] = array("i", [self._ref(event) for event in value])
        else:
            assert isinstance(value, Event)
            self.refs[index] = self._ref(value)

    def __delitem__(self, index: int | slice) -> None:
        del self.refs[index]  # an object left behind is dropped at the next compaction

    def __repr__(self) -> str:
        return f"RowList({len(self)} events, {len(self.objects)} as objects)"


def _relisted(
    events: MutableSequence[Event],
    table: RowTable,
    old_rows: array[int],
    fresh_rows: dict[str, int],
) -> RowList:
    """``events`` as a new ``RowList`` over ``table``: rows renumbered, objects that moved
    into the table replaced by their rows."""
    refs: array[int] = array("i")
    objects: list[Event] = []
    if isinstance(events, RowList):
        old_objects = events.objects
        for ref in events.refs:
            if ref >= 0:
                refs.append(old_rows[ref])
                continue
            event = old_objects[-1 - ref]
            row = fresh_rows.get(event.id, -1)
            if row < 0:
                objects.append(event)
                row = -len(objects)
            refs.append(row)
    else:
        for event in events:
            row = fresh_rows.get(event.id, -1)
            if row < 0:
                objects.append(event)
                row = -len(objects)
            refs.append(row)
    return RowList(table, refs, objects)


def _renumbered(ref: Event | int, old_rows: array[int], fresh_rows: dict[str, int]) -> Event | int:
    """A task node's reference to an event, as a row of the new table where it is one."""
    if type(ref) is int:
        return old_rows[ref]
    return fresh_rows.get(ref.id, ref)  # type: ignore[union-attr]


@dataclass(eq=False)
class Compaction:
    """What ``prepare`` built for a state; ``swap`` puts it in."""

    state: ProjectionState
    events: HeldEvents
    checkins: dict[str, MutableSequence[Event]]
    feeds: list[tuple[Feed, RowList]]
    observations: list[tuple[IndicatorNode, RowList]]
    tasks: list[tuple[TaskNode, Event | int, Event | int]]
    tasks_by_id: dict[str, TaskNode]
    touches: dict[str, int]
    milestone_touches: list[tuple[MilestoneNode, int]]
    shared: list[tuple[Any, str, str]]
    moved: int
    """How many events moved into rows."""

    def swap(self) -> int:
        """Put the new table and lists in; return how many events moved into rows."""
        state, table = self.state, self.events.rows
        state.events = self.events
        state.checkin_touch.update(self.touches)
        for milestone, touch in self.milestone_touches:
            milestone.touch = touch
            milestone.rows = table
        state.checkins_by_subject = self.checkins
        for feed, relisted in self.feeds:
            feed.events = relisted
        for node, relisted in self.observations:
            node.observations = relisted
        for task, added, writer in self.tasks:
            task.added = added
            task.writer = writer
            task.rows = table
        state.tasks = self.tasks_by_id
        for body, field, name in self.shared:
            force_setattr(body, field, name)
        return self.moved


class Stopped(Exception):
    """``prepare`` was asked to stop (``stop`` said so): nothing was changed."""


_CHECK_EVERY = 1023  # events between two calls of ``stop`` (a mask: every 1,024)


def prepare(state: ProjectionState, stop: Callable[[], bool] = lambda: False) -> Compaction | None:
    """The compaction of the state's folded bulk events (``compactable``) still held as
    objects, built beside the state (which it only reads); None if there are none.

    ``stop`` is asked every thousand events or so; when it says so, ``Stopped`` is raised
    (the server stops a compaction when a load begins: they share the interpreter)."""
    held = state.events
    old = held.rows if isinstance(held, HeldEvents) else None
    objects = held.objects() if isinstance(held, HeldEvents) else held
    fresh = [event for event in objects.values() if compactable(event)]
    if not fresh:
        return None
    table, old_rows, fresh_rows = RowTable.merged(old, fresh, stop)
    remaining = {key: event for key, event in objects.items() if key not in fresh_rows}
    checkins: dict[str, MutableSequence[Event]] = {}
    for count, (subject, listed) in enumerate(state.checkins_by_subject.items()):
        if not count & 63 and stop():
            raise Stopped
        checkins[subject] = _relisted(listed, table, old_rows, fresh_rows)
    feeds = [
        (feed, _relisted(feed.events, table, old_rows, fresh_rows)) for feed in state.feeds.values()
    ]
    observations = [
        (node, _relisted(node.observations, table, old_rows, fresh_rows))
        for node in state.indicators.values()
        if node.observations
    ]
    tasks = [
        (
            task,
            _renumbered(task.added, old_rows, fresh_rows),
            _renumbered(task.writer, old_rows, fresh_rows),
        )
        for task in state.tasks.values()
    ]
    # Names held as copies (a snapshot's restore decodes each reference as a string of
    # its own; the fold shares the named event's): the tasks keyed, and the kept bodies
    # naming, by the events' own id strings.
    tasks_by_id = {task.id: task for task in state.tasks.values()}
    # Touches a compacted snapshot's load left as rows (``projections.persist``).
    touches = {
        subject: old_rows[touch]
        for subject, touch in state.checkin_touch.items()
        if isinstance(touch, int)
    }
    milestone_touches = [
        (node, old_rows[node.touch])
        for node in state.milestones.values()
        if isinstance(node.touch, int)
    ]
    shared: list[tuple[Any, str, str]] = []
    for task in state.tasks.values():
        if not isinstance(task.added, int) and task.added.id not in fresh_rows:
            _share(task.added.body, "milestone", state.milestones, shared)
    for row_body in table.bodies.values():
        if type(row_body) is _OBSERVATION:
            _share(row_body, "indicator", state.indicators, shared)
    events = HeldEvents(remaining, table)
    return Compaction(
        state,
        events,
        checkins,
        feeds,
        observations,
        tasks,
        tasks_by_id,
        touches,
        milestone_touches,
        shared,
        len(fresh_rows),
    )


def _share(body: Any, field: str, nodes: Mapping[str, Any], shared: list[Any]) -> None:
    """Note the node's own id string for ``body``'s reference ``field`` if it holds a copy."""
    name = getattr(body, field)
    node = nodes.get(name) if name is not None else None
    if node is not None and node.event.id == name and node.event.id is not name:
        shared.append((body, field, node.event.id))


def compact(state: ProjectionState) -> int:
    """Move the state's folded bulk events that are still objects into rows, at once
    (``prepare`` and ``Compaction.swap``); return how many moved."""
    compaction = prepare(state)
    return 0 if compaction is None else compaction.swap()


def folded(state: ProjectionState) -> int:
    """How many events were folded into the state: a compaction prepared while it grew
    must not be swapped in (it would lose what was folded meanwhile)."""
    return sum(state.versions.values())


def held_as_rows(state: ProjectionState) -> int:
    """How many of the state's events are held as rows."""
    held = state.events
    return len(held.rows) if isinstance(held, HeldEvents) else 0
