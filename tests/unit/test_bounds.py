"""Clocks and dates have a range: the codec refuses what lies outside, naming the field."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from client.store import Store
from client.sync import SyncLog, apply_views
from events.bodies import MAX_DATE, MIN_DATE
from events.clock import (
    MAX_CLOCK_AHEAD_MS,
    MAX_PHYSICAL_MS,
    MAX_STAMP,
    HybridLogicalClock,
    clock_ahead_reason,
    pack,
    physical_ms,
)
from events.codec import CodecError, decode
from events.envelope import CURRENT_SCHEMA, Event, OpaqueEvent
from events.wire import WireEvent

ID = "01a2099d-b301-7027-8e1a-b8ad68ca2fc1"
OTHER = "01a2099d-b302-7511-89d4-40abe2a26844"
RANGE = "date must be between 1970-01-01 and 2199-12-31"


def envelope(body: dict[str, Any], /, **overrides: Any) -> bytes:
    raw: dict[str, Any] = {
        "id": ID,
        "actor": "mallory",
        "device": "laptop",
        "clock": 1 << 40,
        "recorded_at": "2026-03-02T09:30:00Z",
        "occurred_at": "2026-03-02T09:30:00Z",
        "body": body,
        "schema": CURRENT_SCHEMA,
    }
    raw.update(overrides)
    return msgspec.json.encode(raw)


RESTORED = {"type": "milestone.restored", "milestone": OTHER}


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (envelope({"type": "milestone.planned", "title": "x", "due_on": "9999-12-31"}),
         "body.due_on", RANGE),
        (envelope({"type": "milestone.planned", "title": "x", "due_on": "0001-01-01"}),
         "body.due_on", RANGE),
        (envelope({"type": "milestone.rescheduled", "milestone": OTHER, "due_on": "2200-01-01"}),
         "body.due_on", RANGE),
        (envelope({"type": "pause.declared", "starts_on": "2026-01-01", "ends_on": "9999-12-31"}),
         "body.ends_on", RANGE),
        (envelope({"type": "pause.declared", "starts_on": "1969-12-31", "ends_on": "2026-01-01"}),
         "body.starts_on", RANGE),
        (envelope({"type": "objective.created", "title": "x", "cycle": "9999-Q4"}),
         "body.cycle", "year must be between 1970 and 2199"),
        (envelope(RESTORED, occurred_at="9999-12-31T23:59:59-05:00"), "occurred_at", RANGE),
        (envelope(RESTORED, recorded_at="0001-01-01T00:00:00+05:00"), "recorded_at", RANGE),
        (envelope(RESTORED, recorded_at="2200-01-01T00:00:00Z"), "recorded_at", RANGE),
        # an unknown event type is kept opaque, but only with a sane envelope
        (envelope({"type": "future.thing"}, occurred_at="9999-12-31T23:59:59-05:00"),
         "occurred_at", RANGE),
        (envelope(RESTORED, clock=(1 << 63) - 1), "clock", "later than 2199-12-31"),
        (envelope(RESTORED, clock=MAX_STAMP + 1), "clock", "later than 2199-12-31"),
        (envelope({"type": "future.thing"}, clock=(1 << 63) - 1), "clock", "later than 2199"),
    ],
)  # fmt: skip
def test_out_of_range_dates_instants_and_stamps_are_refused_naming_the_field(
    data: bytes, field: str, reason: str
) -> None:
    with pytest.raises(CodecError) as caught:
        decode(data)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_the_ends_of_every_range_are_accepted() -> None:
    planned = {"type": "milestone.planned", "title": "x", "due_on": str(MAX_DATE)}
    event = decode(envelope(planned, clock=MAX_STAMP, occurred_at="2199-12-31T23:59:59-14:00"))
    assert isinstance(event, Event)
    assert event.clock == MAX_STAMP
    pause = {"type": "pause.declared", "starts_on": str(MIN_DATE), "ends_on": str(MAX_DATE)}
    assert isinstance(decode(envelope(pause, recorded_at="1970-01-01T00:00:00+14:00")), Event)
    cycle = {"type": "objective.created", "title": "x", "cycle": "2199-12"}
    assert isinstance(decode(envelope(cycle)), Event)
    opaque = decode(envelope({"type": "future.thing"}, clock=MAX_STAMP))
    assert isinstance(opaque, OpaqueEvent)


def test_an_in_range_instant_converts_to_utc_without_overflow() -> None:
    event = decode(envelope(RESTORED, occurred_at="2199-12-31T23:59:59-23:59"))
    assert event.occurred_at.astimezone(UTC).year == 2200
    assert event.occurred_at.astimezone(UTC) > datetime(2199, 12, 31, tzinfo=UTC)
    assert pack(int(datetime(2200, 1, 1, tzinfo=UTC).timestamp() * 1000) - 1, 0xFFFF) == MAX_STAMP
    assert date(2199, 12, 31) == MAX_DATE


# --- the clock ----------------------------------------------------------------------------

WALL = int(datetime(2026, 3, 2, 9, 30, tzinfo=UTC).timestamp() * 1000)
YEAR_6000 = pack(
    int(
        (datetime(6000, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000
    ),
    0,
)


class Wall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def encoded_event(clock: int) -> bytes:
    return envelope(RESTORED, clock=clock)


@pytest.mark.parametrize("poison", [(1 << 63) - 1, YEAR_6000, MAX_STAMP])
def test_a_received_stamp_far_ahead_cannot_poison_the_clock(poison: int) -> None:
    wall = Wall(WALL)
    clock = HybridLogicalClock(pack(WALL - 10, 0), wall=wall)
    clock.observe(poison)
    assert physical_ms(clock.last) <= WALL + MAX_CLOCK_AHEAD_MS
    stamps = [clock.now() for _ in range(3)]
    assert stamps == sorted(set(stamps))
    for stamp in stamps:  # every later write is a valid event
        assert decode(encoded_event(stamp)).clock == stamp
        assert clock_ahead_reason(stamp, WALL) is None


def test_later_honest_edits_still_win_over_a_refused_future_stamp() -> None:
    # The device saw a teammate's year-6000 stamp, then the server refused it;
    # the device's own next edit is stamped near the present, and the one after
    # it is later still: the order of its own edits is the order they were made.
    wall = Wall(WALL)
    clock = HybridLogicalClock(wall=wall)
    done = clock.now()
    clock.observe(YEAR_6000)
    wall.ms += 60_000
    reopened = clock.now()
    assert done < reopened <= pack(WALL + MAX_CLOCK_AHEAD_MS, 0xFFFF)
    assert clock_ahead_reason(YEAR_6000, WALL) is not None


def test_a_clock_poisoned_by_an_older_version_recovers() -> None:
    # A device that stored 2**63 - 1 before this bound existed: its next stamp is
    # taken from the wall clock again instead of overflowing ("invalid clock").
    clock = HybridLogicalClock((1 << 63) - 1, wall=Wall(WALL))
    stamp = clock.now()
    assert stamp == pack(WALL, 0)
    assert decode(encoded_event(stamp)).clock == stamp


def test_stamps_within_the_bound_are_observed_as_they_are() -> None:
    clock = HybridLogicalClock(wall=Wall(WALL))
    ahead = pack(WALL + MAX_CLOCK_AHEAD_MS - 1, 7)
    clock.observe(ahead)
    assert clock.last == ahead
    assert clock.now() == ahead + 1
    clock.observe(ahead + (2 << 16))  # past the bound: counts as the bound
    assert clock.last == pack(WALL + MAX_CLOCK_AHEAD_MS, 0)


def test_the_clock_never_issues_a_stamp_past_the_maximum() -> None:
    clock = HybridLogicalClock(MAX_STAMP - 1, wall=Wall(MAX_PHYSICAL_MS + 10_000))
    assert clock.now() == MAX_STAMP
    assert clock.now() == MAX_STAMP  # saturates: a wall clock in 2200 is broken anyway
    clock.observe((1 << 63) - 1)
    assert clock.last == MAX_STAMP
    # 65,536 stamps in the last millisecond of the bound: the clock stays at the bound
    at_bound = HybridLogicalClock(wall=Wall(WALL))
    at_bound.observe((1 << 63) - 1)
    stamps = [at_bound.now() for _ in range(70_000)]
    assert stamps == sorted(stamps)
    assert max(stamps) == pack(WALL + MAX_CLOCK_AHEAD_MS, 0xFFFF)


def test_clock_ahead_reason_judges_only_the_future() -> None:
    day = 24 * 3_600_000
    assert day <= MAX_CLOCK_AHEAD_MS  # a device a day ahead still syncs
    assert clock_ahead_reason(pack(WALL + day, 0), WALL) is None
    assert clock_ahead_reason(pack(WALL + MAX_CLOCK_AHEAD_MS, 0xFFFF), WALL) is None
    assert clock_ahead_reason(0, WALL) is None  # an old offline event
    reason = clock_ahead_reason(pack(WALL + MAX_CLOCK_AHEAD_MS + 1, 0), WALL)
    assert reason is not None
    assert "ahead" in reason
    assert "48 h" in reason
    assert "days ahead" in (clock_ahead_reason((1 << 63) - 1, WALL) or "")


async def test_a_pulled_stamp_far_ahead_moves_the_device_clock_only_to_the_bound(
    tmp_path: Path,
) -> None:
    now = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
    now_ms = int(now.timestamp() * 1000)
    store = await Store.open(tmp_path / "phone.sqlite3", create=True)
    try:
        async with store.write():
            await store.set_meta("person", "alice")
            await store.set_meta("device", "phone")
        log = SyncLog(store, "alice")
        planned = {"type": "milestone.planned", "title": "Forever", "visibility": "team"}
        far = envelope(planned, clock=pack(now_ms + 3_000 * 24 * 3_600_000, 0))
        await log.apply([WireEvent(1, far)], 1, 1, now, apply_views)
        stored = int(await store.scalar("SELECT value FROM meta WHERE key = 'clock'") or 0)
        assert stored == pack(now_ms + MAX_CLOCK_AHEAD_MS, 0)
        # The next write on this device is a valid event the server accepts.
        stamp = HybridLogicalClock(stored, wall=Wall(now_ms)).now()
        assert clock_ahead_reason(stamp, now_ms) is None
        assert decode(encoded_event(stamp)).clock == stamp
    finally:
        await store.close()


async def test_a_device_holding_events_an_older_version_accepted_still_works(
    tmp_path: Path,
) -> None:
    # A device that synced an occurred_at of 9999-12-31T23:59:59-05:00 before the
    # range existed: its log and its stored views hold it. This version leaves that
    # one event out and keeps everything else working.
    from client.store import _INSERT
    from client.views import load_all, rebuild_views

    now = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
    objective_id, milestone_id = ID, OTHER
    checkin_id, task_id = (f"01a2099d-b30{n}-7511-89d4-40abe2a26844" for n in (3, 4))
    objective = {"type": "objective.created", "title": "Ship", "cycle": "2026-Q1"}
    milestone = {"type": "milestone.planned", "title": "Beta", "objective": objective_id}
    checkin = {"type": "checkin.recorded", "subject": milestone_id, "confidence": "at-risk"}
    task = {"type": "task.added", "milestone": milestone_id, "title": "Write it"}
    store = await Store.open(tmp_path / "phone.sqlite3", create=True)
    try:
        async with store.write():
            await store.set_meta("person", "mallory")
            await store.set_meta("device", "phone")
        log = SyncLog(store, "mallory")
        first = [
            WireEvent(1, envelope(objective, id=objective_id)),
            WireEvent(2, envelope(milestone, id=milestone_id, clock=(1 << 40) + 1)),
        ]
        await log.apply(first, 2, 2, now, apply_views)
        # What an older version stored: the event in the log and in its goal's slice.
        old = envelope(
            checkin, id=checkin_id, clock=(1 << 40) + 2, occurred_at="9999-12-31T23:59:59-05:00"
        )
        with pytest.raises(CodecError):
            decode(old)
        row = ("x", "mallory", "checkin.recorded", (1 << 40) + 2, 0, 0, old)
        slice_type = list[tuple[int, msgspec.Raw]]
        async with store.write():
            await store.execute(_INSERT, (checkin_id, *row[1:]))
            (root, blob), *_ = await store.fetchall("SELECT root, slice FROM goal_parts")
            held = msgspec.json.decode(blob, type=slice_type)
            held.append((3, msgspec.Raw(old)))
            await store.execute(
                "UPDATE goal_parts SET slice = ? WHERE root = ?",
                (msgspec.json.encode(held), root),
            )
        # A new event on the same goal refolds its slice; a full rebuild reads the log.
        task_event = envelope(task, id=task_id, clock=(1 << 40) + 3)
        added, _, _ = await log.apply([WireEvent(4, task_event)], 4, 4, now, apply_views)
        assert added == 1
        async with store.write():
            assert await rebuild_views(store, now) == 1
        loaded = await load_all(store)
        assert sorted(loaded.seqs) == sorted([objective_id, milestone_id, task_id])
    finally:
        await store.close()
