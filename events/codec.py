"""The one way events become bytes and bytes become events.

Any malformed or invalid input raises ``CodecError`` naming the field and the
reason; nothing else escapes ``decode``. Known events of the current schema
take the fast path (one msgspec decode); older schemas are upcast and unknown
types become ``OpaqueEvent`` that re-encodes to the exact bytes it came as.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from events.bodies import BODY_TYPES
from events.clock import MAX_STAMP
from events.envelope import CURRENT_SCHEMA, AnyEvent, Event, Instant, OpaqueEvent, Stamp
from events.upcast import upcast

MAX_EVENT_BYTES = 256 * 1024
"""Larger payloads are refused before parsing (bodies are capped far below this)."""


class CodecError(ValueError):
    """Input that is not a valid event; ``field`` is a dotted path (``$`` = the whole)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


_encoder = msgspec.json.Encoder()
_event_decoder = msgspec.json.Decoder(Event)
_any_decoder = msgspec.json.Decoder()
_MISSING = re.compile(r"^Object missing required field `([^`]+)`$")
_FIELD_ERROR = re.compile(
    r"^(actor|device|recorded_at|occurred_at|due_on|starts_on|ends_on|cycle): (.*)$", re.DOTALL
)
"""Reasons raised by a ``__post_init__`` that name their own field (``due_on: date must...``)."""
_LOCATION = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


class _Envelope(msgspec.Struct, frozen=True):
    """The envelope alone, to validate an event whose body is not (yet) known."""

    id: Any
    actor: Any
    device: Any
    clock: Stamp
    recorded_at: Instant
    occurred_at: Instant
    body: dict[str, Any]
    schema: int = CURRENT_SCHEMA


def _error_from(exc: msgspec.MsgspecError) -> CodecError:
    match = _LOCATION.match(str(exc))
    if match is None:  # pragma: no cover - the pattern matches any string
        return CodecError("$", str(exc))
    path = (match.group("path") or "").lstrip(".")
    reason = match.group("reason")
    named = _FIELD_ERROR.match(reason)
    if named is not None:  # a field checked in a __post_init__ names itself
        path = f"{path}.{named.group(1)}" if path else named.group(1)
        reason = named.group(2)
    missing = _MISSING.match(reason)
    if missing is not None:  # name the missing field itself, not its parent
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
        reason = "required field is missing"
    if path == "clock" and reason.startswith("Expected `int` <="):
        reason = f"stamp is later than 2199-12-31 (at most {MAX_STAMP})"
    return CodecError(path or "$", reason)


def encode(event: AnyEvent) -> bytes:
    """Serialise an event as compact JSON (opaque events: their original bytes)."""
    if isinstance(event, OpaqueEvent):
        return event.raw
    return _encoder.encode(event)


def decode(data: bytes | bytearray | memoryview | str) -> AnyEvent:
    """Parse and validate one event; raise ``CodecError`` for anything else."""
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_EVENT_BYTES:
        raise CodecError("$", f"event is {len(data)} bytes, more than {MAX_EVENT_BYTES}")
    try:
        event = _event_decoder.decode(data)
    except msgspec.MsgspecError as exc:
        return _decode_slow(bytes(data), exc)
    except UnicodeDecodeError as exc:  # msgspec lets invalid UTF-8 in strings through
        raise CodecError("$", f"invalid UTF-8: {exc.reason}") from None
    if event.schema != CURRENT_SCHEMA:
        return _decode_slow(bytes(data), None)
    return event


def decode_many(items: Iterable[bytes]) -> Iterator[AnyEvent]:
    """``decode`` of each item, one at a time as they are consumed (a rebuild's loop).

    The same results and errors as ``decode``; the fast path (a known event of the
    current schema) is inlined, which is most of a rebuild's events.
    """
    fast = _event_decoder.decode
    for data in items:
        if len(data) <= MAX_EVENT_BYTES:
            try:
                event = fast(data)
            except (msgspec.MsgspecError, UnicodeDecodeError):
                pass  # ``decode`` says why (or upcasts, or keeps it opaque)
            else:
                if event.schema == CURRENT_SCHEMA:
                    yield event
                    continue
        yield decode(data)


def decode_event(data: bytes | bytearray | memoryview | str) -> Event:
    """Like ``decode`` but refuse event types this version does not know."""
    event = decode(data)
    if isinstance(event, OpaqueEvent):
        raise CodecError("body.type", f"unknown event type {event.type!r}")
    return event


def _decode_slow(data: bytes, fast_error: msgspec.MsgspecError | None) -> AnyEvent:
    try:
        raw = _any_decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise CodecError("$", f"malformed JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CodecError("$", f"invalid UTF-8: {exc.reason}") from None
    if not isinstance(raw, dict):
        raise CodecError("$", "an event must be a JSON object")
    try:
        envelope = msgspec.convert(raw, _Envelope)
    except msgspec.MsgspecError as exc:
        raise _error_from(exc) from None
    kind = envelope.body.get("type")
    if not isinstance(kind, str) or not kind:
        raise CodecError("body.type", "missing event type")
    if envelope.schema < 1:
        raise CodecError("schema", f"schema version must be at least 1, got {envelope.schema}")
    if kind not in BODY_TYPES:
        # Validate the envelope strictly, then keep the event untouched.
        return _opaque(raw, data, kind)
    if envelope.schema < CURRENT_SCHEMA:
        raw = {**raw, "body": upcast(envelope.body, envelope.schema, CURRENT_SCHEMA)}
        raw["schema"] = CURRENT_SCHEMA
        try:
            return msgspec.convert(raw, Event)
        except msgspec.MsgspecError as exc:
            raise _error_from(exc) from None
    if fast_error is not None:
        raise _error_from(fast_error) from None
    # A newer schema whose body still decodes: fields added since carry defaults.
    try:
        return msgspec.convert({**raw, "schema": CURRENT_SCHEMA}, Event)
    except msgspec.MsgspecError as exc:  # pragma: no cover - same input decoded above
        raise _error_from(exc) from None


class _OpaqueHead(msgspec.Struct, frozen=True):
    id: Any
    actor: Any
    device: Any
    clock: Stamp
    recorded_at: Instant
    occurred_at: Instant
    schema: int = CURRENT_SCHEMA


def _opaque(raw: dict[str, Any], data: bytes, kind: str) -> OpaqueEvent:
    try:
        head = msgspec.convert(raw, _OpaqueHead)
        return msgspec.convert(
            {
                "id": head.id,
                "actor": head.actor,
                "device": head.device,
                "clock": head.clock,
                "recorded_at": head.recorded_at,
                "occurred_at": head.occurred_at,
                "type": kind,
                "raw": data,
                "schema": head.schema,
            },
            OpaqueEvent,
            from_attributes=False,
            builtin_types=(bytes,),
        )
    except msgspec.MsgspecError as exc:
        raise _error_from(exc) from None
