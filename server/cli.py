"""``milepost-server``: run the server, manage people, teams and credentials, rebuild views.

Errors are one line on stderr: exit 2 for a bad command line, 1 for anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import cyclopts
from cyclopts import App, Parameter

from events import Event, HybridLogicalClock, TeamMemberJoined, TeamMemberLeft, encode, new_event_id
from server import home as server_home
from server.accounts import (
    AccountStore,
    Credentials,
    InvalidName,
    PersonExists,
    UnknownPerson,
    check_name,
    new_credentials,
    open_accounts,
)
from server.ingest import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_STREAM_MAX_BYTES
from server.limits import (
    DEFAULT_BYTE_BURST,
    DEFAULT_BYTES_PER_SECOND,
    DEFAULT_EVENT_BURST,
    DEFAULT_EVENTS_PER_SECOND,
    IngestLimits,
)
from server.nats_embedded import events_subject
from server.store import Incoming, ServerStore, open_store

ADMIN = "admin"
"""The actor of membership events written by these commands."""

ADMIN_DEVICE = "server"


class CliError(Exception):
    """An expected failure: its message is printed as one line, with ``code`` as exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


Database = Annotated[
    str | None,
    Parameter(
        env_var="MILEPOST_DATABASE",
        help="postgresql://… URL or SQLite file (default: milepost.sqlite in the data folder)."
        " $MILEPOST_DATABASE when not given (keeps a password off the command line).",
    ),
]
AsJson = Annotated[bool, Parameter(name="--json", negative="", help="Print JSON.")]
Output = Annotated[
    Path | None,
    Parameter(
        help="Write the credentials (JSON, for `milepost init --credentials`) to this file,"
        " created readable by its owner only (0600), instead of printing them."
    ),
]
Force = Annotated[bool, Parameter(negative="", help="With --output: replace an existing file.")]

app = App(
    name="milepost-server",
    help=(
        "The Milepost sync server: JetStream ingest, event store, projections, HTTP API.\n\n"
        "Data folder: $MILEPOST_SERVER_HOME, else the platform's user data folder.\n\n"
        "Example: milepost-server person add alice --team growth && milepost-server run"
    ),
    version="0.1.0",
)
person_app = App(
    name="person",
    help="Add, remove, list people; rotate their credentials.\n\n"
    "Example: milepost-server person add alice --team growth",
)
team_app = App(
    name="team",
    help="Change team membership (written as events, so every view follows).\n\n"
    "Example: milepost-server team join growth bob",
)
app.command(person_app)
app.command(team_app)


# --- plumbing ---------------------------------------------------------------------------


def _home() -> Path:
    return server_home.server_home()


@dataclass
class _Open:
    store: ServerStore
    accounts: AccountStore


@contextlib.asynccontextmanager
async def _opened(database: str | None) -> AsyncIterator[_Open]:
    location = database or server_home.default_database(_home())
    store = open_store(location)
    await store.open()
    try:
        accounts = open_accounts(location)
        await accounts.open()
        try:
            yield _Open(store, accounts)
        finally:
            await accounts.close()
    finally:
        await store.close()


def _membership_event(clock: HybridLogicalClock, team: str, person: str, joined: bool) -> Event:
    now = datetime.now(UTC)
    body = (
        TeamMemberJoined(team=team, person=person)
        if joined
        else TeamMemberLeft(team=team, person=person)
    )
    return Event(
        id=new_event_id(),
        actor=ADMIN,
        device=ADMIN_DEVICE,
        clock=clock.now(),
        recorded_at=now,
        occurred_at=now,
        body=body,
    )


async def _append_memberships(store: ServerStore, changes: Sequence[tuple[str, str, bool]]) -> int:
    """Append one ``team.member_joined/left`` event per (team, person, joined)."""
    if not changes:
        return 0
    clock = HybridLogicalClock()
    items = []
    for team, person, joined in changes:
        event = _membership_event(clock, team, person, joined)
        items.append(Incoming(encode(event), event, None, events_subject(ADMIN, event.id)))
    result = await store.append_batch(items)
    return len(result.stored)


async def _reload_nats(accounts: AccountStore) -> bool:
    people = {p.name: p.nats_password_hash for p in await accounts.people()}
    return server_home.reload_embedded_nats(_home(), people)


def _urls(nats_url: str | None, http_url: str | None) -> tuple[str, str]:
    home = _home()
    running = server_home.running_server(home)
    if running is not None:
        return nats_url or running.nats_url, http_url or running.http_url
    ports = server_home.remembered_ports(home)
    nats_port = ports.get("nats", server_home.DEFAULT_NATS_PORT)
    http_port = ports.get("http", server_home.DEFAULT_HTTP_PORT)
    return (
        nats_url or f"nats://127.0.0.1:{nats_port}",
        http_url or f"http://127.0.0.1:{http_port}",
    )


def _check_output(output: Path | None, force: bool) -> None:
    """Before any change: refuse an --output that exists (unless --force) or cannot be made."""
    if output is None:
        if force:
            raise CliError("--force goes with --output", 2)
        return
    if output.exists() and not force:
        raise CliError(f"{output} exists; choose another file or add --force to replace it", 2)
    if output.exists() and not output.is_file():
        raise CliError(f"{output} is not a file", 2)
    if not output.parent.is_dir():
        raise CliError(f"the folder of {output} does not exist", 2)


def write_secret_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600) from its first byte:
    a temporary file created 0600 in the same folder, then renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _print_credentials(
    person: str,
    teams: Sequence[str],
    creds: Credentials,
    as_json: bool,
    urls: tuple[str, str],
    output: Path | None = None,
) -> None:
    nats_url, http_url = urls
    shown: dict[str, Any] = {
        "person": person,
        "teams": list(teams),
        "nats_url": nats_url,
        "http_url": http_url,
        "nats_password": creds.nats_password,
        "api_token": creds.api_token,
    }
    team_flag = f" --team {teams[0]}" if teams else ""
    if output is not None:
        write_secret_file(output, json.dumps(shown, indent=2) + "\n")
        print(
            f"wrote {person}'s credentials to {output} (mode 0600; shown only there)."
            f" Give it to {person} privately, then on their device:\n"
            f"  milepost init --person {person}{team_flag} --server {nats_url}"
            f" --credentials {output.name}"
        )
        return
    if as_json:
        print(json.dumps(shown, indent=2))
        return
    for key, value in shown.items():
        print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
    print(
        f"# shown only now. Save it with --output {person}.json (mode 0600),"
        f" then on {person}'s device:\n"
        f"#   milepost init --person {person}{team_flag} --server {nats_url}"
        f" --credentials {person}.json"
    )


def _check_names(person: str | None, teams: Sequence[str]) -> None:
    try:
        if person is not None:
            check_name(person)
        for team in teams:
            check_name(team, "team")
    except InvalidName as exc:
        raise CliError(str(exc), 2) from None


# --- run --------------------------------------------------------------------------------


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
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="milepost-server: %(levelname)s %(message)s",
    )

    options = RunOptions(
        _home(),
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
        async with _opened(database) as opened:
            users = await cluster_users(opened.accounts, password)
        write_authorization(out, users)
        return len(users) - 1

    people = asyncio.run(go())
    print(f"wrote {out}: the service user and {people} people")
    return 0


# --- people -----------------------------------------------------------------------------


@person_app.command(name="add")
def person_add(
    name: str,
    *,
    team: Annotated[tuple[str, ...], Parameter(help="A team to join (repeatable).")] = (),
    database: Database = None,
    as_json: AsJson = False,
    output: Output = None,
    force: Force = False,
    nats_url: Annotated[str | None, Parameter(help="NATS URL to tell the client.")] = None,
    http_url: Annotated[str | None, Parameter(help="HTTP URL to tell the client.")] = None,
) -> int:
    """Register a person and print what `milepost init` needs (shown once), or write it
    to a file only its owner can read with --output.

    Example: milepost-server person add alice --team growth --output alice.json
    """
    _check_names(name, team)
    _check_output(output, force)

    async def go() -> Credentials:
        async with _opened(database) as opened:
            creds = new_credentials(name)
            try:
                await opened.accounts.add(name, creds.nats_password_hash, creds.token_hash)
            except PersonExists as exc:
                raise CliError(f"{exc} (use `person rotate` for new credentials)") from None
            await _append_memberships(opened.store, [(t, name, True) for t in dict.fromkeys(team)])
            await _reload_nats(opened.accounts)
            return creds

    creds = asyncio.run(go())
    _print_credentials(
        name, list(dict.fromkeys(team)), creds, as_json, _urls(nats_url, http_url), output
    )
    return 0


@person_app.command(name="remove")
def person_remove(name: str, *, database: Database = None) -> int:
    """Remove a person's credentials and their team memberships (their events stay).

    Example: milepost-server person remove alice
    """
    _check_names(name, ())

    async def go() -> list[str]:
        async with _opened(database) as opened:
            teams = (await opened.accounts.teams()).get(name, [])
            try:
                await opened.accounts.remove(name)
            except UnknownPerson as exc:
                raise CliError(str(exc)) from None
            await opened.accounts.end_web_sessions(name)
            await _append_memberships(opened.store, [(t, name, False) for t in teams])
            await _reload_nats(opened.accounts)
            return teams

    teams = asyncio.run(go())
    left = f" (left {', '.join(teams)})" if teams else ""
    print(f"removed {name}{left}")
    return 0


@person_app.command(name="list")
def person_list(*, database: Database = None, as_json: AsJson = False) -> int:
    """List people, their teams and when their credentials were issued.

    Example: milepost-server person list --json
    """

    async def go() -> list[dict[str, Any]]:
        async with _opened(database) as opened:
            teams = await opened.accounts.teams()
            return [
                {
                    "person": p.name,
                    "teams": teams.get(p.name, []),
                    "created_at": p.created_at.isoformat(),
                    "rotated_at": p.rotated_at.isoformat() if p.rotated_at else None,
                }
                for p in await opened.accounts.people()
            ]

    people = asyncio.run(go())
    if as_json:
        print(json.dumps(people, indent=2))
    elif not people:
        print("no people yet: milepost-server person add NAME --team TEAM")
    else:
        for p in people:
            print(f"{p['person']}\tteams: {', '.join(p['teams']) or '-'}\tsince {p['created_at']}")
    return 0


@person_app.command(name="rotate")
def person_rotate(
    name: str,
    *,
    database: Database = None,
    as_json: AsJson = False,
    output: Output = None,
    force: Force = False,
    nats_url: Annotated[str | None, Parameter(help="NATS URL to tell the client.")] = None,
    http_url: Annotated[str | None, Parameter(help="HTTP URL to tell the client.")] = None,
) -> int:
    """Issue new credentials; the old password and token stop working, and the person's
    team page sessions end.

    Example: milepost-server person rotate alice --output alice.json --force
    """
    _check_names(name, ())
    _check_output(output, force)

    async def go() -> tuple[Credentials, list[str]]:
        async with _opened(database) as opened:
            creds = new_credentials(name)
            try:
                await opened.accounts.rotate(name, creds.nats_password_hash, creds.token_hash)
            except UnknownPerson as exc:
                raise CliError(str(exc)) from None
            await opened.accounts.end_web_sessions(name)  # the team page signs them out
            await _reload_nats(opened.accounts)
            return creds, (await opened.accounts.teams()).get(name, [])

    creds, teams = asyncio.run(go())
    _print_credentials(name, teams, creds, as_json, _urls(nats_url, http_url), output)
    return 0


# --- teams ------------------------------------------------------------------------------


def _membership(team: str, people: tuple[str, ...], database: str | None, joined: bool) -> int:
    if not people:
        raise CliError("name at least one person", 2)
    for person in people:
        _check_names(person, (team,))

    async def go() -> None:
        async with _opened(database) as opened:
            if joined:
                registered = {p.name for p in await opened.accounts.people()}
                missing = [p for p in people if p not in registered]
                if missing:
                    raise CliError(f"no person {missing[0]!r} (add them with `person add`)")
            await _append_memberships(opened.store, [(team, p, joined) for p in people])

    asyncio.run(go())
    verb = "joined" if joined else "left"
    print(f"{', '.join(people)} {verb} {team}")
    return 0


@team_app.command(name="join")
def team_join(team: str, *people: str, database: Database = None) -> int:
    """Add people to a team (a `team.member_joined` event by `admin` each).

    Example: milepost-server team join growth bob carol
    """
    return _membership(team, people, database, True)


@team_app.command(name="leave")
def team_leave(team: str, *people: str, database: Database = None) -> int:
    """Remove people from a team (a `team.member_left` event by `admin` each).

    Example: milepost-server team leave growth bob
    """
    return _membership(team, people, database, False)


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
        async with _opened(database) as opened:
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
    running = server_home.running_server(_home())
    if running is not None and database in (None, running.database):
        import os
        import signal

        os.kill(running.pid, signal.SIGUSR1)
        report["server_rebuilt"] = running.pid
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"rebuilt {report['events']} events: {report['people']} people, "
            f"{report['teams']} teams in {report['seconds']}s"
        )
        if check:
            if report["equal"]:
                print(f"check: {report['views_compared']} views equal the incremental state")
            else:
                print(
                    f"check: {len(report['differing'])} views differ: "
                    + ", ".join(report["differing"])
                )
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
