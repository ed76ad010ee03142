"""Secrets on disk: the real ``milepost-server`` and ``milepost`` CLIs leave their data
readable by their owner only, and credentials go to a file made 0600."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
from pathlib import Path

from milepost_testkit.cli import Cli
from tests.e2e.test_server_cli import BIN, Running, cli, env_for, home, running

__all__ = ["home", "running"]  # fixtures used below


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def loopback_listeners(port: int) -> list[str]:
    """The local addresses listening on TCP ``port`` (from /proc/net/tcp)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


def test_person_add_output_writes_credentials_0600_and_never_overwrites(
    home: Path, tmp_path: Path
) -> None:
    target = tmp_path / "alice.json"
    added = cli(home, "person", "add", "alice", "--team", "web", "--output", str(target))
    assert added.returncode == 0, added.stderr
    assert mode(target) == 0o600
    creds = json.loads(target.read_text())
    assert creds["person"] == "alice" and creds["nats_password"] and creds["api_token"]
    assert creds["nats_password"] not in added.stdout  # the secret is only in the file
    assert "--credentials alice.json" in added.stdout

    before = target.read_text()
    again = cli(home, "person", "add", "carol", "--output", str(target))
    assert again.returncode == 2
    assert len(again.stderr.strip().splitlines()) == 1 and "--force" in again.stderr
    assert target.read_text() == before
    listed = json.loads(cli(home, "person", "list", "--json").stdout)
    assert [p["person"] for p in listed] == ["alice"]  # refused before any change

    rotated = cli(home, "person", "rotate", "alice", "--output", str(target), "--force")
    assert rotated.returncode == 0, rotated.stderr
    assert mode(target) == 0o600
    assert json.loads(target.read_text())["nats_password"] != creds["nats_password"]
    assert cli(home, "person", "list", "--force").returncode == 2


def test_the_server_data_folder_is_private(home: Path) -> None:
    # An older version left a 0755 folder and a 0644 database: they are tightened.
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    assert cli(home, "person", "add", "bob").returncode == 0
    (home / "milepost.sqlite").chmod(0o644)
    process = subprocess.Popen(
        [str(BIN), "run", "--port", "0", "--nats-port", "0"],
        env=env_for(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for _ in range(2):
            assert process.stdout.readline(), process.stderr.read() if process.stderr else ""
        check_private(home)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)


def check_private(home: Path) -> None:
    assert mode(home) == 0o700
    database = home / "milepost.sqlite"
    assert mode(database) == 0o600
    for suffix in ("-wal", "-shm"):
        side = Path(str(database) + suffix)
        if side.exists():
            assert mode(side) == 0o600, side
    nats = home / "nats"
    assert mode(nats) == 0o700
    for name in ("nats-server.conf", "nats-server.log"):
        assert mode(nats / name) == 0o600, name
    assert mode(home / "run.json") == 0o600
    # Nothing anywhere in the folder is readable or writable by group or others.
    for path in home.rglob("*"):
        assert not mode(path) & 0o077, f"{path} is {oct(mode(path))}"


def test_nats_monitoring_listens_on_loopback_only(home: Path, running: Running) -> None:
    try:
        info = json.loads((home / "run.json").read_text())
        assert info["nats_monitor_host"] == "127.0.0.1"
        config = json.loads((home / "nats" / "nats-server.conf").read_text())
        assert config["http"] == f"127.0.0.1:{info['nats_monitor_port']}"
        listening = loopback_listeners(info["nats_monitor_port"])
        assert listening and all(
            a in ("0100007F", "00000000000000000000000001000000") for a in listening
        )
        check_private(home)
    finally:
        # SIGTERM, so the server stops its nats-server child (a SIGKILL would not).
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(20) == 0


def test_the_client_home_and_database_are_private(cli: Cli) -> None:
    cli.ok("init", "--person", "ava", "--device", "laptop", "--team", "web")
    cli.new("objective", "Mine", "--cycle", "2026-Q1")
    assert mode(cli.home) == 0o700
    database = cli.home / "ava@laptop.sqlite3"
    assert mode(database) == 0o600
    assert mode(cli.home / "profile.json") == 0o600
    # A database an older version left 0644 is tightened by the next command.
    database.chmod(0o644)
    cli.ok("log")
    assert mode(database) == 0o600
    for path in cli.home.rglob("*"):
        assert not mode(path) & 0o077, f"{path} is {oct(mode(path))}"
