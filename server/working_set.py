"""The working set: the projection state in partitions folded on demand, within a budget.

A replica started with a memory budget (``milepost-server run --memory-budget``) does not
fold all history at start. It folds the team changes (the *directory*: who is in which
team) and answers each request from a *partition*: a ``ProjectionState`` folded from the
events of a set of people only (docs/scaling.md, "The working set"):

- a team's partition holds everyone who was ever a member of the team (its board, feed
  and drift read it);
- a person's partition holds that person (their goals and review read it).

What a partition folds is read through the store's indexes
(``ServerStore.partition_events``): the people's own events, every team change, and the
kudos others gave on the people's items. The ownership rule makes that enough: every
other reference an event makes is to its actor's own events, and for the few that name
someone else's (a kudos, or a hostile write the rule refuses) the store vouches for the
named event (``accepted_referents``), exactly as the fold of everything would have judged
it. A view of a team or person computed on its partition is therefore the same as on the
fold of everything (``tests/integration/test_working_set.py`` compares every view).

Partitions are least-recently-used: when the events held pass the budget, the partitions
asked for longest ago are dropped (a request reading one keeps its own reference). A
partition dropped and asked for again is folded again from the store.

A replica remembers the partitions it held at a clean stop and loads them again in the
background after its next start (most recently asked for first, within the budget), so
the teams in use are warm again before they are asked for (``ProjectionFollower.warm``).

Partitions have snapshots of their own (with snapshots on): once a partition folded
``snapshot_after`` events since its newest snapshot, it is encoded at the follower's
position (after a load, and when the budget drops it) and kept in the snapshot store
under its key. A load starts from the newest valid one of the same people and folds only
the events after it; any doubt about one (another fold, another store, other people: a
member joined since, corrupt bytes) means folding the partition from the store instead.

New events are routed by the follower (``fold``): to the partitions of their actor, to
every partition when they are team changes, to the partition holding the completion a
kudos names; after each slice the follower folds, what the partitions' events still wait
for is asked of the store as it stood at the follower's position (``follow``). A
partition whose team gains a member is dropped instead (its history is not in it): the
next request folds it again, from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from typing import NamedTuple

from events import Event
from events import bodies as b
from projections import persist
from projections.compact import HeldEvents, compact, held_as_rows
from projections.directory import share_team_changes
from projections.state import ProjectionState, apply, vouch
from server import compaction
from server.compaction import Compactor
from server.partition import (
    Partition,
    collection_paused,
    decoded,
    encoded,
    fold_all,
    holds,
    split_key,
)
from server.snapshots import service as snapshotting
from server.snapshots.protocol import SnapshotInfo, SnapshotStore
from server.store.protocol import ServerStore, StoredEvent

log = logging.getLogger(__name__)

BYTES_PER_EVENT = 900
"""Resident memory per event a partition holds, as measured (server RSS over events held:
674 B at 1M with every team held, 824 B at 10M with partitions dropped and loaded again,
whose freed memory the allocator keeps); converts ``--memory-budget`` into events."""

SNAPSHOT_AFTER = 5_000
"""Events a partition folds past its newest snapshot before it is worth a new one (at
5,000 a snapshot saves ~80 ms of every later load of it and costs ~30 ms to take)."""

_TEAM_CHANGES = frozenset(
    body.__struct_config__.tag for body in (b.TeamMemberJoined, b.TeamMemberLeft)
)

VOUCH_ROUNDS = 8
"""How many rounds of vouching one step tries (each can release events that wait on more)."""


class Refreshed(NamedTuple):
    """What ``WorkingSet.refresh_snapshot`` did."""

    taken: SnapshotInfo | None
    """The snapshot it took (None: the newest was fresh, or the store moved meanwhile)."""
    behind: int | None
    """How many of the partition's events its newest snapshot is behind now (None: unknown,
    the store moved while one was taken)."""


Settle = Callable[[Partition, int], Awaitable[None]]
"""The follower's hook that brings a partition folded to a position up to the follower's
own position, under its lock, and adds it to the working set."""


class WorkingSet:
    """The directory and the loaded partitions of one replica (see the module docstring)."""

    def __init__(
        self,
        store: ServerStore,
        budget_bytes: int,
        *,
        snapshot_after: int = SNAPSHOT_AFTER,
    ) -> None:
        self._store = store
        self.snapshots: SnapshotStore | None = None
        """Where partitions' snapshots are kept (None: no snapshots; set before the start)."""
        self.snapshot_after = snapshot_after
        self.lock: asyncio.Lock | None = None
        """The follower's lock: held while a loaded partition is encoded (nothing folds)."""
        self.position = 0
        """The follower's position as of its last fold (every held partition is there)."""
        self.budget_events = max(1, budget_bytes // BYTES_PER_EVENT)
        self.directory = ProjectionState()
        """Team changes only: who is (and ever was) in which team."""
        self._partitions: OrderedDict[str, Partition] = OrderedDict()
        self._by_person: dict[str, list[Partition]] = {}
        self._loading: dict[str, asyncio.Task[Partition]] = {}
        # Completions folded since the last ``follow``: kudos may have arrived before them.
        self._completed: list[tuple[str, int]] = []
        self.loads = 0
        self.evictions = 0
        self.load_seconds = 0.0
        self.snapshot_loads = 0
        self.snapshots_taken = 0
        self._snapshotting: dict[str, asyncio.Task[None]] = {}
        self._one_snapshot_at_a_time = asyncio.Lock()
        self.compactor = Compactor(self)

    # --- which partition answers ---------------------------------------------------------

    def team_key(self, team: str) -> tuple[str, frozenset[str]]:
        """The partition of a team: everyone who was ever one of its members."""
        ever = frozenset(p for t, p in self.directory.memberships if t == team)
        return f"team:{team}", ever

    def person_key(self, person: str) -> tuple[str, frozenset[str]]:
        """The partition that answers for a person: their own (a tenth of a team's events,
        so a cold person's page loads in a tenth of the time; a person also on a loaded
        team's board is held twice, and the budget counts both)."""
        return f"person:{person}", frozenset({person})

    @property
    def held_events(self) -> int:
        """Events held by the loaded partitions."""
        return sum(partition.size for partition in self._partitions.values())

    def held(self, key: str) -> Partition | None:
        """The partition held under ``key``, if one is."""
        return self._partitions.get(key)

    @property
    def loading(self) -> bool:
        """Whether a partition is being loaded (a request waits on it)."""
        return bool(self._loading)

    @property
    def compactions(self) -> int:
        """Compactions swapped in (``server.compaction``)."""
        return self.compactor.compactions

    def compaction_due(self, partition: Partition) -> bool:
        """Whether a held partition is to be compacted: held as objects (folded from the
        store, or loaded from a snapshot of objects), or having folded ``COMPACT_AFTER``
        events since. One loaded compacted with a short tail is not: a compaction makes
        every row and list again, for a few events."""
        if partition.since_compaction >= compaction.COMPACT_AFTER:
            return True
        return partition.size > 0 and not isinstance(partition.state.events, HeldEvents)

    async def compact(self, key: str, *, after_loads: bool = False) -> None:
        """Compact the partition held under ``key`` now if it is due (``Compactor.compact``)."""
        partition = self.held(key)
        if partition is not None and self.compaction_due(partition):
            await self.compactor.now(key, after_loads=after_loads)

    @property
    def held_rows(self) -> int:
        """Events the loaded partitions hold as rows (``projections.compact``)."""
        return sum(held_as_rows(partition.state) for partition in self._partitions.values())

    def held_keys(self) -> list[str]:
        """The keys of the partitions held, most recently asked for first."""
        return list(reversed(self._partitions))

    @property
    def loaded(self) -> int:
        """How many partitions are loaded."""
        return len(self._partitions)

    # --- start and loads -------------------------------------------------------------------

    async def start(self) -> int:
        """Fold every team change into the directory; return the position it reflects."""
        upto = await self._store.max_position()
        for item in await self._store.partition_events((), 0, upto):
            event = decoded(item)
            if event is not None:
                apply(self.directory, event)
        self.position = upto
        return upto

    async def settle(self) -> None:
        """Wait for the compactions and snapshots under way, and those they begin."""
        while pending := [
            task
            for task in (*self.compactor.queued(), *self._snapshotting.values())
            if not task.done()
        ]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        """At a stop: the compactions not done are let go (a stop must not wait minutes
        for them); the snapshots due are taken as the partitions are, and finished."""
        for task in self.compactor.queued():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for partition in list(self._partitions.values()):
            self.compacted(partition)  # its snapshot, if one is due
        while pending := [task for task in self._snapshotting.values() if not task.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def partition(
        self, key: str, people: frozenset[str], position: int, settle: Settle
    ) -> Partition:
        """The loaded partition ``key`` (of ``people``), folded from the store if it is not.

        ``position``: the follower's now; ``settle`` brings a partition folded to there up
        to the follower's position under its lock and adds it (``ProjectionFollower``).
        """
        hit = self._partitions.get(key)
        if hit is not None and hit.people >= people:
            self._partitions.move_to_end(key)
            return hit
        task = self._loading.get(key)
        if task is None:
            task = asyncio.create_task(self._load(key, people, position, settle))
            self._loading[key] = task
            self.compactor.load_moved()
            task.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(task)

    async def _load(
        self, key: str, people: frozenset[str], position: int, settle: Settle
    ) -> Partition:
        began = time.perf_counter()
        try:
            partition, after = await self._folded(key, people, position)
            await settle(partition, position)
        finally:
            self.compactor.load_moved()
        self.loads += 1
        self.load_seconds += time.perf_counter() - began
        log.info(
            "working set: folded %s (%d people, %d events, from position %d) in %.2f s",
            key,
            len(people),
            partition.size,
            after,
            time.perf_counter() - began,
        )
        if self.compaction_due(partition):
            self.compactor.soon(partition)  # then snapshotted, if one is due (``compacted``)
        else:
            self.compacted(partition)
        return partition

    async def _folded(self, key: str, people: frozenset[str], upto: int) -> tuple[Partition, int]:
        """Partition ``key`` whole at ``upto``: from its newest valid snapshot (or empty),
        the events after it folded, what they wait for vouched, foreign roots adopted; and
        the position it started from."""
        with collection_paused():
            partition, after = await self._restored(key, people, upto)
            roots = partition.foreign_roots
            stored = await self._store.partition_events(people, after, upto, roots)
            # The fold of a private state: off the event loop, which goes on answering.
            await asyncio.to_thread(fold_all, partition, stored)
            del stored
        await self.vouch_waiting([partition], upto)
        await self.adopt_foreign(partition, upto)
        # Before anything else reads it: one copy of the team changes in the process.
        share_team_changes(partition.state, self.directory)
        return partition, after

    async def _restored(self, key: str, people: frozenset[str], upto: int) -> tuple[Partition, int]:
        """The partition from its newest valid snapshot at or before ``upto`` and that
        snapshot's position; an empty partition and 0 when there is none to trust."""
        if self.snapshots is None:
            return Partition(key, people), 0
        try:
            found, _ = await snapshotting.newest_valid(self._store, self.snapshots, key, upto)
        except Exception:
            log.exception("working set: reading the snapshot of %s failed; folding it", key)
            return Partition(key, people), 0
        if found is None:
            return Partition(key, people), 0
        info, state, fields = found
        if people != frozenset(fields.partition_people):
            return Partition(key, people), 0  # other people (a member joined since)
        partition = Partition(key, people, state, fields.feed, set(fields.partition_roots))
        # As a fold from the start would: look again for the roots its kudos name.
        partition.kudos_given = True
        self.snapshot_loads += 1
        return partition, info.position

    async def refresh_snapshot(
        self, key: str, people: frozenset[str], upto: int, *, force: bool = False
    ) -> Refreshed:
        """Snapshot partition ``key`` (of ``people``) at ``upto`` unless its newest snapshot
        is fresh: fewer than ``snapshot_after`` of its events behind, and its team has had
        no member join or leave since (``force``: take one anyway). The partition is folded
        for this alone, never held (``milepost-server snapshot take --partitions``: every
        partition then loads from a snapshot, whether or not a replica ever asked for it)."""
        snapshots = self.snapshots
        assert snapshots is not None, "set the snapshot store first"
        behind = None if force else await self._snapshot_behind(key, people, upto)
        if behind is not None:
            return Refreshed(None, behind)
        began = time.perf_counter()
        partition, _ = await self._folded(key, people, upto)
        # Compacted first: its rows are kept as columns, which load without an object each.
        await asyncio.to_thread(compact, partition.state)
        pieces = await encoded(partition, upto)
        seconds = time.perf_counter() - began
        info = await snapshotting.save(self._store, snapshots, pieces, upto, seconds, key)
        if info is None:
            return Refreshed(None, None)
        self.snapshots_taken += 1
        return Refreshed(info, 0)

    async def _snapshot_behind(self, key: str, people: frozenset[str], upto: int) -> int | None:
        """How many of the partition's events before ``upto`` its newest snapshot this code
        can load is behind, if fewer than ``snapshot_after`` and of the same members (read
        from the rows after it, never decoding the snapshot); None: it needs a new one."""
        assert self.snapshots is not None
        newest = None
        for info in await self.snapshots.listing(key):
            if info.position <= upto and info.fold_version == persist.FOLD_VERSION:
                newest = info
                break
        if newest is None or await snapshotting.why_invalid(self._store, newest) is not None:
            return None
        tail = await self._store.partition_events(people, newest.position, upto)
        if len(tail) >= self.snapshot_after:
            return None
        parts = split_key(key)
        team = parts[1] if parts is not None and parts[0] == "team" else None
        if any(row.team == team and row.type in _TEAM_CHANGES for row in tail):
            return None
        return len(tail)

    def compacted(self, partition: Partition) -> None:
        """After a held partition's compaction (or its load, when none is due, or at a
        stop): snapshot it if one is due. Compacted, its snapshot keeps the rows as
        columns, and it loads without an object per row."""
        if partition.since_snapshot >= self.snapshot_after:
            self._snapshot_soon(partition)

    def _snapshot_soon(self, partition: Partition) -> None:
        """Snapshot ``partition`` in the background, one at a time (see ``_snapshot``)."""
        if self.snapshots is None or partition.key in self._snapshotting:
            return  # the one queued for this key takes whichever state it finds then
        task = asyncio.create_task(self._snapshot(partition))
        self._snapshotting[partition.key] = task
        task.add_done_callback(lambda _: self._snapshotting.pop(partition.key, None))

    async def _snapshot(self, partition: Partition) -> None:
        """A held partition is encoded under the follower's lock (nothing folds into it
        meanwhile) at the follower's position; one the budget dropped as it is, at the
        position it was dropped at (nothing folds into it any more); one dropped for being
        incomplete (a team that gained a member, a rebuild) not at all."""
        snapshots = self.snapshots
        assert snapshots is not None
        async with self._one_snapshot_at_a_time:
            began = time.perf_counter()
            pieces: list[bytes] | None = None
            async with self.lock or contextlib.nullcontext():
                held = self._partitions.get(partition.key) is partition
                if held and partition.since_snapshot >= self.snapshot_after:
                    position = self.position
                    pieces = await encoded(partition, position)
            if not held and partition.dropped_at is not None and not partition.discarded:
                position = partition.dropped_at
                pieces = await encoded(partition, position)
            if pieces is None:
                return
            try:
                seconds = time.perf_counter() - began
                info = await snapshotting.save(
                    self._store, snapshots, pieces, position, seconds, partition.key
                )
            except Exception:
                log.exception("working set: snapshotting %s failed", partition.key)
                return
            if info is not None:
                self.snapshots_taken += 1

    async def vouch_waiting(self, partitions: Collection[Partition], upto: int) -> None:
        """Vouch for the events outside ``partitions`` that their events wait for, as the
        store had them at position ``upto`` (an event accepted later is not vouched for yet:
        the fold of everything at ``upto`` would not have it either)."""
        asked: set[str] = set()
        for _ in range(VOUCH_ROUNDS):
            missing = {
                ref
                for partition in partitions
                for ref in partition.state.waiting_on
                if ref not in asked
            }
            if not missing:
                return
            asked.update(missing)
            known = await self._store.accepted_referents(missing, upto)
            if not known:
                return
            for partition in partitions:
                waits = partition.state.waiting_on
                vouch(partition.state, {ref: known[ref] for ref in waits if ref in known})

    async def adopt_foreign(self, partition: Partition, upto: int) -> None:
        """Fold the roots of the completions outside the partition its members gave kudos on
        (as the store held them at ``upto``): the team feed shows such a kudos with the
        completion's titles, as the fold of everything does."""
        if not partition.kudos_given:
            return
        partition.kudos_given = False
        state = partition.state
        named = [c for c in state.kudos if c not in state.events]
        named += [
            e.body.completion
            for e in state.pending.values()
            if type(e.body) is b.KudosGiven and e.actor in partition.people
        ]
        if not named:
            return
        known = partition.foreign_roots
        roots, stored = await self._store.foreign_roots(named, partition.people, upto, known)
        fresh = set(roots) - known
        if fresh:
            partition.foreign_roots |= fresh
            fold_all(partition, stored)  # only the fresh roots' events
            await self.vouch_waiting([partition], upto)

    async def follow(self, upto: int) -> None:
        """After the follower folded up to ``upto``: vouch for what arrived from outside the
        loaded partitions that their events wait for (with the follower's lock held)."""
        self.position = upto
        completed, self._completed = self._completed, []
        if completed:
            await self._drop_for_early_kudos(dict(completed), upto)
        waiting = [p for p in self._partitions.values() if p.state.waiting_on]
        if waiting:
            await self.vouch_waiting(waiting, upto)
        for partition in [p for p in self._partitions.values() if p.kudos_given]:
            await self.adopt_foreign(partition, upto)
        for partition in self._partitions.values():
            if partition.since_compaction >= compaction.COMPACT_AFTER:
                self.compactor.soon(partition)

    async def _drop_for_early_kudos(self, completed: dict[str, int], upto: int) -> None:
        """Drop the partitions that hold a completion just folded which someone outside them
        gave kudos on before it arrived: that kudos went by unrouted (nobody held what it
        names) and the fold of everything has it. Rare (a kudos names what its giver saw)."""
        for completion, giver, position in await self._store.kudos_naming(completed, upto):
            if position > completed[completion]:
                continue  # after it: routed to the partitions that hold it
            for partition in list(self._partitions.values()):
                if giver not in partition.people and holds(partition.state, completion):
                    self.drop(partition.key)

    async def catch_up(self, partition: Partition, after: int, upto: int) -> None:
        """Fold the partition's events in ``(after, upto]`` (called under the follower's lock)."""
        self.position = max(self.position, upto)
        if upto > after:
            people, roots = partition.people, partition.foreign_roots
            fold_all(partition, await self._store.partition_events(people, after, upto, roots))
        await self.vouch_waiting([partition], upto)
        await self.adopt_foreign(partition, upto)

    def add(self, partition: Partition) -> None:
        """Hold a freshly folded partition; drop the least recently used over the budget."""
        old = self._partitions.pop(partition.key, None)
        if old is not None:
            self._forget(old)
        self._partitions[partition.key] = partition
        for person in partition.people:
            self._by_person.setdefault(person, []).append(partition)
        total = self.held_events
        for key in list(self._partitions):
            if total <= self.budget_events or key == partition.key:
                break
            dropped = self._partitions.pop(key)
            self._forget(dropped)
            total -= dropped.size
            self.evictions += 1
            dropped.dropped_at = self.position
            if dropped.since_snapshot >= self.snapshot_after:
                self._snapshot_soon(dropped)

    def reset(self) -> None:
        """Forget every partition (a rebuild: each is folded again when next asked for)."""
        for key in list(self._partitions):
            self.drop(key)
        self.directory = ProjectionState()

    def drop(self, key: str) -> None:
        """Forget a partition (it is folded again from the store when next asked for)."""
        partition = self._partitions.pop(key, None)
        if partition is not None:
            partition.discarded = True
            self._forget(partition)
            self.evictions += 1

    def _forget(self, partition: Partition) -> None:
        for person in partition.people:
            holders = self._by_person.get(person)
            if holders is not None:
                holders[:] = [p for p in holders if p is not partition]
                if not holders:
                    del self._by_person[person]

    # --- following -------------------------------------------------------------------------

    def fold(self, item: StoredEvent) -> None:
        """Route one newly stored event (in position order) to the partitions it belongs to."""
        if item.team is not None:
            self._fold_team_change(item)
            return
        holders = self._by_person.get(item.actor, ())
        targets = list(holders)
        if item.root_id is not None:
            targets += [
                p
                for p in self._partitions.values()
                if item.root_id in p.foreign_roots and p not in holders
            ]
        if item.type == "milestone.completed" and holders:
            self._completed.append((item.id, item.position))
        if item.type == "kudos.given":
            event = decoded(item)
            if isinstance(event, Event) and isinstance(event.body, b.KudosGiven):
                named = event.body.completion
                targets += [
                    p
                    for p in self._partitions.values()
                    if p not in targets and holds(p.state, named)
                ]
            for partition in targets:
                if event is not None:
                    partition.fold(item.position, event)
            return
        if targets:
            event = decoded(item)
            if event is not None:
                for partition in targets:
                    partition.fold(item.position, event)

    def _fold_team_change(self, item: StoredEvent) -> None:
        event = decoded(item)
        if event is None:
            return
        apply(self.directory, event)
        body = event.body if isinstance(event, Event) else None
        joined = body.person if isinstance(body, b.TeamMemberJoined) else None
        for partition in list(self._partitions.values()):
            if (
                joined is not None
                and partition.key == f"team:{body.team}"  # type: ignore[union-attr]
                and joined not in partition.people
            ):
                self.drop(partition.key)  # a new member: their history is not in it
                continue
            partition.fold(item.position, event)
