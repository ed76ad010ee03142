"""Import parsing: CSV journal rows with line-numbered errors, stable ids, JSON Lines."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count

from client.importing import CsvContext, parse_csv, parse_jsonl
from events import Event, encode
from events import bodies as b


def _ctx() -> CsvContext:
    clock = count(1)
    return CsvContext("ava", "laptop", datetime(2026, 3, 1, 9, tzinfo=UTC), {}, lambda: next(clock))


GOOD = b"""date,indicator,observation,impact
2026-01-05,Customer empathy,Called three users before the launch,positive
2026-01-12,,Shipped without tests and paid for it,negative
2026-01-19,customer empathy,Users asked for dark mode,We added it
"""


def test_good_csv_creates_one_indicator_and_stable_ids() -> None:
    first = parse_csv(GOOD, _ctx())
    assert not first.bad and first.rows == 3
    kinds = [e.type for e in first.events if isinstance(e, Event)]
    assert kinds.count("indicator.defined") == 1
    assert kinds.count("observation.recorded") == 3
    negative = [e for e in first.events if isinstance(e, Event) and "tests" in str(e.body)]
    assert isinstance(negative[0].body, b.ObservationRecorded)
    assert negative[0].body.polarity == "negative"
    again = parse_csv(GOOD, _ctx())
    assert [e.id for e in again.events] == [e.id for e in first.events]


def test_bad_rows_are_each_reported_by_line() -> None:
    data = b"""date,indicator,observation,impact
2026-02-30,Empathy,Bad date,
2026-01-05,Empathy,,
2026-01-06,Empathy,Fine row,
2027-01-01,Empathy,In the future,
not,enough
"""
    parsed = parse_csv(data, _ctx())
    assert [bad.line for bad in parsed.bad] == [2, 3, 5, 6]
    assert "2026-02-30" in parsed.bad[0].reason
    assert "empty" in parsed.bad[1].reason


def test_jsonl_reports_bad_lines() -> None:
    moment = datetime(2026, 1, 5, tzinfo=UTC)
    good = Event(
        "01a209aa-067d-75ee-a7c5-01993811aa62", "ava", "laptop", 1, moment, moment,
        b.MilestonePlanned("Ship"),
    )  # fmt: skip
    data = encode(good) + b"\n\n{not json}\n" + encode(good).replace(b'"Ship"', b'""') + b"\n"
    parsed = parse_jsonl(data)
    assert len(parsed.events) == 1
    assert [bad.line for bad in parsed.bad] == [3, 4]
    assert "title" in parsed.bad[1].reason
