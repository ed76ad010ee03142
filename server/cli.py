"""``milepost-server``: run the server, manage people, teams and credentials, rebuild views.

Errors are one line on stderr: exit 2 for a bad command line, 1 for anything else.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import cyclopts
from cyclopts import App, Parameter

from server import home as server_home
from server.cli_common import (
    AsJson,
    CliError,
    Database,
    data_home,
    open_database,
    print_report,
)
from server.cli_people import person_app, team_app
from server.cli_snapshots import snapshot_app
from server.ingest import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_STREAM_MAX_BYTES
from server.limits import (
    DEFAULT_BYTE_BURST,
    DEFAULT_BYTES_PER_SECOND,
    DEFAULT_EVENT_BURST,
    DEFAULT_EVENTS_PER_SECOND,
    IngestLimits,
)

app = App(
    name="milepost-server",
    help=(
        "The Milepost sync server: JetStream ingest, event store, projections, HTTP API.\n\n"
        "Data folder: $MILEPOST_SERVER_HOME, else the platform's user data folder.\n\n"
        "Example: milepost-server person add alice --team growth && milepost-server run"
    ),
    version="0.1.0",
)
app.command(person_app)
app.command(team_app)
app.command(snapshot_app)


# --- run --------------------------------------------------------------------------------


_WEEK = 7 * 24 * 60
"""The longest interval, in minutes, a --*-minutes option takes."""


def _ingest_limits(
    rate_limit: float, burst: int, byte_rate: int, byte_burst: int
) -> IngestLimits | None:
    """The per-person limits the flags ask for (a rate of 0 turns that limit off)."""
    if rate_limit < 0 or not math.isfinite(rate_limit):
        raise CliError("--rate-limit must be a number of events per second, 0 or more", 2)
    if byte_rate < 0:
        raise CliError("--byte-rate must be 0 or more", 2)
    if burst < 1 or byte_burst < 1:
        raise CliError("--burst and --byte-burst must be at least 1", 2)
    if not rate_limit and not byte_rate:
        return None
    return IngestLimits(
        events_per_second=rate_limit or None,
        event_burst=burst,
        bytes_per_second=byte_rate or None,
        byte_burst=byte_burst,
    )


@app.command
def run(
    *,
    database: Database = None,
    nats: Annotated[
        str | None,
        Parameter(
            env_var="MILEPOST_NATS",
            help="nats://… of an existing NATS, comma-separated for a cluster (default: start"
            " an embedded nats-server); $MILEPOST_NATS when not given. URLs without a login"
            " use the service user with the password in $MILEPOST_NATS_PASSWORD.",
        ),
    ] = None,
    host: Annotated[str, Parameter(help="Address to listen on (HTTP and embedded NATS).")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int | None, Parameter(help="HTTP port; 0 picks a free one (default: 8321 or last used).")
    ] = None,
    nats_port: Annotated[
        int | None,
        Parameter(help="Embedded NATS port; 0 picks a free one (default: 4222 or last used)."),
    ] = None,
    stream_replicas: Annotated[
        int | None,
        Parameter(help="Replicas of the events stream (3 on a 3-node cluster; default: keep)."),
    ] = None,
    ack_wait: Annotated[
        float,
        Parameter(help="Seconds before messages a crashed replica fetched are redelivered."),
    ] = 30.0,
    monitor_host: Annotated[
        str,
        Parameter(
            help="Address of the embedded nats-server's monitoring port (unauthenticated:"
            " it lists users, addresses and subscriptions). Loopback whatever --host is."
        ),
    ] = "127.0.0.1",
    rate_limit: Annotated[
        float,
        Parameter(
            help="Events per second one person may push, after a burst (0: no limit)."
            " Past it their events are refused with 'rate limit: … retry after N s' and"
            " their devices push them again later; nothing is lost."
        ),
    ] = DEFAULT_EVENTS_PER_SECOND,
    burst: Annotated[
        int, Parameter(help="Events one person may push at once before --rate-limit applies.")
    ] = DEFAULT_EVENT_BURST,
    byte_rate: Annotated[
        int,
        Parameter(help="Bytes per second one person may push, after --byte-burst (0: no limit)."),
    ] = DEFAULT_BYTES_PER_SECOND,
    byte_burst: Annotated[
        int, Parameter(help="Bytes one person may push at once before --byte-rate applies.")
    ] = DEFAULT_BYTE_BURST,
    stream_max_bytes: Annotated[
        int,
        Parameter(
            help="Bytes the events stream may hold not yet ingested (-1: no limit); when"
            " full, pushes are refused and devices retry."
        ),
    ] = DEFAULT_STREAM_MAX_BYTES,
    max_event_bytes: Annotated[
        int,
        Parameter(help="Largest message the events stream takes, headers included (bytes)."),
    ] = DEFAULT_MAX_MESSAGE_BYTES,
    snapshots: Annotated[
        bool,
        Parameter(
            help="Start from the newest valid snapshot and take new ones (--no-snapshots:"
            " fold every stored event at start, take none)."
        ),
    ] = True,
    snapshot_every: Annotated[
        int | None,
        Parameter(
            help="Take a snapshot once this many events were folded since the newest"
            " [default: 100000; with --memory-budget, per partition: 5000]."
        ),
    ] = None,
    snapshot_minutes: Annotated[
        float,
        Parameter(help="... or once this many minutes passed with any event folded since."),
    ] = 10.0,
    memory_budget: Annotated[
        int | None,
        Parameter(
            help="MB of projection state to hold: fold each team's history when it is first"
            " asked for and drop the least recently used over this budget, instead of folding"
            " all history at start (each partition then has snapshots of its own; see"
            " docs/scaling.md)."
        ),
    ] = None,
    partition_snapshot_minutes: Annotated[
        float | None,
        Parameter(
            help="With --memory-budget: every this many minutes, a child process snapshots"
            " each team's and person's partition that is --snapshot-every of its events"
            " behind, so a team nobody asked for still loads from a snapshot (0: never)"
            " [default: 60]."
        ),
    ] = None,
) -> int:
    """Run the server: store, NATS, ingest, projections and the HTTP API in one process.

    Prints the HTTP and NATS URLs it listens on; SIGINT/SIGTERM stop it cleanly.

    Example: milepost-server run --port 0
    """
    from server.ingest import StreamLimits
    from server.runtime import RunOptions, serve

    for name, value in (("--port", port), ("--nats-port", nats_port)):
        if value is not None and not 0 <= value <= 65535:
            raise CliError(f"{name} must be between 0 and 65535", 2)
    if nats is not None and not nats.startswith(("nats://", "tls://", "ws://", "wss://")):
        raise CliError("--nats must be a nats:// URL", 2)
    if stream_replicas is not None and not 1 <= stream_replicas <= 5:
        raise CliError("--stream-replicas must be between 1 and 5", 2)
    if not 0.5 <= ack_wait <= 3600:
        raise CliError("--ack-wait must be between 0.5 and 3600 seconds", 2)
    limits = _ingest_limits(rate_limit, burst, byte_rate, byte_burst)
    if stream_max_bytes != -1 and stream_max_bytes < 1024 * 1024:
        raise CliError("--stream-max-bytes must be at least 1048576 (1 MiB), or -1", 2)
    if not 1024 <= max_event_bytes <= 64 * 1024 * 1024:
        raise CliError("--max-event-bytes must be between 1024 and 67108864", 2)
    if snapshot_every is not None and snapshot_every < 1:
        raise CliError("--snapshot-every must be at least 1", 2)
    if not 0 < snapshot_minutes <= _WEEK:
        raise CliError("--snapshot-minutes must be above 0 and at most a week", 2)
    if memory_budget is not None and not 16 <= memory_budget <= 1024 * 1024:
        raise CliError("--memory-budget must be between 16 and 1048576 (MB)", 2)
    if partition_snapshot_minutes is None:
        partition_snapshot_minutes = 60.0
    elif memory_budget is None:  # all history is one state, snapshotted by --snapshot-every
        raise CliError("--partition-snapshot-minutes applies only with --memory-budget", 2)
    elif not (partition_snapshot_minutes == 0 or 0.01 <= partition_snapshot_minutes <= _WEEK):
        raise CliError("--partition-snapshot-minutes must be 0 or from 0.01 to a week", 2)
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="milepost-server: %(levelname)s %(message)s",
    )

    options = RunOptions(
        data_home(),
        database,
        nats,
        host,
        port,
        nats_port,
        stream_replicas,
        ack_wait,
        monitor_host=monitor_host,
        limits=limits,
        stream_limits=StreamLimits(stream_max_bytes, max_event_bytes),
        snapshots=snapshots,
        snapshot_every_events=snapshot_every,
        snapshot_every_seconds=snapshot_minutes * 60,
        memory_budget_bytes=None if memory_budget is None else memory_budget * 1024 * 1024,
        partition_snapshot_seconds=partition_snapshot_minutes * 60,
    )

    def announce(http_url: str, nats_url: str) -> None:
        # The first two lines stay machine-readable (scripts and tests read them).
        print(f"http: {http_url}", flush=True)
        print(f"nats: {nats_url}", flush=True)
        print(banner(options.home, database, http_url, nats_url), flush=True)

    return asyncio.run(serve(options, announce))


def banner(home: Path, database: str | None, http_url: str, nats_url: str) -> str:
    """What a person starting the server needs: version, data, URLs, how to stop, what next."""
    import os

    stored = database or server_home.default_database(home)
    shown_db = stored.split("@")[-1] if "://" in stored and "@" in stored else stored
    return "\n".join(
        [
            f"milepost-server {app.version} is running (pid {os.getpid()}).",
            f"  data:      {home}",
            f"  database:  {shown_db}",
            f"  devices sync with:  {nats_url}",
            f"  HTTP API:  {http_url}  (docs: {http_url}/schema)",
            "Stop it with Ctrl-C (or SIGTERM to the pid).",
            "Next: add a person, then set up their device with what it prints:",
            "  milepost-server person add ava --output ava.json",
            f"  milepost init --person ava --server {nats_url.split(',')[0]}"
            " --credentials ava.json",
        ]
    )


@app.command(name="nats-config")
def nats_config(*, out: Path, database: Database = None) -> int:
    """Write the NATS `authorization` block for an external cluster: the service user
    and every person with their subject permissions (hashes only).

    Every node's configuration includes this file; after adding, removing or rotating
    a person, write it again and send SIGHUP to every node, twice (a new person's
    account gets its imports at the second reload). The service user's
    password is read from $MILEPOST_NATS_PASSWORD (never from the command line).

    Example: milepost-server nats-config --database postgresql://… --out deploy/nats/auth/auth.conf
    """
    import os

    from server.nats_cluster import SERVICE_PASSWORD_ENV, cluster_users, write_authorization

    password = os.environ.get(SERVICE_PASSWORD_ENV)
    if not password:
        raise CliError(f"set ${SERVICE_PASSWORD_ENV} to the service user's NATS password", 2)

    async def go() -> int:
        async with open_database(database) as opened:
            users = await cluster_users(opened.accounts, password)
        write_authorization(out, users)
        return len(users) - 1

    people = asyncio.run(go())
    print(f"wrote {out}: the service user and {people} people")
    return 0


# --- rebuild ----------------------------------------------------------------------------


@app.command
def rebuild(
    *,
    database: Database = None,
    check: Annotated[
        bool,
        Parameter(negative="", help="Compare with the incremental fold; exit 1 on a difference."),
    ] = False,
    as_json: AsJson = False,
) -> int:
    """Recompute every projection from the stored events.

    With --check, compare every user-visible view (goal trees, drift, reviews, team
    boards, feeds and drift as each member sees them) with the incremental fold a
    running server holds. A running server on this data folder is also asked
    (SIGUSR1) to rebuild its in-memory projections.

    Example: milepost-server rebuild --check
    """
    from server import rebuild as rb

    async def go() -> dict[str, Any]:
        async with open_database(database) as opened:
            began = time.perf_counter()
            fresh = await rb.rebuilt_state(opened.store)
            elapsed = time.perf_counter() - began
            people, teams = rb.people_and_teams(fresh)
            report: dict[str, Any] = {
                "events": len(fresh.events) + len(fresh.opaque),
                "people": len(people),
                "teams": len(teams),
                "seconds": round(elapsed, 3),
            }
            if check:
                incremental = await rb.incremental_state(opened.store)
                compared, differ = rb.differences(incremental, fresh, datetime.now(UTC))
                report.update(views_compared=compared, differing=differ, equal=not differ)
            return report

    report = asyncio.run(go())
    running = server_home.running_server(data_home())
    if running is not None and database in (None, running.database):
        import os
        import signal

        os.kill(running.pid, signal.SIGUSR1)
        report["server_rebuilt"] = running.pid

    def lines() -> Iterator[str]:
        yield (
            f"rebuilt {report['events']} events: {report['people']} people, "
            f"{report['teams']} teams in {report['seconds']}s"
        )
        if check and report["equal"]:
            yield f"check: {report['views_compared']} views equal the incremental state"
        elif check:
            differing = report["differing"]
            yield f"check: {len(differing)} views differ: " + ", ".join(differing)

    print_report(report, as_json, lines)
    if check and not report["equal"]:
        raise CliError("rebuilt projections differ from the incremental state")
    return 0


# --- entry point ------------------------------------------------------------------------


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.strip().splitlines() if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors become one line on stderr and exit 1 (or 2 for usage)."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    # Everything the server writes (database, logs, NATS configuration and store) is
    # readable by its owner only, including the files SQLite and nats-server create.
    os.umask(0o077)
    try:
        result = app(
            tokens,
            print_error=False,
            exit_on_error=False,
            help_on_error=False,
            result_action="return_value",
        )
    except cyclopts.CycloptsError as exc:
        print(f"milepost-server: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"milepost-server: error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a broken database, a port in use: one line, no traceback
        detail = _one_line(str(exc)) or type(exc).__name__
        print(f"milepost-server: error: {detail}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
