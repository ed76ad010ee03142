"""A populated server for HTTP tests: a store and accounts on one backend, people with
tokens, and alice's goals shared three ways (private / partners / team).

Who is who (team ``growth``: alice, carol, erin; team ``ops``: dave):

- alice owns everything below;
- bob is a partner on alice's ``partners`` items, in no team with her;
- carol is alice's teammate;
- erin is a teammate and a partner;
- dave shares nothing with alice.

Every item of alice carries a marker in its title or text, so a response shows
which visibility classes leaked into it: ``ZZPRIV``, ``ZZPART``, ``ZZTEAM``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import pytest_asyncio
import uvicorn

from events import (
    CheckInRecorded,
    Event,
    MilestoneCompleted,
    MilestonePlanned,
    ObjectiveCreated,
    ObservationRecorded,
    TeamMemberJoined,
    encode,
)
from server.accounts import AccountStore, new_credentials, open_accounts
from server.http import ServerContext, TokenVerifier, create_app
from server.nats_embedded import events_subject
from server.projection import ProjectionFollower
from server.store import Incoming, ServerStore, open_store
from tests.services import EventMaker, fresh_database

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
MARKERS = {"private": "ZZPRIV", "partners": "ZZPART", "team": "ZZTEAM"}
PEOPLE = ("alice", "bob", "carol", "dave", "erin")
TEAMS = {"growth": ("alice", "carol", "erin"), "ops": ("dave",)}
PARTNERS = ("bob", "erin")

PERSON_VISIBLE: dict[str, set[str] | None] = {
    "alice": {"ZZPRIV", "ZZPART", "ZZTEAM"},
    "bob": {"ZZPART"},
    "carol": {"ZZTEAM"},
    "erin": {"ZZPART", "ZZTEAM"},
    "dave": None,  # 404
}
"""What each viewer sees of alice's items on person routes (None: 404)."""

TEAM_VISIBLE: dict[str, set[str] | None] = {
    "alice": {"ZZPRIV", "ZZPART", "ZZTEAM"},
    "bob": None,
    "carol": {"ZZTEAM"},
    "erin": {"ZZPART", "ZZTEAM"},
    "dave": None,
}
"""What each viewer sees of alice's items on team ``growth`` routes (None: 404)."""


def incoming(events: Iterable[Event]) -> list[Incoming]:
    """Events as the store receives them from ingest."""
    return [Incoming(encode(e), e, None, events_subject(e.actor, e.id)) for e in events]


def alice_history(make: EventMaker) -> list[Event]:
    """Memberships, then alice's items in each visibility class."""
    history: list[Event] = []
    for team, members in TEAMS.items():
        history += [make("admin", TeamMemberJoined(team=team, person=p)) for p in members]
    for visibility, mark in MARKERS.items():
        partners = PARTNERS if visibility == "partners" else ()
        objective = make(
            "alice",
            ObjectiveCreated(
                title=f"{mark} objective",
                cycle="2026-Q1",
                visibility=visibility,  # type: ignore[arg-type]
                partners=partners,
            ),
        )
        late = make(
            "alice",
            MilestonePlanned(
                title=f"{mark} late milestone", due_on=date(2026, 3, 10), objective=objective.id
            ),
        )
        done = make(
            "alice",
            MilestonePlanned(
                title=f"{mark} done milestone", due_on=date(2026, 3, 30), objective=objective.id
            ),
        )
        history += [
            objective,
            late,
            done,
            make("alice", CheckInRecorded(subject=late.id, confidence="at-risk", percent=40.0)),
            make(
                "alice",
                MilestoneCompleted(
                    milestone=done.id, did=f"{mark} did", why="it mattered", outcome="shipped"
                ),
            ),
            make(
                "alice",
                ObservationRecorded(
                    text=f"{mark} journal entry",
                    visibility=visibility,  # type: ignore[arg-type]
                    partners=partners,
                ),
            ),
        ]
    history.append(make("dave", ObjectiveCreated(title="Dave's own", cycle="2026-Q1")))
    return history


@dataclass
class World:
    """A running (in-process) API over a populated store."""

    store: ServerStore
    accounts: AccountStore
    follower: ProjectionFollower
    ctx: ServerContext
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, person: str) -> dict[str, str]:
        """The Authorization header of ``person``."""
        return {"Authorization": f"Bearer {self.tokens[person]}"}

    async def append(self, events: Iterable[Event]) -> None:
        """Store events as ingest would, and fold them."""
        await self.store.append_batch(incoming(events))
        await self.follower.catch_up()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend under test."""
    return str(request.param)


@pytest_asyncio.fixture
async def location(backend: str, tmp_path: Path, postgres_admin_url: str) -> AsyncIterator[str]:
    """A fresh database of the backend: an SQLite path or a PostgreSQL URL."""
    if backend == "sqlite":
        yield str(tmp_path / "server.sqlite")
        return
    async with fresh_database(postgres_admin_url) as url:
        yield url


@contextlib.asynccontextmanager
async def open_world(location: str) -> AsyncIterator[World]:
    """Store and accounts on ``location``, people with tokens, alice's history folded."""
    store = open_store(location)
    await store.open()
    accounts = open_accounts(location)
    await accounts.open()
    try:
        follower = ProjectionFollower(store, poll_interval=0.05)
        ctx = ServerContext(follower, store, TokenVerifier(accounts, ttl=0.0), clock=lambda: NOW)
        ctx.keepalive_seconds = 0.5
        world = World(store, accounts, follower, ctx)
        for person in PEOPLE:
            creds = new_credentials(person, bcrypt_rounds=4)
            await accounts.add(person, creds.nats_password_hash, creds.token_hash)
            world.tokens[person] = creds.api_token
        await world.append(alice_history(EventMaker()))
        yield world
    finally:
        await accounts.close()
        await store.close()


@pytest_asyncio.fixture
async def world(location: str) -> AsyncIterator[World]:
    """A populated world on each backend."""
    async with open_world(location) as opened:
        yield opened


__all__ = ["create_app"]


async def until_serving(
    server: uvicorn.Server, task: asyncio.Task[None], timeout: float = 20.0
) -> None:
    """Wait until ``server`` (served by ``task``) accepts requests; raise if it ended or
    ``timeout`` seconds passed first."""
    deadline = time.monotonic() + timeout
    while not server.started:
        if task.done():
            task.result()  # its exception, if it failed
            raise RuntimeError("uvicorn stopped before it started serving")
        if time.monotonic() > deadline:
            raise TimeoutError(f"uvicorn did not start within {timeout} s")
        await asyncio.sleep(0.01)
