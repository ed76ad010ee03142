"""The envelope every event travels in, and the opaque form of unknown events."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta
from msgspec.structs import force_setattr

from events.bodies import (
    DATE_RANGE_ERROR,
    DEVICE_PATTERN,
    MAX_DATE,
    MIN_DATE,
    PERSON_PATTERN,
    DeviceId,
    EventId,
    KnownBody,
    PersonId,
)
from events.clock import MAX_STAMP

CURRENT_SCHEMA = 2
"""Schema version written by this code; older events are upcast on decode."""

Stamp = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_STAMP,
        description="Hybrid logical clock stamp, physical part at most 2199-12-31T23:59:59.999Z.",
    ),
]
Instant = Annotated[datetime, Meta(tz=True, description="A timezone-aware instant.")]


# ``actor`` and ``device`` take few distinct values, so instead of a regex per
# event (msgspec runs ``re`` on every decode) they are checked once per value
# and remembered. The sets only ever hold values that passed the pattern; they
# are bounded so that a stream of distinct handles cannot grow them forever.
_HANDLE = Annotated[str, Meta(min_length=1, max_length=63)]
_PERSON = re.compile(PERSON_PATTERN)
_DEVICE = re.compile(DEVICE_PATTERN)
_valid_actors: dict[str, str] = {}
_valid_devices: dict[str, str] = {}
_MAX_REMEMBERED = 4096
INVALID_HANDLE = "Expected `str` matching regex "
"""Start of the reason for an invalid actor or device, as msgspec words it."""


_MIN_YEAR = MIN_DATE.year
_MAX_YEAR = MAX_DATE.year


def _check_instants(recorded_at: datetime, occurred_at: datetime) -> None:
    """ValueError naming the field unless both instants' dates are within the date range.

    The date as written (in the instant's own offset) is checked: two attribute reads
    per event, the cheapest check on the hot path. An offset is less than a day, so
    the instant in UTC is within a day of that range and converting cannot overflow.
    """
    if not _MIN_YEAR <= recorded_at.year <= _MAX_YEAR:
        raise ValueError(f"recorded_at: {DATE_RANGE_ERROR}")
    if not _MIN_YEAR <= occurred_at.year <= _MAX_YEAR:
        raise ValueError(f"occurred_at: {DATE_RANGE_ERROR}")


def _remember(valid: dict[str, str], value: str) -> None:
    if len(valid) >= _MAX_REMEMBERED:
        valid.clear()
    valid[value] = value


class Event(msgspec.Struct, frozen=True, gc=False):
    """One immutable fact: who, on which device, when (three ways), and what."""

    id: EventId
    actor: _HANDLE  # a PersonId: checked in __post_init__
    device: _HANDLE  # a DeviceId: checked in __post_init__
    clock: Stamp
    recorded_at: Instant
    occurred_at: Instant
    body: KnownBody
    schema: int = CURRENT_SCHEMA

    def __post_init__(self) -> None:
        # The message names the field: the codec reports it as that field's error.
        if not (
            _MIN_YEAR <= self.recorded_at.year <= _MAX_YEAR
            and _MIN_YEAR <= self.occurred_at.year <= _MAX_YEAR
        ):
            _check_instants(self.recorded_at, self.occurred_at)
        # Most events happen when recorded: one datetime object then serves both fields.
        # Only when the offset is the same object too, so both still encode as written.
        occurred_at = self.occurred_at
        recorded_at = self.recorded_at
        if occurred_at.tzinfo is recorded_at.tzinfo and occurred_at == recorded_at:
            force_setattr(self, "occurred_at", recorded_at)
        # A handle seen before is replaced by its first copy: a million events
        # of a hundred people then hold a hundred strings, not a million.
        actor = self.actor
        known = _valid_actors.get(actor)
        if known is None:
            if _PERSON.search(actor) is None:
                raise ValueError(f"actor: {INVALID_HANDLE}{PERSON_PATTERN!r}")
            _remember(_valid_actors, actor)
        else:
            force_setattr(self, "actor", known)
        device = self.device
        known = _valid_devices.get(device)
        if known is None:
            if _DEVICE.search(device) is None:
                raise ValueError(f"device: {INVALID_HANDLE}{DEVICE_PATTERN!r}")
            _remember(_valid_devices, device)
        else:
            force_setattr(self, "device", known)

    @property
    def type(self) -> str:
        """The body's type tag, e.g. ``checkin.recorded``."""
        return self.body.__struct_config__.tag  # type: ignore[return-value]


class OpaqueEvent(msgspec.Struct, frozen=True, gc=False):
    """An event of a type this version does not know.

    It is kept, synced and stored untouched (``raw`` is the exact bytes it
    arrived as) and ignored by projections.
    """

    id: EventId
    actor: PersonId
    device: DeviceId
    clock: Stamp
    recorded_at: Instant
    occurred_at: Instant
    type: str
    raw: bytes
    schema: int = CURRENT_SCHEMA

    def __post_init__(self) -> None:
        _check_instants(self.recorded_at, self.occurred_at)


AnyEvent = Event | OpaqueEvent
