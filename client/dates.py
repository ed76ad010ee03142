"""The clock the client reads, and the date forms users type.

``MILEPOST_NOW`` (an ISO datetime, e.g. ``2026-03-02T09:00:00+00:00``) replaces
the wall clock everywhere: a testing aid for drift, staleness and reviews.
"""

from __future__ import annotations

import os
from datetime import date, datetime, time, timedelta

from client.errors import InvalidValue

NOW_ENV = "MILEPOST_NOW"


def now() -> datetime:
    """The current instant, timezone-aware (``MILEPOST_NOW`` when set)."""
    raw = os.environ.get(NOW_ENV)
    if raw:
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise InvalidValue(f"{NOW_ENV} is not an ISO datetime: {raw!r}") from None
        return moment if moment.tzinfo is not None else moment.astimezone()
    return datetime.now().astimezone()


def parse_date(text: str, today: date, *, what: str = "date") -> date:
    """``YYYY-MM-DD``, ``today`` or ``yesterday``; InvalidValue otherwise."""
    value = text.strip().lower()
    if value == "today":
        return today
    if value == "yesterday":
        return today - timedelta(days=1)
    if value == "tomorrow":
        return today + timedelta(days=1)
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidValue(
            f"invalid {what} {text!r}: expected a real date as YYYY-MM-DD, 'today' or 'yesterday'"
        ) from None


def parse_moment(text: str, current: datetime, *, what: str = "--at") -> datetime:
    """A date (noon that day, local offset) or an ISO datetime, not in the future."""
    value = text.strip()
    if "T" in value or " " in value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidValue(f"invalid {what} {text!r}: expected YYYY-MM-DD[THH:MM]") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=current.tzinfo)
    else:
        day = parse_date(value, current.date(), what=what)
        moment = datetime.combine(day, time(12, 0), tzinfo=current.tzinfo)
        if day == current.date():
            moment = current
    if moment > current:
        raise InvalidValue(f"invalid {what} {text!r}: it is in the future")
    return moment


def end_of_day(day: date, current: datetime) -> datetime:
    """The last instant of ``day`` in the current offset (for ``--as-of``)."""
    return datetime.combine(day, time(23, 59, 59, 999999), tzinfo=current.tzinfo)
