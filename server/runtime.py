"""``milepost-server run``: store, NATS, ingest, projections and HTTP in one asyncio process.

Start order: store and accounts (migrations) → NATS (the embedded child, or an
external URL) → ingest consumer → initial fold of every stored event → HTTP.
Stop order on SIGINT/SIGTERM: stop fetching (the batch in hand is stored and
acknowledged first) → end live streams and stop HTTP → close NATS → stop the
child nats-server by pid → close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
import uvicorn
from nats.aio.client import Client as NatsClient

from server import home as server_home
from server.accounts import open_accounts
from server.http import ServerContext, TokenVerifier, create_app
from server.ingest import (
    ADMIN_PERSON,
    CONSUMER,
    STREAM,
    BatchReport,
    IngestWorker,
    StreamLimits,
)
from server.limits import IngestLimits, PersonLimiter
from server.metrics import IngestCounters, SnapshotStats
from server.nats_cluster import SERVICE_PASSWORD_ENV
from server.nats_embedded import (
    DEFAULT_MONITOR_HOST,
    SERVICE_USER,
    EmbeddedNats,
    hash_password,
    new_password,
)
from server.projection import ProjectionFollower
from server.pull import PullResponder
from server.snapshots import SnapshotStore, open_snapshots
from server.snapshots import service as snapshotting
from server.snapshots.refresh import RefreshStats, refresh_periodically
from server.store import ServerStore, open_store
from server.working_set import SNAPSHOT_AFTER, WorkingSet

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 100_000
"""Events folded since the newest snapshot of all history before a new one is due."""

MAX_BATCH_BYTES = 16 * 1024 * 1024
"""The bytes one ingest pull request may deliver: what bounds the ingest's memory when a
person floods the stream with large messages (a batch is also at most 5000 messages)."""


@dataclass(frozen=True)
class RunOptions:
    """What ``run`` was asked for; None means the embedded default."""

    home: Path
    database: str | None = None
    nats: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    nats_port: int | None = None
    stream_replicas: int | None = None
    """The events stream's replica count (3 on a three-node cluster); None keeps it."""
    ack_wait: float = 30.0
    """Seconds before a batch a crashed replica fetched but never acked is redelivered."""
    monitor_host: str = DEFAULT_MONITOR_HOST
    """Where the embedded nats-server's monitoring port listens (loopback by default:
    it has no authentication and lists users, addresses and inbox subscriptions)."""
    limits: IngestLimits | None = field(default_factory=IngestLimits)
    """Per-person rate limits at ingest (``server.limits``); None: none."""
    stream_limits: StreamLimits | None = field(default_factory=StreamLimits)
    """The event stream's limits (``server.ingest.StreamLimits``); None: none."""
    snapshots: bool = True
    """Start from the newest valid snapshot, take them as events arrive and at a clean stop."""
    snapshot_every_events: int | None = None
    """Take a snapshot once this many events were folded since the newest one (None: every
    100,000; with a working set, each partition every ``working_set.SNAPSHOT_AFTER``)."""
    snapshot_every_seconds: float = 600.0
    """... or once this long passed with any event folded since."""
    memory_budget_bytes: int | None = None
    """Hold a working set of partitions within this many bytes (``server.working_set``)
    instead of all history; snapshots are then of partitions only."""
    partition_snapshot_seconds: float = 3600.0
    """With a working set and snapshots: how often a child process snapshots every stale
    partition (``server.snapshots.refresh``); 0: never."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve`` owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def public_url(url: str) -> str:
    """``url`` without credentials (what clients are told)."""
    parts = urlsplit(url)
    if parts.hostname is None:
        return url
    netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _busy(host: str, port: int, flag: str) -> str:
    return (
        f"cannot listen on {host}:{port}: the port is in use (another milepost-server?);"
        f" stop it, or choose another with {flag} N ({flag} 0: any free port)"
    )


def _bind(host: str, port: int, flag: str = "--port") -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP;
    # without it Nagle's algorithm meets delayed ACKs and every response waits ~40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(_busy(host, port, flag)) from None
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


async def _ingest_loop(
    worker: IngestWorker,
    follower: ProjectionFollower,
    counters: IngestCounters,
    stop: asyncio.Event,
) -> None:
    """Fetch → store → ack → poke, batch after batch; a stop request ends between batches."""

    def settled(report: BatchReport) -> None:
        counters.add(report)
        # Hand the follower what was just stored, already decoded; it reads from the
        # store only when the batch does not follow on from its position.
        if report.stored and not follower.offer(report.committed, report.incoming):
            follower.poke()

    def failed() -> None:
        counters.failures += 1

    await worker.run(stop, on_report=settled, on_failure=failed)


def _consumer_lag(nc: NatsClient) -> Callable[[], Any]:
    async def lag() -> int | None:
        try:
            info = await asyncio.wait_for(nc.jetstream().consumer_info(STREAM, CONSUMER), 1.0)
        except Exception:
            return None
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    return lag


async def serve(options: RunOptions, announce: Callable[[str, str], None]) -> int:
    """Run until SIGINT/SIGTERM; ``announce(http_url, nats_url)`` once listening. Returns 0."""
    home = server_home.secure_home(options.home)
    database = options.database or server_home.default_database(home)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        store = open_store(database)
        await store.open()
        stack.push_async_callback(store.close)
        accounts = open_accounts(database)
        await accounts.open()
        stack.push_async_callback(accounts.close)
        server_home.restrict_database(database)  # everyone's private events, credential hashes

        http_port = server_home.choose_port(
            home, "http", options.port, server_home.DEFAULT_HTTP_PORT, options.host
        )
        sock = _bind(options.host, http_port, "--port")
        stack.callback(sock.close)
        http_port = int(sock.getsockname()[1])

        embedded: EmbeddedNats | None = None
        service_hash: str | None = None
        if options.nats is not None:
            # A cluster is given as comma-separated URLs; each may carry the service login.
            servers = [url.strip() for url in options.nats.split(",") if url.strip()]
            # A URL without a login uses the service user and $MILEPOST_NATS_PASSWORD,
            # so the password need not appear on the command line (visible in `ps`).
            login: dict[str, str] = {}
            service_password = os.environ.get(SERVICE_PASSWORD_ENV)
            if service_password and all(urlsplit(url).username is None for url in servers):
                login = {"user": SERVICE_USER, "password": service_password}
            nc = await nats.connect(
                servers, name="milepost-server", max_reconnect_attempts=-1, **login
            )
            nats_url = ",".join(public_url(url) for url in servers)
        else:
            nats_port = server_home.choose_port(
                home, "nats", options.nats_port, server_home.DEFAULT_NATS_PORT, options.host
            )
            if nats_port != 0 and not server_home.port_is_free(options.host, nats_port):
                raise OSError(_busy(options.host, nats_port, "--nats-port"))
            password = new_password()
            service_hash = hash_password(password)
            people = {p.name: p.nats_password_hash for p in await accounts.people()}
            embedded = EmbeddedNats(
                server_home.nats_dir(home),
                service_password=password,
                people=people,
                host=options.host,
                port=nats_port,
                monitor_host=options.monitor_host,
            )
            await embedded.astart()
            stack.push_async_callback(embedded.astop)
            nc = await nats.connect(
                embedded.url, user=SERVICE_USER, password=password, name="milepost-server"
            )
            nats_url = embedded.url
            if options.nats_port != 0:
                server_home.remember_ports(home, nats=embedded.port)
        stack.push_async_callback(_close_nats, nc)
        if options.port != 0:
            server_home.remember_ports(home, http=http_port)

        limiter = (
            PersonLimiter(options.limits, exempt=frozenset({ADMIN_PERSON}))
            if options.limits is not None
            else None
        )
        message_bytes = (
            options.stream_limits.max_message_bytes if options.stream_limits is not None else -1
        )
        worker = IngestWorker(
            nc,
            store,
            replicas=options.stream_replicas,
            ack_wait=options.ack_wait,
            limiter=limiter,
            stream_limits=options.stream_limits,
            # A batch of large messages stays a few MB (never less than one message).
            max_batch_bytes=max(MAX_BATCH_BYTES, 2 * message_bytes, 2 * nc.max_payload),
        )
        await worker.start()
        counters = IngestCounters()

        def pull_refused(reason: str) -> None:
            counters.pull_refused += 1

        # Devices' pull requests (queue group), fair across people.
        pulls = PullResponder(nc, store, on_refused=pull_refused)
        await pulls.start()
        stack.push_async_callback(pulls.stop)
        working_set = (
            WorkingSet(
                store,
                options.memory_budget_bytes,
                snapshot_after=options.snapshot_every_events or SNAPSHOT_AFTER,
            )
            if options.memory_budget_bytes is not None
            else None
        )
        follower = ProjectionFollower(store, working_set=working_set)
        snapshot_stats = SnapshotStats()
        refresh_stats = RefreshStats()
        snapshots: SnapshotStore | None = None
        # Loading or folding the history allocates millions of long-lived objects and no
        # garbage cycles: collections meanwhile would only rescan the growing heap.
        gc.disable()
        refreshing_partitions = False
        try:
            if options.snapshots:
                snapshots = open_snapshots(database)
                await snapshots.open()
                stack.push_async_callback(snapshots.close)
            if working_set is not None:
                # Partitions start from their own snapshots when they are first asked for.
                working_set.snapshots = snapshots
                stack.push_async_callback(working_set.close)
                await follower.start_working_set()  # the directory only: teams load on demand
                refreshing_partitions = snapshots is not None and bool(
                    options.partition_snapshot_seconds
                )
                snapshots = None  # no snapshot of all history: none is held
            elif snapshots is not None:
                # The newest valid snapshot, then only the events after it.
                await snapshotting.load_newest(store, snapshots, follower, snapshot_stats)
            await follower.catch_up()
        finally:
            gc.enable()
        # The folded history is long-lived: keep the cyclic GC from rescanning it (a full
        # collection over millions of objects stalls every request for a long moment).
        # No collection first: loading and folding leave no garbage cycles worth the
        # 1.2 s a collection over a million events' state takes before the first answer.
        gc.freeze()
        ctx = ServerContext(
            follower,
            store,
            TokenVerifier(accounts),
            ingest=counters,
            consumer_lag=_consumer_lag(nc),
            poke=worker.poke,  # kudos written by the team page poke devices like ingest does
            snapshots=snapshot_stats if snapshots is not None else None,
            partition_refreshes=refresh_stats if refreshing_partitions else None,
        )
        loop.add_signal_handler(signal.SIGUSR1, lambda: loop.create_task(follower.rebuild()))

        config = uvicorn.Config(
            create_app(ctx),
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=3,
            access_log=False,
        )
        http = _Server(config)
        http_task = asyncio.create_task(http.serve(sockets=[sock]))
        while not http.started:
            if http_task.done():
                await http_task
                raise RuntimeError("the HTTP server did not start")
            await asyncio.sleep(0.02)

        http_url = f"http://{options.host}:{http_port}"
        server_home.write_run_info(
            home,
            server_home.RunInfo(
                pid=os.getpid(),
                http_url=http_url,
                nats_url=nats_url,
                database=public_url(database),
                nats_pid=embedded.pid if embedded else None,
                nats_host=embedded.host if embedded else None,
                nats_port=embedded.port if embedded else None,
                nats_monitor_port=embedded.monitor_port if embedded else None,
                service_hash=service_hash,
                nats_monitor_host=embedded.monitor_host if embedded else None,
            ),
        )
        stack.callback(server_home.clear_run_info, home)
        announce(http_url, nats_url)

        following = asyncio.create_task(follower.run(stop))
        warming = (
            asyncio.create_task(_warm(follower, server_home.read_held_partitions(home)))
            if working_set is not None
            else None
        )
        ingesting = asyncio.create_task(_ingest_loop(worker, follower, counters, stop))
        snapshotting_task = (
            asyncio.create_task(
                snapshotting.run_periodically(
                    store,
                    snapshots,
                    follower,
                    snapshot_stats,
                    stop,
                    every_events=options.snapshot_every_events or SNAPSHOT_EVERY,
                    every_seconds=options.snapshot_every_seconds,
                )
            )
            if snapshots is not None
            else None
        )
        refreshing = (
            asyncio.create_task(
                refresh_periodically(
                    database,
                    home,
                    options.partition_snapshot_seconds,
                    working_set.snapshot_after,
                    refresh_stats,
                    stop,
                )
            )
            if refreshing_partitions and working_set is not None
            else None
        )
        await stop.wait()
        if refreshing is not None:
            await refreshing  # its child process is stopped and reaped
        # Stop taking messages: the batch in hand is stored and acknowledged first.
        await ingesting
        ctx.stopping.set()
        http.should_exit = True
        await http_task
        await following
        if warming is not None and working_set is not None:
            warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warming
            with contextlib.suppress(OSError):
                server_home.write_held_partitions(home, working_set.held_keys())
        if snapshots is not None and snapshotting_task is not None:
            await snapshotting_task
            await _final_snapshot(store, snapshots, follower, snapshot_stats)
        loop.remove_signal_handler(signal.SIGUSR1)
    return 0


async def _warm(follower: ProjectionFollower, keys: list[str]) -> None:
    """Load the partitions held at the last stop, in the background (a failure only logs:
    each is loaded on demand anyway)."""
    try:
        await follower.warm(keys)
    except Exception:
        log.exception("warming the working set failed; partitions load when asked for")


async def _final_snapshot(
    store: ServerStore,
    snapshots: SnapshotStore,
    follower: ProjectionFollower,
    stats: SnapshotStats,
) -> None:
    """At a clean stop: fold what is stored, and snapshot it unless the newest snapshot in
    the store is already there (the next start then folds nothing)."""
    try:
        await follower.catch_up()
        if follower.position > await snapshotting.newest_position(snapshots):
            await snapshotting.take(store, snapshots, follower, stats)
    except Exception:
        log.exception("the snapshot at stop failed (the next start folds more)")


async def _close_nats(nc: NatsClient) -> None:
    # Every ack was flushed with its batch; drain() would wait on the pull subscription.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.flush(), 2.0)
    with contextlib.suppress(Exception):
        await nc.close()
