"""Design probe for a denser partition: check-ins held as columns vs as ``Event`` objects.

Not product code: ``CheckinColumns`` below is the smallest layout docs/scaling.md proposes
for the next step (arrays of the fields, ids as 16 bytes, instants as integers), measured
against how the fold holds a check-in today (the ``Event``, its body, id, instant and note,
an entry in ``ProjectionState.events`` and a slot in two ordered lists).

Run ``python bench/checkin_columns.py`` (the check-ins of the first 1,000,000-event
history's first 500,000 events) or ``--quick`` (of 100,000). Prints, per check-in: bytes
held both ways (the ratio is the figure), the cost of appending one to the columns vs
folding it, and of making an ``Event`` from a row again (what a view reading a check-in
would pay).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from array import array
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import events
from events import bodies as b
from milepost_testkit.history import history_bytes
from projections.state import ProjectionState, apply

_CONFIDENCES = ("on-track", "at-risk", "off-track")
_CONFIDENCE = {name: index for index, name in enumerate(_CONFIDENCES)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NONE = float("nan")


class CheckinColumns:
    """Check-ins as rows of arrays: 16-byte id, clock, instants in µs and the offset in
    seconds, indexes into tables of subjects and actors, the confidence as a byte, the
    numbers as doubles (NaN: none), the note or None."""

    def __init__(self) -> None:
        self.ids = bytearray()
        self.clocks = array("q")
        self.recorded = array("q")
        self.occurred = array("q")
        self.offsets = array("i")
        self.subjects = array("I")
        self.actors = array("H")
        self.devices = array("H")
        self.confidences = bytearray()
        self.values = array("d")
        self.percents = array("d")
        self.notes: list[str | None] = []
        self.subject_names: list[str] = []
        self.subject_index: dict[str, int] = {}
        self.handle_names: list[str] = []
        self.handle_index: dict[str, int] = {}

    @staticmethod
    def _index_of(value: str, names: list[str], index: dict[str, int]) -> int:
        """``value``'s row in a table of distinct strings (added on first sight)."""
        found = index.get(value)
        if found is None:
            found = index[value] = len(names)
            names.append(value)
        return found

    def append(self, event: events.Event) -> None:
        body = event.body
        assert isinstance(body, b.CheckInRecorded)
        self.ids += bytes.fromhex(event.id.replace("-", ""))
        self.clocks.append(event.clock)
        recorded = (event.recorded_at - _EPOCH) // _MICROSECOND
        self.recorded.append(recorded)
        occurred = event.occurred_at
        self.occurred.append(
            recorded if occurred is event.recorded_at else (occurred - _EPOCH) // _MICROSECOND
        )
        offset = event.recorded_at.utcoffset()
        self.offsets.append(0 if offset is None else int(offset.total_seconds()))
        self.subjects.append(self._index_of(body.subject, self.subject_names, self.subject_index))
        self.actors.append(self._index_of(event.actor, self.handle_names, self.handle_index))
        self.devices.append(self._index_of(event.device, self.handle_names, self.handle_index))
        self.confidences.append(_CONFIDENCE[body.confidence])
        self.values.append(_NONE if body.value is None else body.value)
        self.percents.append(_NONE if body.percent is None else body.percent)
        self.notes.append(body.note or None)

    def event(self, row: int) -> events.Event:
        raw = self.ids[16 * row : 16 * row + 16].hex()
        event_id = f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
        zone = timezone(timedelta(seconds=self.offsets[row]))
        recorded = (_EPOCH + self.recorded[row] * _MICROSECOND).astimezone(zone)
        occurred = (
            recorded
            if self.occurred[row] == self.recorded[row]
            else (_EPOCH + self.occurred[row] * _MICROSECOND).astimezone(zone)
        )
        value = self.values[row]
        percent = self.percents[row]
        return events.Event(
            id=event_id,
            actor=self.handle_names[self.actors[row]],
            device=self.handle_names[self.devices[row]],
            clock=self.clocks[row],
            recorded_at=recorded,
            occurred_at=occurred,
            body=b.CheckInRecorded(
                subject=self.subject_names[self.subjects[row]],
                confidence=_CONFIDENCES[self.confidences[row]],  # type: ignore[arg-type]
                value=None if value != value else value,
                percent=None if percent != percent else percent,
                note=self.notes[row] or "",
            ),
        )


def _checkins(lines: list[bytes]) -> list[events.Event]:
    return [e for e in events.decode_many(lines) if isinstance(e, events.Event)]


def as_objects_bytes(lines: list[bytes]) -> float:
    """Bytes per check-in held as the fold holds it: decoded, in a dict by id, in two lists."""
    gc.collect()
    tracemalloc.start()
    held: dict[str, events.Event] = {}
    by_subject: list[events.Event] = []
    by_owner: list[events.Event] = []
    for event in _checkins(lines):
        held[event.id] = event
        by_subject.append(event)
        by_owner.append(event)
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return used / len(held)


def as_columns_bytes(lines: list[bytes]) -> float:
    """Bytes per check-in held as columns (the decoded events let go)."""
    gc.collect()
    tracemalloc.start()
    columns = CheckinColumns()
    for event in _checkins(lines):
        columns.append(event)
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return used / len(columns.clocks)


def fold_checkin_us(history: list[events.Event]) -> float:
    """Mean µs of folding a check-in, the history folded in its order (the others untimed)."""
    state = ProjectionState()
    spent = 0
    count = 0
    clock = time.perf_counter_ns
    for event in history:
        if type(event.body) is b.CheckInRecorded:
            began = clock()
            apply(state, event)
            spent += clock() - began
            count += 1
        else:
            apply(state, event)
    return spent / count / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="check-ins of 100,000 events")
    args = parser.parse_args()
    size = 100_000 if args.quick else 500_000
    data = history_bytes(target_events=1_000_000)[:size]
    history = _checkins(data)
    lines = [
        line for line, e in zip(data, history, strict=True) if type(e.body) is b.CheckInRecorded
    ]
    checkins = [e for e in history if type(e.body) is b.CheckInRecorded]
    del data
    print(f"{len(checkins):,} check-ins")

    objects = as_objects_bytes(lines)
    columns = as_columns_bytes(lines)

    gc.disable()  # as the rebuild runs
    fold_us = fold_checkin_us(history)
    table = CheckinColumns()
    began = time.perf_counter()
    for event in checkins:
        table.append(event)
    append_us = (time.perf_counter() - began) / len(checkins) * 1e6
    rows = range(0, len(checkins), 3)
    began = time.perf_counter()
    for row in rows:
        table.event(row)
    materialize_us = (time.perf_counter() - began) / len(rows) * 1e6
    gc.enable()
    same = all(table.event(row) == checkins[row] for row in range(0, len(checkins), 101))
    print(f"an Event made again from its row equals the decoded one: {same}")

    print(f"figure: checkins = {len(checkins)} events")
    print(f"figure: bytes_per_checkin_as_objects = {objects:.0f} B")
    print(f"figure: bytes_per_checkin_as_columns = {columns:.0f} B")
    print(f"figure: checkin_columns_vs_objects = {columns / objects:.3f} ratio")
    print(f"figure: fold_one_checkin = {fold_us:.2f} us")
    print(f"figure: append_one_checkin_to_columns = {append_us:.2f} us")
    print(f"figure: checkin_append_vs_fold = {append_us / fold_us:.2f} ratio")
    print(f"figure: event_from_a_row = {materialize_us:.2f} us")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
