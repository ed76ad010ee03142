"""Builds valid events with controlled time, for hand-written histories in tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import events
from events import bodies as b
from events.clock import pack
from events.envelope import Event


def at(day: date | str, hour: int = 9) -> datetime:
    """An instant on a day (UTC), from a date or an ISO string."""
    day = date.fromisoformat(day) if isinstance(day, str) else day
    return datetime.combine(day, time(hour), tzinfo=UTC)


class History:
    """Makes events in order; each gets a fresh UUIDv7 and an increasing HLC stamp.

    ``when`` sets occurred_at and recorded_at (recorded may differ via ``recorded``);
    the clock follows the recorded time so later-recorded events win ties.
    """

    def __init__(self, actor: str = "alice", device: str = "laptop", start: str = "2026-01-05"):
        self.actor = actor
        self.device = device
        self.now = at(start)
        self.events: list[Event] = []
        self._counter = 0

    def make(
        self,
        body: b.Body,
        *,
        when: datetime | str | None = None,
        recorded: datetime | str | None = None,
        actor: str | None = None,
        device: str | None = None,
        clock: int | None = None,
    ) -> Event:
        """Record one event (``when``: ISO date or instant; default: the current time)."""
        occurred = self._instant(when) if when is not None else self.now
        recorded_at = self._instant(recorded) if recorded is not None else occurred
        self.now = max(self.now, recorded_at)
        self._counter += 1
        stamp = clock if clock is not None else pack(int(recorded_at.timestamp() * 1000), 0)
        stamp += self._counter if clock is None else 0
        event = Event(
            id=events.new_event_id(int(recorded_at.timestamp() * 1000)),
            actor=actor or self.actor,
            device=device or self.device,
            clock=stamp,
            recorded_at=recorded_at,
            occurred_at=occurred,
            body=body,  # type: ignore[arg-type]
        )
        # Validate like the codec would: tests must never build an invalid event.
        assert events.decode(events.encode(event)) == event
        self.events.append(event)
        return event

    @staticmethod
    def _instant(value: datetime | str) -> datetime:
        if isinstance(value, datetime):
            return value
        return at(value) if len(value) == 10 else datetime.fromisoformat(value)

    def advance(self, days: float) -> None:
        """Move the default time forward."""
        self.now += timedelta(days=days)

    # --- shorthands -----------------------------------------------------------------

    def objective(
        self, title: str = "Show people how Roads works", cycle: str = "2026-Q1", **kw: Any
    ) -> str:
        extra = {k: kw.pop(k) for k in list(kw) if k in ("when", "recorded", "actor")}
        return self.make(b.ObjectiveCreated(title=title, cycle=cycle, **kw), **extra).id

    def key_result(self, objective: str, title: str = "Reach 3,000 visitors", **kw: Any) -> str:
        extra = {k: kw.pop(k) for k in list(kw) if k in ("when", "recorded", "actor")}
        kw.setdefault("start", 0)
        kw.setdefault("target", 3000)
        return self.make(b.KeyResultAdded(objective=objective, title=title, **kw), **extra).id

    def milestone(self, title: str = "Create social media profiles", **kw: Any) -> str:
        extra = {k: kw.pop(k) for k in list(kw) if k in ("when", "recorded", "actor")}
        if isinstance(kw.get("due_on"), str):
            kw["due_on"] = date.fromisoformat(kw["due_on"])
        return self.make(b.MilestonePlanned(title=title, **kw), **extra).id

    def checkin(self, subject: str, confidence: str = "on-track", **kw: Any) -> str:
        extra = {k: kw.pop(k) for k in list(kw) if k in ("when", "recorded", "actor", "clock")}
        body = b.CheckInRecorded(subject=subject, confidence=confidence, **kw)  # type: ignore[arg-type]
        return self.make(body, **extra).id

    def join(self, team: str, person: str, **kw: Any) -> str:
        return self.make(b.TeamMemberJoined(team=team, person=person), actor="admin", **kw).id
