"""Hybrid logical clock: a stamp that orders events across devices.

A stamp is one integer, ``physical_ms << 16 | counter``. It never goes back,
even when the wall clock does, and it moves past every stamp it has seen, so
"later" in last-writer-wins means later in causal order when causality exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable

COUNTER_BITS = 16
_COUNTER_MASK = (1 << COUNTER_BITS) - 1


def pack(physical_ms: int, counter: int) -> int:
    """Combine a millisecond time and a counter into a stamp."""
    return physical_ms << COUNTER_BITS | counter


def physical_ms(stamp: int) -> int:
    """The millisecond part of a stamp."""
    return stamp >> COUNTER_BITS


def counter(stamp: int) -> int:
    """The logical counter part of a stamp."""
    return stamp & _COUNTER_MASK


def wall_ms() -> int:
    """The wall clock in Unix milliseconds."""
    return time.time_ns() // 1_000_000


class HybridLogicalClock:
    """Issues monotonic stamps; ``observe`` folds in stamps from other devices."""

    __slots__ = ("_last", "_wall")

    def __init__(self, last: int = 0, wall: Callable[[], int] = wall_ms) -> None:
        self._last = last
        self._wall = wall

    @property
    def last(self) -> int:
        """The most recent stamp issued or observed (persist it to survive restarts)."""
        return self._last

    def now(self) -> int:
        """A new stamp strictly greater than every stamp issued or observed so far."""
        wall = self._wall()
        last_ms = physical_ms(self._last)
        if wall > last_ms:
            self._last = pack(wall, 0)
        elif counter(self._last) < _COUNTER_MASK:
            self._last += 1
        else:  # counter exhausted: borrow the next millisecond
            self._last = pack(last_ms + 1, 0)
        return self._last

    def observe(self, remote: int) -> None:
        """Move past a stamp received from elsewhere."""
        if remote > self._last:
            self._last = remote
