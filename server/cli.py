"""``milepost-server``: run the server, manage people, teams and credentials, rebuild views.

Errors are one line on stderr: exit 2 for a bad command line, 1 for anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
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
snapshot_app = App(
    name="snapshot",
    help="Snapshots of the projection state: a restart loads the newest and folds the rest.\n\n"
    "Example: milepost-server snapshot take && milepost-server snapshot check",
)
app.command(person_app)
app.command(team_app)
app.command(snapshot_app)


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


def _print_credentials(
    person: str, teams: Sequence[str], creds: Credentials, as_json: bool, urls: tuple[str, str]
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
    if as_json:
        print(json.dumps(shown, indent=2))
        return
    for key, value in shown.items():
        print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
    team_flag = f" --team {teams[0]}" if teams else ""
    print(
        f"# shown only now. Save it with --json to {person}.json, then on {person}'s device:\n"
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
    snapshots: Annotated[
        bool,
        Parameter(
            help="Start from the newest valid snapshot and take new ones (--no-snapshots:"
            " fold every stored event at start, take none)."
        ),
    ] = True,
    snapshot_every: Annotated[
        int,
        Parameter(help="Take a snapshot once this many events were folded since the newest."),
    ] = 100_000,
    snapshot_minutes: Annotated[
        float,
        Parameter(help="... or once this many minutes passed with any event folded since."),
    ] = 10.0,
) -> int:
    """Run the server: store, NATS, ingest, projections and the HTTP API in one process.

    Prints the HTTP and NATS URLs it listens on; SIGINT/SIGTERM stop it cleanly.

    Example: milepost-server run --port 0
    """
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
    if snapshot_every < 1:
        raise CliError("--snapshot-every must be at least 1", 2)
    if not 0 < snapshot_minutes <= 7 * 24 * 60:
        raise CliError("--snapshot-minutes must be above 0 and at most a week", 2)
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="milepost-server: %(levelname)s %(message)s",
    )

    def announce(http_url: str, nats_url: str) -> None:
        print(f"http: {http_url}", flush=True)
        print(f"nats: {nats_url}", flush=True)

    options = RunOptions(
        _home(),
        database,
        nats,
        host,
        port,
        nats_port,
        stream_replicas,
        ack_wait,
        snapshots=snapshots,
        snapshot_every_events=snapshot_every,
        snapshot_every_seconds=snapshot_minutes * 60,
    )
    return asyncio.run(serve(options, announce))


@app.command(name="nats-config")
def nats_config(*, out: Path, database: Database = None) -> int:
    """Write the NATS `authorization` block for an external cluster: the service user
    and every person with their subject permissions (hashes only).

    Every node's configuration includes this file; after adding, removing or rotating
    a person, write it again and send SIGHUP to every node. The service user's
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
    nats_url: Annotated[str | None, Parameter(help="NATS URL to tell the client.")] = None,
    http_url: Annotated[str | None, Parameter(help="HTTP URL to tell the client.")] = None,
) -> int:
    """Register a person and print what `milepost init` needs (shown once).

    Example: milepost-server person add alice --team growth --json
    """
    _check_names(name, team)

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
    _print_credentials(name, list(dict.fromkeys(team)), creds, as_json, _urls(nats_url, http_url))
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
    nats_url: Annotated[str | None, Parameter(help="NATS URL to tell the client.")] = None,
    http_url: Annotated[str | None, Parameter(help="HTTP URL to tell the client.")] = None,
) -> int:
    """Issue new credentials; the old password and token stop working.

    Example: milepost-server person rotate alice
    """
    _check_names(name, ())

    async def go() -> tuple[Credentials, list[str]]:
        async with _opened(database) as opened:
            creds = new_credentials(name)
            try:
                await opened.accounts.rotate(name, creds.nats_password_hash, creds.token_hash)
            except UnknownPerson as exc:
                raise CliError(str(exc)) from None
            await _reload_nats(opened.accounts)
            return creds, (await opened.accounts.teams()).get(name, [])

    creds, teams = asyncio.run(go())
    _print_credentials(name, teams, creds, as_json, _urls(nats_url, http_url))
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


# --- snapshots --------------------------------------------------------------------------


def _snapshot_json(info: Any, valid: str | None) -> dict[str, Any]:
    return {
        "id": info.id,
        "position": info.position,
        "fold_version": info.fold_version,
        "size": info.size,
        "taken_at": info.taken_at.isoformat(),
        "seconds": round(info.seconds, 3),
        "loadable": valid is None,
        "why_not": valid,
    }


@snapshot_app.command(name="take")
def snapshot_take(*, database: Database = None, as_json: AsJson = False) -> int:
    """Fold every stored event and store the state as a snapshot now.

    Example: milepost-server snapshot take
    """
    from server.metrics import SnapshotStats
    from server.projection import ProjectionFollower
    from server.snapshots import open_snapshots
    from server.snapshots import service as snapshotting

    async def go() -> dict[str, Any]:
        location = database or server_home.default_database(_home())
        async with _opened(database) as opened:
            snapshots = open_snapshots(location)
            await snapshots.open()
            try:
                follower = ProjectionFollower(opened.store)
                stats = SnapshotStats()
                began = time.perf_counter()
                await snapshotting.load_newest(opened.store, snapshots, follower, stats)
                await follower.catch_up()
                info = await snapshotting.take(opened.store, snapshots, follower, stats)
                if info is None:
                    raise CliError("the store changed while the snapshot was taken; try again")
                report = _snapshot_json(info, None)
                report["total_seconds"] = round(time.perf_counter() - began, 3)
                return report
            finally:
                await snapshots.close()

    report = asyncio.run(go())
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"snapshot {report['id']} at position {report['position']}: "
            f"{report['size']:,} bytes in {report['total_seconds']}s"
        )
    return 0


@snapshot_app.command(name="list")
def snapshot_list(*, database: Database = None, as_json: AsJson = False) -> int:
    """List the stored snapshots, newest first, and whether this server could load each.

    Example: milepost-server snapshot list --json
    """
    from server.snapshots import open_snapshots
    from server.snapshots import service as snapshotting

    async def go() -> list[dict[str, Any]]:
        location = database or server_home.default_database(_home())
        async with _opened(database) as opened:
            snapshots = open_snapshots(location)
            await snapshots.open()
            try:
                return [
                    _snapshot_json(info, await snapshotting.why_invalid(opened.store, info))
                    for info in await snapshots.listing()
                ]
            finally:
                await snapshots.close()

    found = asyncio.run(go())
    if as_json:
        print(json.dumps(found, indent=2))
    elif not found:
        print("no snapshots yet: milepost-server snapshot take")
    else:
        for item in found:
            note = "loadable" if item["loadable"] else f"not loadable: {item['why_not']}"
            print(
                f"{item['id']}\tposition {item['position']}\t{item['size']:,} bytes\t"
                f"{item['taken_at']}\t{note}"
            )
    return 0


@snapshot_app.command(name="check")
def snapshot_check(
    snapshot_id: Annotated[
        int | None, Parameter(name="--id", help="The snapshot to check (default: the newest).")
    ] = None,
    *,
    database: Database = None,
    as_json: AsJson = False,
) -> int:
    """Compare every user-visible view of a snapshot with a fold of the same events
    (goal trees, drift, reviews, team boards, feeds); exit 1 on any difference, or
    if the snapshot cannot be loaded (corrupt, another fold, another store).

    Example: milepost-server snapshot check
    """
    from projections import persist
    from projections.state import ProjectionState, apply
    from server import rebuild as rb
    from server.snapshots import open_snapshots
    from server.snapshots import service as snapshotting

    async def go() -> dict[str, Any]:
        location = database or server_home.default_database(_home())
        async with _opened(database) as opened:
            snapshots = open_snapshots(location)
            await snapshots.open()
            try:
                listed = await snapshots.listing()
                if snapshot_id is not None:
                    listed = [info for info in listed if info.id == snapshot_id]
                if not listed:
                    raise CliError(
                        "no snapshots yet: milepost-server snapshot take"
                        if snapshot_id is None
                        else f"no snapshot {snapshot_id}"
                    )
                info = listed[0]
                reason = await snapshotting.why_invalid(opened.store, info)
                if reason is not None:
                    raise CliError(f"snapshot {info.id} cannot be loaded: {reason}")
                blob = await snapshots.blob(info.id)
                if blob is None:
                    raise CliError(f"snapshot {info.id} cannot be loaded: its bytes are gone")
                try:
                    loaded, _ = persist.decode(blob, info.checksum)
                except persist.SnapshotInvalid as exc:
                    raise CliError(f"snapshot {info.id} cannot be loaded: {exc}") from None
                # The fold of the same events: positions 1..position, in order.
                fresh = ProjectionState()
                for event in await rb.stored_events(opened.store, upto=info.position):
                    apply(fresh, event)
            finally:
                await snapshots.close()
        compared, differ = rb.differences(loaded, fresh, datetime.now(UTC))
        return {
            "id": info.id,
            "position": info.position,
            "views_compared": compared,
            "differing": differ,
            "equal": not differ,
        }

    report = asyncio.run(go())
    if as_json:
        print(json.dumps(report, indent=2))
    elif report["equal"]:
        print(
            f"snapshot {report['id']} at position {report['position']}: "
            f"{report['views_compared']} views equal a fold of the same events"
        )
    else:
        print(
            f"snapshot {report['id']}: {len(report['differing'])} views differ: "
            + ", ".join(report["differing"])
        )
    if not report["equal"]:
        raise CliError(f"snapshot {report['id']} differs from a fold of the same events")
    return 0


# --- entry point ------------------------------------------------------------------------


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.strip().splitlines() if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors become one line on stderr and exit 1 (or 2 for usage)."""
    tokens = list(sys.argv[1:] if argv is None else argv)
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
