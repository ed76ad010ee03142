"""The embedded store: one SQLite file in WAL mode, each connection used by its own thread.

SQLite has a single writer: ``BEGIN IMMEDIATE`` takes the write lock before the
position is read, so positions are assigned in commit order by construction and
stay dense (a rolled back batch releases its positions with the lock).

Durability: WAL with ``synchronous=NORMAL`` (chosen, not an accident). A commit
survives the server process crashing or being killed, which is what
acknowledging after the commit relies on; an operating-system crash or power
loss can roll back the last few commits, whose messages JetStream was already
told are stored. Where that matters, run on PostgreSQL (or FULL synchronous).

An append is one call into the writer connection's thread (``SqliteConnection.run``):
the shared algorithm (``server.store.append``, written as steps that yield their SQL
requests) is driven there by ``append_in_thread`` over plain ``sqlite3`` calls, so
nothing waits on the event loop between them and no coroutine is driven by hand. The
SQL text of the schema and of the visibility queries is in ``server.store.sqlite_sql``.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from events.wire import Refusal
from projections.ownership import Referent
from server.migrations import SqliteConnection, connect_sqlite, migrate_sqlite
from server.store.append import append_in_thread
from server.store.append_io import (
    DeadLetterRow,
    EventRow,
    HeldEvent,
    HeldRow,
    ItemRow,
    LinkRow,
    SharingRow,
    SyncAppendTx,
    TeamRow,
)
from server.store.protocol import (
    AppendResult,
    DeadLetter,
    Incoming,
    StoredEvent,
    events_of_fresh_roots,
)
from server.store.sqlite_sql import (
    ACCEPTED_BY,
    EVENT_COLUMNS,
    FOREIGN_ROOTS,
    KUDOS_NAMING,
    MIGRATIONS,
    PARTITION_POSITIONS,
    REVEALED,
    ROWS_AT,
    VISIBLE,
    VOUCHED,
)

__all__ = ["MIGRATIONS", "SqliteStore"]

_T = TypeVar("_T")

_ROWS_PER_INSERT = 500
"""Rows per multi-row ``INSERT ... VALUES``: far fewer ``sqlite3_step`` calls than
``executemany`` (each step releases and retakes the GIL, which the event loop's thread
holds while it decodes the next batch: a per-row handover made appends crawl)."""


def _insert_rows(
    db: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]], tail: str = ""
) -> None:
    """``head VALUES (?, ...), (?, ...) tail`` over ``rows``, in chunks of
    ``_ROWS_PER_INSERT`` (rows are applied in order, as by ``executemany``)."""
    if not rows:
        return
    width = len(rows[0])
    per = max(1, min(_ROWS_PER_INSERT, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    one = "(" + ", ".join("?" * width) + ")"
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        sql = f"{head} VALUES {', '.join([one] * len(chunk))} {tail}"
        db.execute(sql, [value for row in chunk for value in row])


_Pairs = list[tuple[str, str]]


def _one_json(db: sqlite3.Connection, sql: str, param: str, into: type[_T]) -> _T:
    """The single JSON value ``sql`` aggregates (``json_group_array``/``_object``): one
    ``sqlite3_step`` however many rows match, instead of one GIL handover per row."""
    (value,) = db.execute(sql, (param,)).fetchone()
    return msgspec.json.decode(value, type=into)


def _ids(values: Iterable[str | int]) -> str:
    """A JSON array parameter, expanded in SQL with ``json_each`` (no parameter limit)."""
    return msgspec.json.encode(list(values)).decode()


def _stored(row: Any) -> StoredEvent:
    return StoredEvent(row[0], row[1], row[2], row[3], row[4], row[5], bytes(row[6]))


class _SqliteTx(SyncAppendTx):
    """The append primitives as plain ``sqlite3`` calls, in the writer's thread."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def lock_positions(self) -> int:
        (last,) = self._db.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()
        return int(last)

    def save_last_position(self, last: int) -> None:
        return None  # the position is derived from the table under the write lock

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        sql = "SELECT json_group_array(id) FROM events WHERE id IN (SELECT value FROM json_each(?))"
        return set(_one_json(self._db, sql, _ids(ids), list[str]))

    def roots_of(self, ids: Iterable[str]) -> dict[str, str | None]:
        sql = (
            "SELECT json_group_object(id, root_id) FROM events"
            " WHERE id IN (SELECT value FROM json_each(?))"
        )
        return _one_json(self._db, sql, _ids(ids), dict[str, str | None])

    def refs_of(self, ids: Iterable[str]) -> dict[str, str | None]:
        sql = (
            "SELECT json_group_object(id, ref_id) FROM events"
            " WHERE id IN (SELECT value FROM json_each(?))"
        )
        return _one_json(self._db, sql, _ids(ids), dict[str, str | None])

    def upsert_links(self, rows: Sequence[LinkRow]) -> None:
        _insert_rows(
            self._db,
            "INSERT INTO links(item_id, parent_id, clock, event_id)",
            rows,
            """ON CONFLICT(item_id) DO UPDATE SET parent_id = excluded.parent_id,
                clock = excluded.clock, event_id = excluded.event_id
            WHERE (excluded.clock, excluded.event_id) > (links.clock, links.event_id)""",
        )

    def links_of(self, milestones: Iterable[str]) -> dict[str, str | None]:
        sql = (
            "SELECT json_group_object(item_id, parent_id) FROM links"
            " WHERE item_id IN (SELECT value FROM json_each(?))"
        )
        return _one_json(self._db, sql, _ids(milestones), dict[str, str | None])

    def insert_events(self, rows: Sequence[EventRow]) -> None:
        stamps = {stamp: stamp.isoformat() for stamp in {row.stored_at for row in rows}}
        _insert_rows(
            self._db,
            """INSERT INTO events(position, id, actor, type, ref_id, root_id, team, subject, raw,
                stored_at)""",
            [(*row[:9], stamps[row.stored_at]) for row in rows],
        )

    def insert_items(self, rows: Sequence[ItemRow]) -> None:
        _insert_rows(self._db, "INSERT OR IGNORE INTO items(item_id, owner, kind, root_id)", rows)

    def insert_dead_letters(self, rows: Sequence[DeadLetterRow]) -> int:
        before = self._db.total_changes
        self._db.executemany(
            """INSERT OR REPLACE INTO dead_letters(subject, raw, reason, digest, received_at,
                person, event_id)
            VALUES (?, ?, ?, ?, ?, ?, ?)""",
            [(*row[:4], row.received_at.isoformat(), row.person, row.event_id) for row in rows],
        )
        return self._db.total_changes - before

    def upsert_sharing(self, rows: Sequence[SharingRow]) -> None:
        _insert_rows(
            self._db,
            "INSERT INTO sharing(root_id, actor, visibility, partners, clock, event_id)",
            rows,
            """ON CONFLICT(root_id, actor) DO UPDATE SET visibility = excluded.visibility,
                partners = excluded.partners, clock = excluded.clock, event_id = excluded.event_id
            WHERE (excluded.clock, excluded.event_id) > (sharing.clock, sharing.event_id)""",
        )

    def upsert_team_members(self, rows: Sequence[TeamRow]) -> None:
        self._db.executemany(
            """INSERT INTO team_members(team, person, joined, clock, event_id)
            VALUES (?, ?, ?, ?, ?)
            ON CONFLICT(team, person) DO UPDATE SET joined = excluded.joined,
                clock = excluded.clock, event_id = excluded.event_id
            WHERE (excluded.clock, excluded.event_id)
                > (team_members.clock, team_members.event_id)""",
            rows,
        )

    def children(self, ids: Iterable[str]) -> list[tuple[str, str]]:
        sql = (
            "SELECT json_group_array(json_array(id, ref_id)) FROM events"
            " WHERE ref_id IN (SELECT value FROM json_each(?)) AND id <> ref_id"
        )
        return [(child, ref) for child, ref in _one_json(self._db, sql, _ids(ids), _Pairs)]

    def referents(self, ids: Iterable[str]) -> dict[str, Referent]:
        sql = (
            "SELECT json_group_object(e.id, json_array(e.actor, e.type)) FROM events e"
            " LEFT JOIN held h ON h.event_id = e.id AND h.released_at IS NULL"
            " WHERE e.id IN (SELECT value FROM json_each(?)) AND h.event_id IS NULL"
        )
        pairs = _one_json(self._db, sql, _ids(ids), dict[str, tuple[str, str]])
        return {event_id: Referent(*pair) for event_id, pair in pairs.items()}

    def hold(self, rows: Sequence[HeldRow]) -> None:
        self._db.executemany(
            """INSERT INTO held(event_id, missing, reason, released_at) VALUES (?, ?, ?, ?)
            ON CONFLICT(event_id) DO UPDATE SET missing = excluded.missing,
                reason = excluded.reason, released_at = excluded.released_at""",
            rows,
        )

    def waiting_on(self, ids: Iterable[str]) -> list[HeldEvent]:
        # Almost always nothing waits: a look at the partial index spares sending the ids.
        if (
            self._db.execute("SELECT 1 FROM held WHERE missing IS NOT NULL LIMIT 1").fetchone()
            is None
        ):
            return []
        rows = self._db.execute(
            """SELECT e.id, e.subject, e.raw FROM held h JOIN events e ON e.id = h.event_id
            WHERE h.missing IN (SELECT value FROM json_each(?)) ORDER BY e.position""",
            (_ids(ids),),
        ).fetchall()
        return [HeldEvent(row[0], row[1], bytes(row[2])) for row in rows]

    def set_roots(self, roots: dict[str, str | None]) -> None:
        mapping = msgspec.json.encode(roots).decode()
        self._db.execute(
            "UPDATE events SET root_id = j.value FROM json_each(?) j WHERE events.id = j.key",
            (mapping,),
        )
        self._db.execute(
            "UPDATE items SET root_id = j.value FROM json_each(?) j WHERE items.item_id = j.key",
            (mapping,),
        )

    def set_refs(self, refs: dict[str, str | None]) -> None:
        self._db.execute(
            "UPDATE events SET ref_id = j.value FROM json_each(?) j WHERE events.id = j.key",
            (msgspec.json.encode(refs).decode(),),
        )


def _append_in_thread(db: sqlite3.Connection, items: Sequence[Incoming]) -> AppendResult:
    """One append transaction, run by the writer's thread from BEGIN to COMMIT."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = append_in_thread(_SqliteTx(db), items)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return result


class SqliteStore:
    """``ServerStore`` on one SQLite file (WAL). Several processes may share the file:
    writers wait on SQLite's lock (``busy_timeout``).

    Two connections, each with its own thread: appends on one, reads (pulls, the
    projection follower, audiences) on the other, so a long pull page does not hold up
    an ingest batch nor the other way round. WAL lets a reader run beside the writer;
    each read sees what was committed when it started (an append returns after its
    commit, so what it stored is visible to every read that follows). ``:memory:`` is
    one database per connection: there, reads share the writer's connection.
    """

    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._db: SqliteConnection | None = None
        self._reader: SqliteConnection | None = None

    @property
    def _conn(self) -> SqliteConnection:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    async def open(self) -> None:
        """Connect and run pending versioned migrations (each exactly once)."""
        # The events indexes outgrow SQLite's default 2 MB page cache within ~100k events,
        # after which every insert into them reads pages back through the OS.
        self._db = await connect_sqlite(self._path, "synchronous=NORMAL", "cache_size=-131072")
        await migrate_sqlite(self._db, "schema_migrations", MIGRATIONS)
        if self._path != ":memory:":
            self._reader = await connect_sqlite(self._path, "cache_size=-65536", "query_only=1")

    async def close(self) -> None:
        """Release the connections; the store can be opened again."""
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def migrations(self) -> list[int]:
        """Versions of the migrations applied so far, ascending."""
        return [
            row[0]
            for row in await self._fetch("SELECT version FROM schema_migrations ORDER BY version")
        ]

    async def append_batch(self, items: Sequence[Incoming]) -> AppendResult:
        """Store a batch in one transaction (see ``ServerStore.append_batch``)."""
        # The whole transaction is one call into the writer's thread instead of a thread
        # round trip per SQL step; calls there run one at a time, in order.
        return await self._conn.run(lambda db: _append_in_thread(db, items))

    async def _fetch(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        return await (self._reader or self._conn).execute_fetchall(sql, params)

    async def events_after(self, position: int, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` events with a position greater than ``position``, in order."""
        rows = await self._fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (position, limit),
        )
        return [_stored(row) for row in rows]

    async def visible_events_after(
        self, person: str, position: int, limit: int
    ) -> list[StoredEvent]:
        """Events ``person`` may see now, after ``position`` (see the Protocol)."""
        rows = await self._fetch(VISIBLE, {"person": person, "after": position, "limit": limit})
        return [_stored(row) for row in rows]

    async def partition_events(
        self,
        people: Collection[str],
        after: int,
        upto: int,
        roots: Collection[str] = (),
    ) -> list[StoredEvent]:
        """The events of a working-set partition (see the Protocol), in position order."""
        params = {"people": _ids(sorted(people)), "after": after, "upto": upto}
        found = await self._fetch(PARTITION_POSITIONS, params | {"roots": _ids(sorted(roots))})
        positions = sorted(row[0] for row in found)
        if not positions:
            return []
        stored = [
            _stored(row) for row in await self._fetch(ROWS_AT, {"positions": _ids(positions)})
        ]
        if any(a.position > b.position for a, b in itertools.pairwise(stored)):
            stored.sort(key=lambda item: item.position)  # the plan did not keep the order
        return stored

    async def foreign_roots(
        self,
        completions: Collection[str],
        people: Collection[str],
        upto: int,
        known: Collection[str] = (),
    ) -> tuple[list[str], list[StoredEvent]]:
        """Roots owned outside ``people`` of these completions, and their events."""
        params = {"ids": _ids(completions), "people": _ids(sorted(people)), "upto": upto}
        roots = [row[0] for row in await self._fetch(FOREIGN_ROOTS, params)]
        return roots, await events_of_fresh_roots(self, roots, people, upto, known)

    async def accepted_referents(self, ids: Collection[str], upto: int) -> dict[str, Referent]:
        """Actor and type of the events among ``ids`` accepted by ``upto`` (see the Protocol)."""
        if not ids:
            return {}
        rows = await self._fetch(ACCEPTED_BY, {"ids": _ids(ids), "upto": upto})
        return {row[0]: Referent(row[1], row[2]) for row in rows}

    async def kudos_naming(
        self, completions: Collection[str], upto: int
    ) -> list[tuple[str, str, int]]:
        """Kudos naming these completions (see the Protocol)."""
        rows = await self._fetch(KUDOS_NAMING, {"ids": _ids(completions), "upto": upto})
        return [(row[0], row[1], row[2]) for row in rows]

    async def reveal_floor(self, person: str, checked: int, after: int) -> int | None:
        """Where a pull must rescan from (see the Protocol); None when nothing was revealed."""
        if after <= 0:
            return None
        rows = await self._fetch(REVEALED, {"person": person, "checked": checked, "after": after})
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    async def get(self, event_id: str) -> StoredEvent | None:
        """The stored event with this id, or None."""
        rows = await self._fetch(f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,))
        return _stored(rows[0]) if rows else None

    async def count(self) -> int:
        """How many events are stored."""
        return int((await self._fetch("SELECT COUNT(*) FROM events"))[0][0])

    async def max_position(self) -> int:
        """The highest position assigned so far (0 when empty)."""
        return int((await self._fetch("SELECT COALESCE(MAX(position), 0) FROM events"))[0][0])

    async def dead_letters(self, after_id: int = 0, limit: int = 100) -> list[DeadLetter]:
        """Dead letters with an id greater than ``after_id``, oldest first."""
        rows = await self._fetch(
            """SELECT id, subject, raw, reason, received_at FROM dead_letters
            WHERE id > ? ORDER BY id LIMIT ?""",
            (after_id, limit),
        )
        return [
            DeadLetter(row[0], row[1], bytes(row[2]), row[3], datetime.fromisoformat(row[4]))
            for row in rows
        ]

    async def refusals(self, person: str, after_id: int, limit: int) -> list[Refusal]:
        """The person's refused events after ``after_id`` (see the Protocol)."""
        rows = await self._fetch(
            """SELECT id, event_id, reason FROM dead_letters
            WHERE person = ? AND id > ? ORDER BY id LIMIT ?""",
            (person, after_id, limit),
        )
        return [Refusal(row[0], row[1], row[2]) for row in rows]

    async def vouched(self, person: str, ids: Collection[str]) -> dict[str, Referent]:
        """The accepted events among ``ids`` that ``person`` may not see (see the Protocol)."""
        if not ids:
            return {}
        rows = await self._fetch(VOUCHED, {"person": person, "ids": _ids(ids)})
        return {row[0]: Referent(row[1], row[2]) for row in rows}

    async def audience(self, roots: Collection[str], teams: Collection[str]) -> set[str]:
        """Everyone who may now see events under these roots or of these teams."""
        people: set[str] = set()
        if roots:
            rows = await self._fetch(
                """SELECT r.owner, s.visibility, s.partners FROM items r
                LEFT JOIN sharing s ON s.root_id = r.item_id AND s.actor = r.owner
                WHERE r.item_id IN (SELECT value FROM json_each(?))""",
                (_ids(roots),),
            )
            team_owners: set[str] = set()
            for owner, visibility, partners in rows:
                people.add(owner)
                if visibility == "partners":
                    people.update(json.loads(partners))
                elif visibility == "team":
                    team_owners.add(owner)
            if team_owners:
                rows = await self._fetch(
                    """SELECT DISTINCT theirs.person FROM team_members mine
                    JOIN team_members theirs ON theirs.team = mine.team AND theirs.joined
                    WHERE mine.joined AND mine.person IN (SELECT value FROM json_each(?))""",
                    (_ids(team_owners),),
                )
                people.update(row[0] for row in rows)
        if teams:
            rows = await self._fetch(
                """SELECT DISTINCT person FROM team_members
                WHERE joined AND team IN (SELECT value FROM json_each(?))""",
                (_ids(teams),),
            )
            people.update(row[0] for row in rows)
        return people

    async def item_root(self, item_id: str) -> str | None:
        """The visibility root of an item or event (None when not known yet)."""
        rows = await self._fetch("SELECT root_id FROM events WHERE id = ?", (item_id,))
        return rows[0][0] if rows else None
