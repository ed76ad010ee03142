"""Pull: answer ``milepost.pull.<person>`` requests with pages of what that person may see.

Authorization is by subject: nats-server lets only ``<person>`` publish on
``milepost.pull.<person>`` (see ``server.nats_embedded``), so the person in the
subject is the asker, whatever the request body says. Replies go only to the
asker's own inbox (``reply_allowed``): a request naming any other reply subject
is dropped unanswered and counted.

The responder subscribes with a queue group, so several server replicas
share the requests. Each request is answered in its own task (bounded, and fair
across people: see ``PullResponder``), so one slow page, or one person's flood
of requests, does not hold up other devices.

One page (``answer``):

1. ``head`` = the highest committed position, read first;
2. if something became visible to the person after ``request.checked`` at a
   position at or before the cursor (``ServerStore.reveal_floor``), the page
   starts just before it (``rescan_from``) instead of at the cursor. A device
   paging through a backlog (full pages) has this check deferred to the page
   that catches up, or made every ``RECHECK_SPAN`` positions: its ``checked``
   stays as it was meanwhile, so the one check covers the whole backlog;
3. up to ``limit`` events visible now, in position order, cut so the reply
   stays under the connection's max payload;
4. a full (or cut) page continues after its last event (``more``); a short
   page covered everything committed up to ``head``, so the cursor moves to
   ``head`` even past events the person may not see;
5. the page's *referents*: for its events, every event they name that the server
   accepted and the person may not see (``ServerStore.vouched``), by actor and type
   only, so the device's fold can judge them (docs/security.md "Referents"). Only
   the references of ``projections.ownership.ELSEWHERE`` can name such an event; a
   page without any costs nothing more.

Positions are dense and assigned in commit order, so a cursor never passes an
event still being committed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from events.wire import (
    EVENT_OVERHEAD,
    MAX_PULL_LIMIT,
    MAX_REFERENTS,
    REFERENT_OVERHEAD,
    REPLY_OVERHEAD,
    PullReply,
    PullRequest,
    WireError,
    WireEvent,
    WireReferent,
    decode_request,
    encode_reply,
)
from projections.ownership import ELSEWHERE, REACTIONS, Referent
from server.nats_embedded import PULL_PREFIX, inbox_prefix
from server.store.protocol import ServerStore, StoredEvent

QUEUE_GROUP = "milepost-pull"
DEFAULT_MAX_PAYLOAD = 1024 * 1024
MAX_REFUSALS = 100
"""Refusals per reply at most (a device asks again after the last one it got)."""
SERVICE_IMPORT_REPLY_PREFIX = "_R_."
"""The reply subjects nats-server gives requests that crossed a service import."""
RECHECK_SPAN = 50_000
"""A device paging through a backlog has its reveals checked at least this often
(positions), even while every page is full."""

log = logging.getLogger(__name__)


def pull_person(subject: str) -> str | None:
    """The person in ``milepost.pull.<person>``, or None for any other subject."""
    prefix = PULL_PREFIX + "."
    if not subject.startswith(prefix):
        return None
    person = subject[len(prefix) :]
    return person if person and "." not in person else None


async def answer(
    store: ServerStore,
    person: str,
    request: PullRequest,
    *,
    max_bytes: int = DEFAULT_MAX_PAYLOAD,
    max_limit: int = MAX_PULL_LIMIT,
    head_hint: int = 0,
) -> PullReply:
    """One page of the events ``person`` may see now (see the module docstring), and on
    the page that catches up, the person's refusals after ``request.refusals_after``."""
    reply = await _events_page(
        store, person, request, max_bytes=max_bytes, max_limit=max_limit, head_hint=head_hint
    )
    if reply.more or reply.error is not None:
        return reply
    refusals = await store.refusals(person, request.refusals_after, MAX_REFUSALS)
    return msgspec.structs.replace(reply, refusals=refusals) if refusals else reply


async def _events_page(
    store: ServerStore,
    person: str,
    request: PullRequest,
    *,
    max_bytes: int,
    max_limit: int,
    head_hint: int,
) -> PullReply:
    """One page of the events ``person`` may see now (see the module docstring).

    ``head_hint`` is a recent ``head`` (the responder passes the highest it has seen):
    when it says the device is far behind, the page is read together with ``head``,
    as a full page needs ``head`` for nothing but the reply's information."""
    after = request.after
    limit = min(request.limit, max_limit)
    if after > 0 and head_hint - after > limit and head_hint - request.checked <= RECHECK_SPAN:
        # Probably a full page of a backlog: read ``head`` and the page together (one wait
        # behind the ingest transactions instead of two). Only a full page may be served
        # so: its cursor is its last event and ``checked`` stays as it was, whichever of
        # the two reads came first. A short page is read again the careful way below.
        head, stored = await asyncio.gather(
            store.max_position(), store.visible_events_after(person, after, limit)
        )
        if len(stored) == limit:
            named, known = await _vouched(store, person, stored)
            return _page(stored, head, after, limit, request.checked, None, max_bytes, named, known)
    head = await store.max_position()  # first: every position <= head is committed
    if request.checked >= head or after <= 0:
        # Nothing stored after ``checked``, or nothing delivered yet: nothing to reveal.
        floor, stored, checked = None, await store.visible_events_after(person, after, limit), head
    elif head - after <= limit or head - request.checked > RECHECK_SPAN:
        # A short page (or a long-deferred check): look for reveals. Both are read after
        # ``head``; asked together they wait for the store once, not twice.
        floor, stored = await asyncio.gather(
            store.reveal_floor(person, request.checked, after),
            store.visible_events_after(person, after, limit),
        )
        checked = head
    else:
        # Probably a full page: a device paging through a backlog. The reveal check is
        # left to the page that catches up (``checked`` stays as it was), so it is made
        # once over the whole backlog instead of once per page.
        floor, stored, checked = None, await store.visible_events_after(person, after, limit), 0
        if len(stored) < limit:  # short after all (the person sees little of it): check
            floor, checked = await store.reveal_floor(person, request.checked, after), head
    rescan_from: int | None = None
    if floor is not None and floor <= after:
        after = rescan_from = floor - 1
        stored = await store.visible_events_after(person, after, limit)
    named, known = await _vouched(store, person, stored)
    return _page(
        stored,
        head,
        after,
        limit,
        max(checked, request.checked),
        rescan_from,
        max_bytes,
        named,
        known,
    )


class _NamedBody(msgspec.Struct):
    """The fields of ``ELSEWHERE`` (tests/unit/test_referents.py checks it covers them)."""

    key_result: str | None = None
    objective: str | None = None
    completion: str | None = None


class _Named(msgspec.Struct):
    body: _NamedBody


_named_decoder = msgspec.json.Decoder(_Named)
_REACTION_TAGS = frozenset(body.__struct_config__.tag for body in REACTIONS)
_NO_NAMES: tuple[str, ...] = ()


def _named_elsewhere(person: str, item: StoredEvent) -> tuple[str, ...]:
    """The ids ``item`` names that ``person`` may not see even though they see ``item``
    (``ELSEWHERE``; of the person's own events, only their reactions': everything else
    they name is theirs)."""
    fields = ELSEWHERE.get(item.type)
    if fields is None or (item.actor == person and item.type not in _REACTION_TAGS):
        return _NO_NAMES
    try:
        body = _named_decoder.decode(item.raw).body
    except msgspec.MsgspecError:  # pragma: no cover - stored events decoded at ingest
        return _NO_NAMES
    # What names the event's own root is visible with it (a milestone planned or relinked
    # under the objective it is under now): only the rest is asked about.
    root = item.root_id
    return tuple(
        ref for field in fields if isinstance(ref := getattr(body, field), str) and ref != root
    )


async def _vouched(
    store: ServerStore, person: str, stored: list[StoredEvent]
) -> tuple[list[tuple[str, ...]], dict[str, Referent]]:
    """For each event of ``stored`` the ids it names elsewhere, and what the store vouches
    for of those the person may not see."""
    named = [
        _named_elsewhere(person, item) if item.type in ELSEWHERE else _NO_NAMES for item in stored
    ]
    wanted = {ref for refs in named for ref in refs}
    if wanted:
        wanted.difference_update(item.id for item in stored)
    return named, (await store.vouched(person, wanted) if wanted else {})


def _page(
    stored: list[StoredEvent],
    head: int,
    after: int,
    limit: int,
    checked: int,
    rescan_from: int | None,
    max_bytes: int,
    named: list[tuple[str, ...]],
    known: dict[str, Referent],
) -> PullReply:
    """The reply for ``stored`` (the page's events read after ``after``) with the referents
    of what they name (``named``, ``known``), cut to the byte budget and ``MAX_REFERENTS``;
    a short page moves the cursor to ``head``."""
    budget = max_bytes - REPLY_OVERHEAD
    events: list[WireEvent] = []
    referents: list[WireReferent] = []
    vouched: set[str] = set()
    used = 0
    for item, refs in zip(stored, named, strict=True):
        size = len(item.raw) + EVENT_OVERHEAD
        fresh: list[WireReferent] = []
        if known and refs:
            for ref in refs:
                target = known.get(ref)
                if target is not None and ref not in vouched:
                    vouched.add(ref)
                    fresh.append(WireReferent(ref, target.actor, target.type))
                    size += len(ref) + len(target.actor) + len(target.type) + REFERENT_OVERHEAD
        if events and (used + size > budget or len(referents) + len(fresh) > MAX_REFERENTS):
            break
        used += size
        events.append(WireEvent(item.position, item.raw))
        referents.extend(fresh)
    cut = len(events) < len(stored)
    if cut or len(stored) == limit:
        next_after, more = events[-1].position, True
    else:
        last = events[-1].position if events else after
        next_after, more = max(head, last, after), False
    return PullReply(
        events=events,
        next_after=next_after,
        more=more,
        head=head,
        checked=checked,
        rescan_from=rescan_from,
        referents=referents,
    )


def reply_allowed(person: str, reply: str) -> bool:
    """Whether a pull by ``person`` may be answered on ``reply``: their own inbox
    (``_INBOX_<person>.…``), or a reply subject nats-server made for a request that
    crossed from the person's account into the service's (``_R_.…``, delivered back
    into the requester's account only; see ``server.nats_embedded``). Anything else
    (``milepost.poke.<other>``, ``_INBOX_<other>.x``) would make the server publish
    where the requester may not."""
    return reply.startswith((inbox_prefix(person) + ".", SERVICE_IMPORT_REPLY_PREFIX))


class PullResponder:
    """Serves pull requests on ``milepost.pull.*`` in a queue group until stopped.

    Fair across people: requests wait in one queue per person and are started in
    turn (round robin over the people with requests waiting), at most
    ``per_person`` of one person's at a time and ``concurrency`` in all. Two per
    person: an answer may hold two store connections at once (``answer`` reads the
    head and the page together), and one person must not take the whole pool
    (PostgreSQL: 8), where waiting is not first come, first served. A person
    with more than ``max_queued`` requests waiting has the newest answered at once
    with an error (``busy``: their device retries), so a flood from one person
    costs everyone else at most one turn and the server a bounded queue."""

    def __init__(
        self,
        nc: NatsClient,
        store: ServerStore,
        *,
        queue: str = QUEUE_GROUP,
        concurrency: int = 8,
        per_person: int = 2,
        max_queued: int = 64,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        """``on_refused(reason)`` is called for every request dropped or refused here."""
        self._nc = nc
        self._store = store
        self._queue = queue
        self._concurrency = concurrency
        self._per_person = max(1, per_person)
        self._max_queued = max(1, max_queued)
        self._on_refused = on_refused
        self._waiting: dict[str, collections.deque[Msg]] = {}
        self._turns: collections.deque[str] = collections.deque()  # people with requests waiting
        self._running: collections.Counter[str] = collections.Counter()
        self._active = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub: Any = None
        self.answered = 0
        self.failed = 0
        self.refused_replies = 0
        self.busy = 0
        self._head = 0  # the highest head an answer saw (a hint: see ``answer``)

    async def start(self) -> None:
        """Subscribe (idempotent)."""
        if self._sub is None:
            self._sub = await self._nc.subscribe(
                f"{PULL_PREFIX}.*", queue=self._queue, cb=self._on_message
            )

    async def stop(self) -> None:
        """Unsubscribe and finish the requests in hand (those still waiting are dropped:
        their devices time out and ask again)."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._waiting.clear()
        self._turns.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _refuse(self, reason: str) -> None:
        log.warning("pull request dropped: %s", reason)
        if self._on_refused is not None:
            self._on_refused(reason)

    async def _on_message(self, msg: Msg) -> None:
        person = pull_person(msg.subject)
        if person is None:
            self.failed += 1
            self._refuse(f"subject {msg.subject!r} names no person")
            return
        if not msg.reply:
            return  # nobody to answer
        if not reply_allowed(person, msg.reply):
            # Never publish where the requester may not: no answer at all.
            self.refused_replies += 1
            self._refuse(f"pull by {person!r} asked for its reply on {msg.reply!r}")
            return
        waiting = self._waiting.get(person)
        if waiting is None:
            waiting = self._waiting[person] = collections.deque()
        if len(waiting) >= self._max_queued:
            self.busy += 1
            if self._on_refused is not None:  # not logged: a flood would flood the log
                self._on_refused(f"{person!r} has {len(waiting)} pull requests waiting")
            busy = PullReply(error=f"too many pull requests from {person} at once; try again")
            await self._nc.publish(msg.reply, encode_reply(busy))
            return
        if not waiting and self._running[person] < self._per_person:
            self._turns.append(person)
        waiting.append(msg)
        self._dispatch()

    def _dispatch(self) -> None:
        """Start waiting requests, one person's at a time in turn, while slots are free."""
        while self._active < self._concurrency and self._turns:
            person = self._turns.popleft()
            waiting = self._waiting[person]
            msg = waiting.popleft()
            self._running[person] += 1
            self._active += 1
            task = asyncio.create_task(self._serve(person, msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            if not waiting:
                del self._waiting[person]
            elif self._running[person] < self._per_person:
                self._turns.append(person)  # back of the line

    def _finished(self, person: str) -> None:
        self._active -= 1
        self._running[person] -= 1
        if not self._running[person]:
            del self._running[person]
        waiting = self._waiting.get(person)
        # At the cap, the person had left the turns: back in line now that one finished.
        if waiting and self._running[person] == self._per_person - 1 and person not in self._turns:
            self._turns.append(person)
        self._dispatch()

    async def _serve(self, person: str, msg: Msg) -> None:
        try:
            reply = await self._reply_for(person, msg)
            await self._nc.publish(msg.reply, encode_reply(reply))
        except Exception:
            log.exception("pull request on %s failed", msg.subject)
        finally:
            self._finished(person)

    async def _reply_for(self, person: str, msg: Msg) -> PullReply:
        try:
            request = decode_request(msg.data)
        except WireError as exc:
            self.failed += 1
            return PullReply(error=str(exc))
        max_bytes = int(getattr(self._nc, "max_payload", 0) or DEFAULT_MAX_PAYLOAD)
        try:
            reply = await answer(
                self._store, person, request, max_bytes=max_bytes, head_hint=self._head
            )
        except Exception:
            self.failed += 1
            log.exception("pull for %s failed", person)
            return PullReply(error="the server's store is unavailable; try again")
        self.answered += 1
        self._head = max(self._head, reply.head)
        return reply
