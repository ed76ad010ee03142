"""The scale-out topology as real processes: compose.yaml without containers.

Three ``nats-server`` processes in a cluster (``tests.cluster``), one
PostgreSQL database, and ``milepost-server run`` processes pointed at both
(``--database postgresql://… --nats <three URLs> --stream-replicas 3``), each
with its own data folder and a fixed HTTP port (a restart keeps its URL).
People are added with the real ``milepost-server person add``; the NATS
authorization is regenerated with ``milepost-server nats-config``, copied to
every node and applied with SIGHUP, exactly as the operations guide says.

Every process is started by us and stopped by its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NatsClient

from events import Event, encode
from milepost_testkit.cluster import HOST, NatsCluster, eventually, running_cluster
from server.ingest import CONSUMER, STREAM
from server.nats_cluster import AUTH_FILE, SERVICE_PASSWORD_ENV
from server.nats_embedded import events_subject, free_port, inbox_prefix, reload_config
from server.process import kill_by_pid, log_tail, spawn_logged, stop_by_pid
from server.store.postgres import PostgresStore
from server.store.protocol import StoredEvent

ROOT = Path(__file__).resolve().parents[1]


def base_env() -> dict[str, str]:
    """The environment for our child processes (no MILEPOST_* from the caller)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILEPOST_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


@dataclass
class ServerProcess:
    """One ``milepost-server run`` process of the topology."""

    name: str
    home: Path
    database: str
    nats: str  # node URLs without a login, as compose.yaml gives them
    nats_password: str  # the service user's, passed in the environment as compose does
    port: int = field(default_factory=lambda: free_port(HOST))
    ack_wait: float = 3.0
    process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the process writes its output."""
        return self.home / "server.log"

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the process (returns at once; ``wait_ready`` waits for HTTP)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.home.mkdir(parents=True, exist_ok=True)
        # Secrets in the environment, none on the command line: compose.yaml's way.
        env = {
            **base_env(),
            "MILEPOST_SERVER_HOME": str(self.home),
            "MILEPOST_DATABASE": self.database,
            "MILEPOST_NATS": self.nats,
            "MILEPOST_NATS_PASSWORD": self.nats_password,
        }
        command = [
            sys.executable,
            "-m",
            "server.cli",
            "run",
            "--stream-replicas",
            "3",
            "--ack-wait",
            str(self.ack_wait),
            "--host",
            HOST,
            "--port",
            str(self.port),
        ]
        self.process = spawn_logged(command, self.log_path, env)

    def healthy(self) -> bool:
        """Whether ``/health`` answers 200."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/health", timeout=1.0) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def wait_ready(self, timeout: float = 40.0) -> None:
        """Wait until the HTTP API answers (the server is ingesting by then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout}s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL (a crash: no batch finished, nothing acknowledged on the way out)."""
        process, self.process = self.process, None
        kill_by_pid(process)

    def pause(self) -> None:
        """SIGSTOP: the process holds its connections but does nothing."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (clean stop), then SIGKILL after ``timeout``."""
        process, self.process = self.process, None
        stop_by_pid(process, timeout)

    def log_tail(self) -> str:
        """The end of the log, for failure messages."""
        return log_tail(self.log_path, 3000)

    def metrics(self) -> dict[str, float]:
        """``/metrics`` parsed into name → value."""
        with urllib.request.urlopen(f"{self.http_url}/metrics", timeout=2.0) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.partition(" ")
                values[name] = float(value)
        return values


@dataclass(frozen=True)
class PersonCredentials:
    """What ``person add --json`` printed."""

    person: str
    nats_password: str
    api_token: str


@dataclass
class Topology:
    """Cluster + database + server processes + registered people."""

    root: Path
    cluster: NatsCluster
    database: str
    servers: list[ServerProcess] = field(default_factory=list)
    people: dict[str, PersonCredentials] = field(default_factory=dict)

    def admin(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``milepost-server <args> --database <db>`` (an admin command) and check it."""
        env = {
            **base_env(),
            "MILEPOST_SERVER_HOME": str(self.root / "admin"),
            SERVICE_PASSWORD_ENV: self.cluster.service_password,
        }
        done = subprocess.run(
            [sys.executable, "-m", "server.cli", *args, "--database", self.database],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
        return done

    def add_server(self, name: str) -> ServerProcess:
        """Declare one server process (not started)."""
        server = ServerProcess(
            name,
            self.root / name,
            self.database,
            self.cluster.servers_arg,
            self.cluster.service_password,
        )
        self.servers.append(server)
        return server

    async def start_servers(self, *servers: ServerProcess) -> None:
        """Start the given servers (all by default) together and wait until each is ready."""
        chosen = servers or tuple(self.servers)
        for server in chosen:
            server.start()
        await asyncio.gather(*(asyncio.to_thread(s.wait_ready) for s in chosen))

    async def add_people(self, team: str, *names: str) -> None:
        """``person add`` each one into ``team``, then push the new NATS authorization."""
        for name in names:
            done = await asyncio.to_thread(
                self.admin, "person", "add", name, "--team", team, "--json"
            )
            shown = json.loads(done.stdout)
            self.people[name] = PersonCredentials(name, shown["nats_password"], shown["api_token"])
            self.cluster.passwords[name] = shown["nats_password"]
        await self.reload_nats_authorization()

    async def reload_nats_authorization(self) -> None:
        """``nats-config`` into every node's folder, SIGHUP each running node, wait until
        every person can log in on every running node."""
        generated = self.root / "auth.conf"
        await asyncio.to_thread(self.admin, "nats-config", "--out", str(generated))
        for node in self.cluster.nodes:
            shutil.copy(generated, node.folder / AUTH_FILE)
            if node.process is not None and node.process.poll() is None:
                # Twice: a new person's account gets its imports at the second reload.
                await asyncio.to_thread(reload_config, node.process.pid, node.log_path)
        for name, creds in self.people.items():
            for node in self.cluster.nodes:
                if not node.running:
                    continue
                url, password = node.url, creds.nats_password

                async def can_login(url: str = url, person: str = name, pw: str = password) -> bool:
                    return await self._can_login(url, person, pw)

                assert await eventually(can_login, timeout=10), f"{name} cannot log in on {url}"

    @staticmethod
    async def _can_login(url: str, person: str, password: str) -> bool:
        client = await nats.connect(
            url,
            user=person,
            password=password,
            inbox_prefix=inbox_prefix(person),
            allow_reconnect=False,
            connect_timeout=1,
        )
        await client.close()
        return True

    async def connect_person(self, person: str) -> NatsClient:
        """A device-like connection for ``person`` that knows every node."""
        return await self.cluster.connect_person(person)

    def nats_urls(self) -> str:
        """Every node's URL, comma-separated (what devices are given)."""
        return self.cluster.servers_arg

    async def consumer_drained(self) -> bool:
        """Whether the ingest consumer has nothing pending or unacknowledged."""
        client = self.cluster.clients[0]
        info = await client.jetstream().consumer_info(STREAM, CONSUMER)
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)

    def rebuild_check(self) -> dict[str, Any]:
        """``milepost-server rebuild --check --json``: projections recomputed equal the fold."""
        done = self.admin("rebuild", "--check", "--json", timeout=120)
        report: dict[str, Any] = json.loads(done.stdout)
        assert report["equal"], report
        return report

    async def quiesce(self, stored: int, timeout: float = 40.0) -> None:
        """Wait until ``stored`` events are in the store, the consumer is drained and every
        running server's projections have folded them all."""

        async def settled() -> bool:
            if not await self.consumer_drained():
                return False
            for server in self.servers:
                if server.running:
                    metrics = await asyncio.to_thread(server.metrics)
                    if metrics.get("milepost_events_stored", 0) < stored:
                        return False
                    if metrics.get("milepost_projection_position", 0) < stored:
                        return False
            return True

        assert await eventually(settled, timeout=timeout, interval=0.2), self.describe()

    async def stored(self) -> list[StoredEvent]:
        """Every stored event in position order (read with a fresh store connection)."""
        store = PostgresStore(self.database)
        await store.open()
        try:
            events: list[StoredEvent] = []
            while page := await store.events_after(events[-1].position if events else 0, 5000):
                events += page
            return events
        finally:
            await store.close()

    def describe(self) -> str:
        """State for failure messages: server logs' tails."""
        return "\n".join(f"--- {s.name}\n{s.log_tail()}" for s in self.servers)

    def stop(self) -> None:
        """Stop every server process by pid."""
        for server in self.servers:
            server.stop()


@contextlib.asynccontextmanager
async def running_topology(
    root: Path, database: str, *, servers: int = 2
) -> AsyncIterator[Topology]:
    """The cluster, ``servers`` server processes on ``database``; everything stopped on exit."""
    async with running_cluster(root / "cluster") as cluster:
        topology = Topology(root, cluster, database)
        try:
            for index in range(1, servers + 1):
                topology.add_server(f"milepost-{index}")
            await topology.start_servers()
            yield topology
        finally:
            await asyncio.to_thread(topology.stop)


async def push(
    client: NatsClient, events: list[Event], window: int = 50, timeout: float = 60.0
) -> list[str]:
    """Push like a device (Nats-Msg-Id = event id), retrying each until the stream
    acknowledges it (TimeoutError after ``timeout`` seconds); return the acknowledged
    ids in order."""
    js = client.jetstream()

    async def one(event: Event) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await js.publish(
                    events_subject(event.actor, event.id),
                    encode(event),
                    headers={"Nats-Msg-Id": event.id},
                    timeout=2.0,
                )
            except (nats.errors.Error, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{event.id} not acknowledged: {exc!r}") from None
                await asyncio.sleep(0.1)
                continue
            return event.id

    acked: list[str] = []
    for start in range(0, len(events), window):
        acked += await asyncio.gather(*(one(e) for e in events[start : start + window]))
    return acked
