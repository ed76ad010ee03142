"""The per-person token buckets of ``server.limits`` with a clock the test moves."""

from __future__ import annotations

import pytest

from server.limits import IngestLimits, PersonLimiter, is_retryable, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate_then_refusals_with_a_delay() -> None:
    clock = Clock()
    limiter = PersonLimiter(
        IngestLimits(events_per_second=2, event_burst=3, bytes_per_second=None), clock=clock
    )
    assert [limiter.admit("bob", 10) for _ in range(3)] == [None, None, None]
    reason = limiter.admit("bob", 10)
    assert reason is not None and is_retryable(reason) and retry_after(reason) == 1.0
    assert limiter.admit("alice", 10) is None  # others are not slowed down
    clock.now += 0.5  # one token back (and the refused one's turn has come)
    assert limiter.admit("bob", 10) is None
    assert limiter.admit("bob", 10) is not None
    clock.now += 100  # never more than the burst
    assert [limiter.admit("bob", 10) for _ in range(4)].count(None) == 3
    assert limiter.refused == 3


def test_the_delays_of_a_flood_are_spread_at_the_rate() -> None:
    clock = Clock()
    limiter = PersonLimiter(
        IngestLimits(events_per_second=10, event_burst=10, bytes_per_second=None), clock=clock
    )
    assert all(limiter.admit("bob", 1) is None for _ in range(10))
    delays = [retry_after(limiter.admit("bob", 1) or "") or 0.0 for _ in range(100)]
    assert delays[0] == 1 and delays[-1] == 10  # the 100th waits for 99 before it
    assert delays == sorted(delays)
    # Each comes back when told: the bucket has refilled for the ones before it.
    clock.now += 10.5
    assert sum(limiter.admit("bob", 1) is None for _ in range(10)) == 10


def test_bytes_are_counted_and_a_refusal_takes_nothing() -> None:
    clock = Clock()
    limiter = PersonLimiter(
        IngestLimits(events_per_second=None, bytes_per_second=1000, byte_burst=5000),
        clock=clock,
    )
    assert limiter.admit("bob", 4000) is None
    reason = limiter.admit("bob", 2000)  # 1000 left: wait 1 s for 2000
    assert reason is not None and "bytes" in reason and retry_after(reason) == 1.0
    assert limiter.admit("bob", 1000) is None  # the refused message took nothing
    clock.now += 5
    assert limiter.admit("bob", 9000) is None  # larger than the burst: once the bucket is full
    assert limiter.admit("bob", 1) is not None


def test_exempt_people_and_bad_limits() -> None:
    limiter = PersonLimiter(
        IngestLimits(events_per_second=1, event_burst=1), exempt=frozenset({"admin"})
    )
    assert all(limiter.admit("admin", 10) is None for _ in range(100))
    with pytest.raises(ValueError):
        IngestLimits(events_per_second=0)
    with pytest.raises(ValueError):
        IngestLimits(event_burst=0)
    assert retry_after("actor 'x' does not match") is None
