"""The real ``milepost-server`` as a subprocess: run with embedded defaults, people, shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent / "milepost-server"


def env_for(home: Path) -> dict[str, str]:
    return {**os.environ, "MILEPOST_SERVER_HOME": str(home)}


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], env=env_for(home), capture_output=True, text=True, timeout=60
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of someone else still answers kill(0); look at its state.
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return status != "Z"


class Running:
    def __init__(self, process: subprocess.Popen[str], http_url: str, nats_url: str) -> None:
        self.process = process
        self.http_url = http_url
        self.nats_url = nats_url


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "server-home"


@pytest.fixture
def running(home: Path) -> Iterator[Running]:
    process = subprocess.Popen(
        [str(BIN), "run", "--port", "0", "--nats-port", "0"],
        env=env_for(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    urls: dict[str, str] = {}
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while len(urls) < 2 and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        key, _, value = line.strip().partition(": ")
        urls[key] = value
    try:
        assert set(urls) == {"http", "nats"}, process.stderr.read() if process.stderr else ""
        yield Running(process, urls["http"], urls["nats"])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_run_serves_people_and_stops_cleanly(home: Path, running: Running) -> None:
    assert running.http_url.startswith("http://127.0.0.1:")
    assert running.nats_url.startswith("nats://127.0.0.1:")
    health = httpx.get(f"{running.http_url}/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"

    added = cli(home, "person", "add", "alice", "--team", "growth", "--json")
    assert added.returncode == 0, added.stderr
    creds = json.loads(added.stdout)
    assert creds["person"] == "alice"
    assert creds["http_url"] == running.http_url
    assert creds["nats_url"] == running.nats_url
    assert creds["nats_password"] and creds["api_token"].startswith("alice.")

    headers = {"Authorization": f"Bearer {creds['api_token']}"}
    deadline = time.monotonic() + 10
    while True:  # the token cache and the projections follow within a second
        board = httpx.get(f"{running.http_url}/teams/growth/board", headers=headers, timeout=5)
        if board.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert board.status_code == 200, board.text
    assert [m["person"] for m in board.json()["members"]] == ["alice"]

    listed = cli(home, "person", "list", "--json")
    assert json.loads(listed.stdout)[0]["teams"] == ["growth"]

    run_info = json.loads((home / "run.json").read_text())
    nats_pid = run_info["nats_pid"]
    assert alive(nats_pid)
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(20) == 0
    assert not alive(nats_pid)
    assert not (home / "run.json").exists()
    stderr = running.process.stderr.read() if running.process.stderr else ""
    assert "Traceback" not in stderr


def test_rotated_nats_password_is_reloaded_into_the_running_nats(
    home: Path, running: Running
) -> None:
    import asyncio

    import nats
    import nats.errors

    from server.nats_embedded import inbox_prefix

    first = json.loads(cli(home, "person", "add", "bob", "--json").stdout)
    rotated = json.loads(cli(home, "person", "rotate", "bob", "--json").stdout)
    assert rotated["nats_password"] != first["nats_password"]

    async def connects(password: str) -> bool:
        try:
            client = await nats.connect(
                running.nats_url,
                user="bob",
                password=password,
                inbox_prefix=inbox_prefix("bob"),
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=2,
            )
        except Exception:
            return False
        await client.close()
        return True

    assert asyncio.run(connects(rotated["nats_password"]))
    assert not asyncio.run(connects(first["nats_password"]))
    running.process.send_signal(signal.SIGINT)
    assert running.process.wait(20) == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--no-such-flag"],
        ["run", "--port", "not-a-port"],
        ["run", "--port", "70000"],
        ["person", "add"],
        ["person", "add", "Not A Name"],
        ["team", "join", "growth"],
        ["frobnicate"],
    ],
)
def test_bad_command_lines_print_one_line_and_exit_2(home: Path, args: list[str]) -> None:
    result = cli(home, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("milepost-server: error:")


def test_runtime_errors_exit_1_without_traceback(home: Path) -> None:
    result = cli(home, "person", "remove", "ghost")
    assert result.returncode == 1
    assert result.stderr.strip() == "milepost-server: error: no person 'ghost'"
    result = cli(home, "rebuild", "--database", "postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_help_has_an_example_everywhere(home: Path) -> None:
    for args in (
        [],
        ["run"],
        ["person"],
        ["person", "add"],
        ["person", "remove"],
        ["person", "list"],
        ["person", "rotate"],
        ["team"],
        ["team", "join"],
        ["team", "leave"],
        ["rebuild"],
    ):
        result = cli(home, *args, "--help")
        assert result.returncode == 0, (args, result.stderr)
        assert "Example" in result.stdout, args


def test_admin_commands_read_the_database_from_the_environment(home: Path, tmp_path: Path) -> None:
    # compose.yaml keeps the database URL (with its password) off command lines.
    elsewhere = tmp_path / "shared.sqlite"
    added = cli(home, "person", "add", "dana", "--database", str(elsewhere), "--json")
    assert added.returncode == 0, added.stderr
    in_env = subprocess.run(
        [str(BIN), "person", "list", "--json"],
        env={**env_for(home), "MILEPOST_DATABASE": str(elsewhere)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert in_env.returncode == 0, in_env.stderr
    assert "dana" in in_env.stdout
    default = cli(home, "person", "list", "--json")  # the data folder's own database
    assert default.returncode == 0, default.stderr
    assert "dana" not in default.stdout
