"""Replicas for the convergence state machine (tests/integration/test_convergence.py).

A *world* is a server and four devices (alice's laptop and phone, bob's laptop, carol's
laptop); the machine records events on devices, pushes, ingests, pulls, restarts the
server, wipes devices and changes teams through it, and reads back what every replica
holds. Two worlds share that interface:

* ``MemoryWorld`` — every replica is a list of events folded with ``projections.state``;
  the server stores what is pushed and sends each person what ``milepost_testkit.model``
  says they may receive. Fast: used to show that the machine finds bugs planted in the
  fold (its invariants compare folds, which is where those bugs show).
* the real world (in the test module): a real nats-server, ``IngestWorker`` and
  ``PullResponder`` over a real store, and each device a real client database synced
  by the real ``Syncer``.

This module also holds the body builders the machine's rules use (own items only) and
the hostile writes (someone else's items), so both worlds see the same histories.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from events import AnyEvent, Event, HybridLogicalClock, new_event_id
from events import bodies as b
from events.clock import pack
from events.clock import wall_ms as real_wall_ms
from milepost_testkit.model import ADMIN, Model, refused_ids

DEVICES: tuple[tuple[str, str], ...] = (
    ("alice", "laptop"),
    ("alice", "phone"),
    ("bob", "laptop"),
    ("carol", "laptop"),
)
"""(person, device) of every device in a world."""

PEOPLE = ("alice", "bob", "carol")
PARTNERS = ("alice", "bob", "carol", "dave")
TEAMS = ("web", "ops")

BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
"""Device time starts here; each recorded event moves it a minute on."""
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
"""When every view is read."""
SKEW = {DEVICES[0]: 0, DEVICES[1]: 7, DEVICES[2]: -5, DEVICES[3]: 3}
"""Minutes each device's clock is off."""

Device = tuple[str, str]


class World(Protocol):
    """A server and the devices of ``DEVICES``."""

    def record(self, device: Device, body: b.Body, wall: datetime) -> Event:
        """Record an event the way the client's commands do (they judge it first)."""
        ...

    def forge(self, device: Device, body: b.Body, wall: datetime, far_ahead: bool) -> Event:
        """Write an event into the device's log by hand, unjudged (a modified client)."""
        ...

    def push(self, device: Device) -> None: ...

    def ingest(self) -> None:
        """Store everything pushed so far."""
        ...

    def pull(self, device: Device) -> None: ...

    def restart(self) -> None:
        """Stop the server's pieces, reopen its store, start them again."""
        ...

    def wipe(self, device: Device) -> set[str]:
        """Replace the device by an empty one; the ids of its events that were lost (never
        acknowledged by the server)."""
        ...

    def admin(self, team: str, person: str, joined: bool) -> None:
        """A membership change, appended as ``milepost-server team join/leave`` does."""
        ...

    def device_log(self, device: Device) -> list[AnyEvent]:
        """The device's events in arrival order."""
        ...

    def device_problems(self, device: Device) -> list[str]:
        """Differences between the device's stored views and a rebuild of its log."""
        ...

    def device_referents(self, device: Device) -> dict[str, tuple[str, str]]:
        """What the server vouched for to the device: id -> (actor, type)."""
        ...

    def server_log(self) -> list[AnyEvent]:
        """The server's stored events in position order."""
        ...

    def server_visible(self, person: str) -> set[str]:
        """Ids of the stored events the server would send ``person`` now."""
        ...

    def dead_letters(self) -> dict[str, str]:
        """The server's refusals: event id -> reason."""
        ...

    def close(self) -> None: ...


def hand_made(
    person: str, device: str, body: b.Body, wall: datetime, last: int, far_ahead: bool
) -> Event:
    """An event built by hand, as a modified client would: clock after ``last`` (or a year
    ahead of both ``wall`` and the real wall clock, so the server's clock bound refuses it
    whatever today's date)."""
    wall_ms = int(wall.timestamp() * 1000)
    clock = HybridLogicalClock(last, wall=lambda: wall_ms).now()
    if far_ahead:  # a year ahead of the real wall clock too: the server's bound refuses it
        ahead = max(wall_ms, real_wall_ms()) + 365 * 86_400_000
        clock = max(clock, pack(ahead, 0))
    return Event(
        id=new_event_id(),
        actor=person,
        device=device,
        clock=clock,
        recorded_at=wall,
        occurred_at=wall,
        body=body,  # type: ignore[arg-type]
    )


# --- in memory ------------------------------------------------------------------------------


@dataclass
class _MemoryDevice:
    person: str
    name: str
    log: list[AnyEvent] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    clock: int = 0
    referents: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(self, event: AnyEvent) -> None:
        if event.id not in self.ids:
            self.ids.add(event.id)
            self.log.append(event)
            self.clock = max(self.clock, event.clock)


class MemoryWorld:
    """Replicas as folds of subsets: the server keeps pushed events in arrival order and
    hands each person what the model says they may receive, in that order."""

    def __init__(self) -> None:
        self.devices = {d: _MemoryDevice(*d) for d in DEVICES}
        self.stream: list[AnyEvent] = []
        self.stored: list[AnyEvent] = []
        self.stored_ids: set[str] = set()
        self.admin_clock = HybridLogicalClock(wall=lambda: int(BASE.timestamp() * 1000))

    def record(self, device: Device, body: b.Body, wall: datetime) -> Event:
        return self.forge(device, body, wall, False)

    def forge(self, device: Device, body: b.Body, wall: datetime, far_ahead: bool) -> Event:
        replica = self.devices[device]
        event = hand_made(replica.person, replica.name, body, wall, replica.clock, far_ahead)
        replica.add(event)
        return event

    def push(self, device: Device) -> None:
        replica = self.devices[device]
        for event in replica.log:
            if event.actor == replica.person and event.id not in replica.acked:
                self.stream.append(event)
                replica.acked.add(event.id)

    def ingest(self) -> None:
        for event in self.stream:
            if event.id not in self.stored_ids:
                self.stored_ids.add(event.id)
                self.stored.append(event)
        self.stream.clear()

    def pull(self, device: Device) -> None:
        replica = self.devices[device]
        log = self.server_log()
        model = Model(log)
        delivered = [e for e in log if model.may_receive(replica.person, e.id)]
        for event in delivered:
            replica.add(event)
            replica.acked.add(event.id)
        replica.referents.update(model.vouched_for(replica.person, delivered))

    def restart(self) -> None:
        """Nothing to restart in memory."""

    def wipe(self, device: Device) -> set[str]:
        old = self.devices[device]
        self.devices[device] = _MemoryDevice(*device)
        return {e.id for e in old.log if e.actor == old.person and e.id not in old.acked}

    def admin(self, team: str, person: str, joined: bool) -> None:
        body: b.KnownBody = (
            b.TeamMemberJoined(team=team, person=person)
            if joined
            else b.TeamMemberLeft(team=team, person=person)
        )
        event = Event(
            id=new_event_id(),
            actor=ADMIN,
            device="server",
            clock=self.admin_clock.now(),
            recorded_at=BASE,
            occurred_at=BASE,
            body=body,
        )
        self.stored.append(event)
        self.stored_ids.add(event.id)

    def device_log(self, device: Device) -> list[AnyEvent]:
        return list(self.devices[device].log)

    def device_problems(self, device: Device) -> list[str]:
        return []

    def device_referents(self, device: Device) -> dict[str, tuple[str, str]]:
        return dict(self.devices[device].referents)

    def server_log(self) -> list[AnyEvent]:
        refused = refused_ids(self.stored)
        return [e for e in self.stored if e.id not in refused]

    def server_visible(self, person: str) -> set[str]:
        return Model(self.server_log()).received_by(person)

    def dead_letters(self) -> dict[str, str]:
        refused = refused_ids(self.stored)
        return {e.id: "refused" for e in self.stored if e.id in refused}

    def close(self) -> None:
        """Nothing to release."""


def own(log: Sequence[AnyEvent], person: str, *types: str) -> list[Event]:
    """The person's events of these types in a log (every own event when none are named)."""
    return [
        e
        for e in log
        if isinstance(e, Event) and e.actor == person and (not types or e.type in types)
    ]


def theirs(log: Sequence[AnyEvent], person: str, *types: str) -> list[Event]:
    """Other people's events of these types in a log."""
    return [
        e
        for e in log
        if isinstance(e, Event) and e.actor not in (person, ADMIN) and e.type in types
    ]


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)
