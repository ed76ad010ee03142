"""The sync engine: push local events to JetStream, pull what this person may see, watch.

``Syncer`` takes its two sides as ports: a ``SyncStore`` (``client.sync.log``; the client
database's ``SyncLog``) and a ``Transport`` (``client.sync.transport``; nats-py's
``NatsTransport``). It holds no SQL and no NATS calls of its own.

States of an own event (``sync_state``; no row means *pending*)::

    pending --(stream ack)--> pushed --(pulled back with a position)--> confirmed
       ^                        |  \
       +--(no confirmation within repush_after seconds)--+  +--(refused by the server)--> rejected

A *rejected* event (``sync_refusals``: the server's reason, e.g. the ownership rule)
is kept in the log, shown with its reason, and never pushed again.

Rules this engine keeps (and the e2e tests check):

1. An event is marked *pushed* only after JetStream acknowledged it, and
   *confirmed* only when it came back from the server's store, so an event
   shown as synced is in the server's store. Marking never downgrades a
   confirmed event.
2. A pull page is applied in ONE transaction (``SyncStore.apply``): new events, the
   views, own events confirmed with their global positions, and the cursor.
3. Re-pushing is always safe: the stream drops repeats inside its duplicate
   window by ``Nats-Msg-Id`` and the server's store keeps each event id once,
   forever. So a killed process, a lost ack or a long offline spell only
   cost bandwidth.
4. Only the person's own events are pushed; events pulled from the server
   are recorded as confirmed and never pushed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime

import msgspec

from client.store import Store
from client.sync.config import DEFAULT_POLL, DEFAULT_REPUSH_AFTER
from client.sync.errors import SyncError
from client.sync.log import SyncLog, SyncStore, apply_views, threaded, wall_ms
from client.sync.progress import BIG_SYNC, Progress
from client.sync.transport import Transport
from events.wire import (
    MAX_PULL_LIMIT,
    PullReply,
    PullRequest,
    Refusal,
    WireError,
    WireEvent,
    WireReferent,
    decode_poke,
    decode_reply,
    encode_request,
    events_subject,
    is_retryable,
    poke_subject,
    pull_subject,
)

PUSH_CHUNK = 5000
"""Events published before their acks are awaited and recorded in one transaction."""

PULL_AHEAD = 2
"""Pull requests sent ahead of the cursor while catching up on dense positions."""

APPLY_BATCH = 20_000
"""Pulled events applied in one transaction at most (pages are gathered up to this)."""

IDLE_AFTER = 2.0
"""Seconds without a newly logged event after which ``watch`` looks less often."""

IDLE_POLL = 0.1
"""The longest interval between two looks of an idle ``watch`` (the delay of an event
logged after a quiet spell, at most)."""


class RefusedEvent(msgspec.Struct, frozen=True):
    """One of this device's events the server refused."""

    event_id: str
    reason: str
    retry: bool = False  # refused for now (a rate limit): pushed again after the delay


class Summary(msgspec.Struct):
    """What one sync round did (``sync --json``)."""

    pushed: int = 0
    received: int = 0
    confirmed: int = 0
    rejected: int = 0
    rescans: int = 0
    requeued: int = 0
    cursor: int = 0
    head: int = 0
    pending: int = 0
    seconds: float = 0.0
    refused: list[RefusedEvent] = msgspec.field(default_factory=list)
    """This device's events the server refused, learned in this round, with the reason."""

    def add(self, other: Summary) -> None:
        """Accumulate another round's counts."""
        for name in ("pushed", "received", "confirmed", "rejected", "rescans", "requeued"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cursor, self.head, self.pending = other.cursor, other.head, other.pending
        self.refused.extend(other.refused)


class Syncer:
    """Push and pull for one person and device: the local side is a ``SyncStore`` (a
    ``Store`` is wrapped in a ``SyncLog``), the server is reached over a ``Transport``."""

    def __init__(
        self,
        store: Store | SyncStore,
        person: str,
        device: str,
        link: Transport,
        *,
        now: Callable[[], datetime],
        repush_after: float = DEFAULT_REPUSH_AFTER,
        request_timeout: float = 10.0,
        ack_timeout: float = 15.0,
        progress: Progress | None = None,
        pull_limit: int = MAX_PULL_LIMIT,
    ) -> None:
        self.log: SyncStore = (
            SyncLog(threaded(store), person) if isinstance(store, Store) else store
        )
        self.store = store
        self.person = person
        self.device = device
        self.link = link
        self.now = now
        self.repush_after = repush_after
        self.request_timeout = request_timeout
        self.ack_timeout = ack_timeout
        self.progress = progress or Progress()
        self.pull_limit = pull_limit
        self._scanned = 0  # own events with seq <= this have a sync_state row

    # --- push ---------------------------------------------------------------------------

    async def push(self, *, requeue: bool = True) -> Summary:
        """Publish every pending own event, many acks in flight; mark them pushed. With
        ``requeue``, pushed events unconfirmed for ``repush_after`` are pending again first
        (``watch`` skips that write when it pushes what was just logged)."""
        summary = Summary()
        if requeue and self.repush_after >= 0:
            summary.requeued = await self.log.requeue_stale(
                wall_ms() - int(self.repush_after * 1000)
            )
        subject = events_subject(self.person, self.device)
        shown = False
        while True:
            batch = await self.log.pending(self._scanned, PUSH_CHUNK)
            if not batch:
                break
            if not shown and len(batch) >= BIG_SYNC and self.progress.shows:
                self.progress.start("push", await self.log.pending_total())
                shown = True
            outcomes = await self.link.publish(subject, batch, timeout=self.ack_timeout)
            acked = [
                event_id
                for (_, event_id, *_), outcome in zip(batch, outcomes, strict=True)
                if outcome is None
            ]
            await self.log.mark_pushed(acked, wall_ms())
            summary.pushed += len(acked)
            self.progress.advance("push", len(acked))
            if len(acked) < len(batch):
                failed = [outcome for outcome in outcomes if outcome is not None]
                raise self.link.explain("push", failed[-1])
            self._scanned = max(self._scanned, batch[-1][0])
            if len(batch) < PUSH_CHUNK:
                break  # that was all of it (what is logged meanwhile is pushed next time)
        return summary

    # --- pull ---------------------------------------------------------------------------

    async def _request(self, request: PullRequest) -> PullReply:
        data = await self.link.request(
            "pull",
            pull_subject(self.person),
            encode_request(request),
            timeout=self.request_timeout,
        )
        try:
            reply = decode_reply(data)
        except WireError as exc:
            raise SyncError(f"pull failed: {exc}") from None
        if reply.error is not None:
            raise SyncError(f"pull failed: the server said: {reply.error}")
        return reply

    async def pull(self) -> Summary:
        """Page through what the person may see after the cursor; apply the pages with their
        cursor, each batch in one transaction.

        Applying overlaps with fetching: while one batch is applied, the next pages are
        requested and gathered, and as soon as the apply is done everything gathered so far
        becomes the next batch (so a batch is one page when the device keeps up with the
        server, and grows up to ``APPLY_BATCH`` when applying is the slower side). Batches
        are applied one at a time, in order, each with the cursor of its last page.

        Pages ahead are asked for before they are known to be needed when the person
        sees every position (a device catching up on its own person's events): the
        next page of a full page with dense positions most likely starts where this one
        started plus its length. Each such request names its cursor, and its reply is
        used only when the cursor really arrives there (so it is exactly the page a
        request sent then would get, as of a moment after the previous page was read);
        the others are dropped. ``PULL_AHEAD`` requests are in flight at most."""
        summary = Summary()
        after, checked = await self.log.cursors()
        gathered: list[WireEvent] = []
        vouched: list[WireReferent] = []  # the gathered pages' referents
        unapplied = False  # the cursor moved past what was applied
        shown = False
        limit = self.pull_limit
        applying: asyncio.Task[tuple[int, int, int]] | None = None
        ahead: dict[int, asyncio.Task[PullReply]] = {}  # requests sent ahead, by cursor
        stride = head = 0  # stride: the length of the last page when its positions were dense

        def start_apply() -> asyncio.Task[tuple[int, int, int]]:
            nonlocal gathered, vouched, unapplied
            batch, gathered, unapplied = gathered, [], False
            referents, vouched = vouched, []
            return asyncio.create_task(
                self.log.apply(batch, after, checked, self.now(), apply_views, referents)
            )

        refusals_after = await self.log.refusals_after()
        refusals: list[Refusal] = []

        def ask(at: int) -> asyncio.Task[PullReply]:
            request = PullRequest(
                device=self.device,
                after=at,
                limit=limit,
                checked=checked,
                refusals_after=refusals_after,
            )
            return asyncio.create_task(self._request(request))

        try:
            while True:
                task = ahead.pop(after, None) or ask(after)
                for k in range(1, PULL_AHEAD + 1) if stride else ():
                    at = after + k * stride
                    if at + stride > head:
                        break  # a page that is not full: asked for when it is due
                    if at not in ahead:
                        ahead[at] = ask(at)
                reply = await task
                if reply.rescan_from is not None:
                    summary.rescans += 1
                if not shown and reply.more and reply.head - after >= BIG_SYNC:
                    self.progress.start("pull", max(1, reply.head - after))
                    shown = True
                self.progress.advance("pull", max(0, reply.next_after - after))
                if reply.more and reply.events and len(reply.events) < limit:
                    limit = len(reply.events)  # cut by the reply's byte budget: ask for that
                # Dense: the page holds every position after the cursor up to its last.
                dense = reply.more and reply.rescan_from is None and bool(reply.events)
                dense = dense and reply.next_after - after == len(reply.events)
                stride = len(reply.events) if dense else 0
                head = max(head, reply.head)
                gathered.extend(reply.events)
                vouched.extend(reply.referents)
                unapplied = unapplied or (reply.next_after, reply.checked) != (after, checked)
                after, checked = reply.next_after, reply.checked
                summary.cursor, summary.head = after, reply.head
                for at in [at for at in ahead if at < after or not stride]:
                    ahead.pop(at).cancel()  # the cursor went elsewhere
                if applying is not None and (applying.done() or len(gathered) >= APPLY_BATCH):
                    task_done, applying = applying, None
                    self._count(summary, await task_done)
                if applying is None and (gathered or unapplied):
                    applying = start_apply()
                if not reply.more:
                    refusals = reply.refusals
                    break
        finally:
            for spare in ahead.values():
                spare.cancel()
            await asyncio.gather(*ahead.values(), return_exceptions=True)
            if applying is not None:
                task_done, applying = applying, None
                self._count(summary, await task_done)
        if gathered or unapplied:
            self._count(
                summary,
                await self.log.apply(gathered, after, checked, self.now(), apply_views, vouched),
            )
        mine = await self.log.record_refusals(  # after every apply: one writer
            refusals, now_ms=wall_ms(), repush_after_ms=int(self.repush_after * 1000)
        )
        summary.refused.extend(
            RefusedEvent(r.event_id or "", r.reason, is_retryable(r.reason)) for r in mine
        )
        return summary

    @staticmethod
    def _count(summary: Summary, applied: tuple[int, int, int]) -> None:
        summary.received += applied[0]
        summary.confirmed += applied[1]
        summary.rejected += applied[2]

    # --- together -----------------------------------------------------------------------

    async def sync_once(self) -> Summary:
        """Push everything pending, then pull until caught up."""
        started = time.perf_counter()
        summary = Summary()
        try:
            summary.add(await self.push())
            summary.add(await self.pull())
        finally:
            self.progress.stop()
        if summary.received == 0 and summary.confirmed == 0:
            await self.log.touch()
        summary.pending = (await self.log.counts()).pending
        summary.seconds = round(time.perf_counter() - started, 3)
        return summary

    async def watch(
        self,
        stop: asyncio.Event,
        report: Callable[[Summary], None],
        *,
        poll: float = DEFAULT_POLL,
        safety_pull: float = 5.0,
    ) -> None:
        """Stay connected: push as local events are logged (``PRAGMA data_version``), pull
        on each poke, and every ``safety_pull`` seconds anyway. Returns when ``stop`` is set;
        a lost connection raises SyncUnreachable (the caller reconnects with backoff)."""
        wake = asyncio.Event()
        pull_wanted = asyncio.Event()

        def on_poke(data: bytes) -> None:
            with contextlib.suppress(WireError):
                decode_poke(data)
            pull_wanted.set()
            wake.set()

        unsubscribe = await self.link.subscribe(
            poke_subject(self.person), on_poke, timeout=self.request_timeout
        )
        first = await self.sync_once()
        report(first)
        commits = self.log.commit_hint()
        commits.changed()
        version = await self.log.data_version()
        last_pull = last_logged = time.monotonic()
        interval = poll
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                # Sleep until a poke or ``interval`` seconds (a timer, no task per round).
                # ``poll`` while events are being logged; after IDLE_AFTER s without one
                # the interval doubles up to IDLE_POLL, so an idle watcher (a laptop on
                # battery) wakes tens of times a second, not hundreds.
                timer = loop.call_later(interval, wake.set)
                await wake.wait()
                timer.cancel()
                wake.clear()
                if stop.is_set():
                    break
                if not self.link.ready():
                    continue  # reconnecting (raises once refused or closed)
                summary = Summary()
                now = time.monotonic()
                if commits.changed():
                    current = await self.log.data_version()
                    if current != version:
                        version = current
                        last_logged = now
                        summary.add(await self.push(requeue=False))
                if now - last_logged < IDLE_AFTER:
                    interval = poll
                else:
                    interval = min(max(interval, poll) * 2, max(IDLE_POLL, poll))
                periodic = now - last_pull >= safety_pull
                if pull_wanted.is_set() or periodic:
                    pull_wanted.clear()
                    last_pull = now
                    if periodic:
                        summary.add(await self.push())  # also re-pushes stale events
                    summary.add(await self.pull())
                if summary.pushed or summary.received or summary.rescans:
                    report(summary)
        finally:
            commits.close()
            await unsubscribe()
