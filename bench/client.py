"""Client benchmarks (issue 3): append rate vs bare sqlite3, and whole-process CLI times.

Prints ``figure: NAME = VALUE UNIT`` lines:

* ``bare_sqlite_insert_rate`` / ``client_append_rate`` / ``append_ratio`` — one
  transaction per event, WAL, ``synchronous=NORMAL`` on both sides; the client
  side is ``Store.append`` as the CLI opens it (statements in its own thread,
  ``direct``; Must reach: ratio ≥ 0.40), and ``threaded_append_ratio`` the same through
  the store's worker thread as ``milepost sync`` runs it. The two
  sides alternate in short rounds and the ratio is the median of the rounds' ratios
  (``append_ratio_worst_round`` shows the spread);
* ``cli_checkin_ms`` / ``cli_status_ms`` — median whole-process time of
  ``milepost checkin`` and ``milepost status`` on a log of ``--events`` events
  (Must reach at 100,000: < 250 ms and < 350 ms); ``cli_help_ms`` — start-up.

Subprocesses run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` unset) and
one warm-up run, as an installed ``milepost`` would. ``--quick``: 20,000 events,
fewer runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This file is bench/client.py: keep its folder off the path so `client` is the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from client.store import Store, event_row  # noqa: E402
from events import Event, bodies  # noqa: E402
from milepost_testkit.history import generate_history  # noqa: E402


def figure(name: str, value: float, unit: str) -> None:
    """One result line in the shared format."""
    print(f"figure: {name} = {value:.3f} {unit}", flush=True)


def _checkins(count: int) -> list[Event]:
    from events import new_event_id

    start = datetime(2026, 1, 1, tzinfo=UTC)
    subject = new_event_id()
    out = []
    for i in range(count):
        moment = start + timedelta(seconds=i)
        out.append(
            Event(
                id=new_event_id(),
                actor="ava",
                device="laptop",
                clock=(int(moment.timestamp() * 1000) << 16) + i,
                recorded_at=moment,
                occurred_at=moment,
                body=bodies.CheckInRecorded(
                    subject=subject, confidence="on-track", value=float(i), note="steady week"
                ),
            )
        )
    return out


_BARE_TABLE = (
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
    " actor TEXT, type TEXT, clock INTEGER, recorded_ms INTEGER, occurred_ms INTEGER,"
    " data BLOB)"
)
_BARE_INSERT = (
    "INSERT INTO events (id, actor, type, clock, recorded_ms, occurred_ms, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def bare_rate(conn: sqlite3.Connection, events: list[Event]) -> float:
    """Events per second: plain sqlite3, one implicit transaction per insert."""
    rows = [event_row(e) for e in events]  # bare: encoding done beforehand
    started = time.perf_counter()
    for row in rows:
        conn.execute(_BARE_INSERT, row)
    return len(rows) / (time.perf_counter() - started)


async def client_rate(store: Store, events: list[Event], *, pipelined: bool = False) -> float:
    """Events per second through ``Store.append`` (encoding included), each event its
    own transaction. ``pipelined``: many appends in flight at once (as concurrent
    tasks would), still one commit per event, in order."""
    before = await store.scalar("SELECT count(*) FROM events")
    started = time.perf_counter()
    if pipelined:
        await asyncio.gather(*(store.append(event) for event in events))
    else:
        for event in events:
            await store.append(event)
    elapsed = time.perf_counter() - started
    assert await store.scalar("SELECT count(*) FROM events") == before + len(events)
    return len(events) / elapsed


class AppendFigures:
    """Per-round rates of the bare side and of the client, and their ratios."""

    def __init__(self) -> None:
        self.bare: list[float] = []
        self.client: list[float] = []
        self.ratios: list[float] = []


async def append_rounds(
    folder: Path, events: list[Event], rounds: int, *, pipelined: bool, direct: bool = True
) -> AppendFigures:
    """Alternate short runs of bare sqlite3 and of the client on their own files.

    The machine is shared: a burst of other work during one long run would
    skew a ratio of two long runs. Alternating rounds of a few hundred events
    expose both sides to the same moments; the median of the per-round ratios
    is the figure.
    """
    name = ("piped" if pipelined else "serial") + ("-direct" if direct else "-threaded")
    bare_conn = sqlite3.connect(folder / f"bare-{name}.sqlite3", isolation_level=None)
    bare_conn.execute("PRAGMA journal_mode = WAL")
    bare_conn.execute("PRAGMA synchronous = NORMAL")
    bare_conn.execute(_BARE_TABLE)
    store = await Store.open(folder / f"client-{name}.sqlite3", create=True, direct=direct)
    figures = AppendFigures()
    size = len(events) // rounds
    try:
        for index in range(rounds):
            chunk = events[index * size : (index + 1) * size]
            bare = bare_rate(bare_conn, chunk)
            mine = await client_rate(store, chunk, pipelined=pipelined)
            figures.bare.append(bare)
            figures.client.append(mine)
            figures.ratios.append(mine / bare)
    finally:
        await store.close()
        bare_conn.close()
    return figures


async def hop_rate(path: Path, count: int) -> float:
    """Round trips per second to the store's worker thread doing nothing (the floor)."""
    store = await Store.open(path, create=True)
    try:
        started = time.perf_counter()
        for _ in range(count):
            await store.scalar("SELECT 1")
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    return count / elapsed


def history(count: int, seed: int) -> Iterator[Event]:
    """A single-person history (``milepost_testkit.history``)."""
    return generate_history(people=1, teams=1, months=12, target_events=count, seed=seed)


async def build_log(home: Path, count: int, seed: int) -> tuple[str, datetime]:
    """A profile whose database holds ``count`` events; returns its person and last time."""
    from client.home import Profile, database_name, save_profile
    from client.views import rebuild_views

    events = list(history(count, seed))
    person = next(e.actor for e in events if e.actor != "admin")
    last = max(e.recorded_at for e in events)
    name = database_name(person, "bench")
    home.mkdir(parents=True, exist_ok=True)
    store = await Store.open(home / name, create=True)
    try:
        async with store.write():
            for key, value in (("person", person), ("device", "bench"), ("clock", "0")):
                await store.set_meta(key, value)
            await store.append_many(events)
            await rebuild_views(store, last)
    finally:
        await store.close()
    save_profile(home, Profile(person, "bench", name))
    return person, last


def timed(args: list[str], env: dict[str, str], runs: int) -> tuple[float, list[str]]:
    """Median wall time in ms of a whole ``milepost`` process, and the last stdout lines."""
    command = [sys.executable, "-m", "client.cli", *args]
    subprocess.run(command, env=env, capture_output=True, check=True)  # warm-up (bytecode)
    times = []
    out = ""
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        times.append((time.perf_counter() - started) * 1000)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed: {done.stderr.strip()}")
        out = done.stdout
    return statistics.median(times), out.splitlines()


def main(argv: list[str] | None = None) -> int:
    """Run every client benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller log, fewer runs")
    parser.add_argument("--events", type=int, default=None, help="log size (default 100000)")
    parser.add_argument("--runs", type=int, default=None, help="runs per CLI figure")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    count = args.events or (20_000 if args.quick else 100_000)
    runs = args.runs or (5 if args.quick else 9)
    appends = 4_000 if args.quick else 20_000
    rounds = 10 if args.quick else 40

    with tempfile.TemporaryDirectory(prefix="milepost-bench-") as tmp:
        tmp_path = Path(tmp)
        events = _checkins(appends)
        # The CLI's store runs statements in its own thread (``direct``); ``sync`` keeps
        # the store's worker thread, whose round trip is measured apart.
        serial = asyncio.run(append_rounds(tmp_path, events, rounds, pipelined=False))
        threaded = asyncio.run(
            append_rounds(tmp_path, events, rounds, pipelined=False, direct=False)
        )
        piped = asyncio.run(append_rounds(tmp_path, events, rounds, pipelined=True, direct=False))
        hops = asyncio.run(hop_rate(tmp_path / "hop.sqlite3", appends))
        print(
            "append ratio per round: " + " ".join(f"{r:.2f}" for r in serial.ratios),
            flush=True,
        )
        median = statistics.median
        figure("bare_sqlite_insert_rate", median(serial.bare), "events/s")
        figure("client_append_rate", median(serial.client), "events/s")
        figure("append_ratio", median(serial.ratios), "ratio")
        figure("append_ratio_worst_round", min(serial.ratios), "ratio")
        figure("threaded_append_rate", median(threaded.client), "events/s")
        figure("threaded_append_ratio", median(threaded.ratios), "ratio")
        figure("client_append_pipelined_rate", median(piped.client), "events/s")
        figure("append_pipelined_ratio", median(piped.ratios), "ratio")
        figure("store_round_trip_rate", hops, "calls/s")

        home = tmp_path / "home"
        started = time.perf_counter()
        _, last = asyncio.run(build_log(home, count, args.seed))
        figure("log_build_s", time.perf_counter() - started, "s")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["MILEPOST_HOME"] = str(home)
        env["MILEPOST_NOW"] = (last + timedelta(hours=1)).isoformat()
        env["PYTHONPATH"] = str(ROOT)
        _, lines = timed(["status", "--json"], env, 1)
        tree = json.loads("\n".join(lines))
        key_results = [kr for o in tree["objectives"] for kr in o["key_results"]]
        if not key_results:
            raise SystemExit("the generated log has no key result to check in on")
        target = key_results[-1]
        ref = target["id"].replace("-", "")[-8:]
        value = (target["current"] or 0.0) + 1
        checkin_ms, _ = timed(["checkin", ref, f"{value:g}", "--note", "bench"], env, runs)
        status_ms, _ = timed(["status"], env, runs)
        help_ms, _ = timed(["--help"], env, runs)
        stored = int(count)
        figure("log_events", stored, "events")
        figure("cli_checkin_ms", checkin_ms, "ms")
        figure("cli_status_ms", status_ms, "ms")
        figure("cli_help_ms", help_ms, "ms")
        check = subprocess.run(
            [sys.executable, "-m", "client.cli", "rebuild", "--check"],
            env=env,
            capture_output=True,
            text=True,
        )
        figure("rebuild_check_agrees", 1.0 if check.returncode == 0 else 0.0, "bool")
    return 0


if __name__ == "__main__":
    sys.exit(main())
