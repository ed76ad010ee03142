"""Short references and the date forms users type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from client import dates
from client.errors import Ambiguous, InvalidValue, NotFound
from client.session import dashed, resolve, short_ref
from client.store import Store
from client.views import ref_row
from events import Event
from events import bodies as b

IDS = [
    "01a209aa-067d-75ee-a7c5-01993811aa62",
    "01a209aa-067d-75ee-a7c5-01993811bb62",
    "01a209ab-1111-7000-8000-0000deadbeef",
    "01a209ac-2222-7000-8000-0000d2560081",  # its printed ref reads like a short ref
]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "db.sqlite3", create=True)
    moment = datetime(2026, 1, 5, tzinfo=UTC)
    for index, event_id in enumerate(IDS):
        event = Event(event_id, "ava", "laptop", index, moment, moment, b.MilestonePlanned("m"))
        await opened.execute(
            "INSERT INTO refs (id, rhex, type, actor, parent, title) VALUES (?, ?, ?, ?, ?, ?)",
            ref_row(event),
        )
    yield opened
    await opened.close()


async def test_a_printed_ref_that_reads_like_a_short_ref_still_names_its_item(
    store: Store,
) -> None:
    # ``d2560081`` is also "completion number 2560081": none exists, so the id's hex
    # digits are tried (before, this was "no completion d2560081 on this device").
    assert (await resolve(store, "d2560081")).id == IDS[3]
    assert (await resolve(store, "d2560081", "milestone")).id == IDS[3]


def test_short_ref_is_the_suffix() -> None:
    assert short_ref(IDS[2]) == "deadbeef"
    assert dashed("01a209aa067d") == "01a209aa-067d"


async def test_full_id_prefix_and_suffix(store: Store) -> None:
    assert (await resolve(store, IDS[0])).id == IDS[0]
    assert (await resolve(store, "DEADBEEF")).id == IDS[2]
    assert (await resolve(store, "01a209ab")).id == IDS[2]
    assert (await resolve(store, "11bb62", "milestone")).id == IDS[1]


async def test_ambiguous_unknown_and_wrong_kind(store: Store) -> None:
    with pytest.raises(Ambiguous, match="ambiguous"):
        await resolve(store, "01a209aa")
    with pytest.raises(NotFound):
        await resolve(store, "abcdef12")
    with pytest.raises(NotFound):
        await resolve(store, "deadbeef", "objective")
    with pytest.raises(InvalidValue):
        await resolve(store, "zz-not-hex")
    with pytest.raises(InvalidValue, match="too short"):
        await resolve(store, "01a")


def test_dates() -> None:
    today = date(2026, 3, 1)
    assert dates.parse_date("today", today) == today
    assert dates.parse_date("yesterday", today) == date(2026, 2, 28)
    assert dates.parse_date("2026-02-28", today) == date(2026, 2, 28)
    for bad in ("2026-02-30", "2026-2-3", "soon", ""):
        with pytest.raises(InvalidValue):
            dates.parse_date(bad, today)


def test_moment_and_injected_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILEPOST_NOW", "2026-03-02T09:00:00+00:00")
    current = dates.now()
    assert current == datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert dates.parse_moment("yesterday", current).date() == date(2026, 3, 1)
    with pytest.raises(InvalidValue, match="future"):
        dates.parse_moment("2026-03-05", current)
