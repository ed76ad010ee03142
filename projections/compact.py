"""Compaction: a state's bulk events held as rows of columns instead of one object each.

Half of all events are check-ins and a tenth observations of an indicator. Folded, each
is an ``Event`` (80 B), its id string (85 B), an instant (48 B), an entry in
``ProjectionState.events`` and a slot in each list that orders it: ~440 B besides its
body. ``compact`` moves the folded ones into a ``RowTable`` (the id as two integers, the
handles and offsets as indexes into small tables, the instants and the clock as
integers: 55 B a row, the body kept as it is) and makes the lists that order them
(``checkins_by_subject``, the feeds, the indicators' observations) ``RowList``s of row
numbers. An ``Event`` is made again from its row when a view reads it (a board reads a
few dozen); it equals the one folded, field for field.

What is held elsewhere as an object stays one: a journal entry (``sharing`` keeps it),
a subject's ``checkin_touch``, and everything pending or refused. Events folded after a
compaction are held as objects until the next one, which merges them into a new table.

Compaction never changes a view (``tests/unit/test_compact.py`` compares every view of
compacted states with a rebuild's); it builds the new table and lists beside the old
ones and swaps them in at the end, so a reader holding the old ones reads a whole state.

Pure: no I/O. The server compacts the partitions it holds (``server.working_set``).
"""

from __future__ import annotations

import bisect
import itertools
from array import array
from collections.abc import Iterable, Iterator, MutableSequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, overload

from events import Event
from events import bodies as b
from projections.state import ProjectionState

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MAX_ZONES = 255


def compactable(event: Event) -> bool:
    """Whether a folded event is held as a row: a check-in, or an observation of an
    indicator (a journal entry stays an object: its sharing writes hold it)."""
    body = event.body
    kind = type(body)
    if kind is _CHECKIN:
        return True
    return kind is _OBSERVATION and body.indicator is not None  # type: ignore[union-attr]


_CHECKIN = b.CheckInRecorded
_OBSERVATION = b.ObservationRecorded


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
    digits = ((high << 64) | low).to_bytes(16, "big").hex()  # twice as fast as format()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _micros(instant: datetime) -> int:
    return (instant - _EPOCH) // _MICROSECOND


class RowTable:
    """Events as rows of columns, sorted by id; read-only once built (``merged``)."""

    __slots__ = (
        "actors",
        "bodies",
        "clocks",
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
        "percents",
        "recorded",
        "recorded_zones",
        "schemas",
        "subjects",
        "words",
        "zones",
    )

    def __init__(self) -> None:
        self.high = array("Q")
        self.low = array("Q")
        self.actors = array("I")
        self.devices = array("I")
        self.clocks = array("q")
        self.recorded = array("q")
        self.occurred = array("q")
        self.recorded_zones = array("B")
        self.occurred_zones = array("B")
        self.schemas = array("B")
        # A check-in's body is columns too (``_CHECKIN_COLUMNS`` in ``flags``; ``bodies``
        # then holds its note): the subject and the confidence as indexes into ``words``,
        # the value and the percent as doubles (flags say which are given, and whether as
        # an int). Any other body is held as it is, in ``bodies``.
        self.flags = array("B")
        self.subjects = array("I")
        self.confidences = array("I")
        self.numbers = array("d")
        self.percents = array("d")
        self.bodies: list[Any] = []
        self.handles: list[str] = []
        self.words: list[str] = []
        self.zones: list[tzinfo] = []
        self.last_id = ""  # the greatest id held: a new event's is mostly greater

    def __len__(self) -> int:
        return len(self.high)

    def event(self, row: int) -> Event:
        """The event held in ``row``, made again (equal to the one folded)."""
        recorded_zone = self.zones[self.recorded_zones[row]]
        recorded = (_EPOCH + self.recorded[row] * _MICROSECOND).astimezone(recorded_zone)
        occurred_micros = self.occurred[row]
        occurred_zone = self.zones[self.occurred_zones[row]]
        if occurred_micros == self.recorded[row] and occurred_zone is recorded_zone:
            occurred = recorded
        else:
            occurred = (_EPOCH + occurred_micros * _MICROSECOND).astimezone(occurred_zone)
        flags = self.flags[row]
        body = self.bodies[row]
        if flags:
            words = self.words
            value: float | None = None
            percent: float | None = None
            if flags & _VALUE:
                value = self.numbers[row]
                if flags & _VALUE_INT:
                    value = int(value)
            if flags & _PERCENT:
                percent = self.percents[row]
                if flags & _PERCENT_INT:
                    percent = int(percent)
            body = _CHECKIN(
                subject=words[self.subjects[row]],
                confidence=words[self.confidences[row]],  # type: ignore[arg-type]
                value=value,
                percent=percent,
                note=body,
            )
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

    def id_of(self, row: int) -> str:
        return _id_text(self.high[row], self.low[row])

    def find(self, event_id: str) -> int:
        """The row holding ``event_id``, or -1."""
        if event_id > self.last_id:
            return -1  # the common case for a new event: ids grow with time
        high_ids = self.high
        parts = _id_parts(event_id)
        if parts is None:
            return -1
        high, low = parts
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
        cls, old: RowTable | None, fresh: list[Event]
    ) -> tuple[RowTable, array[int], dict[str, int], list[Event]]:
        """A table of ``old``'s rows and the ``fresh`` events that fit, sorted by id.

        Returns it, each old row's new row, each fresh event's row by id, and the fresh
        events that do not fit (an instant's offset beyond the 255 a table names): those
        stay objects.
        """
        table = cls()
        zones: dict[tzinfo, int] = {}
        handles: dict[str, int] = {}
        words: dict[str, int] = {}
        if old is not None:
            table.zones = list(old.zones)
            table.handles = list(old.handles)
            table.words = list(old.words)
            zones = {zone: index for index, zone in enumerate(old.zones)}
            handles = {handle: index for index, handle in enumerate(old.handles)}
            words = {word: index for index, word in enumerate(old.words)}
        keyed: list[tuple[int, int, int, Event]] = []
        left: list[Event] = []
        for event in fresh:
            recorded_zone = event.recorded_at.tzinfo
            occurred_zone = event.occurred_at.tzinfo
            fits = True
            for zone in (recorded_zone, occurred_zone):
                if type(zone) is not timezone:
                    fits = False  # only fixed offsets (what the codec decodes) are named
                elif zone not in zones:
                    if len(zones) >= _MAX_ZONES:
                        fits = False
                    else:
                        zones[zone] = len(table.zones)
                        table.zones.append(zone)
            parts = _id_parts(event.id)
            if not fits or parts is None:
                left.append(event)
                continue
            keyed.append((parts[0], parts[1], len(keyed), event))
        keyed.sort(key=lambda item: (item[0], item[1]))
        old_count = len(old) if old is not None else 0
        old_rows: array[int] = array("q", bytes(8 * old_count))
        fresh_rows: dict[str, int] = {}
        # Merge the old rows (already in id order) with the sorted fresh ones.
        old_index = 0
        position = 0
        fresh_iter = iter(keyed)
        next_fresh = next(fresh_iter, None)
        while old_index < old_count or next_fresh is not None:
            take_old = old is not None and old_index < old_count
            if take_old and next_fresh is not None:
                assert old is not None
                take_old = (old.high[old_index], old.low[old_index]) < next_fresh[:2]
            if take_old:
                assert old is not None
                table._copy_row(old, old_index)
                old_rows[old_index] = position
                old_index += 1
            else:
                assert next_fresh is not None
                high, low, _, event = next_fresh
                table._add(high, low, event, handles, zones, words)
                fresh_rows[event.id] = position
                next_fresh = next(fresh_iter, None)
            position += 1
        if position:
            table.last_id = table.id_of(position - 1)
        return table, old_rows, fresh_rows, left

    def _copy_row(self, old: RowTable, row: int) -> None:
        self.high.append(old.high[row])
        self.low.append(old.low[row])
        self.actors.append(old.actors[row])
        self.devices.append(old.devices[row])
        self.clocks.append(old.clocks[row])
        self.recorded.append(old.recorded[row])
        self.occurred.append(old.occurred[row])
        self.recorded_zones.append(old.recorded_zones[row])
        self.occurred_zones.append(old.occurred_zones[row])
        self.schemas.append(old.schemas[row])
        self.flags.append(old.flags[row])
        self.subjects.append(old.subjects[row])
        self.confidences.append(old.confidences[row])
        self.numbers.append(old.numbers[row])
        self.percents.append(old.percents[row])
        self.bodies.append(old.bodies[row])

    def _add(
        self,
        high: int,
        low: int,
        event: Event,
        handles: dict[str, int],
        zones: dict[tzinfo, int],
        words: dict[str, int],
    ) -> None:
        self.high.append(high)
        self.low.append(low)
        self.actors.append(self._handle(event.actor, handles))
        self.devices.append(self._handle(event.device, handles))
        self.clocks.append(event.clock)
        recorded, occurred = event.recorded_at, event.occurred_at
        self.recorded.append(_micros(recorded))
        self.occurred.append(_micros(occurred))
        self.recorded_zones.append(zones[recorded.tzinfo])  # type: ignore[index]
        self.occurred_zones.append(zones[occurred.tzinfo])  # type: ignore[index]
        self.schemas.append(event.schema)
        body = event.body
        flags = _checkin_flags(body) if type(body) is _CHECKIN else 0
        if flags:
            assert isinstance(body, _CHECKIN)
            self.subjects.append(_index(body.subject, words, self.words))
            self.confidences.append(_index(body.confidence, words, self.words))
            self.numbers.append(0.0 if body.value is None else body.value)
            self.percents.append(0.0 if body.percent is None else body.percent)
            self.bodies.append(body.note)
        else:
            self.subjects.append(0)
            self.confidences.append(0)
            self.numbers.append(0.0)
            self.percents.append(0.0)
            self.bodies.append(body)
        self.flags.append(flags)

    def _handle(self, handle: str, handles: dict[str, int]) -> int:
        return _index(handle, handles, self.handles)


def _index(word: str, indexes: dict[str, int], table: list[str]) -> int:
    """The index of ``word`` in ``table`` (``indexes`` maps them), added if new."""
    index = indexes.get(word)
    if index is None:
        index = indexes[word] = len(table)
        table.append(word)
    return index


_CHECKIN_COLUMNS = 1
_VALUE = 2
_VALUE_INT = 4
_PERCENT = 8
_PERCENT_INT = 16


def _checkin_flags(body: b.CheckInRecorded) -> int:
    """How a check-in's body is held as columns (0: it is kept as it is: a number of a
    type the columns cannot give back exactly)."""
    flags = _CHECKIN_COLUMNS
    numbers = ((body.value, _VALUE, _VALUE_INT), (body.percent, _PERCENT, _PERCENT_INT))
    for number, given, as_int in numbers:
        kind = type(number)
        if number is None:
            continue
        if kind is float:
            flags |= given
        elif kind is int and abs(number) <= 2**53:
            flags |= given | as_int
        else:
            return 0
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

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[str]:
        rows = self.rows
        return itertools.chain(dict.__iter__(self), map(rows.id_of, range(len(rows))))

    def keys(self) -> Any:
        return list(self)

    def values(self) -> Any:
        return [*dict.values(self), *self.rows.rows()]

    def items(self) -> Any:
        return [*dict.items(self), *((event.id, event) for event in self.rows.rows())]

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
            self.refs[index] = array("q", [self._ref(event) for event in value])
        else:
            assert isinstance(value, Event)
            self.refs[index] = self._ref(value)

    def __delitem__(self, index: int | slice) -> None:
        del self.refs[index]  # an object left behind is dropped at the next compaction

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (list, RowList)):
            return NotImplemented
        return len(self) == len(other) and all(a == c for a, c in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RowList({len(self)} events, {len(self.objects)} as objects)"

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        events = sorted(self, key=key, reverse=reverse)
        self.refs = array("q")
        self.objects = []
        for event in events:
            self.append(event)


def _relisted(
    events: MutableSequence[Event],
    table: RowTable,
    old_rows: array[int],
    fresh_rows: dict[str, int],
) -> RowList:
    """``events`` as a new ``RowList`` over ``table``: rows renumbered, objects that moved
    into the table replaced by their rows."""
    refs: array[int] = array("q")
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


def compact(state: ProjectionState) -> int:
    """Move the state's folded bulk events (``compactable``) that are still objects into
    rows; return how many moved. Views of the state are unchanged (see the module
    docstring); new structures are swapped in at the end."""
    held = state.events
    old = held.rows if isinstance(held, HeldEvents) else None
    objects = held.objects() if isinstance(held, HeldEvents) else held
    fresh = [event for event in objects.values() if compactable(event)]
    if not fresh:
        return 0
    table, old_rows, fresh_rows, _ = RowTable.merged(old, fresh)
    remaining = {key: event for key, event in objects.items() if key not in fresh_rows}
    checkins = {
        subject: _relisted(events, table, old_rows, fresh_rows)
        for subject, events in state.checkins_by_subject.items()
    }
    feeds = [
        (feed, _relisted(feed.events, table, old_rows, fresh_rows)) for feed in state.feeds.values()
    ]
    observations = [
        (node, _relisted(node.observations, table, old_rows, fresh_rows))
        for node in state.indicators.values()
        if node.observations
    ]
    # Swapped in only now: until here every reader saw the old, whole structures.
    state.events = HeldEvents(remaining, table)
    state.checkins_by_subject = checkins  # type: ignore[assignment]
    for feed, relisted in feeds:
        feed.events = relisted
    for node, relisted in observations:
        node.observations = relisted
    return len(fresh_rows)


def held_as_rows(state: ProjectionState) -> int:
    """How many of the state's events are held as rows."""
    held = state.events
    return len(held.rows) if isinstance(held, HeldEvents) else 0
