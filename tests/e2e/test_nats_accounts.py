"""A person added to a running ``milepost-server`` gets a working NATS account at once."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import nats

from events import ObjectiveCreated
from events.wire import PullRequest, decode_reply, encode_request
from server.nats_embedded import events_subject, inbox_prefix, pull_subject
from tests.e2e.test_server_cli import Running, cli, home, running
from tests.services import EventMaker

__all__ = ["home", "running"]  # fixtures used below


def stop_cleanly(server: Running) -> None:
    """SIGTERM, so the server stops its nats-server child too (the fixture's SIGKILL would
    leave that child running)."""
    import signal

    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(20)


def test_a_person_added_while_the_server_runs_can_push_and_pull(
    home: Path, running: Running, tmp_path: Path
) -> None:
    target = tmp_path / "erin.json"
    assert cli(home, "person", "add", "erin", "--output", str(target)).returncode == 0
    creds = json.loads(target.read_text())
    event = EventMaker()("erin", ObjectiveCreated(title="New here", cycle="2026-Q1"))

    async def go() -> None:
        from events import encode

        nc = await nats.connect(
            running.nats_url,
            user="erin",
            password=creds["nats_password"],
            inbox_prefix=inbox_prefix("erin"),
            allow_reconnect=False,
        )
        try:
            ack = await nc.jetstream().publish(
                events_subject("erin", event.id), encode(event), timeout=5
            )
            assert ack.seq >= 1
            for _ in range(50):  # ingest stores it within moments
                reply = decode_reply(
                    (
                        await nc.request(
                            pull_subject("erin"),
                            encode_request(PullRequest(device="d")),
                            timeout=5,
                        )
                    ).data
                )
                assert reply.error is None
                if reply.events:
                    break
                await asyncio.sleep(0.1)
            assert len(reply.events) == 1
        finally:
            await nc.close()

    try:
        asyncio.run(go())
    finally:
        stop_cleanly(running)


def start(home: Path, *flags: str) -> Running:
    import subprocess

    from tests.e2e.test_server_cli import BIN, env_for

    process = subprocess.Popen(
        [str(BIN), "run", "--port", "0", "--nats-port", "0", *flags],
        env=env_for(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    urls = dict(process.stdout.readline().strip().split(": ", 1) for _ in range(2))
    return Running(process, urls["http"], urls["nats"])


def test_the_rate_limit_flags_refuse_past_the_burst_and_count_it(
    home: Path, tmp_path: Path
) -> None:

    import httpx

    target = tmp_path / "erin.json"
    assert cli(home, "person", "add", "erin", "--output", str(target)).returncode == 0
    creds = json.loads(target.read_text())
    server = start(home, "--burst", "3", "--rate-limit", "0.01")
    try:
        make = EventMaker()
        events = [make("erin", ObjectiveCreated(title=f"o{i}", cycle="2026-Q1")) for i in range(5)]

        async def go() -> None:
            from events import encode

            nc = await nats.connect(
                server.nats_url,
                user="erin",
                password=creds["nats_password"],
                inbox_prefix=inbox_prefix("erin"),
            )
            for event in events:
                await nc.jetstream().publish(events_subject("erin", event.id), encode(event))
            await nc.close()

        asyncio.run(go())
        metrics: dict[str, float] = {}
        for _ in range(100):
            text = httpx.get(f"{server.http_url}/metrics", timeout=5).text
            metrics = {
                line.split()[0]: float(line.split()[1])
                for line in text.splitlines()
                if line.startswith("milepost_")
            }
            if metrics.get("milepost_ingest_messages_total", 0) >= 5:
                break
            time.sleep(0.1)
        assert metrics["milepost_ingest_stored_total"] == 3
        assert metrics["milepost_ingest_rate_limited_total"] == 2
        assert metrics["milepost_pull_refused_total"] == 0
    finally:
        stop_cleanly(server)


def test_bad_limit_flags_exit_2_with_one_line(home: Path) -> None:
    for flags in (
        ["--rate-limit", "-1"],
        ["--burst", "0"],
        ["--stream-max-bytes", "10"],
        ["--max-event-bytes", "1"],
    ):
        done = cli(home, "run", "--port", "0", *flags)
        assert done.returncode == 2, (flags, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
