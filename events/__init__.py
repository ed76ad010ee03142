"""What can happen in Milepost: the event envelope, every body, the codec, the clock.

Pure: no I/O. Everything else builds on these types.
"""

from events.bodies import *  # noqa: F403 - the bodies are this package's vocabulary
from events.bodies import BODY_TYPES, KnownBody
from events.clock import HybridLogicalClock
from events.codec import CodecError, decode, decode_event, decode_many, encode
from events.cycles import cycle_bounds
from events.envelope import CURRENT_SCHEMA, AnyEvent, Event, OpaqueEvent
from events.ids import new_event_id

__all__ = [
    "BODY_TYPES",
    "CURRENT_SCHEMA",
    "AnyEvent",
    "CodecError",
    "Event",
    "HybridLogicalClock",
    "KnownBody",
    "OpaqueEvent",
    "cycle_bounds",
    "decode",
    "decode_event",
    "decode_many",
    "encode",
    "new_event_id",
]
