"""Compaction of the working set's held partitions, in the background (docs/scaling.md,
"Compaction"): ``projections.compact`` is the pure part, this the scheduling around it.

A compaction is built off the event loop while requests go on reading the partition
(``prepare`` only reads it) and even while events fold into it; it is swapped in on the
loop (between two views: the swap rewrites task nodes) under the follower's lock (after
a snapshot being encoded), only if nothing folded meanwhile, else built again. It holds
no lock while it is built (a load settling needs the follower's), begins a second after
the last load began or ended, one at a time, and stops when a load begins: it shares
the interpreter with the loads requests wait on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from projections.compact import Stopped, folded, prepare

if TYPE_CHECKING:
    from server.partition import Partition
    from server.working_set import WorkingSet

log = logging.getLogger(__name__)

COMPACT_AFTER = 5_000
"""Events a held partition folds as objects before they are moved into its rows (after a
load, all of them are: ``projections.compact``)."""

COMPACT_QUIET = 1.0
"""Seconds since the last partition load began or ended before a compaction begins."""

COMPACT_ATTEMPTS = 5
"""Times a compaction is built again when events folded while it was built."""


class Compactor:
    """Compacts the partitions a ``WorkingSet`` holds, one at a time, in the background."""

    def __init__(self, working_set: WorkingSet) -> None:
        self._working_set = working_set
        self._queued: dict[str, asyncio.Task[None]] = {}  # by key: one queued per key
        self._tasks: set[asyncio.Task[None]] = set()  # every one not done, begun or not
        self._awaited = 0  # compactions awaited by their caller (``now``), under way
        self._one_at_a_time = asyncio.Lock()
        self._load_moved = 0.0  # when a load last began or ended
        self.compactions = 0

    def load_moved(self) -> None:
        """A load began or ended: compactions wait a second more."""
        self._load_moved = time.monotonic()

    def pending(self) -> int:
        """Compactions queued or under way, in the background or awaited (a metric)."""
        return len(self._tasks) + self._awaited

    async def now(self, key: str, *, after_loads: bool = False) -> None:
        """``compact``, awaited by the caller (the warm-up) and counted as pending."""
        self._awaited += 1
        try:
            await self.compact(key, after_loads=after_loads)
        finally:
            self._awaited -= 1

    def queued(self) -> list[asyncio.Task[None]]:
        """Every compaction not done (one may be past the swap, about to ask for its
        partition's snapshot: ``WorkingSet.compacted``)."""
        return list(self._tasks)

    def soon(self, partition: Partition) -> None:
        """Compact a held partition in the background (after the answer that loaded it)."""
        key = partition.key
        if key in self._queued:
            return  # the one queued compacts whichever partition holds the key then
        task = asyncio.create_task(self.compact(key, after_loads=True))
        self._queued[key] = task
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        for key, queued in list(self._queued.items()):
            if queued is task:
                del self._queued[key]

    async def compact(self, key: str, *, after_loads: bool = False) -> None:
        """Compact the partition held under ``key`` now, one compaction at a time; with
        ``after_loads``, once no load has begun or ended for a second, stopping for one."""
        working_set = self._working_set
        attempts = 0
        while attempts < COMPACT_ATTEMPTS:
            while after_loads and (
                working_set.loading or time.monotonic() - self._load_moved < COMPACT_QUIET
            ):
                await asyncio.sleep(COMPACT_QUIET / 4)
            async with self._one_at_a_time:
                done = await self._compacted_once(key, stop=after_loads)
            if done is None:
                continue  # stopped for a load
            if done:
                return
            attempts += 1

    async def _compacted_once(self, key: str, *, stop: bool) -> bool | None:
        """One attempt; False: events folded while it was built; None: a load began
        meanwhile (with ``stop``). Either way nothing changed: try again."""
        working_set = self._working_set
        partition = working_set.held(key)
        if partition is None:
            return True  # dropped meanwhile
        began = time.perf_counter()
        before = folded(partition.state)
        asked: Callable[[], bool] = (lambda: working_set.loading) if stop else (lambda: False)
        try:
            compaction = await asyncio.to_thread(prepare, partition.state, asked)
        except Stopped:
            return None
        except RuntimeError:
            return False  # a fold changed a dictionary it was reading
        except Exception:
            log.exception("working set: compacting %s failed; it stays whole", key)
            working_set.compacted(partition)
            return True
        # The follower's lock only for the swap: a snapshot being encoded ends first.
        async with working_set.lock or contextlib.nullcontext():
            if working_set.held(key) is not partition:
                return True
            if folded(partition.state) != before:
                return False
            moved = 0 if compaction is None else compaction.swap()
            partition.since_compaction = 0
            self.compactions += 1
            # A load of the same key settling from now on queues its own.
            self._queued.pop(key, None)
        working_set.compacted(partition)
        log.debug(
            "working set: compacted %s (%d events into rows) in %.2f s",
            key,
            moved,
            time.perf_counter() - began,
        )
        return True
