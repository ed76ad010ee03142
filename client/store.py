"""The local event log: one SQLite file per person and device, each used by one thread.

Rules the database itself enforces (so they hold whatever code runs):

* ``events`` is append-only: triggers abort any UPDATE or DELETE on it;
* the sync state of each event lives in ``sync_state``, separate so the events
  table stays immutable: ``pending`` → ``pushed`` (the stream acknowledged it)
  → ``confirmed`` (it came back from the server with ``server_position``). An
  event without a row is pending (so appending writes one row, not two); the
  view ``event_sync`` shows every event with its state; an event the server
  refused has a row in ``sync_refusals`` (its state shows as *rejected*);
* WAL journal with ``synchronous=NORMAL``: a commit survives a process crash
  (SIGKILL), and a power loss can only lose the last commits, never corrupt;
* a bounded busy timeout (``MILEPOST_LOCK_TIMEOUT`` seconds, default 5) after
  which the command says the database is locked by another process.

Every ``sqlite3`` error is turned into one ``StoreError`` at this boundary.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from client.errors import StoreCorrupt, StoreError, StoreLocked, StoreWriteFailed
from client.home import restrict_database
from events import AnyEvent, Event, encode

APPLICATION_ID = 0x4D4C5053  # "MLPS": marks a file as a Milepost client database
SCHEMA_VERSION = 2
LOCK_TIMEOUT_ENV = "MILEPOST_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 5.0

REFUSALS_TABLE = (
    "CREATE TABLE IF NOT EXISTS sync_refusals (event_id TEXT PRIMARY KEY,"
    " refusal_id INTEGER NOT NULL, reason TEXT NOT NULL) WITHOUT ROWID"
)
"""Own events the server refused (the ownership rule, a limit): shown as *rejected* with
the reason, never pushed again. Created on open in databases made before it existed."""

REFERENTS_TABLE = (
    "CREATE TABLE IF NOT EXISTS referents (id TEXT PRIMARY KEY, actor TEXT NOT NULL,"
    " type TEXT NOT NULL) WITHOUT ROWID"
)
"""What the server vouched for of events this device may not receive (``WireReferent``):
the actor and type of each, all the ownership rule reads; the fold judges with them
(``client.views``), nothing shows them. Facts that never change, so never deleted. Created
on open in databases made before it existed (additive: an older milepost ignores it)."""

SCHEMA = f"""
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    actor TEXT NOT NULL,
    type TEXT NOT NULL,
    clock INTEGER NOT NULL,
    recorded_ms INTEGER NOT NULL,
    occurred_ms INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TRIGGER events_immutable_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable: record a correction instead'); END;
CREATE TRIGGER events_immutable_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable: record a retraction instead'); END;
CREATE TABLE sync_state (
    event_id TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'pushed', 'confirmed')),
    server_position INTEGER,
    pushed_ms INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX sync_state_open ON sync_state (state) WHERE state != 'confirmed';
{REFUSALS_TABLE};
{REFERENTS_TABLE};
CREATE VIEW event_sync AS
    SELECT e.seq, e.id, coalesce(s.state, 'pending') AS state, s.server_position
    FROM events e LEFT JOIN sync_state s ON s.event_id = e.id;
-- Views (client.views): derived from events, rebuilt by `milepost rebuild`.
CREATE TABLE refs (
    id TEXT PRIMARY KEY,
    rhex TEXT NOT NULL,
    type TEXT NOT NULL,
    actor TEXT NOT NULL,
    parent TEXT,
    title TEXT NOT NULL,
    retracted INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX refs_rhex ON refs (rhex);
CREATE TABLE goal_roots (node TEXT PRIMARY KEY, root TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE goal_parts (
    root TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    slice BLOB NOT NULL,
    part BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX goal_parts_owner ON goal_parts (owner);
"""

SHORT_KINDS = {
    "objective.created": "o",
    "key_result.added": "k",
    "milestone.planned": "m",
    "task.added": "t",
    "indicator.defined": "i",
    "observation.recorded": "j",
    "checkin.recorded": "c",
    "milestone.completed": "d",
    "pause.declared": "p",
}
"""Short references (``m12``): a letter per kind and a number in order of arrival here."""

_SHORT_KIND_SQL = (
    "CASE NEW.type " + " ".join(f"WHEN '{t}' THEN '{k}'" for t, k in SHORT_KINDS.items()) + " END"
)

SCHEMA_V2 = f"""
-- Short references: stable on this device (never renumbered; a rebuild of refs keeps
-- them), assigned by a trigger as each ref row arrives.
CREATE TABLE short_refs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    number INTEGER NOT NULL,
    UNIQUE (kind, number)
) WITHOUT ROWID;
CREATE TRIGGER refs_short_ref AFTER INSERT ON refs
WHEN NEW.type IN ({", ".join(f"'{t}'" for t in SHORT_KINDS)})
BEGIN
    INSERT OR IGNORE INTO short_refs (id, kind, number) VALUES (
        NEW.id, {_SHORT_KIND_SQL},
        (SELECT coalesce(max(number), 0) + 1 FROM short_refs WHERE kind = {_SHORT_KIND_SQL})
    );
END;
CREATE INDEX refs_parent ON refs (parent, type);
"""

_BACKFILL_V2 = f"""
WITH k (type, kind) AS (VALUES {", ".join(f"('{t}', '{k}')" for t, k in SHORT_KINDS.items())})
INSERT OR IGNORE INTO short_refs (id, kind, number)
SELECT r.id, k.kind, row_number() OVER (PARTITION BY k.kind ORDER BY e.seq)
FROM refs r JOIN events e ON e.id = r.id JOIN k ON k.type = r.type;
"""

SCHEMA += SCHEMA_V2

_INSERT = (
    "INSERT OR IGNORE INTO events (id, actor, type, clock, recorded_ms, occurred_ms, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def lock_timeout() -> float:
    """Seconds to wait for another process's write lock."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_LOCK_TIMEOUT
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT


def _ms(moment: Any) -> int:
    return int(moment.timestamp() * 1000)


def event_row(event: AnyEvent) -> tuple[str, str, str, int, int, int, bytes]:
    """The columns stored for an event (``data`` is its exact encoded form)."""
    kind = event.type
    return (
        event.id,
        event.actor,
        kind,
        event.clock,
        _ms(event.recorded_at),
        _ms(event.occurred_at),
        encode(event),
    )


def translate(exc: sqlite3.Error, path: Path) -> StoreError:
    """One clear error for any sqlite3 failure."""
    text = str(exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return StoreLocked(
            f"database is locked by another milepost process ({path.name}); try again"
        )
    if "not a database" in low or "malformed" in low or "encrypted" in low:
        return StoreCorrupt(f"{path} is not a milepost database (corrupt or foreign file)")
    if "full" in low:
        return StoreWriteFailed(f"disk is full: nothing was written to {path.name}")
    if "readonly" in low or "read-only" in low or "unable to open" in low:
        return StoreWriteFailed(f"cannot write {path}: the folder or file is read-only")
    if "immutable" in low:
        return StoreError(f"refused: {text}")
    return StoreError(f"database error in {path.name}: {text}")


_MULTI_ROW = re.compile(r"^(INSERT\b.*?\bVALUES\s*)(\([^()]*\))(.*)$", re.DOTALL | re.IGNORECASE)
"""An ``INSERT ... VALUES (one row)`` statement: its head, its row and what follows."""

_ROWS_PER_INSERT = 500

_T = TypeVar("_T")


class SqliteTx:
    """Synchronous statements on a ``sqlite3`` connection (``client.views.Tx``), every
    ``sqlite3`` error turned into one ``StoreError``. Used in the store's own thread, by the
    functions ``Store.run`` and ``Store.transaction`` are given."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db = db
        self.path = path

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of a query."""
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (None when there is no row)."""
        try:
            row = self.db.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        return None if row is None else row[0]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows changed."""
        try:
            return self.db.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
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

    def set_meta(self, key: str, value: str) -> None:
        """Set one setting."""
        self.execute(_SET_META, (key, value))

    def append_ids(self, events: Iterable[AnyEvent]) -> list[tuple[int, str]]:
        """Store events (those already held are skipped); the new ones as (seq, id)."""
        before = self.scalar("SELECT coalesce(max(seq), 0) FROM events")
        self.executemany(_INSERT, (event_row(e) for e in events))
        return self.fetchall("SELECT seq, id FROM events WHERE seq > ? ORDER BY seq", (before,))


class _Worker:
    """One thread that runs the functions it is given, one at a time, in order (the store's
    connection is used there only). Leaner than an executor: a function and its asyncio
    future go through one queue, and the result comes back with one
    ``call_soon_threadsafe``."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._serve, name="milepost-store", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, future = item
            loop = future.get_loop()
            with suppress(RuntimeError):  # the loop closed meanwhile: nobody waits for it
                try:
                    result = fn()
                except BaseException as exc:
                    loop.call_soon_threadsafe(_fail, exc, future)
                else:
                    loop.call_soon_threadsafe(_settle, result, future)

    async def call(self, fn: Callable[[], _T]) -> _T:
        """``fn()`` in the thread, after everything given before it."""
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._queue.put((fn, future))
        return await future

    def stop(self) -> None:
        """End the thread once what it was given is done."""
        self._queue.put(None)


def _settle(result: Any, future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.set_result(result)


def _fail(exc: BaseException, future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.set_exception(exc)


_SET_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


class Store:
    """An open client database. Use ``await Store.open(...)`` and ``await store.close()``.

    The store owns one ``sqlite3`` connection and, threaded (the default), ONE worker
    thread that runs every statement on it: a long-running process (``milepost sync
    --watch``) keeps its event loop free, and statements from concurrent tasks queue in
    that thread. ``run`` and ``transaction`` hand the thread a plain function of a
    ``SqliteTx`` (many statements, one hop). ``direct``: everything runs at once in the
    calling thread. A one-shot command has nothing to overlap, and a round trip to
    another thread costs more than the insert it carries (on a VM whose other core is
    idle, about 100 µs against 20 µs). Only for a process with one task using the store
    at a time.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path,
        *,
        direct: bool = False,
        worker: _Worker | None = None,
    ) -> None:
        self.db = db
        self.path = path
        self.direct = direct
        self._worker = worker
        self._in_transaction = False

    # --- opening ----------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path, *, create: bool = False, direct: bool = False) -> Store:
        """Open (or with ``create``, create) a database; StoreError if it is not ours.
        ``direct``: run statements in the calling thread (see the class)."""
        if not create and not path.exists():
            raise StoreCorrupt(f"database {path} is missing; run `milepost init` again")
        if create and not path.exists() and not os.access(path.parent, os.W_OK):
            raise StoreWriteFailed(f"cannot create {path}: the folder is missing or read-only")
        if create and not path.exists():
            try:
                # Created readable by its owner only; SQLite gives -wal and -shm the same mode.
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            except OSError as exc:
                raise StoreWriteFailed(f"cannot create {path}: {exc.strerror}") from None
        with suppress(OSError):  # a database made by an older version was 0644
            restrict_database(path)
        worker = None if direct else _Worker()

        def connect() -> sqlite3.Connection:
            return sqlite3.connect(
                str(path), timeout=lock_timeout(), isolation_level=None, check_same_thread=False
            )

        try:
            db = connect() if worker is None else await worker.call(connect)
        except sqlite3.Error as exc:
            if worker is not None:
                worker.stop()
            raise translate(exc, path) from None
        store = cls(db, path, direct=direct, worker=worker)
        try:
            await store.run(lambda tx: _prepare(tx, create))
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        """Close the connection (rolls back anything uncommitted) and end the thread."""
        worker, self._worker = self._worker, None
        if worker is None:
            self.db.close()
            return
        try:
            await worker.call(self.db.close)
        finally:
            worker.stop()

    @property
    def conn(self) -> sqlite3.Connection:
        """The ``sqlite3`` connection (use it only through ``run`` or ``transaction``)."""
        return self.db

    # --- running functions in the store's thread ----------------------------------------

    async def _call(self, fn: Callable[[], _T]) -> _T:
        """``fn()`` in the store's thread (at once when ``direct``); sqlite3 errors become
        one ``StoreError``."""
        try:
            if self._worker is None:
                return fn()
            return await self._worker.call(fn)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None

    async def run(self, body: Callable[[SqliteTx], _T]) -> _T:
        """``body`` in the store's thread, inside whatever transaction is open (a read
        outside ``write``, or steps of the caller's ``write``)."""
        tx = SqliteTx(self.db, self.path)
        return await self._call(lambda: body(tx))

    async def transaction(self, body: Callable[[SqliteTx], _T]) -> _T:
        """``body`` as ONE write transaction (BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any
        error) entirely in the store's thread: one hop, however many statements."""
        if self._in_transaction:
            raise StoreError("nested write transaction")
        tx = SqliteTx(self.db, self.path)
        db = self.db

        def whole() -> _T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = body(tx)
                db.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            return result

        self._in_transaction = True
        try:
            return await self._call(whole)
        finally:
            self._in_transaction = False

    # --- plain access -----------------------------------------------------------------

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (None when there is no row)."""
        return await self.run(lambda tx: tx.scalar(sql, params))

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of a query."""
        return await self.run(lambda tx: tx.fetchall(sql, params))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows changed."""
        return await self.run(lambda tx: tx.execute(sql, params))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows."""
        await self.run(lambda tx: tx.executemany(sql, rows))

    # --- transactions -----------------------------------------------------------------

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Store]:
        """One write transaction (BEGIN IMMEDIATE): all of it commits, or none of it."""
        if self._in_transaction:
            raise StoreError("nested write transaction")
        await self._call(lambda: self.db.execute("BEGIN IMMEDIATE"))
        self._in_transaction = True
        try:
            yield self
        except BaseException:
            self._in_transaction = False
            with suppress(StoreError):
                await self._call(lambda: self.db.execute("ROLLBACK"))
            raise
        self._in_transaction = False
        try:
            await self._call(lambda: self.db.execute("COMMIT"))
        except StoreError:
            with suppress(StoreError):
                await self._call(lambda: self.db.execute("ROLLBACK"))
            raise

    # --- the log ----------------------------------------------------------------------

    async def append(self, event: AnyEvent) -> int | None:
        """Store one event (its own transaction unless inside ``write``); its seq, or None
        when an event with that id is already stored (appending is idempotent)."""
        row = event_row(event)

        def insert() -> int | None:
            inserted = self.db.execute(_INSERT, row)
            return inserted.lastrowid if inserted.rowcount == 1 else None

        return await self._call(insert)

    async def append_many(self, events: Iterable[AnyEvent]) -> list[tuple[int, bytes]]:
        """Store events inside the current ``write``; returns the new ones as (seq, data)."""
        if not self._in_transaction:
            raise StoreError("append_many needs a write transaction")
        before = await self.scalar("SELECT coalesce(max(seq), 0) FROM events")
        await self.executemany(_INSERT, (event_row(e) for e in events))
        return await self.fetchall(
            "SELECT seq, data FROM events WHERE seq > ? ORDER BY seq", (before,)
        )

    async def read_events(
        self,
        *,
        recorded_until_ms: int | None = None,
        recorded_since_ms: int | None = None,
        after_seq: int = 0,
    ) -> list[tuple[int, bytes]]:
        """Stored events as (seq, data) in arrival order, optionally by recorded time."""
        sql = "SELECT seq, data FROM events WHERE seq > ?"
        params: list[Any] = [after_seq]
        if recorded_until_ms is not None:
            sql += " AND recorded_ms <= ?"
            params.append(recorded_until_ms)
        if recorded_since_ms is not None:
            sql += " AND recorded_ms >= ?"
            params.append(recorded_since_ms)
        return await self.fetchall(sql + " ORDER BY seq", params)

    # --- meta -------------------------------------------------------------------------

    async def meta(self) -> dict[str, str]:
        """Every setting kept in the database (person, device, team, server, clock, config)."""
        return {str(k): str(v) for k, v in await self.fetchall("SELECT key, value FROM meta")}

    async def set_meta(self, key: str, value: str) -> None:
        """Set one setting (inside or outside a write transaction)."""
        await self.execute(_SET_META, (key, value))


def _prepare(tx: SqliteTx, create: bool) -> None:
    """Check (or with ``create``, make) the schema; WAL, ``synchronous=NORMAL``."""
    app_id = tx.scalar("PRAGMA application_id")
    if app_id != APPLICATION_ID:
        tables = tx.scalar("SELECT count(*) FROM sqlite_master")
        if not (create and app_id == 0 and tables == 0):
            raise StoreCorrupt(f"{tx.path} is not a milepost database")
        tx.scalar("PRAGMA journal_mode = WAL")
        try:
            tx.db.executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")
        except sqlite3.Error as exc:
            with suppress(sqlite3.Error):
                tx.db.execute("ROLLBACK")
            raise translate(exc, tx.path) from None
    else:
        version = tx.scalar("PRAGMA user_version")
        if version == 1:  # schema 1 -> 2: short references (numbered in the log's order)
            tx.db.executescript(
                f"BEGIN IMMEDIATE;{SCHEMA_V2}{_BACKFILL_V2}PRAGMA user_version = 2;COMMIT;"
            )
            version = SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            raise StoreCorrupt(
                f"{tx.path} has schema {version}; this milepost reads {SCHEMA_VERSION}"
            )
        tx.scalar("PRAGMA journal_mode = WAL")
        if not tx.scalar("SELECT 1 FROM sqlite_master WHERE name = 'sync_refusals'"):
            tx.execute(REFUSALS_TABLE)
        if not tx.scalar("SELECT 1 FROM sqlite_master WHERE name = 'referents'"):
            tx.execute(REFERENTS_TABLE)
    tx.scalar("PRAGMA synchronous = NORMAL")


def decode_rows(rows: Iterable[tuple[int, bytes]]) -> list[AnyEvent]:
    """Decode stored rows (the codec upcasts old schemas, keeps unknown types opaque)."""
    from events import decode_many

    return list(decode_many(data for _, data in rows))


__all__ = ["Event", "SqliteTx", "Store", "decode_rows", "event_row", "lock_timeout", "translate"]
