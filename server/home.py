"""The server's data folder: the SQLite file, the embedded NATS files, remembered ports,
and ``run.json`` that tells admin commands how to reach a running server."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import platformdirs

from server.nats_embedded import (
    DEFAULT_MONITOR_HOST,
    SERVICE_USER,
    NatsUser,
    reload_config,
    render_config,
)

DEFAULT_HTTP_PORT = 8321
DEFAULT_NATS_PORT = 4222
HOME_ENV = "MILEPOST_SERVER_HOME"


def server_home() -> Path:
    """``$MILEPOST_SERVER_HOME``, else the platform's user data folder for milepost-server."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_data_dir("milepost-server", appauthor=False))


def default_database(home: Path) -> str:
    """The embedded SQLite store's path."""
    return str(home / "milepost.sqlite")


def nats_dir(home: Path) -> Path:
    """Where the embedded nats-server keeps its config, log and JetStream files."""
    return home / "nats"


PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")
"""A SQLite database and the files SQLite keeps beside it (all hold its rows)."""


def secure_home(home: Path) -> Path:
    """Create ``home`` (and the NATS folder) readable by its owner only; tighten an
    existing one (an older version made them 0755). Returns ``home``."""
    home.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    home.chmod(PRIVATE_DIR)
    folder = nats_dir(home)
    if folder.exists():
        folder.chmod(PRIVATE_DIR)
    return home


def restrict_files(*paths: Path) -> None:
    """``chmod 0600`` each file that exists (the database, logs, configuration)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.chmod(PRIVATE_FILE)


def restrict_database(location: str) -> None:
    """``restrict_files`` for a SQLite database and its side files (no-op for a URL)."""
    if "://" in location:
        return
    restrict_files(*(Path(location + suffix) for suffix in SQLITE_SIDE_FILES))


def _write_private(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    write_private_text(path, json.dumps(data, indent=2) + "\n")


def write_private_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically through a temporary file created 0600 (never
    readable by others, not even between its creation and a chmod)."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remembered_ports(home: Path) -> dict[str, int]:
    """Ports chosen by earlier runs (``http``, ``nats``), so clients keep their URLs."""
    data = _read(home / "server.json")
    return {k: v for k, v in data.items() if k in ("http", "nats") and isinstance(v, int)}


def remember_ports(home: Path, **ports: int) -> None:
    """Record chosen ports for the next run."""
    data = remembered_ports(home)
    data.update(ports)
    _write_private(home / "server.json", dict(data))


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(home: Path, key: str, requested: int | None, default: int, host: str) -> int:
    """The requested port (0: any free one); else the remembered one; else ``default``.

    A busy port is the caller's error to report: never silently another port
    (devices are told the address once)."""
    if requested is not None:
        return requested
    remembered = remembered_ports(home).get(key)
    if remembered is not None:
        return remembered
    return default


@dataclass(frozen=True)
class RunInfo:
    """What a running ``milepost-server run`` publishes in ``run.json``."""

    pid: int
    http_url: str
    nats_url: str
    database: str
    nats_pid: int | None = None
    nats_host: str | None = None
    nats_port: int | None = None
    nats_monitor_port: int | None = None
    service_hash: str | None = None
    nats_monitor_host: str | None = None


HELD_PARTITIONS = "working-set.json"
"""The working set's partitions held at the last clean stop (loaded again at the next start)."""


def write_held_partitions(home: Path, keys: list[str]) -> None:
    """Remember the partitions held now, most recently asked for first."""
    _write_private(home / HELD_PARTITIONS, {"held": keys})


def read_held_partitions(home: Path) -> list[str]:
    """The partitions held at the last clean stop ([] if none are known)."""
    held = _read(home / HELD_PARTITIONS).get("held")
    return [key for key in held if isinstance(key, str)] if isinstance(held, list) else []


def write_run_info(home: Path, info: RunInfo) -> None:
    """Publish the running server's addresses (mode 0600)."""
    _write_private(home / "run.json", asdict(info))


def clear_run_info(home: Path) -> None:
    """Remove ``run.json`` at shutdown."""
    with contextlib.suppress(FileNotFoundError):
        (home / "run.json").unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_server(home: Path) -> RunInfo | None:
    """The server running on this home, if ``run.json`` names a live process."""
    data = _read(home / "run.json")
    try:
        info = RunInfo(**data)
    except TypeError:
        return None
    return info if _alive(info.pid) else None


def reload_embedded_nats(home: Path, people: dict[str, str]) -> bool:
    """Rewrite the running embedded nats-server's users (person → bcrypt hash) and SIGHUP it.

    Returns False when no embedded nats-server is running (the next ``run`` reads the
    people from the database anyway).
    """
    info = running_server(home)
    if (
        info is None
        or info.nats_pid is None
        or info.service_hash is None
        or info.nats_host is None
        or info.nats_port is None
        or info.nats_monitor_port is None
        or not _alive(info.nats_pid)
    ):
        return False
    users = [NatsUser(SERVICE_USER, info.service_hash)]
    users += [NatsUser(name, hashed) for name, hashed in sorted(people.items())]
    folder = nats_dir(home)
    text = render_config(
        host=info.nats_host,
        port=info.nats_port,
        monitor_port=info.nats_monitor_port,
        store_dir=folder / "jetstream",
        users=users,
        monitor_host=info.nats_monitor_host or DEFAULT_MONITOR_HOST,
    )
    write_private_text(folder / "nats-server.conf", text)
    reload_config(info.nats_pid, folder / "nats-server.log")
    return True
