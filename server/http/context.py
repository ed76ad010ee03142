"""What the HTTP layer needs from the rest of the server, in one object."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from litestar import Request

from projections.settings import DEFAULT_SETTINGS, DriftSettings
from projections.state import ProjectionState, as_of
from server.accounts import AccountStore, token_person, verify_token
from server.http.errors import ViewTooSlow
from server.metrics import DeadLetterCount, IngestCounters, SnapshotStats
from server.projection import Folded, ProjectionFollower
from server.snapshots.refresh import RefreshStats
from server.store.protocol import AppendResult, ServerStore

_encode = msgspec.json.Encoder().encode
T = TypeVar("T")

VIEW_BUDGET_SECONDS = 5.0
"""How long a request waits for a view (review, drift, board, goals) computed in a worker
thread. Views of honest histories take milliseconds to a few hundred; one that takes longer
answers 503 with a reason instead of holding the connection, and goes on in the background
(cached for the retry). The event loop never runs a view, so ``/health`` stays fast."""


def context_of(request: Request[Any, Any, Any]) -> ServerContext:
    """The server context of a request, read straight from the app's state: cheaper
    than a dependency on the hottest routes (Litestar resolves those per request)."""
    ctx: ServerContext = request.app.state.ctx
    return ctx


def utc_now() -> datetime:
    """The wall clock, timezone-aware."""
    return datetime.now(UTC)


class TokenVerifier:
    """Checks bearer tokens against the stored hashes, re-read at most every ``ttl`` seconds.

    A rotated or removed person's old token stops working within ``ttl``.
    """

    def __init__(self, accounts: AccountStore, ttl: float = 1.0) -> None:
        self._accounts = accounts
        self._ttl = ttl
        self._hashes: dict[str, str] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()
        # Tokens found valid against the current hashes (emptied when they are re-read):
        # a token seen again skips hashing. Only valid tokens enter, so it stays small.
        self._verified: dict[str, str] = {}

    async def _current(self) -> dict[str, str]:
        if time.monotonic() - self._loaded_at > self._ttl:
            async with self._lock:
                if time.monotonic() - self._loaded_at > self._ttl:
                    people = await self._accounts.people()
                    self._hashes = {p.name: p.token_hash for p in people}
                    self._verified = {}
                    self._loaded_at = time.monotonic()
        return self._hashes

    async def person_for(self, token: str) -> str | None:
        """The person this token belongs to, or None."""
        hashes = await self._current()
        known = self._verified.get(token)
        if known is not None:
            return known
        person = token_person(token)
        stored = hashes.get(person) if person is not None else None
        if verify_token(token, stored) and person is not None:
            if hashes is self._hashes and len(self._verified) < 100_000:
                self._verified[token] = person
            return person
        return None

    @property
    def accounts(self) -> AccountStore:
        """The account store the hashes are read from (web sessions live there too)."""
        return self._accounts

    async def credential_of(self, person: str) -> str | None:
        """The person's current API token hash (as of the last refresh), or None."""
        return (await self._current()).get(person)

    async def is_registered(self, person: str) -> bool:
        """Whether ``person`` has credentials (as of the last refresh)."""
        return person in await self._current()


@dataclass
class ServerContext:
    """The running server's parts the routes read: projections, store, tokens, counters."""

    follower: ProjectionFollower
    store: ServerStore
    tokens: TokenVerifier
    settings: DriftSettings = DEFAULT_SETTINGS
    clock: Callable[[], datetime] = utc_now
    ingest: IngestCounters = field(default_factory=IngestCounters)
    dead_letters: DeadLetterCount = field(default_factory=DeadLetterCount)
    consumer_lag: Callable[[], Awaitable[int | None]] | None = None
    poke: Callable[[AppendResult], Awaitable[Any]] | None = None
    """Tells the devices of everyone who may see what was appended (the ingest's poke);
    used by writes made over HTTP (kudos from the team page)."""
    snapshots: SnapshotStats | None = None
    partition_refreshes: RefreshStats | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    keepalive_seconds: float = 15.0
    response_ttl: float = 5.0
    view_budget: float = VIEW_BUDGET_SECONDS
    """Seconds a request waits for a view computed in a worker thread before a 503."""
    _responses: OrderedDict[tuple[Any, ...], tuple[float, bytes]] = field(
        default_factory=OrderedDict
    )
    _computing: dict[tuple[Any, ...], asyncio.Task[bytes]] = field(default_factory=dict)
    _as_of_cache: OrderedDict[
        tuple[int, int, datetime], tuple[ProjectionState, ProjectionState]
    ] = field(default_factory=OrderedDict)

    @property
    def directory(self) -> ProjectionState:
        """A state that knows who is in which team (all of it, or a working set's directory);
        views read ``team_state``/``person_state`` instead."""
        return self.follower.state

    async def team_view(self, team: str) -> Folded:
        """What answers for a team (a working-set partition is folded first if need be)."""
        return await self.follower.team_view(team)

    async def team_state(self, team: str) -> ProjectionState:
        """The state a team's views read."""
        return (await self.follower.team_view(team)).state

    async def person_state(self, person: str) -> ProjectionState:
        """The state a person's views read."""
        return (await self.follower.person_view(person)).state

    async def cached(
        self,
        key: tuple[Any, ...],
        compute: Callable[[], Any],
        *,
        uses_clock: bool = True,
        raw: bool = False,
    ) -> bytes:
        """The JSON of ``compute()`` (with ``raw``, its bytes) for the projections' position.

        A view is computed once per position (and, when it ``uses_clock``, again after
        ``response_ttl`` seconds, since it then also depends on the time), in a worker
        thread while the follower holds off folding, so the event loop keeps answering
        other requests. An expired entry at the same position is served while its
        refresh runs (only its ``now`` is older). A view that does not read the clock
        (the feed) is the same for as long as the position is: it never expires.

        A view not ready within ``view_budget`` seconds raises ``ViewTooSlow`` (a 503):
        its computation goes on and is cached, so a retry finds it.
        """
        full_key = (self.follower.position, *key)
        hit = self._responses.get(full_key)
        if hit is not None:
            self._responses.move_to_end(full_key)
            if hit[0] <= time.monotonic() and full_key not in self._computing:
                self._start(full_key, compute, uses_clock, raw)
            return hit[1]
        pending = self._computing.get(full_key) or self._start(full_key, compute, uses_clock, raw)
        try:
            return await asyncio.wait_for(asyncio.shield(pending), self.view_budget)
        except TimeoutError:
            if pending.done() and not pending.cancelled():
                return pending.result()  # finished as the budget ran out
            raise ViewTooSlow(self.view_budget) from None

    async def off_loop(self, compute: Callable[[], T]) -> T:
        """``compute()`` on the projection state in a worker thread, within ``view_budget``.

        For work that is neither cached nor encoded (an access check that needs views).
        """

        async def run() -> T:
            async with self.follower.reading():
                return await asyncio.to_thread(compute)

        task = asyncio.create_task(run())
        task.add_done_callback(lambda t: None if t.cancelled() else t.exception())
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.view_budget)
        except TimeoutError:
            raise ViewTooSlow(self.view_budget) from None

    def _start(
        self, full_key: tuple[Any, ...], compute: Callable[[], Any], uses_clock: bool, raw: bool
    ) -> asyncio.Task[bytes]:
        task = asyncio.create_task(self._compute(full_key, compute, uses_clock, raw))
        self._computing[full_key] = task
        task.add_done_callback(lambda t: None if t.cancelled() else t.exception())
        return task

    async def _compute(
        self, full_key: tuple[Any, ...], compute: Callable[[], Any], uses_clock: bool, raw: bool
    ) -> bytes:
        encode: Callable[[Any], bytes] = bytes if raw else _encode
        try:
            async with self.follower.reading():
                payload = await asyncio.to_thread(lambda: encode(compute()))
            expires = time.monotonic() + self.response_ttl if uses_clock else float("inf")
            self._responses[full_key] = (expires, payload)
            while len(self._responses) > 2048:
                self._responses.popitem(last=False)
            return payload
        finally:
            self._computing.pop(full_key, None)

    @property
    def views_in_progress(self) -> int:
        """How many cached views are being computed right now (in worker threads)."""
        return len(self._computing)

    def state_as_of(self, current: ProjectionState, moment: datetime) -> ProjectionState:
        """``current`` as known at ``moment`` (a refold; the last few are cached)."""
        key = (self.follower.position, id(current), moment)
        cached = self._as_of_cache.get(key)
        if cached is not None:
            self._as_of_cache.move_to_end(key)
            return cached[1]
        state = as_of(current, moment)
        self._as_of_cache[key] = (current, state)  # holds ``current``: its id stays its own
        while len(self._as_of_cache) > 4:
            self._as_of_cache.popitem(last=False)
        return state
