"""The append algorithm's requests (``Ask``) name exactly the primitives both backends
implement, and the two drivers answer a request the same way (the algorithm is written
once, as steps, for asyncpg's async primitives and SQLite's synchronous ones)."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
from typing import Any

import pytest

from server.store.append_io import AppendTx, Ask, Step, SyncAppendTx, ask, drive_async, drive_sync
from server.store.postgres import _PostgresTx
from server.store.sqlite import _SqliteTx


def _methods(cls: type[Any]) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls, inspect.isfunction) if name[0] != "_"}


def test_every_request_is_a_primitive_of_both_backends() -> None:
    requests = _methods(Ask)
    assert requests == _methods(AppendTx) == _methods(SyncAppendTx)
    assert requests <= _methods(_PostgresTx)
    assert requests <= _methods(_SqliteTx)
    for name in requests:
        assert inspect.iscoroutinefunction(getattr(_PostgresTx, name)), name
        assert not inspect.iscoroutinefunction(getattr(_SqliteTx, name)), name


def _two_steps() -> Step[tuple[int, set[str]]]:
    last = yield from ask.lock_positions()
    held = yield from ask.existing_ids(["a", "b"])
    return last, held


def test_both_drivers_run_the_same_steps_against_sqlite() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE events (position INTEGER PRIMARY KEY, id TEXT)")
    db.execute("INSERT INTO events VALUES (7, 'b')")
    tx = _SqliteTx(db)
    assert drive_sync(tx, _two_steps()) == (7, {"b"})

    class Awaited:
        """The same primitives, awaited (as asyncpg's are)."""

        def __getattr__(self, name: str) -> Any:
            async def call(*args: Any) -> Any:
                return getattr(tx, name)(*args)

            return call

    assert asyncio.run(drive_async(Awaited(), _two_steps())) == (7, {"b"})


def test_a_failing_primitive_ends_the_steps_with_its_error() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)  # no events table
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        drive_sync(_SqliteTx(db), _two_steps())
