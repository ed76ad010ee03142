"""The hybrid logical clock and UUIDv7 ids."""

from __future__ import annotations

import uuid

from events.clock import HybridLogicalClock, counter, pack, physical_ms
from events.ids import EventIdGenerator, event_id_ms


class FakeWall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_clock_follows_the_wall_when_it_moves_forward() -> None:
    wall = FakeWall(1_000)
    clock = HybridLogicalClock(wall=wall)
    assert clock.now() == pack(1_000, 0)
    wall.ms = 2_000
    assert clock.now() == pack(2_000, 0)


def test_clock_stays_monotonic_when_the_wall_jumps_back() -> None:
    wall = FakeWall(5_000)
    clock = HybridLogicalClock(wall=wall)
    first = clock.now()
    wall.ms = 1_000  # NTP step backwards
    stamps = [clock.now() for _ in range(5)]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 5
    assert all(s > first for s in stamps)
    assert physical_ms(stamps[-1]) == 5_000
    assert counter(stamps[-1]) == 5


def test_counter_overflow_borrows_the_next_millisecond() -> None:
    clock = HybridLogicalClock(last=pack(10, 0xFFFF), wall=FakeWall(0))
    assert clock.now() == pack(11, 0)


def test_observed_remote_stamps_are_passed() -> None:
    clock = HybridLogicalClock(wall=FakeWall(100))
    clock.observe(pack(900, 3))
    assert clock.now() == pack(900, 4)
    clock.observe(pack(1, 0))  # older: ignored
    assert clock.last == pack(900, 4)


def test_clock_resumes_from_a_persisted_stamp() -> None:
    clock = HybridLogicalClock(last=pack(7_000, 2), wall=FakeWall(6_000))
    assert clock.now() == pack(7_000, 3)


def test_ids_are_uuid7_and_strictly_increasing_within_a_millisecond() -> None:
    generator = EventIdGenerator()
    ids = [generator.new(now_ms=1_790_000_000_000) for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert event_id_ms(ids[0]) == 1_790_000_000_000


def test_ids_stay_increasing_when_the_wall_steps_back() -> None:
    generator = EventIdGenerator()
    first = generator.new(now_ms=1_800_000_000_000)
    second = generator.new(now_ms=1_700_000_000_000)
    assert second > first
