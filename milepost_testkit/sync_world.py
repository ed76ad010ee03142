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
from pathlib import Path
from typing import Any

from milepost_testkit import PEOPLE, ROOT
from milepost_testkit.cli import Cli
from server.accounts import hash_token, open_accounts
from server.nats_embedded import SERVICE_USER, EmbeddedNats, hash_password, new_password

SERVER_BIN = Path(sys.executable).parent / "milepost-server"


class ServerProcess:
    """``milepost-server run`` on an external NATS and an SQLite file; stopped by pid."""

    def __init__(
        self,
        home: Path,
        nats_url: str,
        database: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.home = home
        self.nats_url = nats_url
        self.database = database or str(home / "server.sqlite")
        self.process: subprocess.Popen[str] | None = None
        self.http_url = ""
        self.extra = extra  # more `run` options, e.g. limits
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MILEPOST_")}
        self.env["MILEPOST_SERVER_HOME"] = str(home)
        self.env["PYTHONPATH"] = str(ROOT)

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until it prints its URLs (it is serving by then)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(SERVER_BIN), "run", "--nats", self.nats_url, "--database", self.database,
             "--port", "0", *self.extra],
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
                line = lines.get(timeout=0.1)
                if line.startswith("http:"):
                    self.http_url = line.split(":", 1)[1].strip()
                if line.startswith("nats:"):
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

    def __init__(
        self, root: Path, database: str | None = None, server_args: tuple[str, ...] = ()
    ) -> None:
        self.root = root
        self.passwords = {person: new_password() for person in PEOPLE}
        self.tokens = {person: f"{person}.{new_password()}" for person in PEOPLE}  # API tokens
        self.service_password = new_password()
        self.nats_hashes = {p: hash_password(pw, rounds=4) for p, pw in self.passwords.items()}
        self.nats = EmbeddedNats(
            root / "nats", service_password=self.service_password, people=self.nats_hashes
        )
        self.server = ServerProcess(
            root / "server",
            self.nats.url.replace("nats://", f"nats://{SERVICE_USER}:{self.service_password}@"),
            database,
            server_args,
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
                token_hash = hash_token(self.tokens[person])
                await accounts.add(person, self.nats_hashes[person], token_hash)
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
def world(root: Path, database: str | None = None) -> Iterator[World]:
    """A started ``World`` (on SQLite unless ``database`` names another store); everything
    stopped afterwards."""
    w = World(root, database)
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
