"""Calendar arithmetic shared by views: elapsed time with pauses taken out."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

from events import bodies as b
from projections.state import ProjectionState

_ONE_DAY = timedelta(days=1)


def pauses_of(state: ProjectionState, person: str) -> list[tuple[date, date]]:
    """The person's live pauses as inclusive (start, end) date ranges."""
    ranges = []
    for pause_id in state.person(person).pauses:
        if state.is_retracted(pause_id):
            continue
        body = state.events[pause_id].body
        assert isinstance(body, b.PauseDeclared)
        ranges.append((body.starts_on, body.ends_on))
    return ranges


def paused_days(start: date, end: date, pauses: Iterable[tuple[date, date]]) -> int:
    """Days in [start, end) covered by at least one pause (overlaps counted once)."""
    if end <= start:
        return 0
    # Clip each pause to [start, end), then count the union of the clipped ranges
    # arithmetically (sorted, overlapping ones merged): no set of days is built.
    clipped = []
    for pause_start, pause_end in pauses:
        first = max(start, pause_start)
        stop = min(end, pause_end + _ONE_DAY)  # exclusive
        if first < stop:
            clipped.append((first, stop))
    if not clipped:
        return 0
    clipped.sort()
    total = 0
    run_start, run_stop = clipped[0]
    for first, stop in clipped[1:]:
        if first <= run_stop:
            run_stop = max(run_stop, stop)
        else:
            total += (run_stop - run_start).days
            run_start, run_stop = first, stop
    return total + (run_stop - run_start).days


def active_days(start: date, end: date, pauses: Iterable[tuple[date, date]]) -> int:
    """Days in [start, end) outside every pause."""
    if end <= start:
        return 0
    return (end - start).days - paused_days(start, end, pauses)


def expected_percent(
    start: date, due: date, today: date, pauses: Iterable[tuple[date, date]]
) -> float:
    """Share of the active days from ``start`` to ``due`` (inclusive) elapsed by ``today``."""
    pauses = list(pauses)
    if not pauses:  # the common case: plain calendar arithmetic
        total = (due - start).days + 1
        if total <= 0:
            return 100.0 if today > due else 0.0
        elapsed = max(0, (min(today, due + _ONE_DAY) - start).days)
        return max(0.0, min(100.0, 100.0 * elapsed / total))
    total = active_days(start, due + timedelta(days=1), pauses)
    if total <= 0:
        return 100.0 if today > due else 0.0
    elapsed = active_days(start, min(today, due + timedelta(days=1)), pauses)
    return max(0.0, min(100.0, 100.0 * elapsed / total))


def after_active_days(start: date, count: int, pauses: Iterable[tuple[date, date]]) -> date:
    """The day after the ``count``-th active (unpaused) day from ``start`` on (``start`` if
    ``count`` <= 0): skips whole pauses, O(pauses log pauses) whatever their length."""
    day, remaining = start, max(0, count)
    for pause_start, pause_end in sorted(pauses):
        if remaining == 0:
            break
        if pause_end < day:
            continue
        if pause_start > day:
            gap = (pause_start - day).days  # active days before this pause
            if remaining <= gap:
                break
            remaining -= gap
        day = pause_end + _ONE_DAY  # in range: MAX_DATE + 1 day is a valid date
    return day + timedelta(days=remaining)


def in_pause(day: date, pauses: Iterable[tuple[date, date]]) -> bool:
    """Whether ``day`` falls inside a pause."""
    return any(start <= day <= end for start, end in pauses)
