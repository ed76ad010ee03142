"""Accounts in the embedded SQLite file (the same file as the event store, own tables)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.accounts.protocol import Person, PersonExists, UnknownPerson, WebSession
from server.migrations import Migration, SqliteConnection, connect_sqlite, migrate_sqlite

MIGRATIONS: tuple[Migration, ...] = (
    (
        1,
        "people and their credential hashes",
        (
            """CREATE TABLE people (
                name TEXT PRIMARY KEY,
                nats_password_hash TEXT NOT NULL,
                token_hash TEXT NOT NULL,
                created_at TEXT NOT NULL,
                rotated_at TEXT
            )""",
        ),
    ),
    (
        2,
        "web sign-in links and browser sessions (hashes only)",
        (
            """CREATE TABLE signin_links (
                link_hash TEXT PRIMARY KEY,
                person TEXT NOT NULL,
                expires_at TEXT NOT NULL,
                used_at TEXT
            )""",
            """CREATE TABLE web_sessions (
                session_hash TEXT PRIMARY KEY,
                person TEXT NOT NULL,
                csrf TEXT NOT NULL,
                credential TEXT NOT NULL,
                expires_at TEXT NOT NULL
            )""",
            "CREATE INDEX web_sessions_person ON web_sessions(person)",
        ),
    ),
)
"""Numbered schema steps, recorded in ``account_migrations`` (apart from the event store's)."""

_COLUMNS = "name, nats_password_hash, token_hash, created_at, rotated_at"


def _person(row: Any) -> Person:
    rotated = datetime.fromisoformat(row[4]) if row[4] is not None else None
    return Person(row[0], row[1], row[2], datetime.fromisoformat(row[3]), rotated)


class SqliteAccounts:
    """``AccountStore`` on an SQLite file (WAL; several processes may share it)."""

    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._db: SqliteConnection | None = None

    @property
    def _conn(self) -> SqliteConnection:
        if self._db is None:
            raise RuntimeError("the account store is not open")
        return self._db

    async def open(self) -> None:
        """Connect and run pending versioned migrations (each exactly once)."""
        self._db = await connect_sqlite(self._path)
        await migrate_sqlite(self._db, "account_migrations", MIGRATIONS)

    async def close(self) -> None:
        """Release the connection."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._conn.execute_fetchall(sql, params)

    async def _change(self, sql: str, params: Sequence[Any]) -> int:
        return await self._conn.execute(sql, params)

    async def add(self, person: str, nats_password_hash: str, token_hash: str) -> Person:
        """Register ``person``; PersonExists if already registered."""
        now = datetime.now(UTC)
        try:
            await self._change(
                f"INSERT INTO people({_COLUMNS}) VALUES (?, ?, ?, ?, NULL)",
                (person, nats_password_hash, token_hash, now.isoformat()),
            )
        except sqlite3.IntegrityError as exc:
            raise PersonExists(f"person {person!r} already exists") from exc
        return Person(person, nats_password_hash, token_hash, now)

    async def remove(self, person: str) -> None:
        """Forget ``person``'s credentials; UnknownPerson if absent."""
        if not await self._change("DELETE FROM people WHERE name = ?", (person,)):
            raise UnknownPerson(f"no person {person!r}")

    async def rotate(self, person: str, nats_password_hash: str, token_hash: str) -> Person:
        """Replace both credential hashes; UnknownPerson if absent."""
        changed = await self._change(
            "UPDATE people SET nats_password_hash = ?, token_hash = ?, rotated_at = ? "
            "WHERE name = ?",
            (nats_password_hash, token_hash, datetime.now(UTC).isoformat(), person),
        )
        if not changed:
            raise UnknownPerson(f"no person {person!r}")
        found = await self.get(person)
        assert found is not None
        return found

    async def get(self, person: str) -> Person | None:
        """The registered person, or None."""
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM people WHERE name = ?", (person,))
        return _person(rows[0]) if rows else None

    async def people(self) -> list[Person]:
        """Every registered person, by name."""
        return [
            _person(r) for r in await self._fetch(f"SELECT {_COLUMNS} FROM people ORDER BY name")
        ]

    async def teams(self) -> dict[str, list[str]]:
        """Current memberships, read from the event store's ``team_members`` index."""
        try:
            rows = await self._fetch(
                "SELECT person, team FROM team_members WHERE joined ORDER BY person, team"
            )
        except sqlite3.OperationalError:
            return {}  # the event store has not created its tables yet
        found: dict[str, list[str]] = {}
        for person, team in rows:
            found.setdefault(person, []).append(team)
        return found

    # --- web sign-in ------------------------------------------------------------------

    async def add_signin_link(self, link_hash: str, person: str, expires_at: datetime) -> None:
        """Remember a one-time sign-in link (its hash); expired links are pruned."""
        now = _stamp(datetime.now(UTC))
        await self._change("DELETE FROM signin_links WHERE expires_at < ?", (now,))
        await self._change(
            "INSERT INTO signin_links(link_hash, person, expires_at, used_at)"
            " VALUES (?, ?, ?, NULL)",
            (link_hash, person, _stamp(expires_at)),
        )

    async def use_signin_link(self, link_hash: str, now: datetime) -> str | None:
        """The link's person if unused and unexpired, marked used in the same statement."""
        rows = await self._fetch(
            "UPDATE signin_links SET used_at = ? WHERE link_hash = ? AND used_at IS NULL"
            " AND expires_at > ? RETURNING person",
            (_stamp(now), link_hash, _stamp(now)),
        )
        return str(rows[0][0]) if rows else None

    async def add_web_session(self, session: WebSession) -> None:
        """Store a browser session; expired sessions are pruned."""
        now = _stamp(datetime.now(UTC))
        await self._change("DELETE FROM web_sessions WHERE expires_at < ?", (now,))
        await self._change(
            "INSERT INTO web_sessions(session_hash, person, csrf, credential, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                session.session_hash,
                session.person,
                session.csrf,
                session.credential,
                _stamp(session.expires_at),
            ),
        )

    async def web_session(self, session_hash: str) -> WebSession | None:
        """The stored session with this hash, or None."""
        rows = await self._fetch(
            "SELECT session_hash, person, csrf, credential, expires_at FROM web_sessions"
            " WHERE session_hash = ?",
            (session_hash,),
        )
        if not rows:
            return None
        row = rows[0]
        return WebSession(row[0], row[1], row[2], row[3], datetime.fromisoformat(row[4]))

    async def end_web_session(self, session_hash: str) -> None:
        """Forget one session."""
        await self._change("DELETE FROM web_sessions WHERE session_hash = ?", (session_hash,))

    async def end_web_sessions(self, person: str) -> int:
        """Forget every session and unused link of ``person``."""
        ended = await self._change("DELETE FROM web_sessions WHERE person = ?", (person,))
        await self._change(
            "DELETE FROM signin_links WHERE person = ? AND used_at IS NULL", (person,)
        )
        return ended


def _stamp(moment: datetime) -> str:
    """A UTC timestamp that sorts as text (every stored time has the same shape)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
