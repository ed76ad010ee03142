"""The projection follower: the server's in-memory ``ProjectionState``, kept current.

At start it folds every stored event, paging through ``events_after``; then it
follows new positions, woken after each local ingest batch (``poke``) and by
polling (another replica sharing the store commits events this process did
not ingest). Positions are dense and assigned in commit order, so reading
``events_after(position)`` never skips an event.

Folding is synchronous between awaits, so a request handler (running on the
same event loop) always reads a state that is consistent at one position.

The follower also keeps, for the live team feed, the position of every
feed-type event in position order: a stream resumes from a position with a
binary search.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator

from events import CodecError, Event, decode
from projections.state import FEED_TYPES, ProjectionState, apply
from server.store.protocol import ServerStore, StoredEvent

log = logging.getLogger(__name__)

PAGE = 5_000
"""Events read per ``events_after`` call."""


class ProjectionFollower:
    """Holds the projection state and the store position it reflects."""

    def __init__(self, store: ServerStore, *, page: int = PAGE, poll_interval: float = 0.2) -> None:
        self._store = store
        self._page = page
        self._poll_interval = poll_interval
        self.state = ProjectionState()
        self.position = 0
        self.undecodable = 0
        self.last_fold_at: float | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._advanced = asyncio.Event()
        self._feed_positions: list[int] = []
        self._feed_ids: list[str] = []

    def _fold(self, stored: list[StoredEvent]) -> None:
        state = self.state
        feed_positions = self._feed_positions
        feed_ids = self._feed_ids
        for item in stored:
            if item.position != self.position + 1:
                log.warning("position gap: expected %d, got %d", self.position + 1, item.position)
            try:
                event = decode(item.raw)
            except CodecError:
                # Stored events were validated at ingest; a decoder change must not stop us.
                self.undecodable += 1
            else:
                if apply(state, event) and isinstance(event, Event) and event.type in FEED_TYPES:
                    feed_positions.append(item.position)
                    feed_ids.append(event.id)
            self.position = item.position

    async def catch_up(self) -> int:
        """Fold every event stored after ``position``; return how many were folded."""
        folded = 0
        async with self._lock:
            while True:
                page = await self._store.events_after(self.position, self._page)
                if not page:
                    break
                self._fold(page)
                folded += len(page)
                if len(page) < self._page:
                    break
                await asyncio.sleep(0)  # let requests run between pages
        if folded:
            self.last_fold_at = time.time()
            advanced, self._advanced = self._advanced, asyncio.Event()
            advanced.set()
        return folded

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[ProjectionState]:
        """Hold off folding while the state is read outside the event loop (a thread)."""
        async with self._lock:
            yield self.state

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
        start = bisect.bisect_right(self._feed_positions, position)
        for index in range(start, len(self._feed_positions)):
            yield self._feed_positions[index], self._feed_ids[index]

    async def rebuild(self) -> None:
        """Fold every stored event into a fresh state, then swap it in."""
        fresh = ProjectionFollower(self._store, page=self._page)
        await fresh.catch_up()
        async with self._lock:
            self.state, self.position = fresh.state, fresh.position
            self._feed_positions, self._feed_ids = fresh._feed_positions, fresh._feed_ids
            self.undecodable = fresh.undecodable
        await self.catch_up()
