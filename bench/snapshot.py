"""Snapshot benchmark: the real server's restart with a snapshot vs without, same run.

Over one SQLite store holding the bench history (1,000,000 events; ``--quick``:
50,000), in one run:

1. ``milepost-server run --no-snapshots``: seconds from the process start to the first
   answered request (a goal tree), and the server process's resident memory then;
2. ``milepost-server snapshot take``: the snapshot's size and the seconds encoding took;
3. ``milepost-server run`` (loads the snapshot, folds nothing after it): the same two
   figures, and the load time the server reports in ``/metrics``;
4. in this process, over the same events: decode + fold vs decode of the snapshot;
5. first of all, goal-tree latency (one request at a time) while the running server
   takes its first snapshot in the background (``--snapshot-every 1``) and right after.

Starts alternate (without, with, without, with, ...; ``--rounds``) and the best of each
is reported, so a noisy shared machine moves both. Every process started here is
stopped by pid. Prints one ``figure: NAME = VALUE UNIT`` line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import events
from bench.server import (
    figure,
    fill_store,
    heads,
    member_and_team,
    print_figures,
    rss_mb,
    start_server,
    stop_server,
)
from milepost_testkit.history import history_bytes
from projections import persist
from projections.state import ProjectionState, apply

BIN = Path(sys.executable).parent / "milepost-server"


def start(home: Path, person: str, token: str, *extra: str) -> tuple[float, float, str]:
    """Start the server; (seconds to the first answered goal tree, RSS MB then, metrics)."""
    began = time.perf_counter()
    process, url = start_server(home, *extra)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        while True:
            response = httpx.get(f"{url}/people/{person}/goals", headers=headers, timeout=60)
            if response.status_code == 200:
                break
            time.sleep(0.01)
        seconds = time.perf_counter() - began
        memory = rss_mb(process.pid)
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        return seconds, memory, metrics
    finally:
        stop_server(process, patience=300)


def latency_during_take(home: Path, person: str, token: str) -> None:
    """Goal-tree latency while the running server takes its first snapshot (periodic, in
    pieces on the event loop) vs right after, one request at a time."""
    process, url = start_server(home, "--snapshot-every", "1")
    try:
        headers = {"Authorization": f"Bearer {token}"}
        during: list[float] = []
        after: list[float] = []
        taken_at: float | None = None
        with httpx.Client(headers=headers, timeout=60) as client:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                began = time.perf_counter()
                response = client.get(f"{url}/people/{person}/goals")
                elapsed = (time.perf_counter() - began) * 1000
                if response.status_code != 200:
                    time.sleep(0.01)
                    continue
                if taken_at is None:
                    during.append(elapsed)
                    if len(during) % 20 == 0:
                        text = client.get(f"{url}/metrics").text
                        if (metric(text, "milepost_snapshots_taken_total") or 0) >= 1:
                            taken_at = time.monotonic()
                else:
                    after.append(elapsed)
                    if time.monotonic() - taken_at > 3:
                        break
        if taken_at is None or not after:
            raise RuntimeError("the server took no snapshot")
        for name, values in (("during", during), ("after", after)):
            cuts = statistics.quantiles(values, n=100)
            figure(f"goal_tree_{name}_periodic_snapshot_p50", cuts[49], "ms")
            figure(f"goal_tree_{name}_periodic_snapshot_p99", cuts[98], "ms")
            figure(f"goal_tree_{name}_periodic_snapshot_max", max(values), "ms")
    finally:
        stop_server(process, patience=300)


def metric(text: str, name: str) -> float | None:
    found = re.search(rf"^{name} ([\d.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else None


def in_process(data: list[bytes]) -> None:
    """Decode + fold vs decoding the snapshot of the result, same events, same process."""
    gc.disable()
    try:
        began = time.perf_counter()
        state = ProjectionState()
        for event in events.decode_many(data):
            apply(state, event)
        fold = time.perf_counter() - began
        began = time.perf_counter()
        blob = persist.encode(state, persist.Follower(len(data)))
        encode = time.perf_counter() - began
        del state
        gc.collect()
        began = time.perf_counter()
        persist.decode(blob, persist.checksum(blob))
        load = time.perf_counter() - began
    finally:
        gc.enable()
    figure("inprocess_decode_fold_seconds", fold, "s")
    figure("inprocess_snapshot_encode_seconds", encode, "s")
    figure("inprocess_snapshot_load_seconds", load, "s")
    figure("inprocess_fold_vs_snapshot_load", fold / load, "ratio")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="50,000 events")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None, help="starts of each kind")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args(argv)
    count = args.events or (50_000 if args.quick else 1_000_000)
    rounds = args.rounds or (3 if args.quick else 2)
    data = history_bytes(target_events=count)
    with tempfile.TemporaryDirectory(prefix="milepost-bench-snap-") as tmp:
        home = Path(tmp) / "server-home"
        ids = heads(data)
        filled = asyncio.run(fill_store(home / "milepost.sqlite", data, ids))
        print(f"stored {len(data):,} events in {filled:.1f}s", file=sys.stderr)
        person, _ = member_and_team(data)
        del ids
        figure("events_stored", len(data), "events")
        env = {**os.environ, "MILEPOST_SERVER_HOME": str(home)}
        added = subprocess.run(
            [str(BIN), "person", "add", person, "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        token = json.loads(added.stdout)["api_token"]
        if not args.skip_latency:
            latency_during_take(home, person, token)
        taken = subprocess.run(
            [str(BIN), "snapshot", "take", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        snapshot = json.loads(taken.stdout)
        figure("snapshot_bytes", snapshot["size"], "bytes")
        figure("snapshot_bytes_per_event", snapshot["size"] / len(data), "bytes")
        figure("snapshot_encode_seconds", snapshot["seconds"], "s")
        without: list[tuple[float, float]] = []
        with_snapshot: list[tuple[float, float, float]] = []
        for _ in range(rounds):
            seconds, memory, _ = start(home, person, token, "--no-snapshots")
            without.append((seconds, memory))
            print(f"  start without: {seconds:.2f}s, {memory:.0f} MB", file=sys.stderr)
            seconds, memory, text = start(home, person, token)
            load = metric(text, "milepost_snapshot_load_seconds")
            if load is None or metric(text, "milepost_snapshot_position") != len(data):
                raise RuntimeError("the server did not start from the snapshot")
            with_snapshot.append((seconds, memory, load))
            print(
                f"  start with: {seconds:.2f}s (load {load:.2f}s), {memory:.0f} MB",
                file=sys.stderr,
            )
        best_without = min(without)
        best_with = min(with_snapshot)
        figure("restart_without_snapshot_seconds", best_without[0], "s")
        figure("restart_with_snapshot_seconds", best_with[0], "s")
        figure("restart_with_vs_without", best_with[0] / best_without[0], "ratio")
        figure("snapshot_load_seconds_in_server", best_with[2], "s")
        figure("server_rss_after_start_without_snapshot", best_without[1], "MB")
        figure("server_rss_after_start_with_snapshot", best_with[1], "MB")
    if not args.skip_in_process:
        in_process(data)
    print_figures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
