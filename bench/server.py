"""Server benchmark: ingest vs raw inserts and a bare consumer; HTTP latency under load.

In one run, over the same encoded events (``milepost_testkit/history.py``):

1. PostgreSQL: asyncpg ``copy_records_to_table`` of the events vs the server's
   JetStream → PostgreSQL ingest (``IngestWorker`` + ``PostgresStore``), and that ingest
   with vs without the ownership rule's checks (``append.OWNERSHIP_CHECKS``);
2. SQLite: bare ``sqlite3`` ``executemany`` in one transaction vs ingest into
   ``SqliteStore``, with vs without the checks likewise;
3. a bare nats-py pull consumer fetching and acknowledging the same messages
   (one ack per message, one flush per batch) — the ingest ratio's baseline;
4. HTTP: the real ``milepost-server run`` (one process) over a store holding the
   full history (1,000,000 events; ``--quick``: 50,000), team feed page, goal
   tree and team board latency p50/p99 and requests/s with 32 connections, and the
   team page's board and feed (signed in by a session cookie), by ``wrk`` when
   installed, else an asyncio httpx loop.

Loopback only; every process started here is stopped by pid. Prints one
``figure: NAME = VALUE UNIT`` line per figure. ``--quick`` runs in under a minute;
``--ingest-only`` / ``--http-only`` run one half.
PostgreSQL is ``MILEPOST_TEST_DATABASE_URL`` when set, else a throwaway pgserver.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from milepost_testkit.history import history_bytes, history_wall
from server.ingest import STREAM, BatchReport, IngestWorker, ensure_stream
from server.nats_embedded import SERVICE_USER, EmbeddedNats, events_subject, new_password
from server.store import Incoming, ServerStore, append
from server.store.postgres import PostgresStore
from server.store.sqlite import SqliteStore

FIGURES: list[tuple[str, float, str]] = []


def figure(name: str, value: float, unit: str) -> None:
    """Record a figure (printed together at the end) and show progress now."""
    FIGURES.append((name, value, unit))
    print(f"  {name}: {value:,.2f} {unit}", file=sys.stderr, flush=True)


def print_figures() -> None:
    """The closing ``figure: NAME = VALUE UNIT`` lines of every figure recorded."""
    for name, value, unit in FIGURES:
        print(f"figure: {name} = {value:.4g} {unit}")


class _Head(msgspec.Struct):
    id: str
    actor: str
    body: dict[str, Any]


def heads(data: list[bytes]) -> list[tuple[str, str, str]]:
    """(id, actor, type) of each encoded event."""
    decoder = msgspec.json.Decoder(_Head)
    out = []
    for raw in data:
        head = decoder.decode(raw)
        out.append((head.id, head.actor, str(head.body.get("type", ""))))
    return out


# --- services ---------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_admin_url(workdir: Path) -> Iterator[str]:
    """MILEPOST_TEST_DATABASE_URL, else a throwaway pgserver."""
    configured = os.environ.get("MILEPOST_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    from pgserver.postgres_server import get_server

    with contextlib.redirect_stdout(io.StringIO()):
        server = get_server(workdir / "pgdata", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        with contextlib.redirect_stdout(io.StringIO()):
            server.cleanup()


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str) -> AsyncIterator[str]:
    """A new database on the server of ``admin_url``; dropped on exit."""
    from urllib.parse import urlsplit, urlunsplit

    name = f"milepost_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path="/" + name))
    finally:
        admin = await asyncpg.connect(admin_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def publish_all(nc: NatsClient, data: list[bytes], ids: list[tuple[str, str, str]]) -> float:
    """Publish every event to the stream as clients do (Nats-Msg-Id); return events/s."""
    js = nc.jetstream()
    began = time.perf_counter()
    window = 2000
    for start in range(0, len(data), window):
        futures = [
            js.publish(events_subject(actor, event_id), raw, headers={"Nats-Msg-Id": event_id})
            for raw, (event_id, actor, _) in zip(
                data[start : start + window], ids[start : start + window], strict=True
            )
        ]
        await asyncio.gather(*futures)
    return len(data) / (time.perf_counter() - began)


# --- the measurements ---------------------------------------------------------------------


async def bare_consumer_rate(nc: NatsClient, count: int, batch: int = 500) -> float:
    """A bare pull consumer: fetch and ack every message (one ack each, one flush a batch)."""
    js = nc.jetstream()
    durable = f"bench-bare-{uuid.uuid4().hex[:6]}"
    sub = await js.pull_subscribe(
        "milepost.events.>",
        durable=durable,
        stream=STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=20_000),
    )
    done = 0
    began = time.perf_counter()
    while done < count:
        try:
            messages = await sub.fetch(batch, timeout=2.0)
        except Exception:
            continue
        for message in messages:
            await message.ack()
        await nc.flush()
        done += len(messages)
    elapsed = time.perf_counter() - began
    await js.delete_consumer(STREAM, durable)
    return count / elapsed


async def ingest_rate(
    nc: NatsClient, store: ServerStore, count: int, *, checks: bool = True
) -> float:
    """The server's ingest (fetch, append in one transaction, ack, poke) until all stored;
    ``checks=False``: without the ownership rule (``append.OWNERSHIP_CHECKS``), the baseline
    of what the rule costs."""
    append.OWNERSHIP_CHECKS = checks
    durable = f"bench-ingest-{uuid.uuid4().hex[:6]}"
    # The bench history runs to the end of 2026: judge its stamps against its own time.
    worker = IngestWorker(nc, store, durable=durable, fetch_timeout=2.0, wall=history_wall)
    await worker.start()
    stored = 0
    done = asyncio.Event()

    def settled(report: BatchReport) -> None:  # after the batch's commit, acks and pokes
        nonlocal stored
        stored += report.stored
        if stored >= count:
            done.set()

    began = time.perf_counter()
    await worker.run(done, on_report=settled)  # the server's own loop (runtime.py)
    elapsed = time.perf_counter() - began
    append.OWNERSHIP_CHECKS = True
    await nc.jetstream().delete_consumer(STREAM, durable)
    return count / elapsed


async def copy_rate(url: str, data: list[bytes], ids: list[tuple[str, str, str]]) -> float:
    """asyncpg ``copy_records_to_table`` of the same events into a bare table."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE raw_events (position bigint PRIMARY KEY, id text UNIQUE, actor text,"
            " type text, raw bytea)"
        )
        records = [
            (i + 1, e, a, t, raw) for i, ((e, a, t), raw) in enumerate(zip(ids, data, strict=True))
        ]
        began = time.perf_counter()
        for start in range(0, len(records), 10_000):
            await conn.copy_records_to_table("raw_events", records=records[start : start + 10_000])
        return len(records) / (time.perf_counter() - began)
    finally:
        await conn.close()


def executemany_rate(path: Path, data: list[bytes], ids: list[tuple[str, str, str]]) -> float:
    """Bare sqlite3 ``executemany`` of the same events in one transaction (WAL)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE raw_events (position INTEGER PRIMARY KEY, id TEXT UNIQUE, actor TEXT,"
        " type TEXT, raw BLOB)"
    )
    rows = [(i + 1, e, a, t, raw) for i, ((e, a, t), raw) in enumerate(zip(ids, data, strict=True))]
    began = time.perf_counter()
    db.execute("BEGIN")
    db.executemany("INSERT INTO raw_events VALUES (?, ?, ?, ?, ?)", rows)
    db.execute("COMMIT")
    elapsed = time.perf_counter() - began
    db.close()
    return len(rows) / elapsed


async def ingest_figures(workdir: Path, count: int) -> None:
    """Sections 1-3: raw inserts, bare consumer, ingest on both backends."""
    data = history_bytes(people=100, teams=10, target_events=count)
    ids = heads(data)
    print(f"ingest: {len(data):,} events", file=sys.stderr)
    # The inputs held here (hundreds of thousands of objects the server would never hold)
    # must not be rescanned by every full collection while the server's code is measured;
    # ``milepost-server run`` freezes its initial state the same way (runtime.py).
    gc.collect()
    gc.freeze()
    embedded = EmbeddedNats(workdir / "nats", service_password=new_password())
    await embedded.astart()
    try:
        nc = await nats.connect(embedded.url, user=SERVICE_USER, password=embedded.service_password)
        try:
            await ensure_stream(nc)
            figure("publish_rate", await publish_all(nc, data, ids), "events/s")
            bare = await bare_consumer_rate(nc, len(data))
            figure("bare_consumer_fetch_ack_rate", bare, "events/s")

            with postgres_admin_url(workdir) as admin_url:
                async with fresh_database(admin_url) as raw_url:
                    copy = await copy_rate(raw_url, data, ids)
                figure("postgres_copy_rate", copy, "events/s")
                rates: dict[bool, float] = {}
                for checks in (False, True):
                    async with fresh_database(admin_url) as url:
                        store = PostgresStore(url)
                        await store.open()
                        try:
                            rates[checks] = await ingest_rate(nc, store, len(data), checks=checks)
                        finally:
                            await store.close()
                rate = rates[True]
                figure("postgres_ingest_rate", rate, "events/s")
                figure("postgres_ingest_without_ownership_checks_rate", rates[False], "events/s")
                figure("postgres_ingest_checks_vs_without", rate / rates[False], "ratio")
                figure("postgres_ingest_vs_copy", rate / copy, "ratio")
                figure("postgres_ingest_vs_bare_consumer", rate / bare, "ratio")

            raw_rate = executemany_rate(workdir / "raw.sqlite", data, ids)
            figure("sqlite_executemany_rate", raw_rate, "events/s")
            rates = {}
            for checks in (False, True):
                sqlite_store = SqliteStore(workdir / f"ingest-{checks}.sqlite")
                await sqlite_store.open()
                try:
                    rates[checks] = await ingest_rate(nc, sqlite_store, len(data), checks=checks)
                finally:
                    await sqlite_store.close()
            rate = rates[True]
            figure("sqlite_ingest_rate", rate, "events/s")
            figure("sqlite_ingest_without_ownership_checks_rate", rates[False], "events/s")
            figure("sqlite_ingest_checks_vs_without", rate / rates[False], "ratio")
            figure("sqlite_ingest_vs_executemany", rate / raw_rate, "ratio")
            figure("sqlite_ingest_vs_bare_consumer", rate / bare, "ratio")
        finally:
            await nc.close()
    finally:
        await embedded.astop()


# --- HTTP ---------------------------------------------------------------------------------


async def fill_store(
    path: Path,
    data: list[bytes],
    ids: list[tuple[str, str, str]],
    prepare: Callable[[Path], None] | None = None,
) -> float:
    """Append the history straight into an SQLite store (as ingest would); return seconds.
    ``prepare`` runs on the database file once the store is open (not timed)."""
    store = SqliteStore(path)
    await store.open()
    if prepare is not None:
        prepare(path)
    began = time.perf_counter()
    try:
        for start in range(0, len(data), 5000):
            chunk = zip(data[start : start + 5000], ids[start : start + 5000], strict=True)
            await store.append_batch(
                [Incoming.from_raw(raw, events_subject(a, e)) for raw, (e, a, _) in chunk]
            )
    finally:
        await store.close()
    return time.perf_counter() - began


def member_and_team(data: list[bytes]) -> tuple[str, str]:
    """A person and one of their teams, from the first membership event."""
    for raw in data[:5000]:
        event = json.loads(raw)
        if event["body"]["type"] == "team.member_joined":
            return event["body"]["person"], event["body"]["team"]
    raise RuntimeError("no membership in the history")


def start_server(home: Path, *flags: str) -> tuple[subprocess.Popen[str], str]:
    """``milepost-server run`` on free ports with ``flags``; returns once it prints its HTTP
    URL (after the start's fold or snapshot load). Stop it with ``stop_server``."""
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "milepost-server"),
            "run",
            "--port",
            "0",
            "--nats-port",
            "0",
            *flags,
        ],
        env={**os.environ, "MILEPOST_SERVER_HOME": str(home)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    while True:
        line = process.stdout.readline()
        if not line:
            stop_server(process)
            raise RuntimeError("the server exited before listening")
        if line.startswith("http: "):
            return process, line.split(" ", 1)[1].strip()


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def stop_server(process: subprocess.Popen[str], patience: float = 30) -> None:
    """SIGTERM by pid, SIGKILL if it does not exit within ``patience`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(patience)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_WRK_LATENCY = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, headers: list[str], seconds: int) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, requests/s) from wrk with 32 connections."""
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            "-c32",
            f"-d{seconds}s",
            "--latency",
            *(part for header in headers for part in ("-H", header)),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    latencies = {p: _ms(v, u) for p, v, u in _WRK_LATENCY.findall(out)}
    rate = float(_WRK_RATE.search(out).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors: {out}")
    return latencies["50"], latencies["99"], rate


async def httpx_load(url: str, headers: list[str], seconds: int) -> tuple[float, float, float]:
    """The same with an asyncio httpx loop (when wrk is not installed)."""
    import httpx

    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=32)
    sent = dict(header.split(": ", 1) for header in headers)
    async with httpx.AsyncClient(limits=limits, headers=sent) as c:

        async def loop() -> None:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                response = await c.get(url)
                response.raise_for_status()
                latencies.append((time.perf_counter() - began) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(32)))
        elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49], cuts[98], len(latencies) / elapsed


def web_session(base: str, token: str) -> str:
    """A team-page session cookie (``name=value``), signed in by a one-time link."""
    import httpx

    link = httpx.post(f"{base}/auth/links", headers={"Authorization": f"Bearer {token}"})
    link.raise_for_status()
    signed_in = httpx.get(link.json()["url"])
    signed_in.raise_for_status()
    value = signed_in.cookies.get("milepost_session")
    if not value:
        raise RuntimeError("the sign-in link set no session cookie")
    return f"milepost_session={value}"


def http_figures(workdir: Path, count: int, seconds: int) -> None:
    """Section 4: the real server over the full history, under 32 connections."""
    data = history_bytes(target_events=count)
    ids = heads(data)
    home = workdir / "server-home"
    fill = asyncio.run(fill_store(home / "milepost.sqlite", data, ids))
    print(f"http: stored {len(data):,} events in {fill:.1f}s", file=sys.stderr)
    person, team = member_and_team(data)
    del data, ids
    env = {**os.environ, "MILEPOST_SERVER_HOME": str(home)}
    added = subprocess.run(
        [str(Path(sys.executable).parent / "milepost-server"), "person", "add", person, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    token = json.loads(added.stdout)["api_token"]
    began = time.perf_counter()
    # A first start takes a snapshot at once, in the background: keep it out of the
    # latency figures (bench/snapshot.py measures snapshots and restarts).
    process, base = start_server(home, "--no-snapshots")
    figure("server_start_with_history", time.perf_counter() - began, "s")
    figure("server_rss_after_start", rss_mb(process.pid), "MB")
    figure("http_events_stored", count, "events")
    try:
        import httpx

        for _ in range(50):  # the token cache reads the people table within a second
            if (
                httpx.get(
                    f"{base}/people/{person}/goals", headers={"Authorization": f"Bearer {token}"}
                ).status_code
                == 200
            ):
                break
            time.sleep(0.1)
        use_wrk = shutil.which("wrk") is not None
        figure("http_load_tool_is_wrk", 1.0 if use_wrk else 0.0, "bool")
        bearer = [f"Authorization: Bearer {token}"]
        # The pages as a browser asks for them: with its session cookie, accepting gzip.
        cookie = [f"Cookie: {web_session(base, token)}", "Accept-Encoding: gzip"]
        for name, path, header in (
            ("team_feed", f"/teams/{team}/feed?limit=50", bearer),
            ("goal_tree", f"/people/{person}/goals", bearer),
            ("team_board", f"/teams/{team}/board", bearer),
            ("page_board", f"/t/{team}", cookie),
            ("page_feed", f"/t/{team}/feed", cookie),
        ):
            url = base + path
            if use_wrk:
                p50, p99, rate = wrk(url, header, seconds)
            else:
                p50, p99, rate = asyncio.run(httpx_load(url, header, seconds))
            figure(f"http_{name}_p50", p50, "ms")
            figure(f"http_{name}_p99", p99, "ms")
            figure(f"http_{name}_rate", rate, "requests/s")
    finally:
        stop_server(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--ingest-events", type=int, default=None)
    parser.add_argument("--http-events", type=int, default=None)
    parser.add_argument("--http-only", action="store_true", help="skip the ingest figures")
    parser.add_argument("--ingest-only", action="store_true", help="skip the HTTP figures")
    args = parser.parse_args(argv)
    ingest_count = args.ingest_events or (20_000 if args.quick else 200_000)
    http_count = args.http_events or (50_000 if args.quick else 1_000_000)
    seconds = 5 if args.quick else 15
    with tempfile.TemporaryDirectory(prefix="milepost-bench-") as tmp:
        workdir = Path(tmp)
        if not args.http_only:
            asyncio.run(ingest_figures(workdir, ingest_count))
        if not args.ingest_only:
            http_figures(workdir, http_count, seconds)
    for name, value, unit in FIGURES:
        print(f"figure: {name} = {value:.4g} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
