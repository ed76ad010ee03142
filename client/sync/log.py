"""The local sync state: the ``SyncStore`` port the engine uses, and ``SyncLog``, its
implementation in the client database (``sync_state`` rows, ``sync_refusals`` and the
cursors in ``meta``).

Every operation is a plain synchronous function of a ``client.store.SqliteTx`` run in the
store's one worker thread (``Store.run`` for reads, ``Store.transaction`` for writes: ONE
``BEGIN IMMEDIATE … COMMIT`` each), so the event loop only awaits its result; nothing
drives coroutines by hand and nothing reaches into the database driver.

Applying a pulled page (``SyncLog.apply``) is one such transaction: new events through
the store's append path (the events table stays append-only), the views brought up to
date in the same transaction (``apply_views``, over ``client.views``' public functions),
own events confirmed with their global positions, the clock and the cursor. A crash
leaves either all of it or none of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import msgspec

from client import views
from client.errors import StoreError
from client.store import SqliteTx, Store
from events import AnyEvent, CodecError, Event, HybridLogicalClock, decode
from events.wire import Refusal, WireEvent, WireReferent, is_retryable, retry_after

REBUILD_ABOVE = 1000
"""A transaction adding more new events than this, and more than the log held before,
rebuilds the views once instead of refolding the touched roots."""

Pending = tuple[int, str, bytes, str]
"""(seq, event id, bytes, message id): a push again names its attempt in its message id
(``<id>.<attempts>``), so the stream's duplicate window does not drop it (after a rate
limit); the server's store keeps each event id once whatever the message id."""
"""An own event to push: (local seq, event id, its encoded bytes)."""

ApplyViews = Callable[[views.Tx, list[tuple[int, AnyEvent]], datetime], None]
"""Brings the views up to date with newly stored (seq, event) rows, inside the transaction."""


class Counts(msgspec.Struct, frozen=True):
    """Own events by sync state, and when the last sync completed (``status --json``)."""

    pending: int
    pushed: int
    confirmed: int
    last_sync_at: str | None
    rejected: int = 0


class CommitHint(Protocol):
    """Whether the local database may have changed since the last look (cheaply)."""

    def changed(self) -> bool:
        """True when a commit may have happened since the last True."""
        ...

    def close(self) -> None:
        """Release what the hint holds (idempotent)."""
        ...


class SyncStore(Protocol):
    """What the sync engine needs of the local database. Each call is one synchronous
    transaction (or read) run in the store's worker thread."""

    async def counts(self) -> Counts:
        """How many own events are pending, pushed, confirmed and rejected."""
        ...

    async def requeue_stale(self, older_than_ms: int) -> int:
        """Pushed events unconfirmed since before ``older_than_ms`` become pending again."""
        ...

    async def pending(self, after_seq: int, limit: int) -> list[Pending]:
        """Own events to push: pending again, then never pushed with seq > ``after_seq``."""
        ...

    async def pending_total(self) -> int:
        """How many own events are pending (for a progress bar)."""
        ...

    async def mark_pushed(self, event_ids: Sequence[str], at_ms: int) -> None:
        """Record stream acknowledgements (never downgrades a confirmed event)."""
        ...

    async def cursors(self) -> tuple[int, int]:
        """The pull cursor and the position reveals were checked up to."""
        ...

    async def apply(
        self,
        events: Sequence[WireEvent],
        after: int,
        checked: int,
        now: datetime,
        apply_views: ApplyViews = ...,
        referents: Sequence[WireReferent] = (),
    ) -> tuple[int, int, int]:
        """Store pulled events, their referents and the cursors in ONE transaction; (new
        events, own events confirmed, undecodable events skipped)."""
        ...

    async def refusals_after(self) -> int:
        """The cursor in the person's refusals (``PullRequest.refusals_after``)."""
        ...

    async def record_refusals(
        self, refusals: Sequence[Refusal], *, now_ms: int, repush_after_ms: int
    ) -> list[Refusal]:
        """Record refusals of this device's events and move the cursor; those that name an
        event this device holds (a retryable one is pushed again after its delay)."""
        ...

    async def touch(self) -> None:
        """Record a completed sync that changed nothing."""
        ...

    async def data_version(self) -> int:
        """A number that changes when another connection commits (``watch``)."""
        ...

    def commit_hint(self) -> CommitHint:
        """A cheap hint that a commit may have happened (checked before ``data_version``)."""
        ...


_PENDING_NEW = (
    "SELECT e.seq, e.id, e.data FROM events e LEFT JOIN sync_state s ON s.event_id = e.id"
    " WHERE e.seq > ? AND e.actor = ? AND s.event_id IS NULL ORDER BY e.seq LIMIT ?"
)
_PENDING_AGAIN = (
    "SELECT e.seq, e.id, e.data, s.attempts FROM sync_state s JOIN events e ON e.id = s.event_id"
    " WHERE s.state = 'pending' AND e.actor = ?"
    " AND NOT EXISTS (SELECT 1 FROM sync_refusals r WHERE r.event_id = e.id)"
    " ORDER BY e.seq LIMIT ?"
)
_MARK_PUSHED = (
    "INSERT INTO sync_state (event_id, state, pushed_ms, attempts) VALUES (?, 'pushed', ?, 1)"
    " ON CONFLICT (event_id) DO UPDATE SET state = 'pushed', pushed_ms = excluded.pushed_ms,"
    " attempts = sync_state.attempts + 1 WHERE sync_state.state != 'confirmed'"
)
_MARK_CONFIRMED = (
    "INSERT INTO sync_state (event_id, state, server_position) VALUES (?, 'confirmed', ?)"
    " ON CONFLICT (event_id) DO UPDATE SET state = 'confirmed',"
    " server_position = excluded.server_position"
)


def wall_ms() -> int:
    """Real Unix milliseconds (sync timing ignores ``MILEPOST_NOW``)."""
    return time.time_ns() // 1_000_000


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SyncLog:
    """The sync state kept in one client database (a ``SyncStore``)."""

    def __init__(self, store: Store, person: str) -> None:
        self.store = store
        self.person = person

    async def counts(self) -> Counts:
        """How many own events are pending, pushed, confirmed and rejected."""

        def read(tx: SqliteTx) -> Counts:
            rows = tx.fetchall(
                "SELECT CASE WHEN s.state = 'confirmed' THEN 'confirmed'"
                " WHEN r.event_id IS NOT NULL THEN 'rejected'"
                " ELSE coalesce(s.state, 'pending') END, count(*) FROM events e"
                " LEFT JOIN sync_state s ON s.event_id = e.id"
                " LEFT JOIN sync_refusals r ON r.event_id = e.id WHERE e.actor = ? GROUP BY 1",
                (self.person,),
            )
            by_state = {str(state): int(n) for state, n in rows}
            last = tx.scalar("SELECT value FROM meta WHERE key = 'last_sync_at'")
            return Counts(
                by_state.get("pending", 0),
                by_state.get("pushed", 0),
                by_state.get("confirmed", 0),
                str(last) if last else None,
                by_state.get("rejected", 0),
            )

        return await self.store.run(read)

    async def requeue_stale(self, older_than_ms: int) -> int:
        """Pushed events unconfirmed since before ``older_than_ms`` become pending again."""
        return await self.store.transaction(
            lambda tx: tx.execute(
                "UPDATE sync_state SET state = 'pending' WHERE state = 'pushed' AND pushed_ms < ?"
                " AND event_id NOT IN (SELECT event_id FROM sync_refusals)",
                (older_than_ms,),
            )
        )

    async def refusals_after(self) -> int:
        """The cursor in the person's refusals (``PullRequest.refusals_after``)."""
        value = await self.store.scalar("SELECT value FROM meta WHERE key = 'refusals_after'")
        return int(value or 0)

    async def record_refusals(
        self, refusals: Sequence[Refusal], *, now_ms: int, repush_after_ms: int
    ) -> list[Refusal]:
        """Record refusals of this device's events (in one transaction) and move the cursor;
        returns those that name an event this device holds.

        A final refusal makes the event *rejected*. A retryable one (a rate limit) leaves it
        *pushed*, dated so that ``requeue_stale`` makes it pending again once the delay the
        server asked for has passed: it is pushed again, never lost."""
        if not refusals:
            return []

        def record(tx: SqliteTx) -> list[Refusal]:
            held = held_ids(tx, [r.event_id for r in refusals if r.event_id])
            mine = [r for r in refusals if r.event_id in held]
            tx.executemany(
                "INSERT OR REPLACE INTO sync_refusals (event_id, refusal_id, reason)"
                " VALUES (?, ?, ?)",
                [(r.event_id, r.id, r.reason) for r in mine if not is_retryable(r.reason)],
            )
            tx.executemany(
                "UPDATE sync_state SET state = 'pushed', pushed_ms = ?"
                " WHERE event_id = ? AND state != 'confirmed'",
                [
                    (
                        now_ms + int((retry_after(r.reason) or 1.0) * 1000) - repush_after_ms,
                        r.event_id,
                    )
                    for r in mine
                    if is_retryable(r.reason)
                ],
            )
            tx.set_meta("refusals_after", str(max(r.id for r in refusals)))
            return mine

        return await self.store.transaction(record)

    async def pending(self, after_seq: int, limit: int) -> list[Pending]:
        """Own events to push: pending again, then never pushed with seq > ``after_seq``."""

        def read(tx: SqliteTx) -> list[Pending]:
            again = tx.fetchall(_PENDING_AGAIN, (self.person, limit))
            fresh = tx.fetchall(_PENDING_NEW, (after_seq, self.person, limit))
            seen: set[str] = set()
            out: list[Pending] = []
            rows = [(s, i, d, f"{i}.{n}") for s, i, d, n in again]
            rows += [(s, i, d, i) for s, i, d in fresh]
            for seq, event_id, data, msg_id in rows:
                if event_id not in seen:
                    seen.add(event_id)
                    out.append((int(seq), str(event_id), bytes(data), str(msg_id)))
            out.sort()
            return out[:limit]

        return await self.store.run(read)

    async def pending_total(self) -> int:
        """How many own events are pending (for a progress bar)."""
        total = await self.store.scalar(
            "SELECT count(*) FROM events e LEFT JOIN sync_state s ON s.event_id = e.id"
            " WHERE e.actor = ? AND coalesce(s.state, 'pending') = 'pending'",
            (self.person,),
        )
        return int(total)

    async def mark_pushed(self, event_ids: Sequence[str], at_ms: int) -> None:
        """Record stream acknowledgements (never downgrades a confirmed event)."""
        if not event_ids:
            return
        rows = [(i, at_ms) for i in event_ids]
        await self.store.transaction(lambda tx: tx.executemany(_MARK_PUSHED, rows))

    async def cursors(self) -> tuple[int, int]:
        """The pull cursor and the position reveals were checked up to."""
        meta = await self.store.fetchall(
            "SELECT key, value FROM meta WHERE key IN ('sync_after', 'sync_checked')"
        )
        values = {str(k): int(v) for k, v in meta}
        return values.get("sync_after", 0), values.get("sync_checked", 0)

    async def apply(
        self,
        events: Sequence[WireEvent],
        after: int,
        checked: int,
        now: datetime,
        apply_views: ApplyViews | None = None,
        referents: Sequence[WireReferent] = (),
    ) -> tuple[int, int, int]:
        """Store pulled events, their referents and the cursor in ONE transaction; (new
        events, own events confirmed, undecodable events skipped).

        The referents are stored before the views are brought up to date, so the views fold
        the new events with them. One naming an event stored by an earlier apply that waited
        for it (a parent in ``sync_orphans``) rebuilds the views instead.

        The whole transaction is one function run in the store's thread: one hop instead
        of a thread round trip per SQL statement, which dominated applying a big sync.
        Events the device already holds are recognised by id before they are decoded (a
        device pulling back its own pushed events decodes none of them)."""
        synced_at = _stamp()
        wall = int(now.timestamp() * 1000)
        maintain = _default_views if apply_views is None else apply_views

        def body(tx: SqliteTx) -> tuple[int, int, int]:
            heads: list[tuple[int, bytes, _Head | None]] = []
            for wire in events:
                try:
                    heads.append((wire.position, wire.raw, _head_decoder.decode(wire.raw)))
                except msgspec.MsgspecError:
                    heads.append((wire.position, wire.raw, None))
            held = held_ids(tx, [h.id for _, _, h in heads if h is not None])
            confirmed: list[tuple[str, int]] = []
            fresh: list[AnyEvent] = []
            own = rejected = top = 0
            for position, raw, head in heads:
                if head is not None and head.id in held:
                    event_id, actor, clock = head.id, head.actor, head.clock
                else:
                    try:
                        event = decode(raw)
                    except CodecError:
                        rejected += 1  # the server validated it; a newer codec may read it
                        continue
                    fresh.append(event)
                    event_id, actor, clock = event.id, event.actor, event.clock
                confirmed.append((event_id, position))
                own += actor == self.person
                top = max(top, clock)
            stale = store_referents(tx, referents) if referents else False
            added = tx.append_ids(fresh) if fresh else []
            if added:
                by_id = {event.id: event for event in fresh}
                rows = [(seq, by_id[i]) for seq, i in added if i in by_id]
                maintain(tx, rows, now)
            if stale:
                views.rebuild_all(tx, now)
            tx.executemany(_MARK_CONFIRMED, confirmed)
            stored = tx.scalar("SELECT value FROM meta WHERE key = 'clock'")
            # The HLC moves past what we saw, never past the bound ahead of our wall clock.
            hlc = HybridLogicalClock(int(stored or 0), wall=lambda: wall)
            hlc.observe(top)
            if hlc.last != int(stored or 0):
                tx.set_meta("clock", str(hlc.last))
            tx.set_meta("sync_after", str(after))
            tx.set_meta("sync_checked", str(checked))
            tx.set_meta("last_sync_at", synced_at)
            return len(added), own, rejected

        return await self.store.transaction(body)

    async def touch(self) -> None:
        """Record a completed sync that changed nothing."""
        stamp = _stamp()
        await self.store.transaction(lambda tx: tx.set_meta("last_sync_at", stamp))

    async def data_version(self) -> int:
        """``PRAGMA data_version``: changes when another connection commits."""
        return int(await self.store.scalar("PRAGMA data_version"))

    def commit_hint(self) -> CommitHint:
        """A ``CommitWatch`` on the database file."""
        return CommitWatch(self.store.path)


def threaded(store: Store) -> Store:
    """``store``, checked to run in its own thread: the engine overlaps pulls with applying,
    so its statements must queue there."""
    if store.direct:
        raise StoreError("the sync engine needs a threaded store (Store.open direct=False)")
    return store


class _Head(msgspec.Struct):
    """What apply needs of an event it already holds (the rest is not decoded)."""

    id: str
    actor: str = ""
    clock: int = 0


_head_decoder = msgspec.json.Decoder(_Head)


def store_referents(tx: views.Tx, referents: Sequence[WireReferent]) -> bool:
    """Keep what the server vouched for (``client.store.REFERENTS_TABLE``); whether one is
    new and names an event stored events waited for before this apply (their views must be
    rebuilt: the incremental views placed them without it)."""
    ids = sorted({r.id for r in referents})
    wanted = json.dumps(ids)
    known = {
        str(row[0])
        for row in tx.fetchall(
            "SELECT id FROM referents WHERE id IN (SELECT value FROM json_each(?))", (wanted,)
        )
    }
    fresh = [r for r in referents if r.id not in known]
    if not fresh:
        return False
    tx.executemany(
        "INSERT OR IGNORE INTO referents (id, actor, type) VALUES (?, ?, ?)",
        [(r.id, r.actor, r.type) for r in fresh],
    )
    tx.execute(_ORPHANS)
    new = json.dumps(sorted({r.id for r in fresh}))
    return bool(
        tx.scalar(
            "SELECT 1 FROM sync_orphans WHERE parent IN (SELECT value FROM json_each(?))", (new,)
        )
    )


def held_ids(tx: views.Tx, ids: list[str]) -> set[str]:
    """Which of these event ids the database already holds."""
    held: set[str] = set()
    for start in range(0, len(ids), 20_000):
        chunk = json.dumps(ids[start : start + 20_000])
        rows = tx.fetchall(
            "SELECT id FROM events WHERE id IN (SELECT value FROM json_each(?))", (chunk,)
        )
        held.update(str(row[0]) for row in rows)
    return held


# --- the views of a pulled batch ------------------------------------------------------------


def apply_views(tx: views.Tx, rows: list[tuple[int, AnyEvent]], now: datetime) -> None:
    """Bring the persisted views up to date with newly stored events (inside the
    transaction): the touched roots are refolded once for the whole batch, exactly as
    ``client.views.record_views`` does for one event; a big batch rebuilds instead."""
    if not rows:
        return
    if out_of_order(tx, rows):
        views.rebuild_all(tx, now)
        return
    if len(rows) > REBUILD_ABOVE:
        # Events are never deleted, so the highest seq is how many there are (O(1)).
        total = int(tx.scalar("SELECT coalesce(max(seq), 0) FROM events"))
        if len(rows) * 2 > total:  # mostly new (a first sync): one rebuild is cheaper
            views.rebuild_all(tx, now)
            return
    roots: set[str] = set()
    known: list[tuple[int, Event]] = []
    # All refs first, in one statement: the events are in causal order here (checked
    # above), so no event below looks up a ref that only a later one would have added.
    # In the order of the refs_rhex index (reversed ids are random): its pages are then
    # written in one sweep instead of at random.
    refs = sorted((views.ref_row(event) for _, event in rows), key=lambda row: row[1])
    tx.executemany(views.INSERT_REF, refs)
    for seq, event in rows:
        if not isinstance(event, Event):
            continue
        try:
            roots |= views.roots_touched(tx, event)
        except views.ViewsNeedRebuild:
            views.rebuild_all(tx, now)
            return
        known.append((seq, event))
    if roots:
        views.refold(tx, sorted(roots), known, now)


_default_views = apply_views

_REF_FIELDS = ("milestone", "subject", "task", "target", "indicator", "objective", "key_result")

_ORPHANS = (
    "CREATE TABLE IF NOT EXISTS sync_orphans (event_id TEXT NOT NULL, parent TEXT NOT NULL,"
    " PRIMARY KEY (parent, event_id)) WITHOUT ROWID"
)


def referenced(event: AnyEvent) -> set[str]:
    """Every id an event's body points at (its milestone, subject, objective, ...)."""
    if not isinstance(event, Event):
        return set()
    return {
        value for name in _REF_FIELDS if isinstance(value := getattr(event.body, name, None), str)
    }


def out_of_order(tx: views.Tx, rows: list[tuple[int, AnyEvent]]) -> bool:
    """Whether these new events arrive out of causal order, so the incremental views
    cannot place them (and a rebuild must): an event whose parent came earlier than the
    parent itself, in this batch or before it. A pulled child whose parent is not here
    yet is remembered in ``sync_orphans`` until the parent arrives.

    This happens when several servers commit batches concurrently (a child may get a
    lower position than its parent) or when a reveal delivers history late."""
    tx.execute(_ORPHANS)
    new_ids = [event.id for _, event in rows]
    rebuild = False
    for start in range(0, len(new_ids), 500):
        chunk = new_ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        if tx.scalar(f"SELECT 1 FROM sync_orphans WHERE parent IN ({marks})", chunk):
            rebuild = True
            tx.execute(f"DELETE FROM sync_orphans WHERE parent IN ({marks})", chunk)
    seen: set[str] = set()
    later = set(new_ids)
    missing: list[tuple[str, str]] = []
    for _, event in rows:
        later.discard(event.id)
        for parent in referenced(event) - seen:
            if parent in later:
                rebuild = True  # its parent comes later in this very batch
            else:
                missing.append((event.id, parent))
        seen.add(event.id)
    if missing:
        parents = sorted({parent for _, parent in missing})
        known: set[str] = set()
        for start in range(0, len(parents), 500):
            chunk = parents[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found = tx.fetchall(f"SELECT id FROM events WHERE id IN ({marks})", chunk)
            known.update(str(row[0]) for row in found)
        orphans = [(child, parent) for child, parent in missing if parent not in known]
        if orphans:
            tx.executemany(
                "INSERT OR IGNORE INTO sync_orphans (event_id, parent) VALUES (?, ?)", orphans
            )
    return rebuild


class CommitWatch:
    """Whether the database may have changed since the last look, without a query.

    It reads the WAL index header at the start of ``<db>-shm`` (SQLite's shared memory
    file in WAL mode), whose change counter moves with every write transaction of any
    connection. Only a hint for the watcher: a changed header, no header to read, or
    ``RECHECK`` seconds since the last answer "maybe", and ``PRAGMA data_version`` (a
    thread hop into the connection) decides. So polling every few milliseconds costs a
    ``pread``, not a query."""

    RECHECK = 0.5

    def __init__(self, path: Path) -> None:
        self._fd: int | None = None
        if hasattr(os, "pread"):
            with contextlib.suppress(OSError):
                self._fd = os.open(f"{path}-shm", os.O_RDONLY)
        self._seen = b""
        self._asked = 0.0

    def changed(self) -> bool:
        """True when a commit may have happened since the last True."""
        now = time.monotonic()
        header = b""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                header = os.pread(self._fd, 96, 0)  # both copies of the header
        if header and header == self._seen and now - self._asked < self.RECHECK:
            return False
        self._seen, self._asked = header, now
        return True

    def close(self) -> None:
        """Close the file (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
