"""Working-set benchmark: the real server with ``--memory-budget`` vs folding all history.

Over one SQLite store holding the bench history (1,000,000 events, 100 people in 10
teams; ``--quick``: 50,000 events; ``--events 10000000 --people 1000 --teams 100`` for
the 10M figures), in one run:

1. baseline, ``milepost-server run --no-snapshots`` (folds everything at start): seconds
   from the process start to the first answered request (``/health``) and to a first
   goal tree, and the server's resident memory then (``--skip-full`` skips it);
2. ``milepost-server run --memory-budget MB --no-snapshots``: the same three figures;
3. on that server (snapshots of partitions on), a board of every team, one after the
   other (the first request for a team folds its partition from the store: *cold*), then
   each again (*warm*), then each right after a check-in by one of its members was
   folded into its partition (*after a member's event*), and the RSS after; then, once
   each partition's snapshot is taken, on a restarted server, every board again (*cold
   from snapshot*: each partition loaded from its snapshot and the events after it); and
   the seconds a start takes to load again what was held at the last stop (*warm-up*,
   before any request); and, with every snapshot removed, ``milepost-server snapshot
   take --partitions`` (what a server's refresh runs: its seconds and peak RSS, from
   none and when all are fresh), then every board on a fresh server (*cold after
   refresh*: no team asked for before);
4. first of all, what the two indexes the working set reads cost the ingest: appending
   200,000 events (``--quick``: 50,000) into a fresh store with them vs without them.

Starts alternate (``--rounds``) and the best of each kind is reported. Every process
started here is stopped by pid. Prints one ``figure: NAME = VALUE UNIT`` line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.server import figure, fill_store, heads, print_figures, rss_mb, start_server, stop_server
from events import Event, encode, new_event_id
from events import bodies as b
from events.clock import pack
from milepost_testkit.history import history_bytes
from server.nats_embedded import events_subject
from server.store import Incoming
from server.store.sqlite import SqliteStore

BIN = Path(sys.executable).parent / "milepost-server"


def one_member_per_team(data: list[bytes]) -> dict[str, str]:
    """team -> one of its current members (replaying the administrator's joins and leaves)."""
    members: dict[str, dict[str, None]] = {}
    for raw in data:
        if b'"team.member_' not in raw:
            continue
        body = json.loads(raw)["body"]
        current = members.setdefault(body["team"], {})
        if body["type"] == "team.member_joined":
            current[body["person"]] = None
        else:
            current.pop(body["person"], None)
    return {team: next(iter(people)) for team, people in members.items() if people}


def wait_ok(client: httpx.Client, url: str) -> None:
    while True:
        try:
            if client.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.005)


def start(home: Path, person: str, token: str, *flags: str) -> tuple[float, float, float]:
    """(seconds to /health, seconds to a first goal tree, RSS MB then) of one start."""
    forget_held(home)  # a cold start: nothing warmed up
    began = time.perf_counter()
    process, url = start_server(home, *flags)
    try:
        with httpx.Client(timeout=300) as client:
            wait_ok(client, f"{url}/health")
            health = time.perf_counter() - began
            client.headers["Authorization"] = f"Bearer {token}"
            wait_ok(client, f"{url}/people/{person}/goals")
            goals = time.perf_counter() - began
        return health, goals, rss_mb(process.pid)
    finally:
        stop_server(process, patience=300)


def forget_held(home: Path) -> None:
    """Forget the partitions held at the last stop (a start then warms none up)."""
    (home / "working-set.json").unlink(missing_ok=True)


def forget_snapshots(home: Path) -> None:
    """Remove every snapshot kept in the store at ``home`` (a reused store starts cold)."""
    forget_held(home)
    database = home / "milepost.sqlite"
    with sqlite3.connect(database) as db:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'snapshots'").fetchone():
            db.execute("DELETE FROM snapshots")
    shutil.rmtree(database.with_name(database.name + ".snapshots"), ignore_errors=True)


def metric(client: httpx.Client, url: str, name: str) -> float | None:
    """One ``milepost_working_set_*`` figure of the server's /metrics."""
    found = re.search(rf"^milepost_working_set_{name} ([\d.e+-]+)$", client.get(url).text, re.M)
    return float(found.group(1)) if found else None


def ask_board(client: httpx.Client, url: str, team: str, token: str) -> float:
    """Milliseconds of one request for a team's board (which must answer 200)."""
    began = time.perf_counter()
    response = client.get(f"{url}/teams/{team}/board", headers={"Authorization": f"Bearer {token}"})
    took = (time.perf_counter() - began) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"board of {team}: {response.status_code}")
    return took


def ask_boards(client: httpx.Client, url: str, tokens: dict[str, str]) -> list[float]:
    """Milliseconds of one board request per team, one after the other."""
    return [ask_board(client, url, team, token) for team, token in tokens.items()]


def milestone_of_each(data: list[bytes], people: set[str]) -> dict[str, str]:
    """person -> the last milestone they planned (a subject their check-ins may name)."""
    found: dict[str, str] = {}
    for raw in data:
        if b'"milestone.planned"' in raw:
            event = json.loads(raw)
            if event["actor"] in people:
                found[event["actor"]] = event["id"]
    return found


class CheckinAppender:
    """Appends check-ins straight into the store (as another replica's ingest would; the
    server's follower polls it), with an event loop of its own."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._loop = asyncio.new_event_loop()
        self._store = SqliteStore(database)
        self._loop.run_until_complete(self._store.open())

    def append(self, person: str, subject: str) -> None:
        now = datetime.now(UTC)
        event = Event(
            id=new_event_id(),
            actor=person,
            device="bench-ingest",
            clock=pack(int(now.timestamp() * 1000), 0),
            recorded_at=now,
            occurred_at=now,
            body=b.CheckInRecorded(subject=subject, confidence="at-risk", percent=50.0),
        )
        incoming = Incoming.from_raw(encode(event), events_subject(person, event.id))
        self._loop.run_until_complete(self._store.append_batch([incoming]))

    def close(self) -> None:
        self._loop.run_until_complete(self._store.close())
        self._loop.close()


def folded_up_to_the_store(client: httpx.Client, url: str) -> None:
    """Wait until the server's projections reflect every stored event (a minute at most)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = client.get(f"{url}/metrics").text
        found = re.search(r"^milepost_projection_lag ([\d.e+-]+)$", text, re.M)
        if found is not None and float(found.group(1)) == 0:
            return
        time.sleep(0.01)
    raise RuntimeError("the server did not fold an appended event within a minute")


def boards_after_a_member_event(
    client: httpx.Client,
    url: str,
    tokens: dict[str, str],
    subjects: dict[str, tuple[str, str]],
    appender: CheckinAppender,
) -> list[float]:
    """Milliseconds of each team's board asked right after a check-in by one of its members
    was folded into its (held) partition: what a team's page pays between ingests."""
    took: list[float] = []
    for team, token in tokens.items():
        if team not in subjects:
            continue  # its member planned no milestone: nothing to check in on
        appender.append(*subjects[team])
        folded_up_to_the_store(client, url)
        took.append(ask_board(client, url, team, token))
    return took


def wait_for_compactions(client: httpx.Client, url: str, patience: float = 300) -> float:
    """Seconds until no compaction is queued or under way (a partition loaded as objects
    is compacted in the background after the answer that loaded it; one loaded compacted
    is not: the warm boards and the RSS are of compacted ones)."""
    began = time.perf_counter()
    while time.perf_counter() - began < patience:
        if not metric(client, f"{url}/metrics", "compactions_pending"):
            break
        time.sleep(0.2)
    return time.perf_counter() - began


def boards(
    home: Path, tokens: dict[str, str], budget: str, subjects: dict[str, tuple[str, str]]
) -> None:
    """Every team's board, cold then warm, on one server with ``budget`` (and snapshots of
    partitions on), then each right after one of its members' check-ins was folded
    (*after a member's event*); then, on a restarted server, cold again from those
    snapshots; then every partition's snapshot taken by ``snapshot take --partitions``
    from none, and each board cold again on a fresh server (*cold after refresh*: teams
    nobody asked for)."""
    # No refresh of its own during the run: it is measured as a phase of its own.
    flags = ("--memory-budget", budget, "--partition-snapshot-minutes", "0")
    forget_snapshots(home)
    series: dict[str, list[float]] = {}
    process, url = start_server(home, *flags)
    try:
        with httpx.Client(timeout=300) as client:
            series["cold"] = ask_boards(client, url, tokens)
            compacted_after = wait_for_compactions(client, url)
            series["warm"] = ask_boards(client, url, tokens)
            appender = CheckinAppender(home / "milepost.sqlite")
            try:
                series["after_a_member_event"] = boards_after_a_member_event(
                    client, url, tokens, subjects, appender
                )
            finally:
                appender.close()
            held = {
                n: metric(client, f"{url}/metrics", n) for n in ("events", "partitions", "rows")
            }
            evictions = metric(client, f"{url}/metrics", "evictions_total")
        memory = rss_mb(process.pid)
    finally:
        stop_server(process, patience=300)  # it finishes the partition snapshots it began
    held_at_stop = len(json.loads((home / "working-set.json").read_text())["held"])
    forget_held(home)
    process, url = start_server(home, *flags)
    try:
        with httpx.Client(timeout=300) as client:
            series["cold_from_snapshot"] = ask_boards(client, url, tokens)
            from_snapshots = metric(client, f"{url}/metrics", "snapshot_loads_total")
    finally:
        stop_server(process, patience=300)
    # A start that warms up what was held at the last stop, before any request.
    began = time.perf_counter()
    process, url = start_server(home, *flags)
    try:
        with httpx.Client(timeout=300) as client:
            wanted = len(json.loads((home / "working-set.json").read_text())["held"])
            while (metric(client, f"{url}/metrics", "partitions") or 0) < wanted:
                time.sleep(0.05)
            figure("warm_up_after_start_seconds", time.perf_counter() - began, "s")
            figure("partitions_warmed_up", wanted, "count")
            # The warm-up compacts each partition before the next load: the RSS of the same
            # partitions held without the cold phase's climb through all of them uncompacted.
            wait_for_compactions(client, url)
            figure("server_rss_after_warm_up", rss_mb(process.pid), "MB")
    finally:
        stop_server(process, patience=300)
    series["cold_after_refresh"] = cold_after_refresh(home, tokens, flags)
    for name, values in series.items():
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        figure(f"team_board_{name}_p50", cuts[49], "ms")
        figure(f"team_board_{name}_p99", cuts[98], "ms")
    cold_p99 = statistics.quantiles(series["cold"], n=100, method="inclusive")[98]
    snap_p99 = statistics.quantiles(series["cold_from_snapshot"], n=100, method="inclusive")[98]
    figure("team_board_cold_from_snapshot_vs_from_store_p99", snap_p99 / cold_p99, "ratio")
    refreshed_p99 = statistics.quantiles(series["cold_after_refresh"], n=100, method="inclusive")
    figure("team_board_cold_after_refresh_vs_from_store_p99", refreshed_p99[98] / cold_p99, "ratio")
    warm_p99 = statistics.quantiles(series["warm"], n=100, method="inclusive")[98]
    after_p99 = statistics.quantiles(series["after_a_member_event"], n=100, method="inclusive")
    figure("team_board_after_a_member_event_vs_warm_p99", after_p99[98] / warm_p99, "ratio")
    figure("teams_asked", len(tokens), "teams")
    figure("partitions_held_at_stop", held_at_stop, "count")
    figure("partitions_loaded_from_snapshot", from_snapshots or 0, "count")
    figure("server_rss_after_every_team_once", memory, "MB")
    figure("compactions_done_after_cold_boards_seconds", compacted_after, "s")
    for name, value in (*held.items(), ("evictions_total", evictions)):
        if value is not None:
            figure(f"working_set_{name}", value, "count")


def refresh_partitions(home: Path) -> tuple[float, float, dict[str, object]]:
    """``milepost-server snapshot take --partitions`` as the server's refresh runs it: its
    seconds, its peak RSS in MB (read by a wrapper whose only child it is) and its report."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(peak, done.returncode, done.stdout, sep='\\n')\n"
    )
    command = [str(BIN), "snapshot", "take", "--partitions", "--json"]
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        env={**os.environ, "MILEPOST_SERVER_HOME": str(home)},
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - began
    peak_kb, code, report = done.stdout.split("\n", 2)
    if code != "0":
        raise RuntimeError(f"snapshot take --partitions failed: {done.stderr.strip()}")
    return seconds, int(peak_kb) / 1024, json.loads(report)


def cold_after_refresh(home: Path, tokens: dict[str, str], flags: tuple[str, ...]) -> list[float]:
    """Every partition's snapshot taken from none by the refresh (timed), then again (all
    fresh: the check alone), then each team's board on a fresh server that never held it."""
    forget_snapshots(home)
    seconds, peak, report = refresh_partitions(home)
    taken = report["taken"]
    assert isinstance(taken, list)
    figure("partition_refresh_from_none_seconds", seconds, "s")
    figure("partition_refresh_snapshots_taken", len(taken), "count")
    figure("partition_refresh_peak_rss", peak, "MB")
    seconds, _, report = refresh_partitions(home)
    assert report["taken"] == [], report
    figure("partition_refresh_when_fresh_seconds", seconds, "s")
    forget_held(home)
    process, url = start_server(home, *flags)
    try:
        with httpx.Client(timeout=300) as client:
            took = ask_boards(client, url, tokens)
            loaded = metric(client, f"{url}/metrics", "snapshot_loads_total") or 0
    finally:
        stop_server(process, patience=300)
    figure("partitions_loaded_from_refreshed_snapshot", loaded, "count")
    return took


def drop_partition_indexes(path: Path) -> None:
    """The store without the two indexes the working set reads (migration 4)."""
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX events_actor")
        db.execute("DROP INDEX events_kudos")


def ingest_cost(data: list[bytes], rounds: int) -> None:
    """Ingest with the partition indexes vs without them, alternating, best of each."""
    with_indexes: list[float] = []
    without: list[float] = []
    for round_number in range(rounds):
        with tempfile.TemporaryDirectory(prefix="milepost-bench-ingest-") as tmp:
            for indexes, series in ((False, without), (True, with_indexes)):
                path = Path(tmp) / f"{indexes}-{round_number}.sqlite"
                prepare = None if indexes else drop_partition_indexes
                series.append(asyncio.run(fill_store(path, data, heads(data), prepare)))
    rate_with = len(data) / min(with_indexes)
    rate_without = len(data) / min(without)
    figure("ingest_rate_with_partition_indexes", rate_with, "events/s")
    figure("ingest_rate_without_partition_indexes", rate_without, "events/s")
    figure("ingest_with_vs_without_partition_indexes", rate_with / rate_without, "ratio")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="50,000 events")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--teams", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=None, help="starts of each kind")
    parser.add_argument("--budget", default="1024", help="--memory-budget, MB")
    parser.add_argument("--max-teams", type=int, default=50, help="teams asked for")
    parser.add_argument("--skip-full", action="store_true", help="no all-history baseline")
    parser.add_argument("--skip-ingest", action="store_true", help="no ingest-cost figures")
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="keep the server's home (its filled store) here, and reuse it when it exists",
    )
    args = parser.parse_args(argv)
    count = args.events or (50_000 if args.quick else 1_000_000)
    rounds = args.rounds or (3 if args.quick else 2)
    data = history_bytes(people=args.people, teams=args.teams, target_events=count)
    if not args.skip_ingest:
        ingest_cost(data[: 50_000 if args.quick else 200_000], rounds)
    with tempfile.TemporaryDirectory(prefix="milepost-bench-ws-") as tmp:
        home = args.home or Path(tmp) / "server-home"
        if not (home / "milepost.sqlite").exists():
            filled = asyncio.run(fill_store(home / "milepost.sqlite", data, heads(data)))
            print(f"stored {len(data):,} events in {filled:.1f}s", file=sys.stderr)
        figure("events_stored", len(data), "events")
        members = dict(list(one_member_per_team(data).items())[: args.max_teams])
        subjects = milestone_of_each(data, set(members.values()))
        del data
        env = {**os.environ, "MILEPOST_SERVER_HOME": str(home)}
        tokens: dict[str, str] = {}
        listed = subprocess.run(
            [str(BIN), "person", "list", "--json"], env=env, capture_output=True, text=True
        )
        known = {p["person"] for p in json.loads(listed.stdout or "[]")}
        for person in members.values():
            added = subprocess.run(
                [str(BIN), "person", "add" if person not in known else "rotate", person, "--json"],
                env=env,
                capture_output=True,
                text=True,
            )
            if added.returncode == 0:
                tokens[person] = json.loads(added.stdout)["api_token"]
        person = next(iter(members.values()))
        full: list[tuple[float, float, float]] = []
        bounded: list[tuple[float, float, float]] = []
        for _ in range(rounds):
            if not args.skip_full:
                full.append(start(home, person, tokens[person], "--no-snapshots"))
                print(f"  start, all history: {full[-1]}", file=sys.stderr)
            flags = ("--memory-budget", args.budget, "--no-snapshots")
            bounded.append(start(home, person, tokens[person], *flags))
            print(f"  start, working set: {bounded[-1]}", file=sys.stderr)
        best = min(bounded, key=lambda r: r[1])
        figure("restart_working_set_first_answer_seconds", min(r[0] for r in bounded), "s")
        figure("restart_working_set_first_goal_tree_seconds", best[1], "s")
        figure("server_rss_after_start_working_set", min(r[2] for r in bounded), "MB")
        if full:
            best_full = min(full, key=lambda r: r[1])
            figure("restart_all_history_first_answer_seconds", min(r[0] for r in full), "s")
            figure("restart_all_history_first_goal_tree_seconds", best_full[1], "s")
            figure("server_rss_after_start_all_history", min(r[2] for r in full), "MB")
            figure(
                "restart_first_goal_tree_working_set_vs_all_history",
                best[1] / best_full[1],
                "ratio",
            )
        team_tokens = {team: tokens[p] for team, p in members.items() if p in tokens}
        team_subjects = {team: (p, subjects[p]) for team, p in members.items() if p in subjects}
        boards(home, team_tokens, args.budget, team_subjects)
    print_figures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
