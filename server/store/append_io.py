"""The append algorithm's input and output, kept apart from the algorithm ("sans-IO").

``server.store.append`` is written once, as generators: at each SQL step the algorithm
*yields* a ``Call`` (the name of a primitive and its arguments) and receives the answer.
It does no I/O itself, and a backend runs it with the driver matching its driver library:

* ``drive_async`` over an ``AppendTx`` whose primitives are coroutines (PostgreSQL:
  asyncpg is asynchronous; each step is one awaited round trip);
* ``drive_sync`` over a ``SyncAppendTx`` whose primitives are plain functions (SQLite:
  the whole transaction, BEGIN to COMMIT, is one function run in the store's own writer
  thread, so nothing waits on the event loop between its statements).

Why this shape: the algorithm is long (ownership verdicts, links, roots, held events)
and must be identical on both backends, while one backend is async and the other is
best driven synchronously in a worker thread. Writing it as ``async`` and running it in
the thread meant driving a coroutine by hand (``coroutine.send``), relying on none of
its awaits ever suspending; a generator states that contract in its type instead.
``Ask`` gives each request a typed result, so ``last = yield from ask.lock_positions()``
is checked by mypy as an ``int``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar, cast

from projections.ownership import Referent

_T = TypeVar("_T")


class EventRow(NamedTuple):
    position: int
    id: str
    actor: str
    type: str
    ref_id: str | None
    root_id: str | None
    team: str | None
    subject: str
    raw: bytes
    stored_at: datetime


class ItemRow(NamedTuple):
    item_id: str
    owner: str
    kind: str
    root_id: str | None


class DeadLetterRow(NamedTuple):
    subject: str
    raw: bytes
    reason: str
    digest: str
    received_at: datetime
    person: str | None  # whose device sent it (from the subject)
    event_id: str | None  # the id it claims, so that device can match the refusal


class HeldRow(NamedTuple):
    """A stored event the ownership rule has not accepted: waiting for ``missing``, refused
    for ``reason``, or accepted late (``released_at``: the last position of that batch)."""

    event_id: str
    missing: str | None
    reason: str | None
    released_at: int | None


class HeldEvent(NamedTuple):
    event_id: str
    subject: str
    raw: bytes


class LinkRow(NamedTuple):
    milestone: str
    parent: str | None
    clock: int
    event_id: str


class SharingRow(NamedTuple):
    root_id: str
    actor: str
    visibility: str
    partners: str  # a JSON array of person ids
    clock: int
    event_id: str


class TeamRow(NamedTuple):
    team: str
    person: str
    joined: bool
    clock: int
    event_id: str


class Call(NamedTuple):
    """One request of the algorithm: a primitive of ``AppendTx`` and its arguments."""

    name: str
    args: tuple[Any, ...]


Step = Generator[Call, Any, _T]
"""A piece of the algorithm: yields ``Call`` requests, is sent their answers, returns a ``_T``."""


def _call(name: str, *args: Any) -> Step[Any]:
    answer = yield Call(name, args)
    return answer


class Ask:
    """The algorithm's side of the primitives: each method yields its request (a ``Call``)
    and returns the backend's answer, so ``x = yield from ask.step(...)`` is typed."""

    def lock_positions(self) -> Step[int]:
        """Request ``AppendTx.lock_positions``."""
        return _call("lock_positions")

    def save_last_position(self, last: int) -> Step[None]:
        """Request ``AppendTx.save_last_position``."""
        return _call("save_last_position", last)

    def existing_ids(self, ids: Sequence[str]) -> Step[set[str]]:
        """Request ``AppendTx.existing_ids``."""
        return _call("existing_ids", ids)

    def roots_of(self, ids: Iterable[str]) -> Step[dict[str, str | None]]:
        """Request ``AppendTx.roots_of``."""
        return _call("roots_of", ids)

    def refs_of(self, ids: Iterable[str]) -> Step[dict[str, str | None]]:
        """Request ``AppendTx.refs_of``."""
        return _call("refs_of", ids)

    def upsert_links(self, rows: Sequence[LinkRow]) -> Step[None]:
        """Request ``AppendTx.upsert_links``."""
        return _call("upsert_links", rows)

    def links_of(self, milestones: Iterable[str]) -> Step[dict[str, str | None]]:
        """Request ``AppendTx.links_of``."""
        return _call("links_of", milestones)

    def insert_events(self, rows: Sequence[EventRow]) -> Step[None]:
        """Request ``AppendTx.insert_events``."""
        return _call("insert_events", rows)

    def insert_items(self, rows: Sequence[ItemRow]) -> Step[None]:
        """Request ``AppendTx.insert_items``."""
        return _call("insert_items", rows)

    def insert_dead_letters(self, rows: Sequence[DeadLetterRow]) -> Step[int]:
        """Request ``AppendTx.insert_dead_letters``."""
        return _call("insert_dead_letters", rows)

    def upsert_sharing(self, rows: Sequence[SharingRow]) -> Step[None]:
        """Request ``AppendTx.upsert_sharing``."""
        return _call("upsert_sharing", rows)

    def upsert_team_members(self, rows: Sequence[TeamRow]) -> Step[None]:
        """Request ``AppendTx.upsert_team_members``."""
        return _call("upsert_team_members", rows)

    def children(self, ids: Iterable[str]) -> Step[list[tuple[str, str]]]:
        """Request ``AppendTx.children``."""
        return _call("children", ids)

    def referents(self, ids: Iterable[str]) -> Step[dict[str, Referent]]:
        """Request ``AppendTx.referents``."""
        return _call("referents", ids)

    def hold(self, rows: Sequence[HeldRow]) -> Step[None]:
        """Request ``AppendTx.hold``."""
        return _call("hold", rows)

    def waiting_on(self, ids: Iterable[str]) -> Step[list[HeldEvent]]:
        """Request ``AppendTx.waiting_on``."""
        return _call("waiting_on", ids)

    def set_roots(self, roots: dict[str, str | None]) -> Step[None]:
        """Request ``AppendTx.set_roots``."""
        return _call("set_roots", roots)

    def set_refs(self, refs: dict[str, str | None]) -> Step[None]:
        """Request ``AppendTx.set_refs``."""
        return _call("set_refs", refs)


ask = Ask()
"""The requests, for ``yield from``."""


class AppendTx(Protocol):
    """SQL primitives inside one open transaction; each is one round trip."""

    async def lock_positions(self) -> int:
        """Serialize appenders until commit; return the last assigned position."""
        ...

    async def save_last_position(self, last: int) -> None:
        """Record the new last position (no-op where it is derived from the table)."""
        ...

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of these event ids are already stored."""
        ...

    async def roots_of(self, ids: Iterable[str]) -> dict[str, str | None]:
        """Root of each stored event among ``ids`` (absent: not stored)."""
        ...

    async def refs_of(self, ids: Iterable[str]) -> dict[str, str | None]:
        """Ref of each stored event among ``ids``."""
        ...

    async def upsert_links(self, rows: Sequence[LinkRow]) -> None:
        """Milestone parents, last writer wins by (clock, event id)."""
        ...

    async def links_of(self, milestones: Iterable[str]) -> dict[str, str | None]:
        """The winning parent of each milestone (None: standalone)."""
        ...

    async def insert_events(self, rows: Sequence[EventRow]) -> None:
        """Insert new events (ids known to be new)."""
        ...

    async def insert_items(self, rows: Sequence[ItemRow]) -> None:
        """Insert the items created by new events."""
        ...

    async def insert_dead_letters(self, rows: Sequence[DeadLetterRow]) -> int:
        """Insert dead letters; a repeat of the same digest replaces the earlier row under a
        new, higher id (its device learns of the new refusal); return how many."""
        ...

    async def upsert_sharing(self, rows: Sequence[SharingRow]) -> None:
        """Sharing per (root, actor), last writer wins by (clock, event id)."""
        ...

    async def upsert_team_members(self, rows: Sequence[TeamRow]) -> None:
        """Membership per (team, person), last writer wins by (clock, event id)."""
        ...

    async def children(self, ids: Iterable[str]) -> list[tuple[str, str]]:
        """(event id, ref) of stored events whose ref is one of ``ids`` (not themselves)."""
        ...

    async def referents(self, ids: Iterable[str]) -> dict[str, Referent]:
        """Actor and type of each accepted stored event among ``ids`` (held ones are absent)."""
        ...

    async def hold(self, rows: Sequence[HeldRow]) -> None:
        """Record (or update) the held state of stored events."""
        ...

    async def waiting_on(self, ids: Iterable[str]) -> list[HeldEvent]:
        """Held events waiting for one of ``ids``, in position order."""
        ...

    async def set_roots(self, roots: dict[str, str | None]) -> None:
        """Set the root of these events and of the items they created."""
        ...

    async def set_refs(self, refs: dict[str, str | None]) -> None:
        """Set the ref of these events."""
        ...


class SyncAppendTx(Protocol):
    """The same primitives as ``AppendTx``, answered at once (SQLite in its own thread)."""

    def lock_positions(self) -> int:
        """Serialize appenders until commit; return the last assigned position."""
        ...

    def save_last_position(self, last: int) -> None:
        """Record the new last position (no-op where it is derived from the table)."""
        ...

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of these event ids are already stored."""
        ...

    def roots_of(self, ids: Iterable[str]) -> dict[str, str | None]:
        """Root of each stored event among ``ids`` (absent: not stored)."""
        ...

    def refs_of(self, ids: Iterable[str]) -> dict[str, str | None]:
        """Ref of each stored event among ``ids``."""
        ...

    def upsert_links(self, rows: Sequence[LinkRow]) -> None:
        """Milestone parents, last writer wins by (clock, event id)."""
        ...

    def links_of(self, milestones: Iterable[str]) -> dict[str, str | None]:
        """The winning parent of each milestone (None: standalone)."""
        ...

    def insert_events(self, rows: Sequence[EventRow]) -> None:
        """Insert new events (ids known to be new)."""
        ...

    def insert_items(self, rows: Sequence[ItemRow]) -> None:
        """Insert the items created by new events."""
        ...

    def insert_dead_letters(self, rows: Sequence[DeadLetterRow]) -> int:
        """Insert dead letters; a repeat of the same digest replaces the earlier row under a
        new, higher id (its device learns of the new refusal); return how many."""
        ...

    def upsert_sharing(self, rows: Sequence[SharingRow]) -> None:
        """Sharing per (root, actor), last writer wins by (clock, event id)."""
        ...

    def upsert_team_members(self, rows: Sequence[TeamRow]) -> None:
        """Membership per (team, person), last writer wins by (clock, event id)."""
        ...

    def children(self, ids: Iterable[str]) -> list[tuple[str, str]]:
        """(event id, ref) of stored events whose ref is one of ``ids`` (not themselves)."""
        ...

    def referents(self, ids: Iterable[str]) -> dict[str, Referent]:
        """Actor and type of each accepted stored event among ``ids`` (held ones are absent)."""
        ...

    def hold(self, rows: Sequence[HeldRow]) -> None:
        """Record (or update) the held state of stored events."""
        ...

    def waiting_on(self, ids: Iterable[str]) -> list[HeldEvent]:
        """Held events waiting for one of ``ids``, in position order."""
        ...

    def set_roots(self, roots: dict[str, str | None]) -> None:
        """Set the root of these events and of the items they created."""
        ...

    def set_refs(self, refs: dict[str, str | None]) -> None:
        """Set the ref of these events."""
        ...


async def drive_async(tx: AppendTx, steps: Step[_T]) -> _T:
    """Run ``steps`` against an asynchronous backend: each request is awaited."""
    answer: Any = None
    while True:
        try:
            call = steps.send(answer)
        except StopIteration as done:
            return cast(_T, done.value)
        answer = await getattr(tx, call.name)(*call.args)


def drive_sync(tx: SyncAppendTx, steps: Step[_T]) -> _T:
    """Run ``steps`` against a synchronous backend, in the calling thread."""
    answer: Any = None
    while True:
        try:
            call = steps.send(answer)
        except StopIteration as done:
            return cast(_T, done.value)
        answer = getattr(tx, call.name)(*call.args)
