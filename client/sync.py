"""The sync engine: push local events to JetStream, pull what this person may see, watch.

The parts, each small (the engine takes the store and the connection as arguments):

- ``Endpoint`` — where and as whom to connect (from ``milepost init``/``config``);
- ``SyncLog`` — the local sync state in the client database (``sync_state`` rows and
  the cursors in ``meta``); every write is one transaction;
- ``Link`` — one NATS connection with nats-py, its errors turned into one clear line;
- ``Syncer`` — push, pull, one full sync, and ``watch``.

States of an own event (``sync_state``; no row means *pending*)::

    pending --(stream ack)--> pushed --(pulled back with a position)--> confirmed
       ^                        |  \
       +--(no confirmation within repush_after seconds)--+  +--(refused by the server)--> rejected

A *rejected* event (``sync_refusals``: the server's reason, e.g. the ownership rule)
is kept in the log, shown with its reason, and never pushed again.

Rules this module keeps (and the e2e tests check):

1. An event is marked *pushed* only after JetStream acknowledged it, and
   *confirmed* only when it came back from the server's store, so an event
   shown as synced is in the server's store. Marking never downgrades a
   confirmed event.
2. A pull page is applied in ONE transaction: new events through the
   store's append path (the events table stays append-only and the views are
   updated in the same transaction), own events confirmed with their global
   positions, and the cursor. A crash leaves either all of it or none of it.
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
import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import msgspec

from client.errors import MilepostError, StoreError
from client.store import _INSERT as _INSERT_EVENT
from client.store import Store, event_row, translate
from events import AnyEvent, CodecError, Event, HybridLogicalClock, decode
from events.wire import (
    MAX_PULL_LIMIT,
    PullReply,
    PullRequest,
    Refusal,
    WireError,
    WireEvent,
    decode_poke,
    decode_reply,
    encode_request,
    is_retryable,
    retry_after,
)

DEFAULT_REPUSH_AFTER = 600.0
"""Seconds a pushed event may stay unconfirmed before it is pushed again."""

PUSH_CHUNK = 5000
"""Events published before their acks are awaited and recorded in one transaction."""

PULL_AHEAD = 2
"""Pull requests sent ahead of the cursor while catching up on dense positions."""

APPLY_BATCH = 20_000
"""Pulled events applied in one transaction at most (pages are gathered up to this)."""

REBUILD_ABOVE = 1000
"""A transaction adding more new events than this, and more than the log held before,
rebuilds the views once instead of refolding the touched roots."""

DEFAULT_POLL = 0.002
"""Seconds between two looks of ``watch`` for newly logged events (a ``pread`` each)."""

IDLE_AFTER = 2.0
"""Seconds without a newly logged event after which ``watch`` looks less often."""

IDLE_POLL = 0.1
"""The longest interval between two looks of an idle ``watch`` (the delay of an event
logged after a quiet spell, at most)."""

PASSWORD_ENV = "MILEPOST_NATS_PASSWORD"
SERVER_ENV = "MILEPOST_SERVER"
REPUSH_ENV = "MILEPOST_REPUSH_AFTER"
POLL_ENV = "MILEPOST_WATCH_POLL_MS"


class SyncError(MilepostError):
    """Sync could not complete; the message says why in one line."""


class SyncUnreachable(SyncError):
    """The NATS server cannot be reached (worth retrying)."""


class SyncRefused(SyncError):
    """Bad credentials or a permissions violation (not worth retrying)."""


# --- where to connect ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A NATS URL (several comma-separated for a cluster; without secrets) and the
    person's NATS login."""

    url: str
    user: str
    password: str


def endpoint(meta: dict[str, str], environ: dict[str, str] | None = None) -> Endpoint:
    """Resolve the connection from the profile (``server``, ``credentials``) and the env.

    ``server`` is a ``nats://host:port`` URL (it may carry ``user:password@``);
    ``credentials`` names a file holding either JSON (``user``/``person``,
    ``password``/``nats_password``, optionally ``nats_url``) or the bare password;
    ``MILEPOST_NATS_PASSWORD`` and ``MILEPOST_SERVER`` override both.
    """
    env = os.environ if environ is None else environ
    person = meta["person"]
    server = env.get(SERVER_ENV) or meta.get("server") or ""
    user: str | None = None
    password: str | None = None
    creds = meta.get("credentials") or ""
    if creds:
        path = Path(creds).expanduser()
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise SyncError(f"cannot read credentials file {path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            user = _str(data.get("user") or data.get("person"))
            password = _str(data.get("nats_password") or data.get("password"))
            server = server or _str(data.get("nats_url") or data.get("nats")) or ""
        else:
            password = text
    if not server:
        raise SyncError("no sync server configured: run `milepost config server nats://HOST:4222`")
    # A cluster is several comma-separated URLs (one per node): nats-py tries them in turn.
    cleaned: list[str] = []
    for one in (part.strip() for part in server.split(",")):
        if not one:
            continue
        parts = urlsplit(one if "://" in one else f"nats://{one}")
        if parts.scheme not in ("nats", "tls", "ws", "wss"):
            raise SyncError(
                f"sync server {one!r} is not a NATS URL: give nats://HOST:PORT "
                "(the NATS address milepost-server prints)"
            )
        if parts.username:
            user = user or parts.username
        if parts.password:
            password = password or parts.password
        host = parts.hostname or "127.0.0.1"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        cleaned.append(urlunsplit(parts._replace(netloc=netloc)))
    if not cleaned:
        raise SyncError("no sync server configured: run `milepost config server nats://HOST:4222`")
    password = env.get(PASSWORD_ENV) or password
    if not password:
        raise SyncError(
            f"no NATS password for {person}: set `milepost config credentials FILE` "
            f"(from `milepost-server person add {person}`) or {PASSWORD_ENV}"
        )
    return Endpoint(",".join(cleaned), user or person, password)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# --- the local sync state -----------------------------------------------------------------


class Counts(msgspec.Struct, frozen=True):
    """Own events by sync state, and when the last sync completed (``status --json``)."""

    pending: int
    pushed: int
    confirmed: int
    last_sync_at: str | None
    rejected: int = 0


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


class SyncLog:
    """The sync state kept in one client database."""

    def __init__(self, store: Store, person: str) -> None:
        self.store = store
        self.person = person
        self.msg_ids: dict[str, str] = {}  # event id -> ``Nats-Msg-Id`` of a push again

    async def counts(self) -> Counts:
        """How many own events are pending, pushed, confirmed and rejected."""
        rows = await self.store.fetchall(
            "SELECT CASE WHEN s.state = 'confirmed' THEN 'confirmed'"
            " WHEN r.event_id IS NOT NULL THEN 'rejected'"
            " ELSE coalesce(s.state, 'pending') END, count(*) FROM events e"
            " LEFT JOIN sync_state s ON s.event_id = e.id"
            " LEFT JOIN sync_refusals r ON r.event_id = e.id WHERE e.actor = ? GROUP BY 1",
            (self.person,),
        )
        by_state = {str(state): int(n) for state, n in rows}
        last = await self.store.scalar("SELECT value FROM meta WHERE key = 'last_sync_at'")
        return Counts(
            by_state.get("pending", 0),
            by_state.get("pushed", 0),
            by_state.get("confirmed", 0),
            str(last) if last else None,
            by_state.get("rejected", 0),
        )

    async def requeue_stale(self, older_than_ms: int) -> int:
        """Pushed events unconfirmed since before ``older_than_ms`` become pending again."""
        async with self.store.write():
            return await self.store.execute(
                "UPDATE sync_state SET state = 'pending' WHERE state = 'pushed' AND pushed_ms < ?"
                " AND event_id NOT IN (SELECT event_id FROM sync_refusals)",
                (older_than_ms,),
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
        async with self.store.write():
            held = await _held_ids(self.store, [r.event_id for r in refusals if r.event_id])
            mine = [r for r in refusals if r.event_id in held]
            await self.store.executemany(
                "INSERT OR REPLACE INTO sync_refusals (event_id, refusal_id, reason)"
                " VALUES (?, ?, ?)",
                [(r.event_id, r.id, r.reason) for r in mine if not is_retryable(r.reason)],
            )
            await self.store.executemany(
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
            await self.store.set_meta("refusals_after", str(max(r.id for r in refusals)))
        return mine

    async def pending(self, after_seq: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Own events to push: pending again, then never pushed with seq > ``after_seq``."""
        again = await self.store.fetchall(_PENDING_AGAIN, (self.person, limit))
        fresh = await self.store.fetchall(_PENDING_NEW, (after_seq, self.person, limit))
        # A push again (after a rate limit, or unconfirmed too long) must not be taken for a
        # repeat by the stream's duplicate window: its message id names the attempt. The
        # server's store keeps each event id once whatever the message id.
        for _, event_id, _, attempts in again:
            self.msg_ids[str(event_id)] = f"{event_id}.{attempts}"
        seen: set[str] = set()
        out: list[tuple[int, str, bytes]] = []
        for seq, event_id, data, *_ in [*again, *fresh]:
            if event_id not in seen:
                seen.add(event_id)
                out.append((int(seq), str(event_id), bytes(data)))
        out.sort()
        return out[:limit]

    async def mark_pushed(self, event_ids: Sequence[str], at_ms: int) -> None:
        """Record stream acknowledgements (never downgrades a confirmed event)."""
        if not event_ids:
            return
        async with self.store.write():
            await self.store.executemany(_MARK_PUSHED, [(i, at_ms) for i in event_ids])

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
        apply_views: Callable[[Store, list[tuple[int, AnyEvent]], datetime], Awaitable[None]],
    ) -> tuple[int, int, int]:
        """Store pulled events and the cursor in ONE transaction; (new events, own events
        confirmed, undecodable events skipped).

        The whole transaction runs in the connection's own thread as plain ``sqlite3``
        calls (``in_thread``): one hop instead of a thread round trip per SQL statement,
        which dominated applying a big sync. Events the device already holds are
        recognised by id before they are decoded (a device pulling back its own pushed
        events decodes none of them)."""
        synced_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        wall = int(now.timestamp() * 1000)

        async def body(store: _ThreadStore) -> tuple[int, int, int]:
            heads: list[tuple[int, bytes, _Head | None]] = []
            for wire in events:
                try:
                    heads.append((wire.position, wire.raw, _head_decoder.decode(wire.raw)))
                except msgspec.MsgspecError:
                    heads.append((wire.position, wire.raw, None))
            held = await _held_ids(store, [h.id for _, _, h in heads if h is not None])
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
            added = await store.append_ids(fresh) if fresh else []
            if added:
                by_id = {event.id: event for event in fresh}
                rows = [(seq, by_id[i]) for seq, i in added if i in by_id]
                await apply_views(store, rows, now)
            await store.executemany(_MARK_CONFIRMED, confirmed)
            stored = await store.scalar("SELECT value FROM meta WHERE key = 'clock'")
            # The HLC moves past what we saw, never past the bound ahead of our wall clock.
            hlc = HybridLogicalClock(int(stored or 0), wall=lambda: wall)
            hlc.observe(top)
            if hlc.last != int(stored or 0):
                await store.set_meta("clock", str(hlc.last))
            await store.set_meta("sync_after", str(after))
            await store.set_meta("sync_checked", str(checked))
            await store.set_meta("last_sync_at", synced_at)
            return len(added), own, rejected

        return await in_thread(self.store, body)

    async def touch(self) -> None:
        """Record a completed sync that changed nothing."""
        async with self.store.write():
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
            await self.store.set_meta("last_sync_at", stamp)


class _Head(msgspec.Struct):
    """What apply needs of an event it already holds (the rest is not decoded)."""

    id: str
    actor: str = ""
    clock: int = 0


_head_decoder = msgspec.json.Decoder(_Head)


async def _held_ids(store: Store, ids: list[str]) -> set[str]:
    """Which of these event ids the database already holds."""
    held: set[str] = set()
    for start in range(0, len(ids), 20_000):
        chunk = json.dumps(ids[start : start + 20_000])
        rows = await store.fetchall(
            "SELECT id FROM events WHERE id IN (SELECT value FROM json_each(?))", (chunk,)
        )
        held.update(str(row[0]) for row in rows)
    return held


# --- one transaction in the connection's thread ---------------------------------------------

_T = TypeVar("_T")


_MULTI_ROW = re.compile(r"^(INSERT\b.*?\bVALUES\s*)(\([^()]*\))(.*)$", re.DOTALL | re.IGNORECASE)
"""An ``INSERT ... VALUES (one row)`` statement: its head, its row and what follows."""

_ROWS_PER_INSERT = 500


class _ThreadStore(Store):
    """The ``Store`` API in its ``direct`` form, for code running in the connection's own
    thread inside a transaction ``in_thread`` opened: none of its methods suspends, so a
    coroutine using only them (the views' maintenance) runs to completion at once."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db = db
        self.path = path
        self.direct = True  # ``Store``'s direct statements, on this thread's connection
        self._in_transaction = True

    @property
    def _db(self) -> sqlite3.Connection:
        return self.db

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows. An ``INSERT ... VALUES (...)`` runs
        as multi-row ``VALUES (...), (...)`` statements of up to ``_ROWS_PER_INSERT`` rows
        (applied in order, as by ``executemany``): one ``sqlite3_step`` per chunk, not per
        row, and each step lets the event loop's thread take the GIL back."""
        try:
            many = _MULTI_ROW.match(sql)
            if many is None:
                self.db.executemany(sql, rows)
                return
            head, one, tail = many.groups()
            width = one.count("?")
            todo = rows if isinstance(rows, list) else list(rows)
            per = max(1, min(_ROWS_PER_INSERT, 32_000 // max(1, width)))
            for start in range(0, len(todo), per):
                chunk = todo[start : start + per]
                self.db.execute(
                    f"{head}{', '.join([one] * len(chunk))}{tail}",
                    [value for row in chunk for value in row],
                )
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None

    async def append(self, event: AnyEvent) -> int | None:
        """Not here: ``append_many`` inside the transaction."""
        raise StoreError("append inside an in-thread transaction: use append_many")

    async def append_ids(self, events: Iterable[AnyEvent]) -> list[tuple[int, str]]:
        """``append_many``, returning the new events as (seq, id)."""
        before = await self.scalar("SELECT coalesce(max(seq), 0) FROM events")
        await self.executemany(_INSERT_EVENT, (event_row(e) for e in events))
        return await self.fetchall(
            "SELECT seq, id FROM events WHERE seq > ? ORDER BY seq", (before,)
        )

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[Store]:
        """Already inside the transaction: nesting is an error, as in ``Store``."""
        raise StoreError("nested write transaction")
        yield self  # pragma: no cover

    async def close(self) -> None:
        """The connection belongs to the ``Store`` this runs for."""


def _run_to_completion(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine that never suspends (each of its awaits returns at once)."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return cast(_T, finished.value)
    coroutine.close()
    raise RuntimeError("an in-thread SQLite step suspended")


async def in_thread(store: Store, body: Callable[[_ThreadStore], Coroutine[Any, Any, _T]]) -> _T:
    """Run ``body`` as ONE write transaction (BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any
    error) entirely in the store connection's thread, against a ``_ThreadStore``."""
    if store._in_transaction:
        raise StoreError("nested write transaction")
    conn = store.conn
    path = store.path

    def run(db: sqlite3.Connection) -> _T:
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise translate(exc, path) from None
        try:
            result = _run_to_completion(body(_ThreadStore(db, path)))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return result

    # aiosqlite has no public API to run a function in its thread (the server's SQLite
    # store does the same for its append transaction).
    execute = cast(Callable[..., Awaitable[_T]], conn._execute)
    store._in_transaction = True
    try:
        return await execute(run, conn._conn)
    except sqlite3.Error as exc:
        raise translate(exc, path) from None
    finally:
        store._in_transaction = False


async def apply_views(store: Store, rows: list[tuple[int, AnyEvent]], now: datetime) -> None:
    """Bring the persisted views up to date with newly stored events (inside the
    transaction): the touched roots are refolded once for the whole batch, exactly as
    ``client.views.on_append`` does for one event; a big batch rebuilds instead."""
    from client import views

    if not rows:
        return
    if await _out_of_order(store, rows):
        await views.rebuild_views(store, now)
        return
    if len(rows) > REBUILD_ABOVE:
        # Events are never deleted, so the highest seq is how many there are (O(1)).
        total = int(await store.scalar("SELECT coalesce(max(seq), 0) FROM events"))
        if len(rows) * 2 > total:  # mostly new (a first sync): one rebuild is cheaper
            await views.rebuild_views(store, now)
            return
    roots: set[str] = set()
    known: list[tuple[int, Event]] = []
    # All refs first, in one statement: the events are in causal order here (checked
    # above), so no event below looks up a ref that only a later one would have added.
    # In the order of the refs_rhex index (reversed ids are random): its pages are then
    # written in one sweep instead of at random.
    refs = sorted((views.ref_row(event) for _, event in rows), key=lambda row: row[1])
    await store.executemany(views._INSERT_REF, refs)
    for seq, event in rows:
        if not isinstance(event, Event):
            continue
        try:
            roots |= await views._roots_touched(store, event)
        except views.ViewsNeedRebuild:
            await views.rebuild_views(store, now)
            return
        known.append((seq, event))
    if roots:
        await views._refold(store, sorted(roots), known, now)


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


async def _out_of_order(store: Store, rows: list[tuple[int, AnyEvent]]) -> bool:
    """Whether these new events arrive out of causal order, so the incremental views
    cannot place them (and a rebuild must): an event whose parent came earlier than the
    parent itself, in this batch or before it. A pulled child whose parent is not here
    yet is remembered in ``sync_orphans`` until the parent arrives.

    This happens when several servers commit batches concurrently (a child may get a
    lower position than its parent) or when a reveal delivers history late."""
    await store.execute(_ORPHANS)
    new_ids = [event.id for _, event in rows]
    rebuild = False
    for start in range(0, len(new_ids), 500):
        chunk = new_ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        if await store.scalar(f"SELECT 1 FROM sync_orphans WHERE parent IN ({marks})", chunk):
            rebuild = True
            await store.execute(f"DELETE FROM sync_orphans WHERE parent IN ({marks})", chunk)
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
            found = await store.fetchall(f"SELECT id FROM events WHERE id IN ({marks})", chunk)
            known.update(str(row[0]) for row in found)
        orphans = [(child, parent) for child, parent in missing if parent not in known]
        if orphans:
            await store.executemany(
                "INSERT OR IGNORE INTO sync_orphans (event_id, parent) VALUES (?, ?)", orphans
            )
    return rebuild


# --- the connection -----------------------------------------------------------------------


def _pull_subject(person: str) -> str:
    return f"milepost.pull.{person}"


def _poke_subject(person: str) -> str:
    return f"milepost.poke.{person}"


def _events_subject(person: str, device: str) -> str:
    return f"milepost.events.{person}.{device}"


@dataclass
class Link:
    """One NATS connection as a person; remembers what the server refused, for messages."""

    endpoint: Endpoint
    reconnect: bool = False
    on_change: Callable[[str], None] | None = None
    nc: Any = None
    refused: str | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def open(self, timeout: float = 3.0) -> None:
        """Connect; SyncUnreachable or SyncRefused with one clear line."""
        import nats
        import nats.errors

        async def error_cb(exc: Exception) -> None:
            text = str(exc)
            low = text.lower()
            if "permissions violation" in low:
                self.refused = (
                    f"the NATS server refused it: {text.removeprefix('nats: ')}"
                    f" (is {self.endpoint.user} the person this profile belongs to?)"
                )
            elif "authorization violation" in low:
                self.refused = (
                    f"the NATS server at {self.endpoint.url} refused the credentials of "
                    f"{self.endpoint.user} (authorization violation)"
                )

        async def disconnected_cb() -> None:
            self.connected.clear()
            if self.on_change is not None:
                self.on_change("disconnected")

        async def reconnected_cb() -> None:
            self.connected.set()
            if self.on_change is not None:
                self.on_change("reconnected")

        options: dict[str, Any] = {
            "user": self.endpoint.user,
            "password": self.endpoint.password,
            "inbox_prefix": f"_INBOX_{self.endpoint.user}",
            "name": f"milepost {self.endpoint.user}",
            "connect_timeout": timeout,
            "allow_reconnect": self.reconnect,
            # Bounded: nats-py applies it to the first connect too (0 or -1 retry forever).
            # A watcher whose connection closes after these reconnects starts over with
            # its own backoff and a message on stderr.
            "max_reconnect_attempts": 10 if self.reconnect else 1,
            "reconnect_time_wait": 0.5,
            "error_cb": error_cb,
            "disconnected_cb": disconnected_cb,
            "reconnected_cb": reconnected_cb,
            "pending_size": 64 * 1024 * 1024,
        }
        try:
            self.nc = await nats.connect(self.endpoint.url.split(","), **options)
        except nats.errors.NoServersError:
            raise SyncUnreachable(
                f"cannot reach the sync server at {self.endpoint.url}: no NATS server answers"
            ) from None
        except (OSError, TimeoutError) as exc:
            raise SyncUnreachable(
                f"cannot reach the sync server at {self.endpoint.url}: {exc}"
            ) from None
        except nats.errors.Error as exc:
            if "authorization" in str(exc).lower():
                raise SyncRefused(
                    f"the NATS server at {self.endpoint.url} refused the credentials of "
                    f"{self.endpoint.user} (authorization violation)"
                ) from None
            raise SyncUnreachable(f"cannot connect to {self.endpoint.url}: {exc}") from None
        self.connected.set()

    async def close(self) -> None:
        """Flush and close (never raises)."""
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5.0)
            self.nc = None

    def explain(self, what: str, exc: BaseException) -> SyncError:
        """One clear error for a failed ``what``."""
        if self.refused is not None:
            return SyncRefused(f"{what} failed: {self.refused}")
        name = type(exc).__name__
        text = str(exc).removeprefix("nats: ") or name
        if "NoResponders" in name:
            return SyncUnreachable(f"{what} failed: the sync server is not running ({text})")
        if "NoStreamResponse" in name:
            return SyncUnreachable(
                f"{what} failed: no event stream answers (start milepost-server once so it "
                "creates the stream)"
            )
        if isinstance(exc, TimeoutError) or "Timeout" in name:
            return SyncUnreachable(f"{what} failed: the sync server did not answer in time")
        if "ConnectionClosed" in name or "Disconnected" in name or "StaleConnection" in name:
            return SyncUnreachable(f"{what} failed: the connection to the sync server was lost")
        return SyncError(f"{what} failed: {text}")


class _AckError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct):
    """A JetStream publish acknowledgement (``{"stream": ..., "seq": ...}`` or an error)."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _AckError | None = None


_ack_decoder = msgspec.json.Decoder(_PubAck)
_NOT_ACKED: BaseException = TimeoutError("no acknowledgement from the stream")


def _ack_outcome(msg: Any) -> BaseException | None:
    """None for a stored (or duplicate) message, else why the stream did not take it."""
    import nats.js.errors

    headers = msg.headers
    if headers and headers.get("Status") == "503":
        return nats.js.errors.NoStreamResponseError()  # no stream for this subject
    try:
        ack = _ack_decoder.decode(msg.data)
    except msgspec.MsgspecError:
        return SyncError("the stream's acknowledgement is unreadable")
    if ack.error is not None:
        try:
            nats.js.errors.APIError.from_error(msgspec.structs.asdict(ack.error))
        except Exception as exc:  # from_error raises the matching error
            return exc
    return None


class _AckInbox:
    """JetStream publishes with their acks in flight, on one wildcard reply subscription.

    What nats-py's ``publish_async`` does, without its per-message future, semaphore,
    random token, ``json.loads`` and dataclass ack: measured here about 2.5 times less
    CPU per event, which a big push spends mostly on exactly that. A message's reply
    subject is the inbox plus a counter; an ack of an earlier chunk that was given up
    on finds no entry and is ignored."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self._prefix: str = nc.new_inbox()
        self._counter = 0
        self._waiting: dict[str, int] = {}
        self._outcomes: list[BaseException | None] = []
        self._left = 0
        self._all = asyncio.Event()

    async def open(self) -> None:
        """Subscribe to the acks (the inbox is under the person's ``_INBOX_<person>``)."""
        await self.nc.subscribe(f"{self._prefix}.*", cb=self._on_ack)

    async def _on_ack(self, msg: Any) -> None:
        index = self._waiting.pop(msg.subject[len(self._prefix) + 1 :], None)
        if index is None:
            return
        self._outcomes[index] = _ack_outcome(msg)
        self._settle(1)

    def _settle(self, count: int) -> None:
        self._left -= count
        if self._left <= 0:
            self._all.set()

    async def publish(
        self,
        subject: str,
        batch: Sequence[tuple[int, str, bytes]],
        *,
        timeout: float,
        refused: Callable[[], bool],
        msg_ids: dict[str, str] | None = None,
    ) -> list[BaseException | None]:
        """Publish each ``(seq, event id, data)`` with ``Nats-Msg-Id`` = event id (or its
        entry in ``msg_ids``) and wait
        for the acks (at most ``timeout`` s, or until ``refused()``); one outcome per
        event: None when the stream acknowledged it, else the reason it did not."""
        self._waiting.clear()
        self._outcomes = [_NOT_ACKED] * len(batch)
        self._left = len(batch)
        self._all.clear()
        for index, (_, event_id, data) in enumerate(batch):
            self._counter += 1
            token = str(self._counter)
            self._waiting[token] = index
            try:
                await self.nc.publish(
                    subject,
                    data,
                    reply=f"{self._prefix}.{token}",
                    headers={
                        "Nats-Msg-Id": msg_ids.get(event_id, event_id) if msg_ids else event_id
                    },
                )
            except Exception as exc:
                del self._waiting[token]
                for rest in range(index, len(batch)):
                    self._outcomes[rest] = exc
                self._settle(len(batch) - index)
                break
        deadline = time.monotonic() + timeout
        while self._left > 0 and not refused() and (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all.wait(), min(0.1, left))
        self._waiting.clear()  # acks still to come are ignored
        return list(self._outcomes)


# --- the engine ---------------------------------------------------------------------------


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


class Progress:
    """Where progress goes; the default shows nothing."""

    shows = False
    """Whether anything is shown (totals that cost a query are only counted then)."""

    def start(self, what: str, total: int) -> None:
        """A phase begins with ``total`` units of work."""

    def advance(self, what: str, amount: int) -> None:
        """``amount`` more units done."""

    def stop(self) -> None:
        """All done."""


class RichProgress(Progress):
    """A rich progress bar on stderr (only used on a terminal)."""

    shows = True

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._tasks: dict[str, Any] = {}
        self._started = False

    def start(self, what: str, total: int) -> None:
        """Show a bar for ``what``."""
        if not self._started:
            self._bar.start()
            self._started = True
        self._tasks[what] = self._bar.add_task(what, total=total)

    def advance(self, what: str, amount: int) -> None:
        """Move a bar."""
        if what in self._tasks:
            self._bar.advance(self._tasks[what], amount)

    def stop(self) -> None:
        """Remove the bars."""
        if self._started:
            self._bar.stop()
            self._started = False


BIG_SYNC = 2000
"""A phase with more units than this shows a progress bar (on a terminal)."""


class Syncer:
    """Push and pull for one person and device over one ``Link``."""

    def __init__(
        self,
        store: Store,
        person: str,
        device: str,
        link: Link,
        *,
        now: Callable[[], datetime],
        repush_after: float = DEFAULT_REPUSH_AFTER,
        request_timeout: float = 10.0,
        ack_timeout: float = 15.0,
        progress: Progress | None = None,
        pull_limit: int = MAX_PULL_LIMIT,
    ) -> None:
        if store.direct:  # the engine overlaps pulls with applying: statements must queue
            raise StoreError("the sync engine needs a threaded store (Store.open direct=False)")
        self.log = SyncLog(store, person)
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
        self._acks: _AckInbox | None = None

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
        subject = _events_subject(self.person, self.device)
        shown = False
        while True:
            batch = await self.log.pending(self._scanned, PUSH_CHUNK)
            if not batch:
                break
            if not shown and len(batch) >= BIG_SYNC and self.progress.shows:
                total = await self.store.scalar(
                    "SELECT count(*) FROM events e LEFT JOIN sync_state s ON s.event_id = e.id"
                    " WHERE e.actor = ? AND coalesce(s.state, 'pending') = 'pending'",
                    (self.person,),
                )
                self.progress.start("push", int(total))
                shown = True
            acked = await self._publish(subject, batch)
            await self.log.mark_pushed(acked, wall_ms())
            summary.pushed += len(acked)
            self.progress.advance("push", len(acked))
            if len(acked) < len(batch):
                raise self._push_error
            self._scanned = max(self._scanned, batch[-1][0])
            if len(batch) < PUSH_CHUNK:
                break  # that was all of it (what is logged meanwhile is pushed next time)
        return summary

    async def _publish(self, subject: str, batch: list[tuple[int, str, bytes]]) -> list[str]:
        """Publish a chunk, all acks in flight; ids acknowledged by the stream, in order."""
        if self._acks is None or self._acks.nc is not self.link.nc:
            self._acks = _AckInbox(self.link.nc)
            await self._acks.open()
        self._push_error: SyncError = SyncError("push failed")
        outcomes = await self._acks.publish(
            subject,
            batch,
            timeout=self.ack_timeout,
            # A permissions violation arrives on the error callback, never as an ack.
            refused=lambda: self.link.refused is not None,
            msg_ids=self.log.msg_ids,
        )
        acked: list[str] = []
        for (_, event_id, _), outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                acked.append(event_id)
            else:
                self._push_error = self.link.explain("push", outcome)
        return acked

    # --- pull ---------------------------------------------------------------------------

    async def _request(self, request: PullRequest) -> PullReply:
        try:
            msg = await self.link.nc.request(
                _pull_subject(self.person), encode_request(request), timeout=self.request_timeout
            )
        except Exception as exc:
            raise self.link.explain("pull", exc) from None
        try:
            reply = decode_reply(msg.data)
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
        unapplied = False  # the cursor moved past what was applied
        shown = False
        limit = self.pull_limit
        applying: asyncio.Task[tuple[int, int, int]] | None = None
        ahead: dict[int, asyncio.Task[PullReply]] = {}  # requests sent ahead, by cursor
        stride = head = 0  # stride: the length of the last page when its positions were dense

        def start_apply() -> asyncio.Task[tuple[int, int, int]]:
            nonlocal gathered, unapplied
            batch, gathered, unapplied = gathered, [], False
            return asyncio.create_task(
                self.log.apply(batch, after, checked, self.now(), apply_views)
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
                summary, await self.log.apply(gathered, after, checked, self.now(), apply_views)
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

        async def on_poke(msg: Any) -> None:
            with contextlib.suppress(WireError):
                decode_poke(msg.data)
            pull_wanted.set()
            wake.set()

        sub = await self.link.nc.subscribe(_poke_subject(self.person), cb=on_poke)
        try:
            await self.link.nc.flush(timeout=self.request_timeout)
        except Exception as exc:
            raise self.link.explain("subscribe", exc) from None
        first = await self.sync_once()
        report(first)
        commits = _CommitWatch(self.store.path)
        commits.changed()
        version = await self.store.scalar("PRAGMA data_version")
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
                if self.link.refused is not None:
                    raise SyncRefused(self.link.refused)
                if self.link.nc.is_closed:
                    raise SyncUnreachable("the connection to the sync server was lost")
                if not self.link.connected.is_set():
                    continue
                summary = Summary()
                now = time.monotonic()
                if commits.changed():
                    current = await self.store.scalar("PRAGMA data_version")
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
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


class _CommitWatch:
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


def backoff_delays(first: float = 0.5, cap: float = 30.0) -> Iterator[float]:
    """0.5, 1, 2, 4 ... seconds, capped."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * 2)


def repush_after_default() -> float:
    """``MILEPOST_REPUSH_AFTER`` seconds, else the default."""
    raw = os.environ.get(REPUSH_ENV)
    try:
        return float(raw) if raw else DEFAULT_REPUSH_AFTER
    except ValueError:
        return DEFAULT_REPUSH_AFTER


def poll_interval() -> float:
    """How often ``watch`` checks the local database for new events (seconds)."""
    raw = os.environ.get(POLL_ENV)
    try:
        return max(0.001, float(raw) / 1000) if raw else DEFAULT_POLL
    except ValueError:
        return DEFAULT_POLL


def progress_for(stream: Any = None) -> Progress:
    """A progress bar on a terminal, nothing otherwise."""
    target = sys.stderr if stream is None else stream
    return RichProgress() if getattr(target, "isatty", lambda: False)() else Progress()
