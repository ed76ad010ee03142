"""What every ``milepost-server`` command module shares: the one-line error, the
``--database`` and ``--json`` options, the data folder, and the opened store and accounts."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from cyclopts import Parameter

from server import home as server_home
from server.accounts import AccountStore, open_accounts
from server.store import ServerStore, open_store

if TYPE_CHECKING:
    from server.snapshots.protocol import SnapshotStore


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


def print_report(
    report: Mapping[str, Any], as_json: bool, lines: Callable[[], Iterable[str]]
) -> None:
    """A command's report: the JSON with ``--json``, else the lines a person reads."""
    if as_json:
        print(json.dumps(report, indent=2))
        return
    for line in lines():
        print(line)


def data_home() -> Path:
    """The server's data folder ($MILEPOST_SERVER_HOME, else the platform's)."""
    return server_home.server_home()


@dataclass
class Opened:
    store: ServerStore
    accounts: AccountStore


@contextlib.asynccontextmanager
async def open_database(database: str | None) -> AsyncIterator[Opened]:
    """The store and the accounts of ``database`` (default: the data folder's SQLite file)."""
    location = database or server_home.default_database(data_home())
    store = open_store(location)
    await store.open()
    try:
        accounts = open_accounts(location)
        await accounts.open()
        try:
            yield Opened(store, accounts)
        finally:
            await accounts.close()
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def open_with_snapshots(database: str | None) -> AsyncIterator[tuple[Opened, SnapshotStore]]:
    """``open_database`` and the snapshot store kept beside it (the ``snapshot`` commands)."""
    from server.snapshots import open_snapshots

    location = database or server_home.default_database(data_home())
    async with open_database(database) as opened:
        snapshots = open_snapshots(location)
        await snapshots.open()
        try:
            yield opened, snapshots
        finally:
            await snapshots.close()
