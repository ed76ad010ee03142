"""Real processes for the sync e2e tests: a nats-server, ``milepost-server run`` against it,
and device homes driving the real ``milepost`` CLI. Everything on 127.0.0.1, stopped by pid.

The nats-server is started here (not by ``milepost-server``) so a test can stop and
restart the server while JetStream keeps the pushed events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from events import (
    CheckInRecorded,
    Event,
    KnownBody,
    MilestonePlanned,
    ObjectiveCreated,
    encode,
    new_event_id,
)
from server.accounts import hash_token, open_accounts
from server.nats_embedded import SERVICE_USER, EmbeddedNats, hash_password, new_password
from tests.e2e.conftest import ROOT, Cli

PEOPLE = ("alice", "bob", "carol", "dave")
SERVER_BIN = Path(sys.executable).parent / "milepost-server"


class ServerProcess:
    """``milepost-server run`` on an external NATS and an SQLite file; stopped by pid."""

    def __init__(self, home: Path, nats_url: str) -> None:
        self.home = home
        self.nats_url = nats_url
        self.database = str(home / "server.sqlite")
        self.process: subprocess.Popen[str] | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MILEPOST_")}
        self.env["MILEPOST_SERVER_HOME"] = str(home)
        self.env["PYTHONPATH"] = str(ROOT)

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until it prints its URLs (it is serving by then)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(SERVER_BIN), "run", "--nats", self.nats_url, "--database", self.database,
             "--port", "0"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=(self.home / "server.err").open("a"),
            text=True,
        )  # fmt: skip
        lines: queue.Queue[str] = queue.Queue()
        stdout = self.process.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if lines.get(timeout=0.1).startswith("nats:"):
                    return
            except queue.Empty:
                if self.process.poll() is not None:
                    break
        err = (self.home / "server.err").read_text()[-2000:]
        self.stop()
        raise RuntimeError(f"milepost-server did not start: {err}")

    def admin(self, *args: str) -> str:
        """Run a ``milepost-server`` admin command on the same database."""
        done = subprocess.run(
            [str(SERVER_BIN), *args, "--database", self.database],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop by pid (SIGKILL after 10 s)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Device(Cli):
    """One person's device: a home with its own database, set up for sync."""

    def __init__(self, home: Path, person: str, name: str) -> None:
        super().__init__(home)
        self.person = person
        self.name = name

    def sync(self, *extra: str) -> dict[str, Any]:
        """``milepost sync --json`` that must succeed."""
        return dict(self.json("sync", *extra))

    def status(self) -> Any:
        """``status --json`` without what is device-specific: the sync counters and the
        short references (numbered in order of arrival on each device)."""
        shown = self.json("status")
        shown.pop("sync", None)
        return without_short(shown)

    def log_states(self) -> dict[str, str]:
        """Event id → sync state of every stored event."""
        return {e["event"]["id"]: e["sync"] for e in self.json("log", "--limit", "0")}


def without_short(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_short(v) for k, v in node.items() if k != "short"}
    if isinstance(node, list):
        return [without_short(v) for v in node]
    return node


class World:
    """A nats-server with the test people, a server process, and devices."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.passwords = {person: new_password() for person in PEOPLE}
        self.service_password = new_password()
        self.nats_hashes = {p: hash_password(pw, rounds=4) for p, pw in self.passwords.items()}
        self.nats = EmbeddedNats(
            root / "nats", service_password=self.service_password, people=self.nats_hashes
        )
        self.server = ServerProcess(
            root / "server",
            self.nats.url.replace("nats://", f"nats://{SERVICE_USER}:{self.service_password}@"),
        )
        self.devices: list[Device] = []

    def start(self) -> None:
        """Register the people, start NATS and the server."""
        asyncio.run(self._register())
        self.nats.start()
        self.server.start()

    async def _register(self) -> None:
        """Register every person in the server's accounts with the NATS passwords used here
        (what ``person add`` does, without a process per person)."""
        self.server.home.mkdir(parents=True, exist_ok=True)
        accounts = open_accounts(self.server.database)
        await accounts.open()
        try:
            for person in PEOPLE:
                await accounts.add(person, self.nats_hashes[person], hash_token(person))
        finally:
            await accounts.close()

    def close(self) -> None:
        """Stop the devices' watchers, the server and NATS (by pid)."""
        self.server.stop()
        self.nats.stop()

    def device(self, person: str, name: str, *, team: str | None = None) -> Device:
        """A new device home for ``person`` with credentials from ``person add``'s JSON."""
        device = Device(self.root / f"{person}-{name}", person, name)
        device.home.mkdir(parents=True)
        creds = device.home / "credentials.json"
        creds.write_text(json.dumps({"person": person, "nats_password": self.passwords[person]}))
        args = ["init", "--person", person, "--device", name, "--server", self.nats.url,
                "--credentials", str(creds)]  # fmt: skip
        if team:
            args += ["--team", team]
        device.ok(*args)
        self.devices.append(device)
        return device


@contextlib.contextmanager
def world(root: Path) -> Iterator[World]:
    """A started ``World``; everything stopped afterwards."""
    w = World(root)
    try:
        w.start()
        yield w
    finally:
        w.close()


def wait_until(check: Callable[[], bool], timeout: float = 15.0, every: float = 0.05) -> None:
    """Poll ``check`` until it holds; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


def history(person: str, device: str, count: int, *, start: datetime | None = None) -> list[Event]:
    """``count`` valid events by ``person``: an objective, milestones under it, check-ins."""
    moment = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    clock = int(moment.timestamp() * 1000) << 16
    events: list[Event] = []

    def add(body: KnownBody) -> Event:
        nonlocal clock, moment
        clock += 1
        moment += timedelta(seconds=1)
        event = Event(
            id=new_event_id(), actor=person, device=device, clock=clock,
            recorded_at=moment, occurred_at=moment, body=body,
        )  # fmt: skip
        events.append(event)
        return event

    # Like a person's year: objectives of 50 events each (9 milestones, 40 check-ins).
    while len(events) < count:
        goal = add(ObjectiveCreated(title=f"Goal {len(events) // 50}", cycle="2026-Q1"))
        milestones = [
            add(MilestonePlanned(title=f"Milestone {i}", objective=goal.id)) for i in range(9)
        ]
        for i in range(40):
            target = milestones[i % len(milestones)]
            add(CheckInRecorded(subject=target.id, confidence="on-track", percent=float(i)))
    return events[:count]


def jsonl(path: Path, events: list[Event]) -> Path:
    """Write events as an importable JSON Lines file."""
    path.write_bytes(b"".join(encode(e) + b"\n" for e in events))
    return path
