"""A person added to a running ``milepost-server`` gets a working NATS account at once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats

from events import ObjectiveCreated
from events.wire import PullRequest, decode_reply, encode_request
from server.nats_embedded import events_subject, inbox_prefix, pull_subject
from tests.e2e.test_server_cli import Running, cli, home, running
from tests.services import EventMaker

__all__ = ["home", "running"]  # fixtures used below


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

    asyncio.run(go())
