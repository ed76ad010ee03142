"""A JetStream pull consumer that keeps one pull request in flight.

nats-py's ``PullSubscription.fetch`` waits for each message of a batch with its
own ``asyncio.wait_for`` (a task and a timer per message) and only asks for
the next batch when it is called again, so fetching and storing take turns.
Here the messages of a pull request land in a buffer from a subscription
callback (one task for the whole subscription), and as soon as a request is
fulfilled the next one is sent: JetStream delivers batch N+1 while the ingest
loop stores batch N. The buffer is bounded: no new request is sent while it
already holds a batch, so at most about two batches are delivered and not yet
acknowledged.

The protocol is JetStream's own (``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``
with a reply subject): a request asks for ``batch`` messages and lingers up to
``expires``; JetStream delivers messages as they come and ends an unfulfilled
request with a status message (408 when it expired, 409 for e.g. a leadership
change). Each request has its own reply subject, so a status answering an old
request is told apart from one answering the current request. A request the
server lost (a reconnect to another node) is given up on a client-side deadline.

Each message is handed to ``prepare`` as it arrives (the ingest decodes and validates
it there), so that work too is done while the previous batch is being stored.

Delivery stays at least once: a message is acknowledged by the caller after
it is stored, and a buffered message that is never acknowledged (the process
stops or dies) is redelivered by JetStream after the consumer's ``ack_wait``;
``close`` negatively acknowledges what it still holds, so another replica gets
it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

T = TypeVar("T")

_YIELD_EVERY = 32
"""Messages prepared between two yields to the event loop."""

_GRACE = 0.5
"""Seconds past a request's ``expires`` before the client stops waiting for its end."""


class PullConsumer(Generic[T]):
    """Fetch batches from a durable pull consumer with the next request already in flight."""

    def __init__(
        self,
        nc: NatsClient,
        stream: str,
        durable: str,
        prepare: Callable[[Msg], T],
        *,
        batch: int,
        expires: float,
        max_bytes: int | None = None,
    ) -> None:
        """``prepare`` must not raise: a message it fails on would only come back later.
        ``max_bytes`` bounds the bytes one request delivers (and so what is buffered: about
        two requests' worth), whatever the messages' sizes."""
        self._nc = nc
        self._prepare = prepare
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._batch = batch
        self._expires = expires
        self._max_bytes = max_bytes
        self._buffered_bytes = 0
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._buffer: list[tuple[Msg, T]] = []
        self._arrived = asyncio.Event()
        self._serial = 0
        self._current: str | None = None  # reply subject of the request in flight
        self._remaining = 0  # messages the request in flight may still deliver
        self._deadline = 0.0

    async def start(self) -> None:
        """Subscribe to this consumer's inbox and send the first request."""
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_message)
        await self._request()

    async def fetch(self, timeout: float) -> list[tuple[Msg, T]]:
        """Up to ``batch`` delivered messages, each with what ``prepare`` made of it; empty
        when none arrived within ``timeout``."""
        if self._sub is None:
            raise RuntimeError("call start() first")
        if not self._buffer:
            await self._request()
            try:
                async with asyncio.timeout(timeout):
                    while not self._buffer:
                        self._arrived.clear()
                        await self._arrived.wait()
            except TimeoutError:
                return []
        messages = self._buffer[: self._batch]
        del self._buffer[: self._batch]
        self._buffered_bytes = sum(len(message.data) for message, _ in self._buffer)
        await self._request()
        return messages

    async def close(self) -> None:
        """Stop receiving; ask JetStream to redeliver what was buffered and not handed out."""
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
            self._sub = None
        held, self._buffer = self._buffer, []
        self._buffered_bytes = 0
        for message, _ in held:
            with contextlib.suppress(nats.errors.Error):
                await message.nak()

    async def _request(self) -> None:
        """Send a pull request unless one is in flight or a batch is already buffered."""
        if self._sub is None or len(self._buffer) >= self._batch:
            return
        if self._max_bytes is not None and self._buffered_bytes >= self._max_bytes:
            return
        if self._current is not None and time.monotonic() < self._deadline:
            return
        self._serial += 1
        self._current = f"{self._inbox}.{self._serial}"
        self._remaining = self._batch
        self._deadline = time.monotonic() + self._expires + _GRACE
        payload = {"batch": self._batch, "expires": int(self._expires * 1e9)}
        if self._max_bytes is not None:
            payload["max_bytes"] = self._max_bytes
        try:
            await self._nc.publish(self._next_subject, json.dumps(payload).encode(), self._current)
        except nats.errors.Error:
            self._current = None  # not connected: the next fetch asks again
            raise

    async def _on_message(self, msg: Msg) -> None:
        if msg.reply:  # a stream message (its reply subject is the ack subject)
            self._buffer.append((msg, self._prepare(msg)))
            self._buffered_bytes += len(msg.data)
            if len(self._buffer) % _YIELD_EVERY == 0:
                # nats-py hands queued messages over without yielding: let the caller's
                # store round trips go on between slices of a long backlog.
                await asyncio.sleep(0)
            self._arrived.set()
            self._remaining -= 1
            if self._remaining <= 0 and self._current is not None:
                self._current = None
                await self._request()
            return
        # A status: 408 the request expired, 409 it ended for another reason, 100 heartbeat.
        status = msg.headers.get("Status") if msg.headers else None
        if status == "100" or msg.subject != self._current:
            return  # a heartbeat, or the end of a request we no longer wait for
        self._current = None
        description = msg.headers.get("Description") if msg.headers else None
        if status in ("404", "408") or (
            status == "409" and "MaxBytes" in (description or "")  # its byte budget is used
        ):
            await self._request()  # it expired: ask again at once
        else:
            # e.g. 409 a leadership change, 503 no consumer: the next fetch asks again.
            log.warning("pull request ended with status %s %s", status, description)
