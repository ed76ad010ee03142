"""The sync protocol's messages: what devices and the server say to each other over NATS.

Pure: no I/O. These are wire messages, separate from stored events: an event
travels inside them as its exact stored bytes (``raw``), never re-encoded, so
events of types this version does not know pass through untouched.

Encoding:

- ``PullRequest`` / ``PullReply`` are **msgpack** (``msgspec.msgpack``): the
  reply carries many events as raw bytes, and msgpack holds bytes as bytes
  (JSON would need base64, a third more on the wire and a copy each way);
- ``Poke`` is **JSON** (``{"position": 42}``): tiny, and readable with
  ``nats sub 'milepost.poke.*'`` when debugging.

Evolution follows the msgspec rule: only add fields with defaults, never
change a field's type. Unknown fields are ignored on decode, so an older
client talks to a newer server and the other way round.

The pull cursor protocol (see ``docs/sync.md``):

- ``after`` is the device's cursor: every event it may see with a position
  ``<= after`` has been delivered, as visibility stood when it was checked;
- ``checked`` is the position up to which the server has already looked for
  *reveals* (events that became visible to the person later than their
  position, e.g. a goal shared with them after the fact) on this device's
  behalf; the reply returns the new value to store;
- when a reveal lies at or before ``after``, the server serves the page from
  just before it instead (``rescan_from``); events the device already holds
  come again and are ignored by their id.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
from msgspec import Meta

EVENTS_PREFIX = "milepost.events"
"""A device publishes its person's events on ``milepost.events.<person>.<device>``."""


PULL_PREFIX = "milepost.pull"
POKE_PREFIX = "milepost.poke"


def events_subject(person: str, device: str) -> str:
    """Where a device publishes its person's events (``milepost.events.<person>.<device>``;
    the server reads the person from the third token, the fourth names the sender)."""
    return f"{EVENTS_PREFIX}.{person}.{device}"


def pull_subject(person: str) -> str:
    """Where a person's devices send their pull requests."""
    return f"{PULL_PREFIX}.{person}"


def poke_subject(person: str) -> str:
    """Where the server pokes a person's devices after storing something they may see."""
    return f"{POKE_PREFIX}.{person}"


def inbox_prefix(person: str) -> str:
    """The ``inbox_prefix`` a person's client connects with: replies and acks land only
    under it (the NATS permissions let nobody else subscribe there)."""
    return f"_INBOX_{person}"


def subject_person(subject: str) -> str | None:
    """The person in ``milepost.events.<person>.<...>``, or None for any other subject."""
    prefix = EVENTS_PREFIX + "."
    if not subject.startswith(prefix):
        return None
    person, _, rest = subject[len(prefix) :].partition(".")
    return person if person and rest else None


MAX_PULL_LIMIT = 5000
"""The largest page a device may ask for; the server also caps a page by bytes."""

DEFAULT_PULL_LIMIT = 2000


class PullRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Sent on ``milepost.pull.<person>``: events visible to me after my cursor, please."""

    device: str
    after: Annotated[int, Meta(ge=0)] = 0
    limit: Annotated[int, Meta(ge=1, le=MAX_PULL_LIMIT)] = DEFAULT_PULL_LIMIT
    checked: Annotated[int, Meta(ge=0)] = 0
    refusals_after: Annotated[int, Meta(ge=0)] = 0
    """The device's cursor in its person's refusals (``Refusal.id``)."""


RATE_LIMITED = "rate limit:"
"""The start of every retryable refusal's reason (``server.limits``): the device pushes the
event again after the delay the reason names; every other refusal is final."""

_RETRY_AFTER = re.compile(r"retry after (\d+(?:\.\d+)?) ?s\b")


def is_retryable(reason: str) -> bool:
    """Whether a refusal's reason asks the device to push the event again later."""
    return reason.startswith(RATE_LIMITED)


def retry_after(reason: str) -> float | None:
    """The delay (seconds) a retryable reason asks for; None for any other reason."""
    if not is_retryable(reason):
        return None
    found = _RETRY_AFTER.search(reason)
    return float(found.group(1)) if found else 1.0


class Refusal(msgspec.Struct, frozen=True, array_like=True):
    """One of the person's events the server refused, and why (a dead letter)."""

    id: int
    event_id: str | None
    reason: str


MAX_REFERENTS = 2000
"""Referents one reply carries at most (``PullReply.referents``): a page whose events name
more stops before the event that would pass it (the rest come with the next page)."""

_REF_ID = Annotated[str, Meta(min_length=1, max_length=64)]
_REF_ACTOR = Annotated[str, Meta(min_length=1, max_length=63)]
_REF_TYPE = Annotated[str, Meta(min_length=1, max_length=64)]


class WireReferent(msgspec.Struct, frozen=True, array_like=True):
    """The server vouching for an event the person may not see: it stores ``id``, accepted by
    the ownership rule, written by ``actor``, of type ``type`` — all the rule needs to judge
    an event that names it (``projections.ownership.Referent``), and nothing of its content.
    See docs/security.md ("Referents")."""

    id: _REF_ID
    actor: _REF_ACTOR
    type: _REF_TYPE


REFERENT_OVERHEAD = 8
"""Bytes msgpack adds per referent around its three strings (array and string headers)."""


class WireEvent(msgspec.Struct, frozen=True, array_like=True):
    """One event in a reply: its global position and its exact stored bytes."""

    position: int
    raw: bytes


class PullReply(msgspec.Struct, frozen=True, kw_only=True):
    """The server's answer: one page in position order, and where to continue.

    ``next_after`` is the cursor to store with the page's events (in one
    transaction); ``more`` says another page is ready now; ``head`` is the
    highest position the server had committed when it answered; ``checked``
    replaces the device's ``checked``; ``rescan_from`` is set when the page was
    served from an earlier position because something became visible. On
    ``error`` the other fields are empty and the device keeps its cursor.
    """

    events: list[WireEvent] = []
    next_after: int = 0
    more: bool = False
    head: int = 0
    checked: int = 0
    rescan_from: int | None = None
    error: str | None = None
    refusals: list[Refusal] = []
    """The person's refusals after the request's ``refusals_after``, oldest first."""
    referents: Annotated[list[WireReferent], Meta(max_length=MAX_REFERENTS)] = []
    """For the page's events, every event they name that the server accepted and the
    person may not see now (at most ``MAX_REFERENTS``): the device's fold judges the page's
    events with them (see ``WireReferent``)."""


class Poke(msgspec.Struct, frozen=True):
    """Sent on ``milepost.poke.<person>`` after ingest: something you may see is stored,
    up to ``position``."""

    position: int


class WireError(ValueError):
    """A message that is not valid for the protocol."""


_msgpack = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(PullRequest)
_reply_decoder = msgspec.msgpack.Decoder(PullReply)
_json = msgspec.json.Encoder()
_poke_decoder = msgspec.json.Decoder(Poke)


def encode_request(request: PullRequest) -> bytes:
    """A pull request as msgpack."""
    return _msgpack.encode(request)


def decode_request(data: bytes) -> PullRequest:
    """Parse a pull request; WireError when it is not one."""
    try:
        return _request_decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise WireError(f"invalid pull request: {exc}") from None


def encode_reply(reply: PullReply) -> bytes:
    """A pull reply as msgpack."""
    return _msgpack.encode(reply)


def decode_reply(data: bytes) -> PullReply:
    """Parse a pull reply; WireError when it is not one."""
    try:
        return _reply_decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise WireError(f"invalid pull reply: {exc}") from None


def encode_poke(poke: Poke) -> bytes:
    """A poke as JSON."""
    return _json.encode(poke)


def decode_poke(data: bytes) -> Poke:
    """Parse a poke; WireError when it is not one."""
    try:
        return _poke_decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise WireError(f"invalid poke: {exc}") from None


REPLY_OVERHEAD = 256
"""Bytes a reply needs beside its events (field names, cursors, framing), rounded up."""

EVENT_OVERHEAD = 16
"""Bytes msgpack adds per event around its raw bytes (array header, position, bin header)."""
