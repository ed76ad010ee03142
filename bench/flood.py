"""Flood benchmark (issue 10): one person floods the real server; is its memory bounded?

A real ``milepost-server run`` (embedded nats-server, SQLite) on loopback, and
one person with valid credentials on a raw nats-py connection (their own inbox
prefix) who publishes as fast as nats-py goes:

1. ``events``: N small events (``ObjectiveCreated``), 50,000 (``--quick``: 20,000);
2. ``bytes``: 100 MB (``--quick``: 40 MB) of 250 KB events of a type the server does
   not know (kept opaque).

Each flood runs twice, on a fresh server: with the default limits, and with
``--rate-limit 0 --byte-rate 0`` (no per-person limits: the old behaviour, but
with the byte-bounded ingest batches and the stream limits); the bytes flood runs
a third time with a tight byte budget (``bytes_tight``: an 8 MiB burst, 1 MiB/s),
to show that what the limits refuse costs no memory. For each run it prints
the resident memory (RSS) of the milepost-server process and of its nats-server
before the flood, at the peak while the flood is ingested (sampled every 50 ms),
and once ingest has settled, plus how many messages were stored and refused, as
``figure: NAME = VALUE UNIT`` lines. After the limited events flood, a bystander's
pull round trip is measured alone and while the flooder keeps 200 pull requests
in flight (``pull_during_200_pulls_vs_alone``). Every process is stopped by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import nats  # noqa: E402
from nats.aio.msg import Msg  # noqa: E402

from events import Event, ObjectiveCreated, encode, new_event_id  # noqa: E402
from events.wire import PullRequest, encode_request  # noqa: E402
from server.nats_embedded import events_subject, inbox_prefix, pull_subject  # noqa: E402

BIN = Path(sys.executable).parent / "milepost-server"
PERSON = "mallory"
BYSTANDER = "alice"
FIGURES: list[tuple[str, float, str]] = []


def figure(name: str, value: float, unit: str) -> None:
    FIGURES.append((name, value, unit))
    print(f"  {name} = {value:.4g} {unit}", flush=True)


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) / 1024 if found else 0.0


class Server:
    """``milepost-server run`` in a fresh home, with one person; stopped by pid."""

    def __init__(self, home: Path, extra: list[str]) -> None:
        env = {**os.environ, "MILEPOST_SERVER_HOME": str(home)}
        self.home = home
        self.passwords: dict[str, str] = {}
        for person in (PERSON, BYSTANDER):
            creds_file = home.parent / f"{home.name}-{person}.json"
            subprocess.run(
                [str(BIN), "person", "add", person, "--output", str(creds_file)],
                env=env,
                check=True,
                capture_output=True,
            )
            self.passwords[person] = json.loads(creds_file.read_text())["nats_password"]
        self.password = self.passwords[PERSON]
        self.process = subprocess.Popen(
            [str(BIN), "run", "--port", "0", "--nats-port", "0", *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        urls: dict[str, str] = {}
        assert self.process.stdout is not None
        while len(urls) < 2:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("milepost-server did not start")
            key, _, value = line.strip().partition(": ")
            urls[key] = value
        self.http_url, self.nats_url = urls["http"], urls["nats"]
        self.nats_pid = int(json.loads((home / "run.json").read_text())["nats_pid"])

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"{self.http_url}/metrics", timeout=10).text
        return {
            name: float(value) for name, value in re.findall(r"^(milepost_\w+) (\S+)$", text, re.M)
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def small_events(count: int) -> list[tuple[str, bytes]]:
    now = datetime.now(UTC)
    out = []
    for i in range(count):
        event = Event(
            id=new_event_id(),
            actor=PERSON,
            device="flood",
            clock=(1 << 40) + i,
            recorded_at=now,
            occurred_at=now,
            body=ObjectiveCreated(title=f"flood {i}", cycle="2026-Q1"),
        )
        out.append((event.id, encode(event)))
    return out


def big_unknown_events(total_bytes: int, size: int = 250_000) -> list[tuple[str, bytes]]:
    """Events of a type the server does not know, ``size`` bytes each."""
    template = json.loads(small_events(1)[0][1])
    out = []
    for i in range(max(1, total_bytes // size)):
        event_id = new_event_id()
        template.update(id=event_id, clock=(1 << 41) + i)
        template["body"] = {"type": "flood.unknown", "payload": ""}
        skeleton = len(json.dumps(template, separators=(",", ":")).encode())
        template["body"]["payload"] = "x" * (size - skeleton)
        out.append((event_id, json.dumps(template, separators=(",", ":")).encode()))
    return out


async def flood(server: Server, messages: list[tuple[str, bytes]]) -> tuple[float, int, int]:
    """Publish everything as the person (acks in flight on one wildcard inbox); returns
    (seconds, acks, publish errors)."""
    nc = await nats.connect(
        server.nats_url,
        user=PERSON,
        password=server.password,
        inbox_prefix=inbox_prefix(PERSON),
        pending_size=256 << 20,
    )
    acks = errors = 0
    done = asyncio.Event()

    async def on_ack(msg: Msg) -> None:
        nonlocal acks, errors
        if b'"error"' in msg.data[:200]:
            errors += 1
        else:
            acks += 1
        if acks + errors >= len(messages):
            done.set()

    inbox = f"{inbox_prefix(PERSON)}.flood"
    await nc.subscribe(f"{inbox}.*", cb=on_ack)
    began = time.perf_counter()
    for n, (event_id, raw) in enumerate(messages):
        await nc.publish(
            events_subject(PERSON, event_id),
            raw,
            reply=f"{inbox}.{n}",
            headers={"Nats-Msg-Id": event_id},
        )
    await nc.flush(timeout=60)
    elapsed = time.perf_counter() - began
    with contextlib.suppress(TimeoutError):  # reported as fewer acks
        await asyncio.wait_for(done.wait(), 120)
    await nc.close()
    return elapsed, acks, errors


def sampler(pids: list[int], stop: threading.Event, peaks: list[float]) -> None:
    while not stop.is_set():
        for index, pid in enumerate(pids):
            peaks[index] = max(peaks[index], rss_mb(pid))
        time.sleep(0.05)


def settle(server: Server, published: int, timeout: float = 300) -> dict[str, float]:
    """Wait until ingest has fetched everything published and nothing is pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = server.metrics()
        if (
            metrics.get("milepost_ingest_messages_total", 0) >= published
            and metrics.get("milepost_consumer_lag", 1) == 0
        ):
            return metrics
        time.sleep(0.2)
    raise RuntimeError("ingest did not settle")


def run_case(
    workdir: Path, name: str, make: Callable[[], list[tuple[str, bytes]]], extra: list[str]
) -> None:
    messages = make()
    size = sum(len(raw) for _, raw in messages)
    print(f"{name}: {len(messages)} messages, {size / 1e6:.1f} MB, flags {extra}", flush=True)
    server = Server(workdir / name, extra)
    try:
        pids = [server.process.pid, server.nats_pid]
        time.sleep(1.0)
        before = [rss_mb(pid) for pid in pids]
        peaks = list(before)
        stop = threading.Event()
        watcher = threading.Thread(target=sampler, args=(pids, stop, peaks), daemon=True)
        watcher.start()
        seconds, acks, errors = asyncio.run(flood(server, messages))
        metrics = settle(server, acks)
        time.sleep(2.0)
        stop.set()
        watcher.join()
        after = [rss_mb(pid) for pid in pids]
        figure(f"{name}_publish_seconds", seconds, "s")
        figure(f"{name}_acked", acks, "messages")
        figure(f"{name}_refused_by_stream", errors, "messages")
        figure(f"{name}_stored", metrics.get("milepost_ingest_stored_total", 0), "events")
        figure(
            f"{name}_rate_limited",
            metrics.get("milepost_ingest_rate_limited_total", 0),
            "messages",
        )
        for label, index in (("server", 0), ("nats", 1)):
            figure(f"{name}_{label}_rss_before", before[index], "MB")
            figure(f"{name}_{label}_rss_peak", peaks[index], "MB")
            figure(f"{name}_{label}_rss_after", after[index], "MB")
        figure(f"{name}_server_rss_growth", after[0] - before[0], "MB")
        if name == "events_limited":
            alone, flooded = asyncio.run(pull_fairness(server))
            figure("pull_alone_p50", alone, "ms")
            figure("pull_during_200_pulls_p50", flooded, "ms")
            figure("pull_during_200_pulls_vs_alone", flooded / alone, "ratio")
    finally:
        server.stop()


async def pull_fairness(server: Server, samples: int = 20) -> tuple[float, float]:
    """Alice's pull round trip (p50, ms) alone, then while mallory keeps 200 pull requests
    of 5,000 events each in flight (his own backlog: the flood just stored)."""
    alice = await nats.connect(
        server.nats_url,
        user=BYSTANDER,
        password=server.passwords[BYSTANDER],
        inbox_prefix=inbox_prefix(BYSTANDER),
    )
    mallory = await nats.connect(
        server.nats_url,
        user=PERSON,
        password=server.password,
        inbox_prefix=inbox_prefix(PERSON),
        pending_size=256 << 20,
    )

    async def alice_pulls() -> float:
        times = []
        for _ in range(samples):
            began = time.perf_counter()
            await alice.request(
                pull_subject(BYSTANDER), encode_request(PullRequest(device="d")), timeout=30
            )
            times.append((time.perf_counter() - began) * 1000)
        return statistics.median(times)

    alone = await alice_pulls()
    stop = asyncio.Event()
    heavy = encode_request(PullRequest(device="d", limit=5000))

    async def keep_pulling() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                await mallory.request(pull_subject(PERSON), heavy, timeout=30)

    floods = [asyncio.create_task(keep_pulling()) for _ in range(200)]
    await asyncio.sleep(1.0)
    flooded = await alice_pulls()
    stop.set()
    await asyncio.gather(*floods, return_exceptions=True)
    await alice.close()
    await mallory.close()
    return alone, flooded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k events and 40 MB")
    args = parser.parse_args()
    count = 20_000 if args.quick else 50_000
    total = 40_000_000 if args.quick else 100_000_000
    no_limits = ["--rate-limit", "0", "--byte-rate", "0"]
    with tempfile.TemporaryDirectory(prefix="milepost-flood-") as tmp:
        workdir = Path(tmp)
        run_case(workdir, "events_limited", lambda: small_events(count), [])
        run_case(workdir, "events_unlimited", lambda: small_events(count), no_limits)
        run_case(workdir, "bytes_limited", lambda: big_unknown_events(total), [])
        run_case(workdir, "bytes_unlimited", lambda: big_unknown_events(total), no_limits)
        tight = ["--byte-burst", str(8 << 20), "--byte-rate", str(1 << 20)]
        run_case(workdir, "bytes_tight", lambda: big_unknown_events(total), tight)
    for name, value, unit in FIGURES:
        print(f"figure: {name} = {value:.4g} {unit}")


if __name__ == "__main__":
    main()
