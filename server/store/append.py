"""The append algorithm shared by every backend, over a handful of SQL primitives.

A backend opens one transaction, hands ``append_in_transaction`` an ``AppendTx``
bound to it, and commits. The algorithm:

1. take the position lock (held until commit, so positions follow commit order);
2. drop ids already stored or repeated in the batch (duplicates, not errors);
3. judge each new event by the ownership rule (``projections.ownership``): a refused
   one becomes a dead letter with its reason (its device learns it when it pulls); one
   naming an event not stored yet is stored *held*: no ref, no root (only its author
   sees it), no index rows, until what it names arrives;
4. apply the accepted events' milestone links last-writer-wins, then resolve each
   accepted event's root by following refs inside the batch, then through stored events;
5. insert events, items, dead letters, sharing and team rows (LWW upserts);
6. re-root the subtree of any stored milestone whose winning parent changed;
7. judge again the held events that waited for an event accepted now: accepted, they
   are indexed as if they had just arrived; refused, they stay unindexed and get a
   dead letter. Every index row therefore comes from an accepted event, and an accepted
   event's root belongs to its own author.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

import msgspec

from events.wire import subject_person
from projections.ownership import Referent, Refused, Verdict, Waiting, judge, referenced_ids
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
        """Insert dead letters; a repeat of the same digest (the same message refused again)
        replaces the earlier row under a new, higher id, so its device learns of the new
        refusal (``refusals``) while the table holds one row per distinct message."""
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


def _digest(subject: str, raw: bytes) -> str:
    return hashlib.sha256(subject.encode() + b"\0" + raw).hexdigest()


class _Id(msgspec.Struct):
    id: str = ""


_id_decoder = msgspec.json.Decoder(_Id)


def _claimed_id(raw: bytes) -> str | None:
    """The id an undecodable message says it has, so its device can match the refusal."""
    try:
        claimed = _id_decoder.decode(raw).id
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return None
    return claimed if 0 < len(claimed) <= 64 else None


def _dead(
    incoming: Incoming, reason: str, now: datetime, event_id: str | None = None
) -> DeadLetterRow:
    person = subject_person(incoming.subject)
    claimed = event_id if event_id is not None else _claimed_id(incoming.raw)
    return DeadLetterRow(
        incoming.subject,
        incoming.raw,
        reason,
        _digest(incoming.subject, incoming.raw),
        now,
        person,
        claimed,
    )


OWNERSHIP_CHECKS = True
"""Judge events by the ownership rule. Only ``bench/server.py`` turns this off, to measure
what the rule costs ingest in the same run; the server never does."""


def _judge_batch(
    candidates: dict[str, tuple[Incoming, IndexUpdate]], known: dict[str, Referent]
) -> dict[str, Verdict]:
    """The ownership verdict of each candidate; ``known`` (accepted stored events) grows by
    the candidates accepted. Repeated until nothing changes, so a batch that arrives out of
    order is judged as it would be in order."""
    verdicts: dict[str, Verdict] = {}
    remaining = list(candidates)
    while remaining:
        still: list[str] = []
        for event_id in remaining:
            event = candidates[event_id][0].event
            assert event is not None
            verdict = judge(event, known.get)
            if isinstance(verdict, Waiting):
                still.append(event_id)
                verdicts[event_id] = verdict
                continue
            verdicts[event_id] = verdict
            if verdict is None:
                known[event_id] = Referent(event.actor, candidates[event_id][1].type)
        if len(still) == len(remaining):
            break
        remaining = still
    return verdicts


async def append_in_transaction(tx: AppendTx, items: Sequence[Incoming]) -> AppendResult:
    """Run the append algorithm (see the module docstring) inside ``tx``."""
    now = datetime.now(UTC)
    dead: list[DeadLetterRow] = []
    candidates: dict[str, tuple[Incoming, IndexUpdate]] = {}
    duplicates: list[str] = []
    for item in items:
        if item.event is None:
            dead.append(_dead(item, item.error or "invalid event", now))
        elif item.event.id in candidates:
            duplicates.append(item.event.id)
        else:
            candidates[item.event.id] = (item, index_update(item.event))

    last = await tx.lock_positions()
    if candidates:
        for event_id in await tx.existing_ids(list(candidates)):
            duplicates.append(event_id)
            del candidates[event_id]

    # The ownership rule: refused events become dead letters; those naming an event not
    # stored yet are stored, held back from every index until it arrives.
    verdicts: dict[str, Verdict] = {}
    if OWNERSHIP_CHECKS:
        outside = {
            ref
            for incoming, _ in candidates.values()
            for ref in referenced_ids(incoming.event)  # type: ignore[arg-type]
            if ref not in candidates
        }
        known = await tx.referents(outside) if outside else {}
        verdicts = _judge_batch(candidates, known)
    held: list[HeldRow] = []
    for event_id, verdict in verdicts.items():
        if isinstance(verdict, Refused):
            dead.append(_dead(candidates.pop(event_id)[0], verdict.reason, now, event_id))
        elif isinstance(verdict, Waiting):
            held.append(HeldRow(event_id, verdict.missing, None, None))
    dead_lettered = await tx.insert_dead_letters(dead) if dead else 0
    if not candidates:
        return AppendResult((), tuple(duplicates), dead_lettered)

    accepted = [u for event_id, (_, u) in candidates.items() if verdicts.get(event_id) is None]
    refs: dict[str, str | None] = {update.event_id: update.ref for update in accepted}

    # Milestone links first: the winning parent decides the milestone's ref.
    moved: dict[str, str | None] = {}
    links = [
        LinkRow(u.link.milestone, u.link.parent, u.clock, u.event_id)
        for u in accepted
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

    outside_refs = {ref for ref in refs.values() if ref is not None and ref not in refs}
    outside_refs.update(ref for ref in moved.values() if ref is not None and ref not in refs)
    known_roots = await tx.roots_of(outside_refs) if outside_refs else {}
    roots = resolve_roots(refs, known_roots)

    event_rows: list[EventRow] = []
    item_rows: list[ItemRow] = []
    sharing_rows: list[SharingRow] = []
    team_rows: list[TeamRow] = []
    stored: list[StoredEvent] = []
    for (incoming, update), position in zip(
        candidates.values(), range(last + 1, last + 1 + len(candidates)), strict=True
    ):
        if update.event_id not in refs:  # held back: no ref, no root, no index rows yet
            event_rows.append(_event_row(position, update, None, None, incoming, now, held=True))
            stored.append(
                StoredEvent(
                    position, update.event_id, update.actor, update.type, None, None, incoming.raw
                )
            )
            continue
        root = roots[update.event_id]
        team = update.team.team if update.team is not None else None
        event_rows.append(_event_row(position, update, refs[update.event_id], root, incoming, now))
        stored.append(
            StoredEvent(
                position, update.event_id, update.actor, update.type, root, team, incoming.raw
            )
        )
        if update.creates is not None:
            item_rows.append(ItemRow(update.event_id, update.actor, update.creates, root))
        if update.sharing is not None:
            sharing_rows.append(_sharing_row(update))
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
    new_last = last + len(event_rows)
    await tx.save_last_position(new_last)
    if item_rows:
        await tx.insert_items(item_rows)
    if sharing_rows:
        await tx.upsert_sharing(sharing_rows)
    if team_rows:
        await tx.upsert_team_members(team_rows)
    if held:
        await tx.hold(held)

    if moved:
        await _move(tx, moved, roots, known_roots)

    # Events stored earlier that waited for one accepted now are judged again.
    late = await _release(tx, list(refs), new_last, now) if OWNERSHIP_CHECKS else 0
    return AppendResult(tuple(stored), tuple(duplicates), dead_lettered + late)


def _event_row(
    position: int,
    update: IndexUpdate,
    ref: str | None,
    root: str | None,
    incoming: Incoming,
    now: datetime,
    *,
    held: bool = False,
) -> EventRow:
    team = update.team.team if update.team is not None and not held else None
    return EventRow(
        position,
        update.event_id,
        update.actor,
        update.type,
        ref,
        root,
        team,
        incoming.subject,
        incoming.raw,
        now,
    )


def _sharing_row(update: IndexUpdate) -> SharingRow:
    sharing = update.sharing
    assert sharing is not None
    return SharingRow(
        sharing.subject,
        update.actor,
        sharing.visibility,
        msgspec.json.encode(sharing.partners).decode(),
        update.clock,
        update.event_id,
    )


async def _move(
    tx: AppendTx,
    moved: dict[str, str | None],
    roots: dict[str, str | None],
    known_roots: dict[str, str | None],
) -> None:
    """Give stored milestones whose winning parent changed their new ref and root, and
    their subtrees the new root."""
    await tx.set_refs(moved)
    new_roots: dict[str, str | None] = {}
    for milestone, ref in moved.items():
        if ref == milestone or ref is None:
            new_roots[milestone] = milestone
        else:
            new_roots[milestone] = roots[ref] if ref in roots else known_roots.get(ref)
    await _cascade(tx, new_roots)


async def _release(tx: AppendTx, arrived: list[str], last: int, now: datetime) -> int:
    """Judge again the held events that waited for ``arrived`` (and, in turn, for the ones
    accepted now): accepted ones get their ref, root and index rows (``released_at`` =
    ``last``, so pulls look for what they reveal), refused ones a dead letter. Returns how
    many were refused. Rare (only events that arrive before what they name), so one event
    at a time."""
    refused = 0
    frontier = arrived
    while frontier:
        waiting = await tx.waiting_on(frontier)
        frontier = []
        for held in waiting:
            incoming = Incoming.from_raw(held.raw, held.subject)
            event = incoming.event
            if event is None:  # pragma: no cover - it decoded when it was stored
                continue
            known = await tx.referents(referenced_ids(event))
            verdict = judge(event, known.get)
            if isinstance(verdict, Waiting):
                await tx.hold([HeldRow(event.id, verdict.missing, None, None)])
            elif isinstance(verdict, Refused):
                await tx.hold([HeldRow(event.id, None, verdict.reason, None)])
                refused += await tx.insert_dead_letters(
                    [_dead(incoming, verdict.reason, now, event.id)]
                )
            else:
                await _accept_late(tx, index_update(event))
                await tx.hold([HeldRow(event.id, None, None, last)])
                frontier.append(event.id)
    return refused


async def _accept_late(tx: AppendTx, update: IndexUpdate) -> None:
    """Index an event stored earlier as held, now that the ownership rule accepts it."""
    ref = update.ref
    if update.link is not None:
        await tx.upsert_links(
            [LinkRow(update.link.milestone, update.link.parent, update.clock, update.event_id)]
        )
        milestone = update.link.milestone
        winner = (await tx.links_of([milestone])).get(milestone)
        target = winner or milestone
        if milestone == update.event_id:
            ref = target
        else:  # a relink of a stored milestone
            current = await tx.refs_of([milestone])
            if current.get(milestone) != target:
                roots = await tx.roots_of([target])
                await _move(tx, {milestone: target}, {}, roots)
    root: str | None
    if ref is None:
        root = None
    elif ref == update.event_id:
        root = update.event_id
    else:
        root = (await tx.roots_of([ref])).get(ref)
    await tx.set_refs({update.event_id: ref})
    if update.creates is not None:
        await tx.insert_items([ItemRow(update.event_id, update.actor, update.creates, root)])
    await tx.set_roots({update.event_id: root})
    if update.sharing is not None:
        await tx.upsert_sharing([_sharing_row(update)])


async def _cascade(tx: AppendTx, frontier: dict[str, str | None]) -> None:
    """Give ``frontier`` its roots and its descendants their parent's root, level by level."""
    if frontier:
        await tx.set_roots(frontier)
    seen: set[str] = set(frontier)
    while frontier:
        children = await tx.children(list(frontier))
        next_frontier: dict[str, str | None] = {}
        for child, ref in children:
            if child in seen:  # forged cycles must not loop forever
                continue
            seen.add(child)
            next_frontier[child] = frontier[ref]
        if next_frontier:
            await tx.set_roots(next_frontier)
        frontier = next_frontier
