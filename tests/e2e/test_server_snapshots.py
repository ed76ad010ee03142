"""The real ``milepost-server`` restarts from a snapshot: a clean stop takes one, the next
start loads it and folds only the tail, and answers as a full fold does; a corrupt one
is skipped with one clear log line and the start folds everything."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from events import TeamMemberJoined, encode
from milepost_testkit.history import generate_history
from server.nats_embedded import events_subject
from server.store import Incoming
from server.store.sqlite import SqliteStore

BIN = Path(sys.executable).parent / "milepost-server"
HISTORY = list(generate_history(people=5, teams=2, target_events=2500, seed=13))


def env_for(home: Path) -> dict[str, str]:
    return {**os.environ, "MILEPOST_SERVER_HOME": str(home)}


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], env=env_for(home), capture_output=True, text=True, timeout=120
    )


class Server:
    def __init__(self, home: Path, *flags: str) -> None:
        self.process = subprocess.Popen(
            [str(BIN), "run", "--port", "0", "--nats-port", "0", *flags],
            env=env_for(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        urls: dict[str, str] = {}
        assert self.process.stdout is not None
        while len(urls) < 2:
            line = self.process.stdout.readline()
            if not line:
                break
            key, _, value = line.strip().partition(": ")
            urls[key] = value
        assert set(urls) == {"http", "nats"}, self.stop()
        self.url = urls["http"]

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return {
            name: float(value)
            for name, value in re.findall(r"^(milepost_\w+) ([\d.e+-]+)$", text, re.M)
        }

    def get(self, path: str, token: str) -> object:
        """The JSON answer, without the moment it was computed at (``as_of``, a review's
        ``generated_at``)."""
        answer = json.loads(self.get_raw(path, token))
        if isinstance(answer, dict):
            answer.pop("as_of", None)
            answer.pop("generated_at", None)
        return answer

    def get_raw(self, path: str, token: str) -> bytes:
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(50):  # the token cache reads the people table within a second
            response = httpx.get(f"{self.url}{path}", headers=headers, timeout=30)
            if response.status_code != 401:
                break
            time.sleep(0.1)
        assert response.status_code == 200, response.text
        return response.content

    def stop(self) -> str:
        """SIGTERM by pid; its stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                assert self.process.wait(60) == 0
            finally:
                if self.process.poll() is None:
                    self.process.kill()
                    self.process.wait(10)
        assert self.process.stderr is not None
        return self.process.stderr.read()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "server-home"

    async def fill() -> None:
        store = SqliteStore(home / "milepost.sqlite")
        await store.open()
        try:
            for start in range(0, len(HISTORY), 500):
                await store.append_batch(
                    [
                        Incoming(encode(e), e, None, events_subject(e.actor, e.id))
                        for e in HISTORY[start : start + 500]
                    ]
                )
        finally:
            await store.close()

    asyncio.run(fill())
    yield home


def person_in_a_team() -> tuple[str, str]:
    for event in HISTORY:
        if isinstance(event.body, TeamMemberJoined):
            return event.body.person, event.body.team
    raise AssertionError("no membership")


def test_a_restart_loads_the_snapshot_taken_at_stop_and_answers_the_same(home: Path) -> None:
    person, team = person_in_a_team()
    token = json.loads(cli(home, "person", "add", person, "--json").stdout)["api_token"]
    paths = [f"/people/{person}/goals", f"/teams/{team}/feed?limit=200", f"/teams/{team}/board"]

    first = Server(home)
    try:
        before = first.metrics()
        assert "milepost_snapshot_load_seconds" not in before  # nothing to load yet
        assert before["milepost_projection_position"] == len(HISTORY)
        answers = [first.get(path, token) for path in paths]
    finally:
        first.stop()
    listed = json.loads(cli(home, "snapshot", "list", "--json").stdout)
    assert [item["position"] for item in listed] == [len(HISTORY)]  # taken at the stop

    second = Server(home)
    try:
        after = second.metrics()
        assert after["milepost_snapshot_position"] == len(HISTORY)
        assert after["milepost_snapshot_load_seconds"] > 0
        assert after["milepost_snapshots_skipped_total"] == 0
        assert after["milepost_projection_position"] == len(HISTORY)
        assert [second.get(path, token) for path in paths] == answers
    finally:
        second.stop()
    # Nothing new since: the stop kept the snapshot it started from.
    assert len(json.loads(cli(home, "snapshot", "list", "--json").stdout)) == 1

    db = sqlite3.connect(home / "milepost.sqlite")
    (name,) = db.execute("SELECT file FROM snapshots").fetchone()
    db.close()
    stored = home / "milepost.sqlite.snapshots" / name
    damaged = bytearray(stored.read_bytes())
    damaged[len(damaged) // 3] ^= 0x04
    stored.write_bytes(bytes(damaged))
    checked = cli(home, "snapshot", "check")
    assert checked.returncode == 1 and "checksum does not match" in checked.stderr

    third = Server(home)
    try:
        metrics = third.metrics()
        assert "milepost_snapshot_load_seconds" not in metrics
        assert metrics["milepost_snapshots_skipped_total"] == 1
        assert [third.get(path, token) for path in paths] == answers
    finally:
        log = third.stop()
    assert "ignored: the snapshot's checksum does not match its bytes" in log
    assert "no valid snapshot: folding every stored event" in log
    assert "Traceback" not in log


def test_with_a_memory_budget_the_server_folds_teams_on_demand_and_answers_the_same(
    home: Path,
) -> None:
    person, team = person_in_a_team()
    token = json.loads(cli(home, "person", "add", person, "--json").stdout)["api_token"]
    paths = [
        f"/people/{person}/goals",
        f"/people/{person}/review",
        f"/teams/{team}/feed?limit=200",
        f"/teams/{team}/board",
        f"/teams/{team}/drift",
    ]
    full = Server(home, "--no-snapshots")
    try:
        answers = [full.get(path, token) for path in paths]
    finally:
        full.stop()

    flags = ("--memory-budget", "64", "--snapshot-every", "100")
    bounded = Server(home, *flags)
    try:
        started = bounded.metrics()
        assert started["milepost_working_set_partitions"] == 0  # nothing folded but teams
        assert started["milepost_projection_position"] == len(HISTORY)
        assert [bounded.get(path, token) for path in paths] == answers
        after = bounded.metrics()
        assert after["milepost_working_set_partitions"] == 2  # the person's and the team's
        assert after["milepost_working_set_loads_total"] == 2
        assert after["milepost_working_set_snapshot_loads_total"] == 0
        assert 0 < after["milepost_working_set_events"] < len(HISTORY)
        assert "milepost_snapshot_position" not in after  # none of all history: none held
        # Folded from the store, each is compacted a quiet second after its load, then
        # snapshotted with its rows as columns.
        deadline = time.monotonic() + 30
        while bounded.metrics()["milepost_working_set_compactions_pending"]:
            assert time.monotonic() < deadline, "the compactions did not end"
            time.sleep(0.05)
        compacted = bounded.metrics()
        assert compacted["milepost_working_set_compactions_total"] == 2
        assert compacted["milepost_working_set_rows"] > 0
    finally:
        log = bounded.stop()  # the two partitions' snapshots are written by then
    assert "Traceback" not in log
    assert json.loads(cli(home, "snapshot", "list", "--json").stdout) == []
    assert cli(home, "snapshot", "list").stdout.splitlines() == [
        "no snapshots of all history yet: milepost-server snapshot take",
        "and 2 snapshots of working-set partitions (--memory-budget)",
    ]

    # A restart loads the two partitions held at the stop again, before any request
    # (each from its own snapshot), and answers the same.
    assert json.loads((home / "working-set.json").read_text())["held"] == [
        f"team:{team}",
        f"person:{person}",
    ]
    restarted = Server(home, *flags)
    try:
        deadline = time.monotonic() + 30
        while restarted.metrics()["milepost_working_set_partitions"] < 2:
            assert time.monotonic() < deadline, "the held partitions were not loaded again"
            time.sleep(0.05)
        assert [restarted.get(path, token) for path in paths] == answers
        again = restarted.metrics()
        assert again["milepost_working_set_snapshot_loads_total"] == 2
        assert again["milepost_working_set_loads_total"] == 2  # none on demand
        # Loaded compacted from their snapshots: held as rows at once, not compacted again.
        assert again["milepost_working_set_rows"] == compacted["milepost_working_set_rows"]
        assert again["milepost_working_set_compactions_total"] == 0
    finally:
        log = restarted.stop()
    assert "Traceback" not in log


def refreshers_of(home: Path) -> list[int]:
    """Pids of ``snapshot take --partitions`` children running for this home."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"\0--partitions\0" in command and f"={home}\0".encode() in environ:
            found.append(int(proc.name))
    return found


def test_the_server_keeps_partition_snapshots_fresh_in_a_child_process(home: Path) -> None:
    person, team = person_in_a_team()
    token = json.loads(cli(home, "person", "add", person, "--json").stdout)["api_token"]
    teams = {e.body.team for e in HISTORY if isinstance(e.body, TeamMemberJoined)}
    people = {e.body.person for e in HISTORY if isinstance(e.body, TeamMemberJoined)}
    server = Server(
        home,
        "--memory-budget",
        "64",
        "--snapshot-every",
        "100",
        "--partition-snapshot-minutes",
        "0.01",
    )
    try:
        deadline = time.monotonic() + 60
        seen: set[int] = set()  # the children, caught running (each lives ~0.5 s)
        while server.metrics().get("milepost_partition_snapshot_refreshes_total", 0) < 2:
            assert time.monotonic() < deadline, "no refresh ran"
            seen.update(refreshers_of(home))
            time.sleep(0.05)
        assert seen, "no child process was seen"
        metrics = server.metrics()
        # The first run took every partition's; the next found them all fresh.
        assert metrics["milepost_partition_snapshots_refreshed_total"] == len(teams) + len(people)
        assert metrics["milepost_partition_snapshot_refresh_failures_total"] == 0
        assert metrics["milepost_partition_snapshot_most_behind_events"] == 0
        assert 0 <= metrics["milepost_partition_snapshot_refresh_age_seconds"] < 60
        assert metrics["milepost_working_set_loads_total"] == 0  # nobody asked for anything
        server.get(f"/teams/{team}/board", token)
        after = server.metrics()
        assert after["milepost_working_set_snapshot_loads_total"] == 1  # a refreshed one
        assert server.process.poll() is None
    finally:
        log = server.stop()
    assert "Traceback" not in log and "failed" not in log, log
    assert refreshers_of(home) == []  # a child running at the stop was stopped with it
    listed = json.loads(
        cli(home, "snapshot", "list", "--partition", f"team:{team}", "--json").stdout
    )
    assert listed and all(item["loadable"] for item in listed)


@pytest.mark.parametrize(
    ("given", "error"),
    [
        (["--memory-budget", "64", "--partition-snapshot-minutes", "-1"], "must be 0 or from"),
        (["--memory-budget", "64", "--partition-snapshot-minutes", "10081"], "must be 0 or from"),
        (["--partition-snapshot-minutes", "5"], "applies only with --memory-budget"),
    ],
)
def test_partition_snapshot_minutes_wrong_is_one_clear_error(
    home: Path, given: list[str], error: str
) -> None:
    done = cli(home, "run", "--port", "0", *given)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"--partition-snapshot-minutes {error}" in done.stderr


def test_a_memory_budget_out_of_range_is_one_clear_error(home: Path) -> None:
    done = cli(home, "run", "--port", "0", "--memory-budget", "1")
    assert done.returncode == 2
    assert "--memory-budget must be between 16 and 1048576 (MB)" in done.stderr
    assert "Traceback" not in done.stderr
