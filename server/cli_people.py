"""``milepost-server person …`` and ``team …``: people, their credentials and their teams.

Memberships are written as ``team.member_joined/left`` events by ``admin``, so every
view follows; credentials are shown once, or written to a file only its owner can read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

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
)
from server.cli_common import AsJson, CliError, Database, data_home, open_database
from server.nats_embedded import events_subject
from server.store import Incoming, ServerStore

ADMIN = "admin"
"""The actor of membership events written by these commands."""

ADMIN_DEVICE = "server"

Output = Annotated[
    Path | None,
    Parameter(
        help="Write the credentials (JSON, for `milepost init --credentials`) to this file,"
        " created readable by its owner only (0600), instead of printing them."
    ),
]
Force = Annotated[bool, Parameter(negative="", help="With --output: replace an existing file.")]
NatsUrl = Annotated[str | None, Parameter(help="NATS URL to tell the client.")]
HttpUrl = Annotated[str | None, Parameter(help="HTTP URL to tell the client.")]

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
    return server_home.reload_embedded_nats(data_home(), people)


def _urls(nats_url: str | None, http_url: str | None) -> tuple[str, str]:
    home = data_home()
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
    nats_url: NatsUrl = None,
    http_url: HttpUrl = None,
) -> int:
    """Register a person and print what `milepost init` needs (shown once), or write it
    to a file only its owner can read with --output.

    Example: milepost-server person add alice --team growth --output alice.json
    """
    _check_names(name, team)
    _check_output(output, force)

    async def go() -> Credentials:
        async with open_database(database) as opened:
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
        async with open_database(database) as opened:
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
        async with open_database(database) as opened:
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
    nats_url: NatsUrl = None,
    http_url: HttpUrl = None,
) -> int:
    """Issue new credentials; the old password and token stop working, and the person's
    team page sessions end.

    Example: milepost-server person rotate alice --output alice.json --force
    """
    _check_names(name, ())
    _check_output(output, force)

    async def go() -> tuple[Credentials, list[str]]:
        async with open_database(database) as opened:
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
        async with open_database(database) as opened:
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
