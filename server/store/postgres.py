"""The scale-out store: PostgreSQL through asyncpg, one transaction per batch.

Positions come from a counter row (``event_positions``) read ``FOR UPDATE`` at
the start of each append transaction and written at its end. A sequence or
BIGSERIAL would hand out numbers when rows are inserted, not when they commit:
with two appenders, 11 could commit before 10, a reader paging ``events_after(10)``
would move its cursor to 11 and never see 10. Holding the counter row's lock
until commit makes appenders take turns, so position order is commit order,
and a rolled back batch never consumed its numbers (positions stay dense). The
cost is one appender at a time, which batching (hundreds of events per
transaction, arrays in a few round trips) pays for. An advisory lock would
serialize just as well, but the row also carries the number.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from events.wire import Refusal
from projections.ownership import Referent
from server.migrations import migrate_postgres
from server.store.append import append_in_transaction
from server.store.append_io import (
    AppendTx,
    DeadLetterRow,
    EventRow,
    HeldEvent,
    HeldRow,
    ItemRow,
    LinkRow,
    SharingRow,
    TeamRow,
)
from server.store.postgres_sql import (
    ACCEPTED_BY,
    EVENT_COLUMNS,
    FOREIGN_ROOTS,
    KUDOS_NAMING,
    MIGRATIONS,
    PARTITION,
    REVEALED,
    VISIBLE,
    VOUCHED,
)
from server.store.protocol import (
    AppendResult,
    DeadLetter,
    Incoming,
    StoredEvent,
    events_of_fresh_roots,
)

_MIGRATION_LOCK = 0x6D696C65  # "mile": one migrator at a time across processes


def _stored(row: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        row["position"],
        row["id"],
        row["actor"],
        row["type"],
        row["root_id"],
        row["team"],
        bytes(row["raw"]),
    )


class _PostgresTx(AppendTx):
    def __init__(self, conn: asyncpg.Connection[Any] | PoolConnectionProxy[Any]) -> None:
        self._conn = conn

    async def lock_positions(self) -> int:
        last = await self._conn.fetchval("SELECT last FROM event_positions FOR UPDATE")
        return int(last)

    async def save_last_position(self, last: int) -> None:
        await self._conn.execute("UPDATE event_positions SET last = $1", last)

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        rows = await self._conn.fetch("SELECT id FROM events WHERE id = ANY($1::text[])", list(ids))
        return {row["id"] for row in rows}

    async def roots_of(self, ids: Iterable[str]) -> dict[str, str | None]:
        rows = await self._conn.fetch(
            "SELECT id, root_id FROM events WHERE id = ANY($1::text[])", list(ids)
        )
        return {row["id"]: row["root_id"] for row in rows}

    async def refs_of(self, ids: Iterable[str]) -> dict[str, str | None]:
        rows = await self._conn.fetch(
            "SELECT id, ref_id FROM events WHERE id = ANY($1::text[])", list(ids)
        )
        return {row["id"]: row["ref_id"] for row in rows}

    async def upsert_links(self, rows: Sequence[LinkRow]) -> None:
        await self._conn.executemany(
            """INSERT INTO links(item_id, parent_id, clock, event_id) VALUES ($1, $2, $3, $4)
            ON CONFLICT(item_id) DO UPDATE SET parent_id = excluded.parent_id,
                clock = excluded.clock, event_id = excluded.event_id
            WHERE (excluded.clock, excluded.event_id) > (links.clock, links.event_id)""",
            rows,
        )

    async def links_of(self, milestones: Iterable[str]) -> dict[str, str | None]:
        rows = await self._conn.fetch(
            "SELECT item_id, parent_id FROM links WHERE item_id = ANY($1::text[])",
            list(milestones),
        )
        return {row["item_id"]: row["parent_id"] for row in rows}

    async def insert_events(self, rows: Sequence[EventRow]) -> None:
        # The ids are new (checked under the position lock): COPY, the cheapest insert.
        await self._conn.copy_records_to_table("events", records=rows, columns=EventRow._fields)

    async def insert_items(self, rows: Sequence[ItemRow]) -> None:
        # An item's id is the id of the event creating it, new like that event (checked
        # under the position lock, and items are written only with their event): COPY.
        await self._conn.copy_records_to_table("items", records=rows, columns=ItemRow._fields)

    async def insert_dead_letters(self, rows: Sequence[DeadLetterRow]) -> int:
        columns = list(zip(*rows, strict=True))
        inserted = await self._conn.fetch(
            """INSERT INTO dead_letters(subject, raw, reason, digest, received_at, person,
                event_id)
            SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[],
                $5::timestamptz[], $6::text[], $7::text[])
            ON CONFLICT (digest) DO UPDATE SET
                id = nextval(pg_get_serial_sequence('dead_letters', 'id')),
                reason = excluded.reason, received_at = excluded.received_at
            RETURNING id""",
            *[list(column) for column in columns],
        )
        return len(inserted)

    async def upsert_sharing(self, rows: Sequence[SharingRow]) -> None:
        await self._conn.executemany(
            """INSERT INTO sharing(root_id, actor, visibility, partners, clock, event_id)
            VALUES ($1, $2, $3, $4::jsonb, $5, $6)
            ON CONFLICT(root_id, actor) DO UPDATE SET visibility = excluded.visibility,
                partners = excluded.partners, clock = excluded.clock, event_id = excluded.event_id
            WHERE (excluded.clock, excluded.event_id) > (sharing.clock, sharing.event_id)""",
            rows,
        )

    async def upsert_team_members(self, rows: Sequence[TeamRow]) -> None:
        await self._conn.executemany(
            """INSERT INTO team_members(team, person, joined, clock, event_id)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT(team, person) DO UPDATE SET joined = excluded.joined,
                clock = excluded.clock, event_id = excluded.event_id
            WHERE (excluded.clock, excluded.event_id)
                > (team_members.clock, team_members.event_id)""",
            rows,
        )

    async def children(self, ids: Iterable[str]) -> list[tuple[str, str]]:
        sql = "SELECT id, ref_id FROM events WHERE ref_id = ANY($1::text[]) AND id <> ref_id"
        rows = await self._conn.fetch(sql, list(ids))
        return [(row["id"], row["ref_id"]) for row in rows]

    async def referents(self, ids: Iterable[str]) -> dict[str, Referent]:
        rows = await self._conn.fetch(
            """SELECT e.id, e.actor, e.type FROM events e
            LEFT JOIN held h ON h.event_id = e.id AND h.released_at IS NULL
            WHERE e.id = ANY($1::text[]) AND h.event_id IS NULL""",
            list(ids),
        )
        return {row["id"]: Referent(row["actor"], row["type"]) for row in rows}

    async def hold(self, rows: Sequence[HeldRow]) -> None:
        await self._conn.executemany(
            """INSERT INTO held(event_id, missing, reason, released_at) VALUES ($1, $2, $3, $4)
            ON CONFLICT(event_id) DO UPDATE SET missing = excluded.missing,
                reason = excluded.reason, released_at = excluded.released_at""",
            rows,
        )

    async def waiting_on(self, ids: Iterable[str]) -> list[HeldEvent]:
        # Almost always nothing waits: a look at the partial index spares sending the ids.
        if (
            await self._conn.fetchval("SELECT 1 FROM held WHERE missing IS NOT NULL LIMIT 1")
            is None
        ):
            return []
        rows = await self._conn.fetch(
            """SELECT e.id, e.subject, e.raw FROM held h JOIN events e ON e.id = h.event_id
            WHERE h.missing = ANY($1::text[]) ORDER BY e.position""",
            list(ids),
        )
        return [HeldEvent(row["id"], row["subject"], bytes(row["raw"])) for row in rows]

    async def set_roots(self, roots: dict[str, str | None]) -> None:
        ids, values = list(roots), list(roots.values())
        await self._conn.execute(
            """UPDATE events e SET root_id = v.root
            FROM unnest($1::text[], $2::text[]) AS v(id, root) WHERE e.id = v.id""",
            ids,
            values,
        )
        await self._conn.execute(
            """UPDATE items i SET root_id = v.root
            FROM unnest($1::text[], $2::text[]) AS v(id, root) WHERE i.item_id = v.id""",
            ids,
            values,
        )

    async def set_refs(self, refs: dict[str, str | None]) -> None:
        await self._conn.execute(
            """UPDATE events e SET ref_id = v.ref
            FROM unnest($1::text[], $2::text[]) AS v(id, ref) WHERE e.id = v.id""",
            list(refs),
            list(refs.values()),
        )


class PostgresStore:
    """``ServerStore`` on PostgreSQL; several server processes may share one database."""

    def __init__(self, dsn: str, *, min_connections: int = 1, max_connections: int = 8) -> None:
        self._dsn = dsn
        self._min = min_connections
        self._max = max_connections
        self._pool: asyncpg.Pool[Any] | None = None

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        """The connection pool (for tests and tools that need raw access)."""
        if self._pool is None:
            raise RuntimeError("the store is not open")
        return self._pool

    async def open(self) -> None:
        """Connect and run pending versioned migrations (each exactly once)."""
        self._pool = await asyncpg.create_pool(self._dsn, min_size=self._min, max_size=self._max)
        # Two servers starting together must not both run migration 1.
        await migrate_postgres(self.pool, "schema_migrations", MIGRATIONS, _MIGRATION_LOCK)

    async def close(self) -> None:
        """Close the pool; the store can be opened again."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def migrations(self) -> list[int]:
        """Versions of the migrations applied so far, ascending."""
        rows = await self.pool.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [row["version"] for row in rows]

    async def append_batch(self, items: Sequence[Incoming]) -> AppendResult:
        """Store a batch in one transaction (see ``ServerStore.append_batch``)."""
        async with self.pool.acquire() as conn, conn.transaction():
            return await append_in_transaction(_PostgresTx(conn), items)

    async def events_after(self, position: int, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` events with a position greater than ``position``, in order."""
        rows = await self.pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            position,
            limit,
        )
        return [_stored(row) for row in rows]

    async def visible_events_after(
        self, person: str, position: int, limit: int
    ) -> list[StoredEvent]:
        """Events ``person`` may see now, after ``position`` (see the Protocol)."""
        rows = await self.pool.fetch(VISIBLE, person, position, limit)
        return [_stored(row) for row in rows]

    async def partition_events(
        self,
        people: Collection[str],
        after: int,
        upto: int,
        roots: Collection[str] = (),
    ) -> list[StoredEvent]:
        """The events of a working-set partition (see the Protocol), in position order."""
        rows = await self.pool.fetch(PARTITION, sorted(people), after, upto, sorted(roots))
        return [_stored(row) for row in rows]

    async def foreign_roots(
        self,
        completions: Collection[str],
        people: Collection[str],
        upto: int,
        known: Collection[str] = (),
    ) -> tuple[list[str], list[StoredEvent]]:
        """Roots owned outside ``people`` of these completions, and their events."""
        rows = await self.pool.fetch(FOREIGN_ROOTS, list(completions), sorted(people), upto)
        roots = [row["root_id"] for row in rows]
        return roots, await events_of_fresh_roots(self, roots, people, upto, known)

    async def accepted_referents(self, ids: Collection[str], upto: int) -> dict[str, Referent]:
        """Actor and type of the events among ``ids`` accepted by ``upto`` (see the Protocol)."""
        if not ids:
            return {}
        rows = await self.pool.fetch(ACCEPTED_BY, list(ids), upto)
        return {row["id"]: Referent(row["actor"], row["type"]) for row in rows}

    async def kudos_naming(
        self, completions: Collection[str], upto: int
    ) -> list[tuple[str, str, int]]:
        """Kudos naming these completions (see the Protocol)."""
        rows = await self.pool.fetch(KUDOS_NAMING, list(completions), upto)
        return [(row["completion"], row["actor"], row["position"]) for row in rows]

    async def reveal_floor(self, person: str, checked: int, after: int) -> int | None:
        """Where a pull must rescan from (see the Protocol); None when nothing was revealed."""
        if after <= 0:
            return None
        value = await self.pool.fetchval(REVEALED, person, checked, after)
        return None if value is None else int(value)

    async def get(self, event_id: str) -> StoredEvent | None:
        """The stored event with this id, or None."""
        row = await self.pool.fetchrow(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id = $1", event_id
        )
        return _stored(row) if row is not None else None

    async def count(self) -> int:
        """How many events are stored."""
        return int(await self.pool.fetchval("SELECT count(*) FROM events"))

    async def max_position(self) -> int:
        """The highest position assigned so far (0 when empty)."""
        return int(await self.pool.fetchval("SELECT last FROM event_positions"))

    async def dead_letters(self, after_id: int = 0, limit: int = 100) -> list[DeadLetter]:
        """Dead letters with an id greater than ``after_id``, oldest first."""
        rows = await self.pool.fetch(
            """SELECT id, subject, raw, reason, received_at FROM dead_letters
            WHERE id > $1 ORDER BY id LIMIT $2""",
            after_id,
            limit,
        )
        return [
            DeadLetter(
                row["id"], row["subject"], bytes(row["raw"]), row["reason"], row["received_at"]
            )
            for row in rows
        ]

    async def refusals(self, person: str, after_id: int, limit: int) -> list[Refusal]:
        """The person's refused events after ``after_id`` (see the Protocol)."""
        rows = await self.pool.fetch(
            """SELECT id, event_id, reason FROM dead_letters
            WHERE person = $1 AND id > $2 ORDER BY id LIMIT $3""",
            person,
            after_id,
            limit,
        )
        return [Refusal(row["id"], row["event_id"], row["reason"]) for row in rows]

    async def vouched(self, person: str, ids: Collection[str]) -> dict[str, Referent]:
        """The accepted events among ``ids`` that ``person`` may not see (see the Protocol)."""
        if not ids:
            return {}
        rows = await self.pool.fetch(VOUCHED, person, list(ids))
        return {row["id"]: Referent(row["actor"], row["type"]) for row in rows}

    async def audience(self, roots: Collection[str], teams: Collection[str]) -> set[str]:
        """Everyone who may now see events under these roots or of these teams."""
        people: set[str] = set()
        if roots:
            rows = await self.pool.fetch(
                """SELECT r.owner, s.visibility, s.partners::text AS partners FROM items r
                LEFT JOIN sharing s ON s.root_id = r.item_id AND s.actor = r.owner
                WHERE r.item_id = ANY($1::text[])""",
                list(roots),
            )
            team_owners: set[str] = set()
            for row in rows:
                people.add(row["owner"])
                if row["visibility"] == "partners":
                    people.update(msgspec.json.decode(row["partners"], type=list[str]))
                elif row["visibility"] == "team":
                    team_owners.add(row["owner"])
            if team_owners:
                rows = await self.pool.fetch(
                    """SELECT DISTINCT theirs.person FROM team_members mine
                    JOIN team_members theirs ON theirs.team = mine.team AND theirs.joined
                    WHERE mine.joined AND mine.person = ANY($1::text[])""",
                    list(team_owners),
                )
                people.update(row["person"] for row in rows)
        if teams:
            rows = await self.pool.fetch(
                "SELECT DISTINCT person FROM team_members WHERE joined AND team = ANY($1::text[])",
                list(teams),
            )
            people.update(row["person"] for row in rows)
        return people

    async def item_root(self, item_id: str) -> str | None:
        """The visibility root of an item or event (None when not known yet)."""
        root = await self.pool.fetchval("SELECT root_id FROM events WHERE id = $1", item_id)
        return None if root is None else str(root)
