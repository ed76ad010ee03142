"""The envelope every event travels in, and the opaque form of unknown events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from events.bodies import DeviceId, EventId, KnownBody, PersonId

CURRENT_SCHEMA = 2
"""Schema version written by this code; older events are upcast on decode."""

Stamp = Annotated[int, Meta(ge=0, le=(1 << 63) - 1, description="Hybrid logical clock stamp.")]
Instant = Annotated[datetime, Meta(tz=True, description="A timezone-aware instant.")]


class Event(msgspec.Struct, frozen=True, gc=False):
    """One immutable fact: who, on which device, when (three ways), and what."""

    id: EventId
    actor: PersonId
    device: DeviceId
    clock: Stamp
    recorded_at: Instant
    occurred_at: Instant
    body: KnownBody
    schema: int = CURRENT_SCHEMA

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


AnyEvent = Event | OpaqueEvent
