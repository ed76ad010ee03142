"""Hybrid logical clock: a stamp that orders events across devices.

A stamp is one integer, ``physical_ms << 16 | counter``. It never goes back,
even when the wall clock does, and it moves past every stamp it has seen, so
"later" in last-writer-wins means later in causal order when causality exists.

Bounds
------
A stamp received from someone else is not trusted to be near the present: one
event stamped ``2**63 - 1`` would otherwise leave every later stamp past the
largest the codec accepts (every write fails), and one stamped in the year 6000
would make every later edit lose to it. Two bounds keep stamps sane:

- ``MAX_STAMP``: no stamp's physical part is later than ``MAX_PHYSICAL_MS``
  (2199-12-31T23:59:59.999Z, the end of the date range of ``events.bodies``).
  The codec refuses larger stamps and this clock never issues one, so stamp
  arithmetic can never overflow the signed 64-bit columns that store it.
- ``MAX_CLOCK_AHEAD_MS`` (48 hours): how far ahead of a wall clock a stamp may be.
  The server refuses (dead-letters) events further ahead of its own clock
  (``clock_ahead_reason``), and ``observe`` never moves a device's clock further
  ahead of the device's wall clock than this.

Why 48 hours. In CockroachDB's ``--max-offset`` (500 ms by default) and in the
HLC paper (Kulkarni et al. 2014, where ``l - pt`` stays within the clock skew
``ε``) the bound is the clock synchronisation uncertainty between servers that
run NTP. Milepost's devices are laptops and phones that record offline and
sync days later, and whose owners may have set their clock by hand. Only a
stamp *ahead of the present* is judged (an event recorded a week ago offline is
behind the server's clock, never refused), so the bound must cover a device
clock that is wrong, not one that is late to sync: a date set one day ahead
(24 h) plus a time-zone mistake (a clock set to local time but taken as UTC is
off by up to 14 h) is 38 h; 48 h covers that with margin, so a device a day
ahead still syncs. Larger would not protect much more offline work, and the
bound is also the most a hostile teammate can push everyone's clock ahead: for
at most 48 h a device's edits may then lose to an earlier edit made by another
device that has not yet seen the pushed clock. Only the owner writes to an item,
so the harm stays within that window and those devices; it never lasts.
"""

from __future__ import annotations

import time
from collections.abc import Callable

COUNTER_BITS = 16
_COUNTER_MASK = (1 << COUNTER_BITS) - 1

MAX_PHYSICAL_MS = 7_258_118_399_999
"""2199-12-31T23:59:59.999Z in Unix milliseconds: the latest physical part of a stamp."""
MAX_STAMP = MAX_PHYSICAL_MS << COUNTER_BITS | _COUNTER_MASK
"""The largest stamp the codec accepts and the clock issues (about 4.8e17, far below 2**63)."""
MAX_CLOCK_AHEAD_MS = 48 * 3_600_000
"""How far ahead of a wall clock a stamp may be: 48 hours (see the module docstring)."""


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


def _hours(ms: int) -> str:
    hours = ms / 3_600_000
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:,.0f} days"


def clock_ahead_reason(stamp: int, wall: int) -> str | None:
    """Why ``stamp`` is too far ahead of the wall clock ``wall`` (Unix ms), or None if it is not.

    Only the future counts: a stamp behind the wall clock, however old, is fine.
    """
    ahead = physical_ms(stamp) - wall
    if ahead <= MAX_CLOCK_AHEAD_MS:
        return None
    return (
        f"clock is {_hours(ahead)} ahead of the receiver's clock;"
        f" at most {MAX_CLOCK_AHEAD_MS // 3_600_000} h ahead is accepted"
    )


def _ceiling(wall: int) -> int:
    """The largest stamp a clock whose wall clock reads ``wall`` may hold."""
    return pack(min(max(wall, 0) + MAX_CLOCK_AHEAD_MS, MAX_PHYSICAL_MS), _COUNTER_MASK)


class HybridLogicalClock:
    """Issues monotonic stamps; ``observe`` folds in stamps from other devices.

    Stamps never exceed ``MAX_STAMP`` and never run more than ``MAX_CLOCK_AHEAD_MS``
    ahead of the wall clock because of what was observed.
    """

    __slots__ = ("_last", "_wall")

    def __init__(self, last: int = 0, wall: Callable[[], int] = wall_ms) -> None:
        self._last = last
        self._wall = wall

    @property
    def last(self) -> int:
        """The most recent stamp issued or observed (persist it to survive restarts)."""
        return self._last

    def now(self) -> int:
        """A new stamp greater than every stamp issued or observed so far.

        Bounds come first. A remembered stamp more than ``MAX_CLOCK_AHEAD_MS`` ahead of
        the wall clock (stored by an older version that observed a poisoned stamp, or
        the wall clock stepped back by more than the bound) is not trusted: stamps
        restart from the wall clock. And a stamp never passes the bound ahead of the
        wall clock nor ``MAX_STAMP``: there (65,536 stamps in one millisecond at the
        bound, or a wall clock in the year 2200) the clock repeats its last stamp
        instead of going past it.
        """
        wall = min(max(self._wall(), 0), MAX_PHYSICAL_MS)
        ceiling = _ceiling(wall)
        last = self._last
        if last > ceiling:
            last = 0
        last_ms = physical_ms(last)
        if wall > last_ms:
            last = pack(wall, 0)
        elif counter(last) < _COUNTER_MASK:
            last += 1
        else:  # counter exhausted: borrow the next millisecond
            last = min(pack(last_ms + 1, 0), ceiling)
        self._last = last
        return last

    def observe(self, remote: int) -> None:
        """Move past a stamp received from elsewhere, but never further than the bound
        ahead of this device's wall clock: a stamp beyond it counts as the bound."""
        wall = self._wall()
        limit = pack(min(max(wall, 0) + MAX_CLOCK_AHEAD_MS, MAX_PHYSICAL_MS), 0)
        remote = min(remote, limit)
        if remote > self._last:
            self._last = remote
