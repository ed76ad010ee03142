"""Fair limits at ingest: a token bucket per person for events and for bytes.

Every message on ``milepost.events.<person>.<id>`` takes one event token and
``len(message)`` byte tokens from that person's buckets, before it is decoded.
A bucket holds up to ``burst`` tokens and refills at ``rate`` per second, so a
person may push a burst (a device catching up after a week offline, an import)
and then keeps a steady rate; past that, their messages are refused and nobody
else's are slowed down.

A refused message is never lost: the device still holds the event and pushes
it again. The refusal is a dead letter whose reason starts with
``RATE_LIMITED`` (``rate limit:``) and names the delay after which the device
should push again (``retry after N s``); ``retry_after`` reads it back. The
event id is the store's key, so a push repeated after the event was stored in
the meantime is a harmless duplicate. The dead letter keeps the subject (which
names the person and the event id) but not the message's bytes: the device has
them, and a flood must not fill the server's disk through its dead letters.
A refused message takes no tokens, so a device that waits as told gets in; the
delays of messages refused in a row are spread out (``TokenBucket``), so a flood's
messages come back at the rate, not all at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from events.wire import RATE_LIMITED, is_retryable, retry_after

DEFAULT_EVENTS_PER_SECOND = 100.0
DEFAULT_EVENT_BURST = 100_000
"""A device back from a long time offline, or an import, pushes its whole backlog at once:
the sync promise is 100,000 events from one device to another in under 20 s."""
DEFAULT_BYTES_PER_SECOND = 256 * 1024
DEFAULT_BYTE_BURST = 64 * 1024 * 1024
"""100,000 events of a typical size (a few hundred bytes) fit in the byte burst too."""


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """Per-person limits; ``None`` rates disable that bucket."""

    events_per_second: float | None = DEFAULT_EVENTS_PER_SECOND
    event_burst: int = DEFAULT_EVENT_BURST
    bytes_per_second: float | None = DEFAULT_BYTES_PER_SECOND
    byte_burst: int = DEFAULT_BYTE_BURST

    def __post_init__(self) -> None:
        for name in ("events_per_second", "bytes_per_second"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number")
        for name in ("event_burst", "byte_burst"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` per second (starts full).

    Refused amounts are remembered as ``owed``: the device will bring them back, so
    the next refusal's delay comes after theirs (the k-th message refused in a row is
    told to wait about k / rate seconds, not all of them the same second, which would
    only bring the whole flood back at once). What is owed runs down at ``rate``."""

    __slots__ = ("burst", "owed", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.owed = 0.0
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            added = (now - self.stamp) * self.rate
            self.tokens = min(self.burst, self.tokens + added)
            self.owed = max(0.0, self.owed - added)
            self.stamp = now

    def ready(self, amount: float, now: float) -> bool:
        """Whether ``amount`` tokens (a full bucket at most) are there now."""
        if now > self.stamp:
            self._refill(now)
        return self.tokens >= (amount if amount < self.burst else self.burst)

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` tokens are there (0: now). Takes nothing."""
        self._refill(now)
        if amount <= self.tokens:
            return 0.0
        # Never more than a full bucket is asked for (``min``): a message larger than
        # the burst waits for a full bucket, then goes through.
        return (min(amount, self.burst) + self.owed - self.tokens) / self.rate

    def take(self, amount: float) -> None:
        """Take ``amount`` tokens (after ``wait_for`` said 0); may go below zero once."""
        self.tokens -= amount

    def refuse(self, amount: float) -> None:
        """Remember a refused ``amount``: it is owed a later turn."""
        self.owed += min(amount, self.burst)


class PersonLimiter:
    """One pair of buckets (events, bytes) per person; ``admit`` decides each message."""

    def __init__(
        self,
        limits: IngestLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        exempt: frozenset[str] = frozenset(),
    ) -> None:
        """``exempt``: people never limited (the server's own ``admin`` path)."""
        self.limits = limits
        self._clock = clock
        self._exempt = exempt
        self._people: dict[str, tuple[TokenBucket | None, TokenBucket | None]] = {}
        self.refused = 0

    def admit(self, person: str, size: int) -> str | None:
        """None when ``person`` may have one more message of ``size`` bytes (its tokens
        are taken); else the refusal's reason (``RATE_LIMITED …``), taking nothing."""
        if person in self._exempt:
            return None
        now = self._clock()
        buckets = self._people.get(person)
        if buckets is None:
            buckets = self._people[person] = self._buckets(now)
        events, bytes_ = buckets
        if (events is None or events.ready(1, now)) and (bytes_ is None or bytes_.ready(size, now)):
            if events is not None:
                events.tokens -= 1
            if bytes_ is not None:
                bytes_.tokens -= size
            return None
        return self._refuse(person, size, now, events, bytes_)

    def _buckets(self, now: float) -> tuple[TokenBucket | None, TokenBucket | None]:
        limits = self.limits
        return (
            TokenBucket(limits.events_per_second, limits.event_burst, now)
            if limits.events_per_second is not None
            else None,
            TokenBucket(limits.bytes_per_second, limits.byte_burst, now)
            if limits.bytes_per_second is not None
            else None,
        )

    def _refuse(
        self,
        person: str,
        size: int,
        now: float,
        events: TokenBucket | None,
        bytes_: TokenBucket | None,
    ) -> str:
        limits = self.limits
        waits: list[tuple[float, str]] = []
        if events is not None and (wait := events.wait_for(1, now)):
            waits.append(
                (
                    wait,
                    f"more than {limits.event_burst} events at once or"
                    f" {limits.events_per_second:g} events/s",
                )
            )
        if bytes_ is not None and (wait := bytes_.wait_for(size, now)):
            waits.append(
                (
                    wait,
                    f"more than {limits.byte_burst} bytes at once or"
                    f" {limits.bytes_per_second:g} bytes/s",
                )
            )
        self.refused += 1
        if events is not None:
            events.refuse(1)
        if bytes_ is not None:
            bytes_.refuse(size)
        wait, what = max(waits)
        return f"{RATE_LIMITED} {person} sent {what}; retry after {math.ceil(wait)}s"


__all__ = ["RATE_LIMITED", "IngestLimits", "PersonLimiter", "is_retryable", "retry_after"]
