"""The port every server store implements, and the values it speaks in."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import msgspec

from events import AnyEvent, CodecError, decode
from events.wire import Refusal
from projections.ownership import Referent


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message as it arrived: its exact bytes, the decoded event or why it is invalid,
    and the NATS subject it came on."""

    raw: bytes
    event: AnyEvent | None
    error: str | None
    subject: str

    @classmethod
    def from_raw(cls, raw: bytes, subject: str) -> Incoming:
        """Decode ``raw``; a decoding failure becomes the dead-letter reason."""
        try:
            return cls(raw, decode(raw), None, subject)
        except CodecError as exc:
            return cls(raw, None, str(exc), subject)

    @classmethod
    def rejected(cls, raw: bytes, reason: str, subject: str) -> Incoming:
        """A message refused before storage (e.g. actor does not match its subject)."""
        return cls(raw, None, reason, subject)


class StoredEvent(msgspec.Struct, frozen=True):
    """An event as the store holds it: its global position and its exact bytes."""

    position: int
    id: str
    actor: str
    type: str
    root_id: str | None
    team: str | None
    raw: bytes


class AppendResult(msgspec.Struct, frozen=True):
    """What one ``append_batch`` did: new events (in position order), ids already stored,
    and how many messages went to the dead letters."""

    stored: tuple[StoredEvent, ...]
    duplicates: tuple[str, ...]
    dead_lettered: int

    @property
    def last_position(self) -> int | None:
        """The highest position assigned by this batch, if any."""
        return self.stored[-1].position if self.stored else None


class DeadLetter(msgspec.Struct, frozen=True):
    """An invalid message kept with its exact bytes and the reason it was refused."""

    id: int
    subject: str
    raw: bytes
    reason: str
    received_at: datetime


class ServerStore(Protocol):
    """The server's event log plus the small indexes it needs for access control and pull.

    Positions are dense (1, 2, 3, ...) and assigned in commit order, so a reader
    paging with ``events_after`` never skips an event that committed late.
    """

    async def open(self) -> None:
        """Connect and run pending versioned migrations (each exactly once)."""
        ...

    async def close(self) -> None:
        """Release connections; the store can be opened again."""
        ...

    async def migrations(self) -> list[int]:
        """Versions of the migrations applied so far, ascending."""
        ...

    async def append_batch(self, items: Sequence[Incoming]) -> AppendResult:
        """Store a batch in one transaction: valid new events get positions and update the
        indexes, ids already stored are duplicates (never errors), invalid ones are
        dead-lettered; all or nothing."""
        ...

    async def events_after(self, position: int, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` events with a position greater than ``position``, in order."""
        ...

    async def visible_events_after(
        self, person: str, position: int, limit: int
    ) -> list[StoredEvent]:
        """Like ``events_after`` but only events ``person`` may see now: their own, those
        whose root they own or is shared with them, and team changes of their teams."""
        ...

    async def partition_events(
        self,
        people: Collection[str],
        after: int,
        upto: int,
        roots: Collection[str] = (),
    ) -> list[StoredEvent]:
        """The events with a position in ``(after, upto]`` that a working-set partition of
        ``people`` folds, in position order: the people's own (by actor), every team change
        (the administrator's), the kudos others gave on the people's items, and the events
        of others under ``roots`` (``foreign_roots``)."""
        ...

    async def foreign_roots(
        self,
        completions: Collection[str],
        people: Collection[str],
        upto: int,
        known: Collection[str] = (),
    ) -> tuple[list[str], list[StoredEvent]]:
        """The roots of these completions owned by someone outside ``people``, and the
        events under those of them not ``known`` (already folded) at positions ``<= upto``
        by others than ``people``, in order."""
        ...

    async def accepted_referents(self, ids: Collection[str], upto: int) -> dict[str, Referent]:
        """Of the events ``ids``, those stored at a position ``<= upto`` that the ownership
        rule had accepted by then (not held, or released by then): their actor and type (a
        partition's fold judges with them what names an event of someone outside it)."""
        ...

    async def kudos_naming(
        self, completions: Collection[str], upto: int
    ) -> list[tuple[str, str, int]]:
        """(completion, giver, position) of the kudos stored at a position ``<= upto`` that
        name these completions (held ones included: a kudos may arrive before its completion)."""
        ...

    async def reveal_floor(self, person: str, checked: int, after: int) -> int | None:
        """The lowest position ``<= after`` of an event ``person`` may see now that may have
        become visible to them through something stored after position ``checked`` (a share,
        a relink, a team join, a parent that arrived after its children); None if none.
        A pull that passed such an event before it was visible rescans from there."""
        ...

    async def get(self, event_id: str) -> StoredEvent | None:
        """The stored event with this id, or None."""
        ...

    async def count(self) -> int:
        """How many events are stored (not counting dead letters)."""
        ...

    async def max_position(self) -> int:
        """The highest position assigned so far (0 when empty)."""
        ...

    async def dead_letters(self, after_id: int = 0, limit: int = 100) -> list[DeadLetter]:
        """Dead letters with an id greater than ``after_id``, oldest first."""
        ...

    async def refusals(self, person: str, after_id: int, limit: int) -> list[Refusal]:
        """The person's dead letters (their devices' refused events) with an id greater than
        ``after_id``, oldest first: how a device learns which of its events were refused."""
        ...

    async def vouched(self, person: str, ids: Collection[str]) -> dict[str, Referent]:
        """Of the events ``ids``, those stored and accepted by the ownership rule (not held,
        not dead letters) that ``person`` may not see now: their actor and type, nothing
        else (``PullReply.referents``; docs/security.md "Referents")."""
        ...

    async def audience(self, roots: Collection[str], teams: Collection[str]) -> set[str]:
        """Everyone who may now see events under these roots or of these teams."""
        ...

    async def item_root(self, item_id: str) -> str | None:
        """The visibility root of an item or event (None when not known yet)."""
        ...


async def events_of_fresh_roots(
    store: ServerStore, roots: list[str], people: Collection[str], upto: int, known: Collection[str]
) -> list[StoredEvent]:
    """The events under the ``roots`` not ``known`` at positions ``<= upto``, by others than
    ``people``: the second half of both stores' ``foreign_roots``."""
    fresh = set(roots).difference(known)
    if not fresh:
        return []
    events = await store.partition_events((), 0, upto, fresh)
    outside = set(people)
    # Not the team changes the query adds, nor the people's own (folded already).
    return [e for e in events if e.root_id in fresh and e.actor not in outside]
