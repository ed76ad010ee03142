"""Scale-out benchmark: ingest with one vs two server processes, push rate cluster vs single.

In one run, over the same encoded events (``milepost_testkit/history.py``), on loopback:

1. A three-node NATS JetStream cluster (real ``nats-server`` processes, the events
   stream replicated three times) and PostgreSQL. The events are pushed to the
   stream once; then the server's ingest (``IngestWorker`` + ``PostgresStore``)
   drains it into a fresh database with **one** worker process, and again with
   **two** worker processes sharing one durable consumer (each on a new durable
   and a new database, so both start from the first message). Rate = events
   stored / seconds from "go" until the store holds them all.
   ``ingest_two_vs_one`` is the ratio (target ≥ 0.9 on 2 cores).
2. Push rate: the same events published as devices do (``Nats-Msg-Id``, acks
   awaited in windows) to a single node (stream R1) and to the three-node cluster
   (R3). ``push_cluster_vs_single`` is the ratio.

Every process started here is stopped by pid. Prints ``figure: NAME = VALUE UNIT``
lines; ``--quick`` runs in under a minute. PostgreSQL is ``MILEPOST_TEST_DATABASE_URL``
when set, else a throwaway pgserver.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import nats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.server import (
    FIGURES,
    figure,
    fresh_database,
    heads,
    postgres_admin_url,
    publish_all,
)
from milepost_testkit.cluster import NatsCluster
from milepost_testkit.history import history_bytes, history_wall
from server.ingest import IngestWorker, ensure_stream
from server.nats_embedded import SERVICE_USER, EmbeddedNats, new_password
from server.store.postgres import PostgresStore

# --- one ingest worker process ------------------------------------------------------------


async def worker_main(nats_urls: str, database: str, durable: str) -> int:
    """Bind to ``durable``, say ``ready``, wait for ``go`` on stdin, ingest until SIGTERM."""
    nc = await nats.connect(nats_urls.split(","), max_reconnect_attempts=-1)
    store = PostgresStore(database)
    await store.open()
    # The bench history runs to the end of 2026: judge its stamps against its own time.
    worker = IngestWorker(
        nc, store, durable=durable, batch_size=500, fetch_timeout=0.5, wall=history_wall
    )
    await worker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    stored = 0
    while not stop.is_set():
        stored += (await worker.run_once()).stored
    print(f"stored {stored}", flush=True)
    await store.close()
    await nc.close()
    return 0


# --- the measurements ---------------------------------------------------------------------


async def ingest_with(workers: int, nats_urls: str, database: str, count: int) -> float:
    """Events/s for ``workers`` processes sharing a new durable, into ``database``."""
    durable = f"bench-{uuid.uuid4().hex[:8]}"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        nats_urls,
        database,
        durable,
    ]
    processes = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    conn = await asyncpg.connect(database)
    try:
        for process in processes:
            assert process.stdout is not None
            line = await asyncio.to_thread(process.stdout.readline)
            if line.strip() != "ready":
                raise RuntimeError(f"worker did not start: {line!r}")
        began = time.perf_counter()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        while True:
            # Positions are dense: the last one is the number of events stored.
            last = await conn.fetchval("SELECT last FROM event_positions")
            if last is not None and int(last) >= count:
                break
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - began
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    try:
        # No event applied twice: exactly ``count`` rows at positions 1..count.
        row = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT id), (SELECT last FROM event_positions) FROM events"
        )
        assert row is not None
        rows, distinct, last = row
        if not rows == distinct == last == count:
            raise RuntimeError(f"stored {rows} ({distinct} distinct, last {last}) of {count}")
    finally:
        await conn.close()
    return count / elapsed


async def ingest_figures(root: Path, admin_url: str, data: list[bytes], rounds: int) -> None:
    """One vs two ingest processes on the three-node cluster with PostgreSQL."""
    ids = heads(data)
    cluster = NatsCluster(root / "cluster")
    await asyncio.to_thread(cluster.start)
    try:
        await cluster.ensure_events_stream()
        nc = await cluster.connect_service()
        await publish_all(nc, data, ids)
        urls = cluster.service_urls()
        rates: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(rounds):
            for workers in (1, 2):
                async with fresh_database(admin_url) as database:
                    # Create the schema before timing (the workers would race to migrate).
                    store = PostgresStore(database)
                    await store.open()
                    await store.close()
                    rates[workers].append(await ingest_with(workers, urls, database, len(data)))
        one, two = statistics.median(rates[1]), statistics.median(rates[2])
        figure("cluster_ingest_one_process_rate", one, "events/s")
        figure("cluster_ingest_two_processes_rate", two, "events/s")
        figure("ingest_two_vs_one", two / one, "ratio")
    finally:
        await cluster.close_clients()
        await asyncio.to_thread(cluster.stop)


async def push_figures(root: Path, data: list[bytes]) -> None:
    """Push rate through a single node (R1) vs the three-node cluster (R3)."""
    ids = heads(data)
    password = new_password()
    single = EmbeddedNats(root / "single", service_password=password)
    await single.astart()
    try:
        nc = await nats.connect(single.url, user=SERVICE_USER, password=password)
        await ensure_stream(nc, replicas=1)
        single_rate = await publish_all(nc, data, ids)
        await nc.close()
    finally:
        await single.astop()
    cluster = NatsCluster(root / "push-cluster")
    await asyncio.to_thread(cluster.start)
    try:
        await cluster.ensure_events_stream()
        nc = await cluster.connect_service()
        cluster_rate = await publish_all(nc, data, ids)
    finally:
        await cluster.close_clients()
        await asyncio.to_thread(cluster.stop)
    figure("push_single_node_rate", single_rate, "events/s")
    figure("push_three_node_cluster_rate", cluster_rate, "events/s")
    figure("push_cluster_vs_single", cluster_rate / single_rate, "ratio")


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["--worker"]:
        return asyncio.run(worker_main(*arguments[1:4]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--events", type=int, default=None)
    args = parser.parse_args(arguments)
    count = args.events or (15_000 if args.quick else 100_000)
    rounds = 1 if args.quick else 3
    data = history_bytes(target_events=count)[:count]
    with tempfile.TemporaryDirectory(prefix="milepost-bench-cluster-") as tmp:
        root = Path(tmp)
        with postgres_admin_url(root) as admin_url:
            asyncio.run(ingest_figures(root, admin_url, data, rounds))
        asyncio.run(push_figures(root, data))
    figure("cpu_cores", float(os.cpu_count() or 0), "cores")
    for name, value, unit in FIGURES:
        print(f"figure: {name} = {value:.4g} {unit}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
