"""Where and as whom to sync, and the tunables read from the environment."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from client.sync.errors import SyncError

DEFAULT_REPUSH_AFTER = 600.0
"""Seconds a pushed event may stay unconfirmed before it is pushed again."""

DEFAULT_POLL = 0.002
"""Seconds between two looks of ``watch`` for newly logged events (a ``pread`` each)."""

PASSWORD_ENV = "MILEPOST_NATS_PASSWORD"
SERVER_ENV = "MILEPOST_SERVER"
REPUSH_ENV = "MILEPOST_REPUSH_AFTER"
POLL_ENV = "MILEPOST_WATCH_POLL_MS"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A NATS URL (several comma-separated for a cluster; without secrets) and the
    person's NATS login."""

    url: str
    user: str
    password: str


def endpoint(meta: dict[str, str], environ: dict[str, str] | None = None) -> Endpoint:
    """Resolve the connection from the profile (``server``, ``credentials``) and the env.

    ``server`` is a ``nats://host:port`` URL (it may carry ``user:password@``);
    ``credentials`` names a file holding either JSON (``user``/``person``,
    ``password``/``nats_password``, optionally ``nats_url``) or the bare password;
    ``MILEPOST_NATS_PASSWORD`` and ``MILEPOST_SERVER`` override both.
    """
    env = os.environ if environ is None else environ
    person = meta["person"]
    server = env.get(SERVER_ENV) or meta.get("server") or ""
    user: str | None = None
    password: str | None = None
    creds = meta.get("credentials") or ""
    if creds:
        path = Path(creds).expanduser()
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise SyncError(f"cannot read credentials file {path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            user = _str(data.get("user") or data.get("person"))
            password = _str(data.get("nats_password") or data.get("password"))
            server = server or _str(data.get("nats_url") or data.get("nats")) or ""
        else:
            password = text
    if not server:
        raise SyncError("no sync server configured: run `milepost config server nats://HOST:4222`")
    # A cluster is several comma-separated URLs (one per node): nats-py tries them in turn.
    cleaned: list[str] = []
    for one in (part.strip() for part in server.split(",")):
        if not one:
            continue
        parts = urlsplit(one if "://" in one else f"nats://{one}")
        if parts.scheme not in ("nats", "tls", "ws", "wss"):
            raise SyncError(
                f"sync server {one!r} is not a NATS URL: give nats://HOST:PORT "
                "(the NATS address milepost-server prints)"
            )
        if parts.username:
            user = user or parts.username
        if parts.password:
            password = password or parts.password
        host = parts.hostname or "127.0.0.1"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        cleaned.append(urlunsplit(parts._replace(netloc=netloc)))
    if not cleaned:
        raise SyncError("no sync server configured: run `milepost config server nats://HOST:4222`")
    password = env.get(PASSWORD_ENV) or password
    if not password:
        raise SyncError(
            f"no NATS password for {person}: set `milepost config credentials FILE` "
            f"(from `milepost-server person add {person}`) or {PASSWORD_ENV}"
        )
    return Endpoint(",".join(cleaned), user or person, password)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def backoff_delays(first: float = 0.5, cap: float = 30.0) -> Iterator[float]:
    """0.5, 1, 2, 4 ... seconds, capped."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * 2)


def repush_after_default() -> float:
    """``MILEPOST_REPUSH_AFTER`` seconds, else the default."""
    raw = os.environ.get(REPUSH_ENV)
    try:
        return float(raw) if raw else DEFAULT_REPUSH_AFTER
    except ValueError:
        return DEFAULT_REPUSH_AFTER


def poll_interval() -> float:
    """How often ``watch`` checks the local database for new events (seconds)."""
    raw = os.environ.get(POLL_ENV)
    try:
        return max(0.001, float(raw) / 1000) if raw else DEFAULT_POLL
    except ValueError:
        return DEFAULT_POLL
