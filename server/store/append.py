"""The append algorithm shared by every backend, over a handful of SQL primitives.

A backend opens one transaction, runs the algorithm against its primitives and commits:
PostgreSQL awaits ``append_in_transaction`` with an ``AppendTx`` (asyncpg), SQLite calls
``append_in_thread`` with a ``SyncAppendTx`` in its writer thread. The algorithm itself
(``append_steps``) is written once, as generators that yield each SQL request and are
sent its answer; ``server.store.append_io`` says why, and holds the two drivers. The
algorithm:

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
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from events import AnyEvent, OpaqueEvent
from events.wire import subject_person
from projections.ownership import (
    JUDGED_IN_FULL,
    REFERENCES,
    Referent,
    Refused,
    Verdict,
    Waiting,
    judge,
    referenced_ids,
)
from server.indexing import IndexUpdate, index_update, resolve_roots
from server.store.append_io import (
    AppendTx,
    DeadLetterRow,
    EventRow,
    HeldRow,
    ItemRow,
    LinkRow,
    SharingRow,
    Step,
    SyncAppendTx,
    TeamRow,
    ask,
    drive_async,
    drive_sync,
)
from server.store.protocol import AppendResult, Incoming, StoredEvent


async def append_in_transaction(tx: AppendTx, items: Sequence[Incoming]) -> AppendResult:
    """Run the append algorithm inside ``tx``, an open transaction of an async backend."""
    return await drive_async(tx, append_steps(items))


def append_in_thread(tx: SyncAppendTx, items: Sequence[Incoming]) -> AppendResult:
    """Run the append algorithm inside ``tx``, an open transaction of a synchronous backend
    (in the thread that owns its connection)."""
    return drive_sync(tx, append_steps(items))


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


def _accepted_at_once(event: AnyEvent, known: dict[str, Referent]) -> bool:
    """The fast path of ``judge`` (most events name a stored event of their own): True
    when it accepts at once; otherwise the event is judged in full."""
    if isinstance(event, OpaqueEvent):
        return False
    body = event.body
    body_type = type(body)
    if body_type in JUDGED_IN_FULL:
        return False
    actor = event.actor
    for field, allowed in REFERENCES[body_type]:
        ref = getattr(body, field)
        if ref is None:
            continue
        target = known.get(ref)
        if target is None or target.actor != actor or (allowed and target.type not in allowed):
            return False
    return True


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
            verdict = None if _accepted_at_once(event, known) else judge(event, known.get)
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


def append_steps(items: Sequence[Incoming]) -> Step[AppendResult]:
    """The append algorithm (see the module docstring) as steps for a driver."""
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

    last = yield from ask.lock_positions()
    if candidates:
        for event_id in (yield from ask.existing_ids(list(candidates))):
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
        known = (yield from ask.referents(outside)) if outside else {}
        verdicts = _judge_batch(candidates, known)
    held: list[HeldRow] = []
    for event_id, verdict in verdicts.items():
        if isinstance(verdict, Refused):
            dead.append(_dead(candidates.pop(event_id)[0], verdict.reason, now, event_id))
        elif isinstance(verdict, Waiting):
            held.append(HeldRow(event_id, verdict.missing, None, None))
    dead_lettered = (yield from ask.insert_dead_letters(dead)) if dead else 0
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
        yield from ask.upsert_links(links)
        winners = yield from ask.links_of({link.milestone for link in links})
        stored_moves: dict[str, str | None] = {}
        for milestone, parent in winners.items():
            if milestone in refs:
                refs[milestone] = parent or milestone
            else:
                stored_moves[milestone] = parent or milestone
        if stored_moves:
            current = yield from ask.refs_of(stored_moves)
            moved = {
                milestone: ref
                for milestone, ref in stored_moves.items()
                if milestone in current and current[milestone] != ref
            }

    outside_refs = {ref for ref in refs.values() if ref is not None and ref not in refs}
    outside_refs.update(ref for ref in moved.values() if ref is not None and ref not in refs)
    known_roots = (yield from ask.roots_of(outside_refs)) if outside_refs else {}
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

    yield from ask.insert_events(event_rows)
    new_last = last + len(event_rows)
    yield from ask.save_last_position(new_last)
    if item_rows:
        yield from ask.insert_items(item_rows)
    if sharing_rows:
        yield from ask.upsert_sharing(sharing_rows)
    if team_rows:
        yield from ask.upsert_team_members(team_rows)
    if held:
        yield from ask.hold(held)

    if moved:
        yield from _move(moved, roots, known_roots)

    # Events stored earlier that waited for one accepted now are judged again.
    late = (yield from _release(list(refs), new_last, now)) if OWNERSHIP_CHECKS else 0
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


def _move(
    moved: dict[str, str | None],
    roots: dict[str, str | None],
    known_roots: dict[str, str | None],
) -> Step[None]:
    """Give stored milestones whose winning parent changed their new ref and root, and
    their subtrees the new root."""
    yield from ask.set_refs(moved)
    new_roots: dict[str, str | None] = {}
    for milestone, ref in moved.items():
        if ref == milestone or ref is None:
            new_roots[milestone] = milestone
        else:
            new_roots[milestone] = roots[ref] if ref in roots else known_roots.get(ref)
    yield from _cascade(new_roots)


def _release(arrived: list[str], last: int, now: datetime) -> Step[int]:
    """Judge again the held events that waited for ``arrived`` (and, in turn, for the ones
    accepted now): accepted ones get their ref, root and index rows (``released_at`` =
    ``last``, so pulls look for what they reveal), refused ones a dead letter. Returns how
    many were refused. Rare (only events that arrive before what they name), so one event
    at a time."""
    refused = 0
    frontier = arrived
    while frontier:
        waiting = yield from ask.waiting_on(frontier)
        frontier = []
        for held in waiting:
            incoming = Incoming.from_raw(held.raw, held.subject)
            event = incoming.event
            if event is None:  # pragma: no cover - it decoded when it was stored
                continue
            known = yield from ask.referents(referenced_ids(event))
            verdict = judge(event, known.get)
            if isinstance(verdict, Waiting):
                yield from ask.hold([HeldRow(event.id, verdict.missing, None, None)])
            elif isinstance(verdict, Refused):
                yield from ask.hold([HeldRow(event.id, None, verdict.reason, None)])
                refused += yield from ask.insert_dead_letters(
                    [_dead(incoming, verdict.reason, now, event.id)]
                )
            else:
                yield from _accept_late(index_update(event))
                yield from ask.hold([HeldRow(event.id, None, None, last)])
                frontier.append(event.id)
    return refused


def _accept_late(update: IndexUpdate) -> Step[None]:
    """Index an event stored earlier as held, now that the ownership rule accepts it."""
    ref = update.ref
    if update.link is not None:
        yield from ask.upsert_links(
            [LinkRow(update.link.milestone, update.link.parent, update.clock, update.event_id)]
        )
        milestone = update.link.milestone
        winner = (yield from ask.links_of([milestone])).get(milestone)
        target = winner or milestone
        if milestone == update.event_id:
            ref = target
        else:  # a relink of a stored milestone
            current = yield from ask.refs_of([milestone])
            if current.get(milestone) != target:
                roots = yield from ask.roots_of([target])
                yield from _move({milestone: target}, {}, roots)
    root: str | None
    if ref is None:
        root = None
    elif ref == update.event_id:
        root = update.event_id
    else:
        root = (yield from ask.roots_of([ref])).get(ref)
    yield from ask.set_refs({update.event_id: ref})
    if update.creates is not None:
        yield from ask.insert_items([ItemRow(update.event_id, update.actor, update.creates, root)])
    yield from ask.set_roots({update.event_id: root})
    if update.sharing is not None:
        yield from ask.upsert_sharing([_sharing_row(update)])


def _cascade(frontier: dict[str, str | None]) -> Step[None]:
    """Give ``frontier`` its roots and its descendants their parent's root, level by level."""
    if frontier:
        yield from ask.set_roots(frontier)
    seen: set[str] = set(frontier)
    while frontier:
        children = yield from ask.children(list(frontier))
        next_frontier: dict[str, str | None] = {}
        for child, ref in children:
            if child in seen:  # forged cycles must not loop forever
                continue
            seen.add(child)
            next_frontier[child] = frontier[ref]
        if next_frontier:
            yield from ask.set_roots(next_frontier)
        frontier = next_frontier
