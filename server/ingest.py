"""Ingest: read the JetStream stream with a durable pull consumer, store, then ack.

One batch is: take up to ``batch_size`` delivered messages, each already decoded
and its actor checked against the person in its subject as it arrived (a
``PullConsumer`` keeps the next pull request in flight, so the next batch is
delivered and validated while this one is stored); ``append_batch`` everything
in one transaction (invalid messages become dead letters in that same
transaction); only after the commit, acknowledge every message; then poke
everyone who can see what was stored. A crash between commit and ack means
redelivery, which the store's idempotent append (event id is the key, forever)
turns into duplicates: delivery is at least once, the effect exactly once. This also
makes several server processes sharing the consumer safe.

Acks are explicit, one per message, and not awaited one by one: nats-py's
``Msg.ack`` only queues a publish, and one ``flush`` per batch sends them all.
``AckAll`` would need just one ack, but it acknowledges every earlier sequence
of the consumer, including messages another process fetched and has not stored
yet; with shared consumers that could lose events, so we do not use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from events.clock import clock_ahead_reason, wall_ms
from events.codec import MAX_EVENT_BYTES
from events.wire import EVENTS_PREFIX, encode_poke, subject_person
from events.wire import Poke as Poke  # re-exported: the wire protocol's poke
from projections.ownership import ADMIN
from server.consumer import PullConsumer
from server.limits import RATE_LIMITED, PersonLimiter
from server.nats_embedded import poke_subject
from server.store.protocol import AppendResult, Incoming, ServerStore, StoredEvent

STREAM = "MILEPOST_EVENTS"
CONSUMER = "milepost-ingest"
DUPLICATE_WINDOW_SECONDS = 120.0
ADMIN_PERSON = ADMIN
"""The actor and subject person of membership events (``projections.ownership.ADMIN``); a
reserved name no person can take, so only the service user can publish under
``milepost.events.admin.>``."""

BATCH_SIZE = 5000
"""Messages per transaction at most. Per event, a larger batch costs fewer round trips and
commits, and (what grows with the tables) dirties fewer distinct index pages per insert:
at 200k stored events 5000 ingested about 1.6x faster than 2000 into either store. Under
light load a batch is whatever has arrived, so this bounds only a backlog's batches."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What one ingest round did."""

    fetched: int
    stored: int
    duplicates: int
    dead_lettered: int
    poked: frozenset[str]
    committed: tuple[StoredEvent, ...] = ()
    """The events this round stored, in position order (``AppendResult.stored``)."""
    incoming: tuple[Incoming, ...] = ()
    """What the round appended, already decoded: lets the projection follower fold
    ``committed`` without reading it back and decoding it again."""
    rate_limited: int = 0
    """Messages of this round refused by the per-person limits (dead-lettered, retryable)."""


EMPTY_REPORT = BatchReport(0, 0, 0, 0, frozenset())


def _is_rate_limited(incoming: Incoming) -> bool:
    return incoming.error is not None and incoming.error.startswith(RATE_LIMITED)


Delivered = tuple[Msg, Incoming]
"""A delivered message and what validating it gave (validated as it arrived)."""


def _validated(message: Msg, wall: Callable[[], int] = wall_ms) -> Incoming:
    """``validate`` for a message as it arrives; anything unexpected dead-letters it."""
    try:
        return validate(message.data, message.subject, wall())
    except Exception as exc:  # a decoder bug must not make a message undeliverable
        log.exception("validating a message failed")
        reason = f"could not be validated: {exc!r}"
        return Incoming.rejected(message.data, reason, message.subject)


def validate(raw: bytes, subject: str, now_ms: int | None = None) -> Incoming:
    """Decode one message; check its actor against the person in its subject and its clock
    against the server's wall clock ``now_ms`` (at most ``MAX_CLOCK_AHEAD_MS`` ahead)."""
    incoming = Incoming.from_raw(raw, subject)
    if incoming.event is None:
        return incoming
    person = subject_person(subject)
    if person is None:
        return Incoming.rejected(raw, f"subject {subject!r} names no person", subject)
    if incoming.event.actor != person:
        reason = f"actor {incoming.event.actor!r} does not match subject person {person!r}"
        return Incoming.rejected(raw, reason, subject)
    now = wall_ms() if now_ms is None else now_ms
    if (ahead := clock_ahead_reason(incoming.event.clock, now)) is not None:
        return Incoming.rejected(raw, ahead, subject)  # see events.clock.MAX_CLOCK_AHEAD_MS
    return incoming


DEFAULT_STREAM_MAX_BYTES = 1024**3
"""What ``milepost-server run`` lets wait in the stream, not yet ingested (1 GiB)."""
DEFAULT_MAX_MESSAGE_BYTES = MAX_EVENT_BYTES + 4096
"""The largest message the stream takes: the codec's largest event plus room for headers."""


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """The operator's limits on the event stream (``milepost-server run`` flags).

    The stream keeps a message only until every consumer (the ingest's durable) has
    acknowledged it (interest retention), so ``max_bytes`` bounds the backlog waiting
    to be ingested, not the history. When it is full, or a message is larger than
    ``max_message_bytes``, JetStream refuses the publish (discard *new*): the device
    gets an error instead of an ack, keeps the event and pushes it again later. Old
    messages are never discarded to make room, so an acknowledged push is never lost.
    """

    max_bytes: int = DEFAULT_STREAM_MAX_BYTES
    """-1: no limit."""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """-1: nats-server's own limit (its max_payload)."""


async def ensure_stream(
    nc: NatsClient,
    *,
    replicas: int | None = None,
    duplicate_window: float = DUPLICATE_WINDOW_SECONDS,
    limits: StreamLimits | None = None,
) -> None:
    """Create the event stream, or update it to our settings if it exists.

    ``replicas`` is the stream's replica count (3 on a three-node cluster). None
    creates it with one replica and keeps an existing stream's count, so a process
    started without the flag never scales a replicated stream down.

    ``limits`` (see ``StreamLimits``) also switch the stream to interest retention.
    A stream created here starts with limits retention either way: an interest
    stream drops what is published while it has no consumer, and the ingest's
    consumer is created just after (``IngestWorker``), which then applies the limits.
    Without ``limits`` the stream keeps its retention and has no limits.
    """
    js = nc.jetstream()
    try:
        info = await js.stream_info(STREAM)
    except nats.js.errors.NotFoundError:
        await js.add_stream(_stream_config(replicas or 1, duplicate_window, None))
    else:
        current = info.config.num_replicas or 1
        keep = info.config.retention or RetentionPolicy.LIMITS
        await js.update_stream(_stream_config(replicas or current, duplicate_window, limits, keep))


def _stream_config(
    replicas: int,
    duplicate_window: float,
    limits: StreamLimits | None,
    retention: RetentionPolicy = RetentionPolicy.LIMITS,
) -> StreamConfig:
    config = StreamConfig(
        name=STREAM,
        subjects=[f"{EVENTS_PREFIX}.>"],
        storage=StorageType.FILE,
        duplicate_window=duplicate_window,
        num_replicas=replicas,
        retention=retention,
    )
    if limits is not None:
        config.retention = RetentionPolicy.INTEREST
        config.max_bytes = limits.max_bytes
        config.max_msg_size = limits.max_message_bytes
        config.discard = DiscardPolicy.NEW
    return config


class IngestWorker:
    """One ingest loop; run several (in one or many processes) on the same durable."""

    def __init__(
        self,
        nc: NatsClient,
        store: ServerStore,
        *,
        durable: str = CONSUMER,
        batch_size: int = BATCH_SIZE,
        fetch_timeout: float = 1.0,
        ack_wait: float = 30.0,
        replicas: int | None = None,
        limiter: PersonLimiter | None = None,
        stream_limits: StreamLimits | None = None,
        max_batch_bytes: int | None = None,
        wall: Callable[[], int] = wall_ms,
    ) -> None:
        """``replicas``: the event stream's replica count (see ``ensure_stream``);
        ``limiter``: per-person rate limits (``server.limits``), checked as each message
        arrives, before it is decoded; ``stream_limits``: see ``StreamLimits``;
        ``max_batch_bytes``: the bytes one pull request may deliver (bounds memory when
        messages are large); ``wall``: the clock stamps are judged against (Unix ms; a
        benchmark replaying a history dated ahead of today passes the history's own time)."""
        self._nc = nc
        self._wall = wall
        self._replicas = replicas
        self._limiter = limiter
        self._stream_limits = stream_limits
        self._max_batch_bytes = max_batch_bytes
        self._store = store
        self._durable = durable
        self._batch_size = batch_size
        self._fetch_timeout = fetch_timeout
        self._ack_wait = ack_wait
        self._consumer: PullConsumer[Incoming] | None = None

    async def start(self, setup_timeout: float = 60.0) -> None:
        """Create the stream and the durable consumer if needed, and bind to it.

        A cluster that is (re)starting answers JetStream requests only once it has
        elected its leaders: until then requests time out or report no responders,
        so setup is retried with backoff for up to ``setup_timeout`` seconds.
        """
        deadline = asyncio.get_running_loop().time() + setup_timeout
        delay = 0.2
        while True:
            try:
                await self._setup()
                break
            except (
                nats.errors.TimeoutError,
                nats.errors.NoRespondersError,
                nats.js.errors.ServiceUnavailableError,
            ) as exc:
                if asyncio.get_running_loop().time() + delay > deadline:
                    raise
                log.warning("JetStream not ready (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 3.0)
        self._consumer = PullConsumer(
            self._nc,
            STREAM,
            self._durable,
            self._prepare,
            batch=self._batch_size,
            expires=max(self._fetch_timeout, 0.5),
            max_bytes=self._max_batch_bytes,
        )
        await self._consumer.start()

    def _prepare(self, message: Msg) -> Incoming:
        """As a message arrives: the person's limits first (a refused message is not
        decoded, and its bytes are not kept), then ``validate``."""
        if self._limiter is not None:
            person = subject_person(message.subject)
            if person is not None:
                reason = self._limiter.admit(person, len(message.data))
                if reason is not None:
                    # Not the bytes (a flood must not fill the disk), but the event id its
                    # device gave as ``Nats-Msg-Id``, so the device learns which to push again.
                    # (a push again names its attempt after the id: ``<id>.<n>``)
                    msg_id = (message.headers or {}).get("Nats-Msg-Id", "")[:36]
                    stub = msgspec.json.encode({"id": msg_id}) if msg_id else b""
                    return Incoming.rejected(stub, reason, message.subject)
        return _validated(message, self._wall)

    async def _setup(self) -> None:
        await ensure_stream(self._nc, replicas=self._replicas)
        js = self._nc.jetstream()
        config = ConsumerConfig(
            durable_name=self._durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self._ack_wait,
            max_ack_pending=max(20_000, self._batch_size * 4),
            filter_subject=f"{EVENTS_PREFIX}.>",
        )
        try:
            await js.consumer_info(STREAM, self._durable)
        except nats.js.errors.NotFoundError:
            # Creating an existing consumer with the same settings is a no-op, so two
            # servers starting together are fine.
            await js.add_consumer(STREAM, config)
        if self._stream_limits is not None:
            # Now that the consumer exists, the stream may keep only what it has not
            # acknowledged (see ``ensure_stream``).
            await ensure_stream(self._nc, replicas=self._replicas, limits=self._stream_limits)

    async def close(self) -> None:
        """Stop fetching; messages fetched but not handed out are redelivered at once."""
        if self._consumer is not None:
            await self._consumer.close()
            self._consumer = None

    async def fetch(self) -> list[Delivered]:
        """Up to one batch of messages (empty when none arrived within the timeout)."""
        if self._consumer is None:
            raise RuntimeError("call start() first")
        return await self._consumer.fetch(self._fetch_timeout)

    async def store_batch(self, delivered: list[Delivered]) -> AppendResult:
        """Append one batch of validated messages in one transaction (no ack)."""
        return await self._store.append_batch([incoming for _, incoming in delivered])

    async def run_once(self) -> BatchReport:
        """Fetch, store, ack, poke: one round."""
        delivered = await self.fetch()
        if not delivered:
            return EMPTY_REPORT
        return await self._settle(delivered, await self._append(delivered))

    async def _append(self, delivered: list[Delivered]) -> AppendResult:
        """``store_batch``; when it fails, ask for every message to be redelivered."""
        try:
            return await self.store_batch(delivered)
        except Exception:
            # The store is broken, not the messages: ask for redelivery a bit later.
            log.exception("append failed; %d messages will be redelivered", len(delivered))
            for message, _ in delivered:
                with contextlib.suppress(nats.errors.Error):
                    await message.nak(delay=1.0)
            raise

    async def _settle(self, delivered: list[Delivered], result: AppendResult) -> BatchReport:
        """After the commit: acknowledge every message and poke, then flush both.

        Pokes are queued before the flush: if the connection drops now, nats-py sends
        what is queued once it reconnects, so the devices are still told (the acks may
        be lost, and the redelivered messages are then duplicates that poke no one)."""
        for message, _ in delivered:
            await message.ack()  # queued, not a round trip
        poked = await self.poke(result)
        await self._nc.flush()
        return BatchReport(
            len(delivered),
            len(result.stored),
            len(result.duplicates),
            result.dead_lettered,
            frozenset(poked),
            result.stored,
            tuple(incoming for _, incoming in delivered),
            sum(1 for _, incoming in delivered if _is_rate_limited(incoming)),
        )

    async def poke(self, result: AppendResult) -> set[str]:
        """Tell every person who may see something of this batch its new max position."""
        if not result.stored or result.last_position is None:
            return set()
        roots = {event.root_id for event in result.stored if event.root_id is not None}
        teams = {event.team for event in result.stored if event.team is not None}
        people = await self._store.audience(roots, teams)
        people.update(event.actor for event in result.stored)
        payload = encode_poke(Poke(result.last_position))
        for person in people:
            await self._nc.publish(poke_subject(person), payload)
        return people

    async def run(
        self,
        stop: asyncio.Event,
        on_report: Callable[[BatchReport], None] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        """Ingest until ``stop`` is set (the batch in hand is settled first), then ``close``.

        ``on_report`` is called after each round (committed, acknowledged, poked);
        ``on_failure`` when a round fails (its messages are redelivered), before a pause.
        The next batch is delivered and validated while one is stored (``PullConsumer``).
        Acknowledging and poking one batch while storing the next was measured slower:
        the next batch is then taken smaller, and the audience query competes with it.
        """
        try:
            while not stop.is_set():
                try:
                    report = await self.run_once()
                except Exception:
                    log.exception("ingest round failed; retrying")
                    if on_failure is not None:
                        on_failure()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
                    continue
                if on_report is not None:
                    on_report(report)
        finally:
            await self.close()
