"""The projection follower: the server's in-memory ``ProjectionState``, kept current.

At start it folds every stored event, paging through ``events_after``; then it
follows new positions, woken after each local ingest batch (``poke``) and by
polling (another replica sharing the store commits events this process did
not ingest). Positions are dense and assigned in commit order, so reading
``events_after(position)`` never skips an event.

An ingest batch of this process is handed over already decoded (``offer``): when
it follows on from the follower's position it is folded at once, without
reading it back from the store and decoding it again; when it does not (another
replica appended in between, or a catch-up is under way) the follower reads
from the store as before, so what it folds is always the store's position order.

Folding is synchronous between awaits (a page is folded in slices with an await
between them), so a request handler running on the same event loop always reads a
state that is consistent at one position.

The follower also keeps, for the live team feed, the position of every
feed-type event in position order: a stream resumes from a position with a
binary search.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Protocol

from events import AnyEvent, CodecError, Event, decode
from projections import persist
from projections.feed_log import FeedLog
from projections.state import FEED_TYPES, ProjectionState, apply
from server.partition import Partition, split_key
from server.snapshots.service import encode_yielding
from server.store.protocol import Incoming, ServerStore, StoredEvent
from server.working_set import WorkingSet

log = logging.getLogger(__name__)


class Folded(Protocol):
    """A folded state a view reads and the live feed follows: the follower's own (all
    history) or a working-set partition."""

    @property
    def state(self) -> ProjectionState: ...

    def feed_events_after(self, position: int) -> Iterator[tuple[int, str]]: ...


PAGE = 5_000
"""Events read per ``events_after`` call."""

FOLD_SLICE = 500
"""Events folded between two chances for requests to run (a few ms of work)."""


class ProjectionFollower:
    """Holds the projection state and the store position it reflects."""

    def __init__(
        self,
        store: ServerStore,
        *,
        page: int = PAGE,
        poll_interval: float = 0.2,
        working_set: WorkingSet | None = None,
    ) -> None:
        self._store = store
        self.working_set = working_set
        """Set: the state is held in partitions folded on demand (``server.working_set``),
        and ``state`` is only its directory (who is in which team)."""
        self._page = page
        self._poll_interval = poll_interval
        self.state = ProjectionState()
        self.position = 0
        self.undecodable = 0
        self.last_fold_at: float | None = None
        self._lock = asyncio.Lock()
        # While a snapshot is encoded, folding waits but readers (views) go on.
        self._snapshots = 0
        self._thawed = asyncio.Event()
        self._thawed.set()
        self._wake = asyncio.Event()
        self._advanced = asyncio.Event()
        self._feed = FeedLog()

    def _fold(
        self, stored: Sequence[StoredEvent], decoded: dict[str, Incoming] | None = None
    ) -> None:
        """Fold ``stored`` in order; ``decoded`` (by event id) spares decoding an event whose
        exact stored bytes were already decoded at ingest."""
        if self.working_set is not None:
            for item in stored:
                self.working_set.fold(item)
                self.position = item.position
            return
        state = self.state
        feed = self._feed
        for item in stored:
            if item.position != self.position + 1:
                log.warning("position gap: expected %d, got %d", self.position + 1, item.position)
            event: AnyEvent | None = None
            if decoded is not None:
                incoming = decoded.get(item.id)
                if incoming is not None and incoming.raw == item.raw:
                    event = incoming.event
            if event is None:
                try:
                    event = decode(item.raw)
                except CodecError:
                    # Stored events were validated at ingest; a decoder change must not stop us.
                    self.undecodable += 1
            if (
                event is not None
                and apply(state, event)
                and isinstance(event, Event)
                and event.type in FEED_TYPES
            ):
                feed.add(item.position, event.id)
            self.position = item.position

    def _folded(self) -> None:
        self.last_fold_at = time.time()
        advanced, self._advanced = self._advanced, asyncio.Event()
        advanced.set()

    def offer(self, stored: Sequence[StoredEvent], incoming: Iterable[Incoming]) -> bool:
        """Fold a batch this process just committed (``AppendResult.stored``, with the
        ``Incoming`` it was appended from) if it follows on from ``position``; say whether
        the follower is now past it. False means: ``poke`` to read it from the store (a gap:
        another replica appended in between, or a catch-up or a reader holds the state)."""
        if not stored:
            return True
        if stored[-1].position <= self.position:
            return True  # already read from the store
        if self.working_set is not None:
            return False  # its partitions may ask the store what their events wait for
        if self._lock.locked() or self._snapshots:
            return False  # a catch-up mid-read, the state read in a thread, or a snapshot
        fresh = [item for item in stored if item.position > self.position]
        if fresh[0].position != self.position + 1:
            return False
        decoded: dict[str, Incoming] = {}
        for item in incoming:
            if item.event is not None:
                decoded.setdefault(item.event.id, item)
        self._fold(fresh, decoded)
        self._folded()
        return True

    async def catch_up(self) -> int:
        """Fold every event stored after ``position``; return how many were folded."""
        folded = 0
        while True:
            await self._thawed.wait()
            await self._lock.acquire()
            if not self._snapshots:
                break
            self._lock.release()  # a snapshot began meanwhile: wait for it
        try:
            while True:
                page = await self._store.events_after(self.position, self._page)
                if not page:
                    break
                # A page takes tens of ms to decode and fold: let requests run between
                # slices of it (each reads a state consistent at the position folded).
                for start in range(0, len(page), FOLD_SLICE):
                    self._fold(page[start : start + FOLD_SLICE])
                    if self.working_set is not None:
                        await self.working_set.follow(self.position)
                    await asyncio.sleep(0)
                folded += len(page)
                if len(page) < self._page:
                    break
        finally:
            self._lock.release()
        if folded:
            self._folded()
        return folded

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[ProjectionState]:
        """Hold off folding while the state is read outside the event loop (a thread)."""
        async with self._lock:
            yield self.state

    async def start_working_set(self) -> None:
        """With a working set: fold only the directory and follow from the store's end."""
        assert self.working_set is not None
        self.working_set.lock = self._lock
        async with self._lock:
            self.position = await self.working_set.start()
            self.state = self.working_set.directory
        self._folded()

    async def team_view(self, team: str) -> Folded:
        """What answers for a team: this follower (all history) or the team's partition."""
        if self.working_set is None:
            return self
        key, people = self.working_set.team_key(team)
        return await self.working_set.partition(key, people, self.position, self._settle)

    async def person_view(self, person: str) -> Folded:
        """What answers for a person: this follower (all history) or their partition."""
        if self.working_set is None:
            return self
        key, people = self.working_set.person_key(person)
        return await self.working_set.partition(key, people, self.position, self._settle)

    async def warm(self, keys: Sequence[str]) -> int:
        """Load these partitions (``team:T``, ``person:X``; most wanted first) until the
        working set's budget is full; return how many were loaded. For a start: the ones
        held at the last stop, so the teams in use are warm before they are asked for."""
        working_set = self.working_set
        assert working_set is not None
        began, warmed = time.perf_counter(), 0
        for key in keys:
            if working_set.held_events >= working_set.budget_events:
                break
            parsed = split_key(key)
            if parsed is None or (parsed[0] == "team" and not working_set.team_key(parsed[1])[1]):
                continue  # not a key, or a team nobody was ever in
            kind, name = parsed
            await (self.team_view(name) if kind == "team" else self.person_view(name))
            # Compacted before the next load: the memory its objects free is what the
            # next one reuses, and a start's RSS does not first climb to all of them. As
            # any compaction, after the loads requests wait on (it stops for them).
            await working_set.compact(key, after_loads=True)
            warmed += 1
        if warmed:
            log.info(
                "working set: warmed %d partitions in %.2f s", warmed, time.perf_counter() - began
            )
        return warmed

    async def _settle(self, partition: Partition, position: int) -> None:
        assert self.working_set is not None
        async with self._lock:
            await self.working_set.catch_up(partition, position, self.position)
            self.working_set.add(partition)

    def poke(self) -> None:
        """Ask the follower to catch up now (after a local ingest batch)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the store until ``stop`` is set; a failing store is retried."""
        while not stop.is_set():
            try:
                await self.catch_up()
            except Exception:
                log.exception("projection catch-up failed; retrying")
                await asyncio.sleep(1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            self._wake.clear()

    async def wait_beyond(self, position: int, timeout: float) -> bool:
        """Wait until the follower is past ``position`` (or ``timeout``); say whether it is."""
        if self.position > position:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._advanced.wait(), timeout)
        return self.position > position

    def feed_events_after(self, position: int) -> Iterator[tuple[int, str]]:
        """(position, event id) of the feed-type events folded after ``position``, in order."""
        return self._feed.after(position)

    def restore(self, state: ProjectionState, follower: persist.Follower) -> None:
        """Start from a snapshot's state (before any fold; then ``catch_up`` folds the tail)."""
        self.state, self.position = state, follower.position
        self.undecodable = follower.undecodable
        self._feed = follower.feed

    async def snapshot(self, pause_every: int = 1) -> tuple[list[bytes], int]:
        """The state encoded at one position (``projections.persist``; the pieces to
        concatenate), and that position.

        Folding waits meanwhile; readers (views in worker threads) and requests go on:
        the encoding yields to the event loop every ``pause_every`` pieces (each piece is
        one short msgspec call).
        """
        async with self._lock:  # not mid-fold
            self._snapshots += 1
            self._thawed.clear()
            state = self.state
            fields = persist.Follower(self.position, self.undecodable, self._feed)
        try:
            return await encode_yielding(state, fields, pause_every), fields.position
        finally:
            self._snapshots -= 1
            if not self._snapshots:
                self._thawed.set()

    async def rebuild(self) -> None:
        """Fold every stored event into a fresh state, then swap it in (with a working set:
        forget every partition and fold the directory again)."""
        if self.working_set is not None:
            async with self._lock:
                self.working_set.reset()
                self.position = await self.working_set.start()
                self.state = self.working_set.directory
            await self.catch_up()
            return
        fresh = ProjectionFollower(self._store, page=self._page)
        await fresh.catch_up()
        async with self._lock:
            self.state, self.position = fresh.state, fresh.position
            self._feed = fresh._feed
            self.undecodable = fresh.undecodable
        await self.catch_up()
