"""The append algorithm shared by every backend, over a handful of SQL primitives.

A backend opens one transaction, hands ``append_in_transaction`` an ``AppendTx``
bound to it, and commits. The algorithm:

1. take the position lock (held until commit, so positions follow commit order);
2. drop ids already stored or repeated in the batch (duplicates, not errors);
3. apply milestone links last-writer-wins, then resolve each new event's root by
   following refs inside the batch, then through stored events;
4. insert events, items, dead letters, sharing and team rows (LWW upserts);
5. re-root the subtree of any stored milestone whose winning parent changed;
6. fix up stored events that were waiting (root unknown) for an event of this batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

import msgspec

from server.indexing import IndexUpdate, index_update, resolve_roots
from server.store.protocol import AppendResult, Incoming, StoredEvent


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
        """Insert dead letters, ignoring a repeat of the same digest; return how many."""
        ...

    async def upsert_sharing(self, rows: Sequence[SharingRow]) -> None:
        """Sharing per (root, actor), last writer wins by (clock, event id)."""
        ...

    async def upsert_team_members(self, rows: Sequence[TeamRow]) -> None:
        """Membership per (team, person), last writer wins by (clock, event id)."""
        ...

    async def children(self, ids: Iterable[str], unresolved_only: bool) -> list[tuple[str, str]]:
        """(event id, ref) of stored events whose ref is one of ``ids`` (not themselves)."""
        ...

    async def set_roots(self, roots: dict[str, str | None]) -> None:
        """Set the root of these events and of the items they created."""
        ...

    async def set_refs(self, refs: dict[str, str | None]) -> None:
        """Set the ref of these events."""
        ...


def _digest(subject: str, raw: bytes) -> str:
    return hashlib.sha256(subject.encode() + b"\0" + raw).hexdigest()


async def append_in_transaction(tx: AppendTx, items: Sequence[Incoming]) -> AppendResult:
    """Run the append algorithm (see the module docstring) inside ``tx``."""
    now = datetime.now(UTC)
    dead: list[DeadLetterRow] = []
    candidates: dict[str, tuple[Incoming, IndexUpdate]] = {}
    duplicates: list[str] = []
    for item in items:
        if item.event is None:
            reason = item.error or "invalid event"
            dead.append(
                DeadLetterRow(item.subject, item.raw, reason, _digest(item.subject, item.raw), now)
            )
        elif item.event.id in candidates:
            duplicates.append(item.event.id)
        else:
            candidates[item.event.id] = (item, index_update(item.event))

    last = await tx.lock_positions()
    if candidates:
        for event_id in await tx.existing_ids(list(candidates)):
            duplicates.append(event_id)
            del candidates[event_id]
    dead_lettered = await tx.insert_dead_letters(dead) if dead else 0
    if not candidates:
        return AppendResult((), tuple(duplicates), dead_lettered)

    updates = [update for _, update in candidates.values()]
    refs: dict[str, str | None] = {update.event_id: update.ref for update in updates}

    # Milestone links first: the winning parent decides the milestone's ref.
    moved: dict[str, str | None] = {}
    links = [
        LinkRow(u.link.milestone, u.link.parent, u.clock, u.event_id)
        for u in updates
        if u.link is not None
    ]
    if links:
        await tx.upsert_links(links)
        winners = await tx.links_of({link.milestone for link in links})
        stored_moves: dict[str, str | None] = {}
        for milestone, parent in winners.items():
            if milestone in refs:
                refs[milestone] = parent or milestone
            else:
                stored_moves[milestone] = parent or milestone
        if stored_moves:
            current = await tx.refs_of(stored_moves)
            moved = {
                milestone: ref
                for milestone, ref in stored_moves.items()
                if milestone in current and current[milestone] != ref
            }

    outside = {ref for ref in refs.values() if ref is not None and ref not in refs}
    outside.update(ref for ref in moved.values() if ref is not None and ref not in refs)
    known_roots = await tx.roots_of(outside) if outside else {}
    roots = resolve_roots(refs, known_roots)

    event_rows: list[EventRow] = []
    item_rows: list[ItemRow] = []
    sharing_rows: list[SharingRow] = []
    team_rows: list[TeamRow] = []
    stored: list[StoredEvent] = []
    for (incoming, update), position in zip(
        candidates.values(), range(last + 1, last + 1 + len(candidates)), strict=True
    ):
        root = roots[update.event_id]
        team = update.team.team if update.team is not None else None
        event_rows.append(
            EventRow(
                position,
                update.event_id,
                update.actor,
                update.type,
                refs[update.event_id],
                root,
                team,
                incoming.subject,
                incoming.raw,
                now,
            )
        )
        stored.append(
            StoredEvent(
                position, update.event_id, update.actor, update.type, root, team, incoming.raw
            )
        )
        if update.creates is not None:
            item_rows.append(ItemRow(update.event_id, update.actor, update.creates, root))
        if update.sharing is not None:
            sharing = update.sharing
            sharing_rows.append(
                SharingRow(
                    sharing.subject,
                    update.actor,
                    sharing.visibility,
                    msgspec.json.encode(sharing.partners).decode(),
                    update.clock,
                    update.event_id,
                )
            )
        if update.team is not None:
            team_rows.append(
                TeamRow(
                    update.team.team,
                    update.team.person,
                    update.team.joined,
                    update.clock,
                    update.event_id,
                )
            )

    await tx.insert_events(event_rows)
    await tx.save_last_position(last + len(event_rows))
    if item_rows:
        await tx.insert_items(item_rows)
    if sharing_rows:
        await tx.upsert_sharing(sharing_rows)
    if team_rows:
        await tx.upsert_team_members(team_rows)

    if moved:
        await tx.set_refs(moved)
        new_roots: dict[str, str | None] = {}
        for milestone, ref in moved.items():
            if ref == milestone or ref is None:
                new_roots[milestone] = milestone
            else:
                new_roots[milestone] = roots[ref] if ref in roots else known_roots.get(ref)
        await _cascade(tx, new_roots, unresolved_only=False)

    waiting_on: dict[str, str | None] = {
        event_id: root for event_id, root in roots.items() if root is not None
    }
    await _cascade(tx, waiting_on, unresolved_only=True, set_first=False)
    return AppendResult(tuple(stored), tuple(duplicates), dead_lettered)


async def _cascade(
    tx: AppendTx,
    frontier: dict[str, str | None],
    unresolved_only: bool,
    set_first: bool = True,
) -> None:
    """Give the descendants of ``frontier`` their parent's root, level by level."""
    if set_first and frontier:
        await tx.set_roots(frontier)
    seen: set[str] = set(frontier)
    while frontier:
        children = await tx.children(list(frontier), unresolved_only)
        next_frontier: dict[str, str | None] = {}
        for child, ref in children:
            if child in seen:  # forged cycles must not loop forever
                continue
            seen.add(child)
            next_frontier[child] = frontier[ref]
        if next_frontier:
            await tx.set_roots(next_frontier)
        frontier = next_frontier
