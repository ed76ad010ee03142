"""Faults on the scale-out topology, each in its own test, with devices syncing through the
real ``milepost`` CLI: three NATS nodes, one PostgreSQL, two ``milepost-server`` processes
sharing the ingest consumer, three devices (alice's laptop and phone, bob's laptop).

After every fault the same end state is checked (``assert_converged``):

- every event a device logged (each was acknowledged by the stream: it ends
  ``confirmed``) is stored exactly once, at dense positions 1..N;
- every device holds exactly what it may see (here: everything, one team),
  all confirmed; alice's two devices show the same ``status``; every device
  shows the same team feed; every device's views equal its own rebuild;
- the server's projections equal a rebuild (``milepost-server rebuild --check``),
  and every running replica answers the same team feed over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from events import (
    CheckInRecorded,
    Event,
    KnownBody,
    MilestonePlanned,
    ObjectiveCreated,
    encode,
    new_event_id,
)
from milepost_testkit.cli import Cli
from milepost_testkit.cluster import eventually
from milepost_testkit.sync_world import without_short
from server.ingest import CONSUMER, STREAM
from tests.topology import Topology, push, running_topology

pytestmark = pytest.mark.slow

TEAM = "web"
DEVICES = (("alice", "laptop"), ("alice", "phone"), ("bob", "laptop"))


def team_history(person: str, device: str, count: int, *, day: int = 5) -> list[Event]:
    """``count`` events by ``person`` on ``device``: a team objective, milestones, check-ins."""
    moment = datetime(2026, 1, day, 9, 0, tzinfo=UTC)
    clock = int(moment.timestamp() * 1000) << 16
    events: list[Event] = []

    def add(body: KnownBody) -> Event:
        nonlocal clock, moment
        clock += 1
        moment += timedelta(seconds=1)
        event = Event(
            id=new_event_id(),
            actor=person,
            device=device,
            clock=clock,
            recorded_at=moment,
            occurred_at=moment,
            body=body,
        )
        events.append(event)
        return event

    goal = add(ObjectiveCreated(title=f"{person} on {device}", cycle="2026-Q1", visibility="team"))
    milestones = [
        add(MilestonePlanned(title=f"Milestone {i}", objective=goal.id))
        for i in range(max(1, (count - 1) // 5))
    ]
    index = 0
    while len(events) < count:
        target = milestones[index % len(milestones)]
        add(CheckInRecorded(subject=target.id, confidence="on-track", percent=float(index % 100)))
        index += 1
    return events[:count]


class Device(Cli):
    """One device home, initialised against every NATS node of the cluster."""

    def __init__(self, home: Path, person: str, name: str) -> None:
        super().__init__(home)
        self.person = person
        self.name = name
        self.logged: list[Event] = []
        self.watcher: subprocess.Popen[str] | None = None

    def log(self, events: list[Event]) -> None:
        """Log events on this device (offline: ``milepost import``)."""
        path = self.home / f"import-{len(self.logged)}.jsonl"
        path.write_bytes(b"".join(encode(e) + b"\n" for e in events))
        assert self.json("import", str(path))["added"] == len(events)
        self.logged += events

    def sync_once(self) -> bool:
        """``milepost sync --json``; False when it failed (a fault under it)."""
        done = self.run("sync", "--json")
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode == 0

    def states(self) -> dict[str, str]:
        """Event id → sync state of every event on the device."""
        return {e["event"]["id"]: e["sync"] for e in self.json("log", "--limit", "0")}

    def start_watch(self) -> None:
        """``milepost sync --watch`` in the background (reconnects by itself)."""
        env = {**self.env, "MILEPOST_HOME": str(self.home), "MILEPOST_NOW": self.now}
        self.watcher = subprocess.Popen(
            [sys.executable, "-m", "client.cli", "sync", "--watch", "--json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def stop_watch(self) -> str:
        """SIGTERM the watcher; return its stderr. It must exit cleanly."""
        watcher, self.watcher = self.watcher, None
        if watcher is None:
            return ""
        if watcher.poll() is None:
            watcher.send_signal(signal.SIGTERM)
        try:
            _, err = watcher.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            watcher.kill()
            _, err = watcher.communicate()
        assert watcher.returncode == 0, err
        assert "Traceback" not in err, err
        return err


@dataclass
class World:
    """The topology and the three devices."""

    topology: Topology
    devices: list[Device] = field(default_factory=list)

    @property
    def logged(self) -> set[str]:
        """Every event id logged on any device."""
        return {e.id for d in self.devices for e in d.logged}

    def log_everywhere(self, count: int, *, day: int) -> None:
        """Log ``count`` new events on every device."""
        for device in self.devices:
            device.log(team_history(device.person, device.name, count, day=day))

    async def sync_all(self) -> list[bool]:
        """One ``milepost sync`` on every device, all at once."""
        return list(await asyncio.gather(*(asyncio.to_thread(d.sync_once) for d in self.devices)))

    async def converged(self) -> bool:
        """Whether every device holds every logged event, all confirmed."""
        logged = self.logged
        for device in self.devices:
            states = await asyncio.to_thread(device.states)
            if not logged <= set(states) or set(states.values()) != {"confirmed"}:
                return False
        return True

    async def sync_until_converged(self, timeout: float = 40.0) -> None:
        """Sync every device in rounds until all have everything, confirmed."""
        deadline = time.monotonic() + timeout
        while not await self.converged():
            assert time.monotonic() < deadline, await self.progress()
            await self.sync_all()

    async def progress(self) -> str:
        """Per device: how many events in which state (for failure messages)."""
        lines = []
        for device in self.devices:
            states = await asyncio.to_thread(device.states)
            counts: dict[str, int] = {}
            for state in states.values():
                counts[state] = counts.get(state, 0) + 1
            lines.append(f"{device.person}-{device.name}: {counts} of {len(self.logged)}")
        return "\n".join(lines) + "\n" + self.topology.describe()


@pytest_asyncio.fixture
async def world(tmp_path: Path, postgres_url: str) -> AsyncIterator[World]:
    """Cluster, PostgreSQL, two servers; alice and bob in ``web``; three device homes."""
    async with running_topology(tmp_path, postgres_url) as topology:
        await topology.add_people(TEAM, "alice", "bob")
        world = World(topology)
        for person, name in DEVICES:
            device = Device(tmp_path / f"{person}-{name}", person, name)
            device.home.mkdir(parents=True)
            credentials = device.home / "credentials.json"
            password = topology.people[person].nats_password
            credentials.write_text(json.dumps({"person": person, "nats_password": password}))
            device.ok(
                "init",
                "--person",
                person,
                "--device",
                name,
                "--team",
                TEAM,
                "--server",
                topology.nats_urls(),
                "--credentials",
                str(credentials),
            )
            world.devices.append(device)
        try:
            yield world
        finally:
            for device in world.devices:
                if device.watcher is not None and device.watcher.poll() is None:
                    device.watcher.kill()
                    device.watcher.wait()


async def assert_converged(world: World) -> None:
    """The end state every fault test requires (see the module docstring)."""
    topology = world.topology
    logged = world.logged
    stored = await topology.stored()
    ids = [s.id for s in stored]
    # Stored exactly once, at dense positions; nothing but what devices logged and the
    # membership events written by `person add --team`.
    assert len(ids) == len(set(ids))
    assert [s.position for s in stored] == list(range(1, len(stored) + 1))
    assert logged <= set(ids)
    assert len(set(ids) - logged) == len(topology.people)  # one team.member_joined each
    await topology.quiesce(len(stored))

    # Every device: everything (one team, all team-visible), confirmed; the same views.
    for device in world.devices:
        states = await asyncio.to_thread(device.states)
        assert logged <= set(states) <= set(ids)
        assert set(states.values()) == {"confirmed"}
    # Each device's stored views equal its own rebuild, even though with two servers
    # ingesting at once a child can be stored (and pulled) before its parent.
    for device in world.devices:
        await asyncio.to_thread(device.ok, "rebuild", "--check")
    laptop, phone, _ = world.devices
    statuses = [await asyncio.to_thread(_status_without_sync, device) for device in (laptop, phone)]
    assert statuses[0] == statuses[1]
    feeds = [
        [
            item["summary"]
            for item in (await asyncio.to_thread(d.json, "feed", "--limit", "500"))["items"]
        ]
        for d in world.devices
    ]
    assert feeds[0] == feeds[1] == feeds[2]
    assert len(feeds[0]) > 0

    # The server: projections equal a rebuild; every replica answers the same feed.
    await asyncio.to_thread(topology.rebuild_check)
    token = topology.people["bob"].api_token
    answers = []
    for server in topology.servers:
        if server.running:
            response = httpx.get(
                f"{server.http_url}/teams/{TEAM}/feed?limit=200",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert response.status_code == 200, response.text
            answers.append(response.json())
    assert answers and all(a == answers[0] for a in answers)
    info = await topology.cluster.clients[0].jetstream().consumer_info(STREAM, CONSUMER)
    assert info.num_pending == 0 and info.num_ack_pending == 0


def _status_without_sync(device: Device) -> Any:
    """``status --json`` without what is the device's own: sync counters, short refs."""
    status = device.json("status")
    status.pop("sync", None)
    return without_short(status)


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    assert await eventually(check, timeout=timeout, interval=0.05), what


def device_connections(topology: Topology) -> dict[int, int]:
    """Node index → how many device (person) connections it holds."""
    counts: dict[int, int] = {}
    for index, node in enumerate(topology.cluster.nodes):
        if not node.running:
            continue
        try:
            connz: dict[str, Any] = node.monitor("/connz?limit=1000")
        except OSError:
            continue
        names = [c.get("name") or "" for c in connz.get("connections") or []]
        counts[index] = sum(1 for n in names if n.startswith("milepost ") and "server" not in n)
    return counts


async def test_a_nats_node_killed_mid_sync_loses_nothing(world: World) -> None:
    topology = world.topology
    js = topology.cluster.clients[0].jetstream()
    world.log_everywhere(200, day=5)
    for device in world.devices:
        device.start_watch()

    async def pushing() -> bool:
        connected = sum(device_connections(topology).values()) >= len(world.devices)
        # The stream keeps only what is not yet ingested (interest retention): count published.
        return connected and (await js.stream_info(STREAM)).state.last_seq > 0

    await wait_for(pushing, 20, "the watchers did not start pushing")
    # Mid-sync, the node holding most devices' connections dies.
    connections = device_connections(topology)
    victim = max(connections, key=lambda i: connections[i])
    assert connections[victim] > 0
    topology.cluster.kill(victim)

    async def reconnected() -> bool:
        counts = device_connections(topology)
        return victim not in counts and sum(counts.values()) >= len(world.devices)

    await wait_for(reconnected, 20, "the watchers did not reconnect to another node")
    # Generous: CI runs this beside two other workers on two cores (it takes ~20 s alone).
    if not await eventually(world.converged, timeout=90, interval=0.05):
        raise AssertionError("devices did not converge while watching\n" + await world.progress())
    for device in world.devices:
        device.stop_watch()
    leader, _ = await topology.cluster.stream_replicas()
    assert leader is not None and leader != topology.cluster.nodes[victim].name

    # One-shot syncs after the crash: each device's node list still names the dead node.
    world.log_everywhere(50, day=6)
    await world.sync_until_converged()
    await assert_converged(world)


async def test_a_server_killed_mid_batch_the_other_carries_on(world: World) -> None:
    topology = world.topology
    first, second = topology.servers
    world.log_everywhere(300, day=5)
    js = topology.cluster.clients[0].jetstream()
    # The second replica is paused, so whatever is fetched and unacknowledged is the first's.
    second.pause()
    syncing = asyncio.ensure_future(world.sync_all())

    async def first_has_a_batch_in_hand() -> bool:
        info = await js.consumer_info(STREAM, CONSUMER)
        return bool(info.num_ack_pending > 0)

    try:
        await wait_for(first_has_a_batch_in_hand, 30, "ingest never started")
        first.kill()  # mid-batch: its batch is redelivered to the other after --ack-wait
    finally:
        second.resume()
    await syncing
    await world.sync_until_converged()
    assert second.running and second.healthy()
    metrics = await asyncio.to_thread(second.metrics)
    assert metrics["milepost_ingest_stored_total"] > 0
    await assert_converged(world)

    # The killed replica comes back and folds to the same state.
    await topology.start_servers(first)
    await assert_converged(world)


async def test_restarting_everything_loses_nothing(world: World) -> None:
    topology = world.topology
    cluster = topology.cluster
    world.log_everywhere(200, day=5)
    syncing = asyncio.ensure_future(world.sync_all())

    async def some_stored() -> bool:
        return bool((await topology.stored())[-1:]) and len(await topology.stored()) > 50

    await wait_for(some_stored, 30, "nothing was stored")
    # A crash of the whole site, mid-sync: every server and every NATS node at once.
    for server in topology.servers:
        server.kill()
    for index in range(cluster.size):
        cluster.kill(index)
    await syncing
    for index in range(cluster.size):
        cluster.start_node(index)
    await cluster.await_ready()
    await cluster.close_clients()
    await cluster.ensure_events_stream()
    await topology.start_servers()
    await world.sync_until_converged()
    world.log_everywhere(50, day=6)
    await world.sync_until_converged()
    await assert_converged(world)


async def test_device_views_survive_a_child_pulled_before_its_parent(world: World) -> None:
    """Deterministic: each event ingested and pulled on its own, children first."""
    topology = world.topology
    phone = world.devices[1]
    events = team_history("alice", "laptop", 8)
    alice = await topology.connect_person("alice")
    # Check-ins, then milestones, then the objective; the phone pulls after each one.
    for count, event in enumerate(reversed(events), start=1):
        await push(alice, [event])
        await topology.quiesce(len(topology.people) + count)
        assert await asyncio.to_thread(phone.sync_once)
    assert {e.id for e in events} <= set(phone.states())
    await asyncio.to_thread(phone.ok, "rebuild", "--check")
