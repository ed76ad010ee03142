"""Team page benchmark: how long after a device's push a new event is on an open page.

The real ``milepost-server run`` (embedded NATS, SQLite) with two people in one team.
A browser-like client signs in through a one-time link and holds the page's live feed
(``GET /t/<team>/feed/live``, server-sent events, session cookie). A device of the
other person publishes check-ins to JetStream one at a time, as ``milepost sync`` pushes
them; for each, the delay from the stream's acknowledgement of the push to the
``feed.item`` naming it on the open page is one sample.

Loopback only; every process started here is stopped by pid. Prints one
``figure: NAME = VALUE UNIT`` line per figure.

Example: python bench/web.py --events 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.server import start_server, stop_server
from events import (
    CheckInRecorded,
    Event,
    HybridLogicalClock,
    KnownBody,
    MilestonePlanned,
    ObjectiveCreated,
    encode,
    new_event_id,
)
from server.nats_embedded import events_subject, inbox_prefix

SERVER = Path(sys.executable).parent / "milepost-server"


def admin(home: Path, *args: str) -> str:
    env = {**os.environ, "MILEPOST_SERVER_HOME": str(home)}
    done = subprocess.run(
        [str(SERVER), *args], env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return done.stdout


async def measure(base: str, viewer_token: str, writer: dict[str, str], count: int) -> list[float]:
    """Push ``count`` check-ins as the writer; the delay of each to the viewer's open page."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as web:
        link = await web.post("/auth/links", headers={"Authorization": f"Bearer {viewer_token}"})
        link.raise_for_status()
        (await web.get(link.json()["url"])).raise_for_status()
        person = writer["person"]
        nc = await nats.connect(
            writer["nats_url"], user=person, password=writer["nats_password"],
            inbox_prefix=inbox_prefix(person),
        )  # fmt: skip
        js = nc.jetstream()
        clock = HybridLogicalClock()

        def event(body: KnownBody) -> Event:
            now = datetime.now(UTC)
            return Event(
                id=new_event_id(), actor=person, device="bench", clock=clock.now(),
                recorded_at=now, occurred_at=now, body=body,
            )  # fmt: skip

        async def push(item: Event) -> float:
            await js.publish(
                events_subject(person, item.id), encode(item), headers={"Nats-Msg-Id": item.id}
            )
            return time.perf_counter()

        goal = event(ObjectiveCreated(title="Bench", cycle="2026", visibility="team"))
        milestone = event(MilestonePlanned(title="Bench milestone", objective=goal.id))
        for item in (goal, milestone):
            await push(item)
        arrived: dict[str, float] = {}
        ready = asyncio.Event()

        async def listen() -> None:
            async with web.stream("GET", "/t/web/feed/live") as stream:
                kind = ""
                async for line in stream.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                        if kind == "ready":
                            ready.set()
                    elif line.startswith("data: ") and kind == "feed.item":
                        arrived[json.loads(line[6:])["id"]] = time.perf_counter()

        listener = asyncio.create_task(listen())
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.sleep(0.5)
        delays = []
        for index in range(count):
            checkin = event(
                CheckInRecorded(
                    subject=milestone.id, confidence="on-track", percent=float(index % 100)
                )
            )
            pushed = await push(checkin)
            deadline = time.perf_counter() + 10
            while checkin.id not in arrived and time.perf_counter() < deadline:
                await asyncio.sleep(0.001)
            if checkin.id not in arrived:
                raise RuntimeError(f"check-in {index} never reached the page")
            delays.append((arrived[checkin.id] - pushed) * 1000)
            await asyncio.sleep(0.02)
        listener.cancel()
        await nc.close()
        return delays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200, help="check-ins pushed (samples)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="milepost-bench-web-") as tmp:
        home = Path(tmp)
        process, base = start_server(home)
        try:
            people = {
                name: json.loads(admin(home, "person", "add", name, "--team", "web", "--json"))
                for name in ("alice", "bob")
            }
            delays = asyncio.run(
                measure(base, people["bob"]["api_token"], people["alice"], args.events)
            )
        finally:
            stop_server(process)
    cuts = statistics.quantiles(delays, n=100, method="inclusive")
    for name, value, unit in (
        ("web_live_feed_samples", len(delays), "events"),
        ("web_live_feed_p50", cuts[49], "ms"),
        ("web_live_feed_p99", cuts[98], "ms"),
        ("web_live_feed_max", max(delays), "ms"),
    ):
        print(f"figure: {name} = {value:.4g} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
