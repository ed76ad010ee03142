"""Accounts in PostgreSQL (the same database as the event store, own tables)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from server.accounts.protocol import Person, PersonExists, UnknownPerson, WebSession
from server.migrations import Migration, PostgresTables

MIGRATIONS: tuple[Migration, ...] = (
    (
        1,
        "people and their credential hashes",
        (
            """CREATE TABLE people (
                name text PRIMARY KEY,
                nats_password_hash text NOT NULL,
                token_hash text NOT NULL,
                created_at timestamptz NOT NULL,
                rotated_at timestamptz
            )""",
        ),
    ),
    (
        2,
        "web sign-in links and browser sessions (hashes only)",
        (
            """CREATE TABLE signin_links (
                link_hash text PRIMARY KEY,
                person text NOT NULL,
                expires_at timestamptz NOT NULL,
                used_at timestamptz
            )""",
            """CREATE TABLE web_sessions (
                session_hash text PRIMARY KEY,
                person text NOT NULL,
                csrf text NOT NULL,
                credential text NOT NULL,
                expires_at timestamptz NOT NULL
            )""",
            "CREATE INDEX web_sessions_person ON web_sessions(person)",
        ),
    ),
)
"""Numbered schema steps, recorded in ``account_migrations`` (apart from the event store's)."""

_MIGRATION_LOCK = 727274  # apart from the event store's: the two migrate independently

_COLUMNS = "name, nats_password_hash, token_hash, created_at, rotated_at"


def _person(row: asyncpg.Record) -> Person:
    return Person(row[0], row[1], row[2], row[3], row[4])


class PostgresAccounts(PostgresTables):
    """``AccountStore`` on PostgreSQL through a small asyncpg pool."""

    MIGRATIONS = MIGRATIONS
    MIGRATIONS_TABLE = "account_migrations"
    MIGRATION_LOCK = _MIGRATION_LOCK
    WHAT = "account store"

    async def add(self, person: str, nats_password_hash: str, token_hash: str) -> Person:
        """Register ``person``; PersonExists if already registered."""
        now = datetime.now(UTC)
        try:
            await self._db.execute(
                f"INSERT INTO people({_COLUMNS}) VALUES ($1, $2, $3, $4, NULL)",
                person,
                nats_password_hash,
                token_hash,
                now,
            )
        except asyncpg.UniqueViolationError as exc:
            raise PersonExists(f"person {person!r} already exists") from exc
        return Person(person, nats_password_hash, token_hash, now)

    async def remove(self, person: str) -> None:
        """Forget ``person``'s credentials; UnknownPerson if absent."""
        status = await self._db.execute("DELETE FROM people WHERE name = $1", person)
        if status.endswith(" 0"):
            raise UnknownPerson(f"no person {person!r}")

    async def rotate(self, person: str, nats_password_hash: str, token_hash: str) -> Person:
        """Replace both credential hashes; UnknownPerson if absent."""
        row = await self._db.fetchrow(
            f"""UPDATE people SET nats_password_hash = $2, token_hash = $3, rotated_at = $4
            WHERE name = $1 RETURNING {_COLUMNS}""",
            person,
            nats_password_hash,
            token_hash,
            datetime.now(UTC),
        )
        if row is None:
            raise UnknownPerson(f"no person {person!r}")
        return _person(row)

    async def get(self, person: str) -> Person | None:
        """The registered person, or None."""
        row = await self._db.fetchrow(f"SELECT {_COLUMNS} FROM people WHERE name = $1", person)
        return _person(row) if row is not None else None

    async def people(self) -> list[Person]:
        """Every registered person, by name."""
        rows = await self._db.fetch(f"SELECT {_COLUMNS} FROM people ORDER BY name")
        return [_person(r) for r in rows]

    async def teams(self) -> dict[str, list[str]]:
        """Current memberships, read from the event store's ``team_members`` index."""
        try:
            rows = await self._db.fetch(
                "SELECT person, team FROM team_members WHERE joined ORDER BY person, team"
            )
        except asyncpg.UndefinedTableError:
            return {}
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row[0], []).append(row[1])
        return found

    # --- web sign-in ------------------------------------------------------------------

    async def add_signin_link(self, link_hash: str, person: str, expires_at: datetime) -> None:
        """Remember a one-time sign-in link (its hash); expired links are pruned."""
        await self._db.execute("DELETE FROM signin_links WHERE expires_at < now()")
        await self._db.execute(
            "INSERT INTO signin_links(link_hash, person, expires_at) VALUES ($1, $2, $3)",
            link_hash,
            person,
            expires_at,
        )

    async def use_signin_link(self, link_hash: str, now: datetime) -> str | None:
        """The link's person if unused and unexpired, marked used in the same statement."""
        person = await self._db.fetchval(
            "UPDATE signin_links SET used_at = $2 WHERE link_hash = $1 AND used_at IS NULL"
            " AND expires_at > $2 RETURNING person",
            link_hash,
            now,
        )
        return str(person) if person is not None else None

    async def add_web_session(self, session: WebSession) -> None:
        """Store a browser session; expired sessions are pruned."""
        await self._db.execute("DELETE FROM web_sessions WHERE expires_at < now()")
        await self._db.execute(
            "INSERT INTO web_sessions(session_hash, person, csrf, credential, expires_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            session.session_hash,
            session.person,
            session.csrf,
            session.credential,
            session.expires_at,
        )

    async def web_session(self, session_hash: str) -> WebSession | None:
        """The stored session with this hash, or None."""
        row = await self._db.fetchrow(
            "SELECT session_hash, person, csrf, credential, expires_at FROM web_sessions"
            " WHERE session_hash = $1",
            session_hash,
        )
        if row is None:
            return None
        return WebSession(row[0], row[1], row[2], row[3], row[4])

    async def end_web_session(self, session_hash: str) -> None:
        """Forget one session."""
        await self._db.execute("DELETE FROM web_sessions WHERE session_hash = $1", session_hash)

    async def end_web_sessions(self, person: str) -> int:
        """Forget every session and unused link of ``person``."""
        status = await self._db.execute("DELETE FROM web_sessions WHERE person = $1", person)
        await self._db.execute(
            "DELETE FROM signin_links WHERE person = $1 AND used_at IS NULL", person
        )
        return int(status.rsplit(" ", 1)[-1])
