"""Sync benchmarks (issue 5). Prints ``figure: NAME = VALUE UNIT`` lines:

* ``raw_publish_rate`` / ``client_push_rate`` / ``push_ratio`` — the same N events
  published with bare nats-py ``publish_async`` (each with its ``Nats-Msg-Id``, acks
  awaited) to a file-backed stream, vs the client engine's push (``Syncer.push``:
  read pending from the client database, publish with acks in flight, mark pushed in
  one transaction per chunk). Must reach: ratio >= 0.30. (The engine publishes on one
  wildcard ack inbox, not with ``publish_async``, so it may beat the baseline.)
* ``a_to_b_seconds`` / ``a_to_b_rate`` — N events logged offline on device A
  (imported), then ``milepost sync`` on A while device B runs ``milepost sync
  --watch``: the time until B's database holds all N. Must reach at 100,000: < 20 s.
* ``watch_p50_ms`` / ``watch_p99_ms`` — one event recorded on A (the client's normal
  append path, in this process) until it is in B's database, both devices running
  ``milepost sync --watch``; vs ``nats_rtt_p50_ms`` / ``nats_rtt_p99_ms``, a bare NATS
  request/reply round trip. Must reach: p50 < 25 ms, p99 < 150 ms.
  ``watch_after_quiet_max_ms`` — the same for events logged after 3 s of quiet (an
  idle watcher looks less often); ``watch_idle_cpu_per_watcher`` — CPU share of one
  idle watcher.

Real processes on 127.0.0.1: a nats-server, ``milepost-server run --nats``, ``milepost``
CLIs. ``--quick``: 10,000 events and 100 latency samples (under a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402
from nats.aio.msg import Msg  # noqa: E402
from nats.js.api import StorageType, StreamConfig  # noqa: E402

from client.session import Session  # noqa: E402
from client.sync import Link, Syncer, endpoint  # noqa: E402
from events import ObjectiveCreated, encode  # noqa: E402
from milepost_testkit.history import jsonl_file, person_history  # noqa: E402
from milepost_testkit.sync_world import Device, World  # noqa: E402


def figure(name: str, value: float, unit: str) -> None:
    print(f"figure: {name} = {value:.3f} {unit}", flush=True)


def db_path(device: Device) -> Path:
    (path,) = device.home.glob("*.sqlite3")
    return path


def count_events(path: Path) -> int:
    with sqlite3.connect(path, timeout=10) as db:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])


async def raw_publish(w: World, payloads: list[tuple[str, bytes]]) -> float:
    """Events/s of bare publish_async to a stream like ours (file storage, dedup by id)."""
    nc = await nats.connect(
        w.nats.url, user="milepost-server", password=w.service_password, pending_size=64 << 20
    )
    try:
        js = nc.jetstream(publish_async_max_pending=5000)
        await js.add_stream(
            StreamConfig(
                name="BENCH_RAW", subjects=["bench.raw.>"], storage=StorageType.FILE,
                duplicate_window=120.0,
            )
        )  # fmt: skip
        started = time.perf_counter()
        futures = [
            await js.publish_async("bench.raw.alice.laptop", data, headers={"Nats-Msg-Id": i})
            for i, data in payloads
        ]
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - started
        await js.delete_stream("BENCH_RAW")
        return len(payloads) / elapsed
    finally:
        await nc.close()


async def client_push(device: Device) -> tuple[int, float]:
    """(events pushed, events/s) of the client engine's push on ``device``'s database."""
    session = await Session.open_path(db_path(device), direct=False)
    link = Link(endpoint(session.meta, {}))
    await link.open()
    try:
        syncer = Syncer(
            session.store, session.person, session.device, link, now=lambda: session.now
        )
        started = time.perf_counter()
        summary = await syncer.push()
        elapsed = time.perf_counter() - started
        return summary.pushed, summary.pushed / elapsed
    finally:
        await link.close()
        await session.close()


def watch(device: Device) -> subprocess.Popen[bytes]:
    env = {**device.env, "MILEPOST_HOME": str(device.home), "MILEPOST_NOW": device.now}
    return subprocess.Popen(
        [sys.executable, "-m", "client.cli", "sync", "--watch", "--json"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_count(path: Path, target: int, timeout: float) -> float:
    """The moment ``path`` holds ``target`` events. Polled with ``max(seq)`` (events are
    never deleted and a rolled-back insert leaves no gap, so it is the count), which
    costs microseconds: ``count(*)`` reads the whole table (5 ms at 100,000 events,
    every 20 ms), CPU the measured processes need. Confirmed with ``count(*)`` once."""
    deadline = time.monotonic() + timeout
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        while time.monotonic() < deadline:
            (top,) = db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
            if int(top) >= target:
                reached = time.monotonic()
                if count_events(path) >= target:
                    return reached
            time.sleep(0.02)
    raise RuntimeError(f"{path.name} has {count_events(path)} of {target} events")


async def latency(a: Device, b_path: Path, samples: int, warm_up: int = 5) -> list[float]:
    """Milliseconds from an event's commit on A until it is in B's database."""
    session = await Session.open_path(db_path(a))
    reader = sqlite3.connect(b_path, timeout=10, isolation_level=None)
    out: list[float] = []
    try:
        for i in range(samples + warm_up):
            event = await session.record(ObjectiveCreated(title=f"Latency {i}", cycle="2026-Q1"))
            started = time.perf_counter()
            while True:
                row = reader.execute("SELECT 1 FROM events WHERE id = ?", (event.id,)).fetchone()
                if row is not None:
                    break
                if time.perf_counter() - started > 10:
                    raise RuntimeError("an event did not reach B within 10 s")
                await asyncio.sleep(0.0002)
            if i >= warm_up:
                out.append((time.perf_counter() - started) * 1000)
    finally:
        reader.close()
        await session.close()
    return out


async def latency_after_quiet(a: Device, b_path: Path, samples: int, quiet: float) -> list[float]:
    """Like ``latency``, but each event is logged after ``quiet`` s without any (the
    watchers have slowed down their looks by then)."""
    out: list[float] = []
    for _ in range(samples):
        await asyncio.sleep(quiet)
        out += await latency(a, b_path, 1, warm_up=0)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu_percent(processes: list[subprocess.Popen[bytes]], seconds: float) -> float:
    """Mean CPU share of one process over ``seconds`` in which nothing happens."""
    before = sum(cpu_seconds(p.pid) for p in processes)
    time.sleep(seconds)
    after = sum(cpu_seconds(p.pid) for p in processes)
    return 100 * (after - before) / seconds / len(processes)


async def nats_rtt(w: World, samples: int) -> list[float]:
    nc = await nats.connect(w.nats.url, user="milepost-server", password=w.service_password)
    try:

        async def echo(msg: Msg) -> None:
            await msg.respond(msg.data)

        await nc.subscribe("bench.echo", cb=echo)
        out = []
        for _ in range(samples + 20):
            started = time.perf_counter()
            await nc.request("bench.echo", b"x" * 64, timeout=5)
            out.append((time.perf_counter() - started) * 1000)
        return out[20:]
    finally:
        await nc.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 events, 100 samples")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None)
    args = parser.parse_args()
    count = args.events or (10_000 if args.quick else 100_000)
    samples = args.samples or (100 if args.quick else 1000)
    events = person_history("alice", "laptop", count)

    with tempfile.TemporaryDirectory(prefix="milepost-bench-sync-") as tmp:
        root = Path(tmp)
        # 1. push: raw publish vs the client engine, the server stopped (stream only).
        w = World(root / "push")
        w.start()
        try:
            w.server.stop()
            a = w.device("alice", "laptop")
            a.ok("import", str(jsonl_file(root / "push.jsonl", events)))
            raw_rate = asyncio.run(raw_publish(w, [(e.id, encode(e)) for e in events]))
            pushed, push_rate = asyncio.run(client_push(a))
            assert pushed == count, pushed
        finally:
            w.close()
        figure("events", count, "events")
        figure("raw_publish_rate", raw_rate, "events/s")
        figure("client_push_rate", push_rate, "events/s")
        figure("push_ratio", push_rate / raw_rate, "ratio")

        # 2. N events offline on A until visible on B (B watching).
        w = World(root / "atob")
        w.start()
        watcher = None
        try:
            a = w.device("alice", "laptop")
            b = w.device("alice", "phone")
            a.ok("import", str(jsonl_file(root / "atob.jsonl", events)))
            b.sync()
            watcher = watch(b)
            time.sleep(1.5)  # B connected and caught up
            started = time.monotonic()
            syncing = subprocess.Popen(
                [sys.executable, "-m", "client.cli", "sync"],
                env={**a.env, "MILEPOST_HOME": str(a.home), "MILEPOST_NOW": a.now},
                stdout=subprocess.DEVNULL,
            )
            done = wait_count(db_path(b), count, timeout=300)
            syncing.wait(120)
            elapsed = done - started
        finally:
            if watcher is not None:
                stop(watcher)
            w.close()
        figure("a_to_b_seconds", elapsed, "s")
        figure("a_to_b_rate", count / elapsed, "events/s")

        # 3. Single-event propagation with --watch on both devices.
        w = World(root / "watch")
        w.start()
        watchers: list[subprocess.Popen[bytes]] = []
        try:
            a = w.device("alice", "laptop")
            b = w.device("alice", "phone")
            watchers = [watch(a), watch(b)]
            time.sleep(1.5)
            lat = asyncio.run(latency(a, db_path(b), samples))
            rtt = asyncio.run(nats_rtt(w, samples))
            idle = idle_cpu_percent(watchers, 5.0 if args.quick else 10.0)
            quiet = asyncio.run(latency_after_quiet(a, db_path(b), 2 if args.quick else 5, 3.0))
        finally:
            for process in watchers:
                stop(process)
            w.close()
        figure("watch_samples", len(lat), "events")
        figure("watch_p50_ms", statistics.median(lat), "ms")
        figure("watch_p99_ms", pct(lat, 0.99), "ms")
        figure("watch_after_quiet_max_ms", max(quiet), "ms")
        figure("watch_idle_cpu_per_watcher", idle, "percent")
        figure("nats_rtt_p50_ms", statistics.median(rtt), "ms")
        figure("nats_rtt_p99_ms", pct(rtt, 0.99), "ms")
    return 0


if __name__ == "__main__":
    os.environ.pop("MILEPOST_HOME", None)
    sys.exit(main())
