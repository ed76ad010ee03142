"""Reading import files: JSON Lines of events, and the CSV journal people already keep.

Parsing is pure (no store): it returns the events to add and one ``BadRow``
per line that cannot be used, with its line number and reason. Ids of events
made from CSV rows are derived from the row's content, so importing the same
file twice adds nothing the second time.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time

import msgspec

from client.errors import InvalidValue
from events import AnyEvent, CodecError, Event, decode, decode_event, encode
from events import bodies as b

CSV_COLUMNS = ("date", "indicator", "observation", "impact")
IMPORTED_STAGES = ("observed",)
MAX_CELL = 4000
CELL_LIMITS = {"date": 40, "indicator": 200, "observation": 4000, "impact": 4000}
"""Longest cell accepted per column (the limits of the fields they become)."""
_NEGATIVE = {"negative", "neg", "-", "bad", "lesson"}
_POSITIVE = {"positive", "pos", "+", "good", "win"}


@dataclass(frozen=True)
class BadRow:
    """A line that cannot be imported, and why."""

    line: int
    reason: str


@dataclass
class Parsed:
    """What a file holds: events ready to store, and the bad rows."""

    events: list[AnyEvent] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    rows: int = 0


def stable_id(ms: int, *parts: str) -> str:
    """A UUIDv7 whose time is ``ms`` and whose random bits come from hashing ``parts``."""
    digest = int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:10], "big")
    rand_a = digest >> 68 & 0xFFF
    rand_b = digest & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    import uuid

    return str(uuid.UUID(int=value))


def parse_jsonl(data: bytes) -> Parsed:
    """Events, one JSON object per line (blank lines skipped)."""
    parsed = Parsed()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        parsed.rows += 1
        try:
            parsed.events.append(decode(line))
        except CodecError as exc:
            parsed.bad.append(BadRow(number, f"{exc.field}: {exc.reason}"))
    return parsed


@dataclass
class CsvContext:
    """Who imports, from which device, and the indicators they already have (title → id)."""

    person: str
    device: str
    now: datetime
    indicators: dict[str, str]
    next_clock: Callable[[], int]


def parse_csv(data: bytes, ctx: CsvContext) -> Parsed:
    """Journal rows (date, indicator, observation, impact) as observations, creating
    indicators that do not exist yet."""
    parsed = Parsed()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidValue("the CSV file is not UTF-8 text") from None
    # No field limit in the reader (it would end the whole import at the first big
    # cell): each cell's length is checked per row below and reported as a row error.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidValue("the CSV file is empty: expected a header row") from None
    columns = [h.strip().lower() for h in header]
    missing = [c for c in ("date", "observation") if c not in columns]
    if missing:
        raise InvalidValue(
            f"the CSV header needs columns {', '.join(CSV_COLUMNS)}; missing {', '.join(missing)}"
        )
    created: dict[str, str] = {}
    for row in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        parsed.rows += 1
        if len(row) != len(columns):
            parsed.bad.append(BadRow(number, f"expected {len(columns)} columns, got {len(row)}"))
            continue
        cells = {name: cell.strip() for name, cell in zip(columns, row, strict=True)}
        too_long = [
            f"{name} is {len(cell):,} characters long (at most {limit:,})"
            for name, cell in cells.items()
            if len(cell) > (limit := CELL_LIMITS.get(name, MAX_CELL))
        ]
        if too_long:
            parsed.bad.append(BadRow(number, "; ".join(too_long)))
            continue
        try:
            parsed.events.extend(_csv_row(cells, ctx, created, number))
        except InvalidValue as exc:
            parsed.bad.append(BadRow(number, exc.message))
    return parsed


def _csv_row(
    cells: dict[str, str], ctx: CsvContext, created: dict[str, str], number: int
) -> list[Event]:
    from datetime import date

    raw_date = cells.get("date", "")
    try:
        if len(raw_date) != 10:
            raise ValueError
        day = date.fromisoformat(raw_date)
    except ValueError:
        raise InvalidValue(f"date {raw_date!r} is not a real YYYY-MM-DD date") from None
    occurred = datetime.combine(day, time(12, 0), tzinfo=ctx.now.tzinfo)
    if occurred.date() > ctx.now.date():
        raise InvalidValue(f"date {raw_date} is in the future")
    text = cells.get("observation", "")
    if not text:
        raise InvalidValue("observation is empty")
    impact = cells.get("impact", "")
    polarity = "positive"
    if impact.lower() in _NEGATIVE:
        polarity, impact = "negative", ""
    elif impact.lower() in _POSITIVE:
        impact = ""
    elif impact.startswith("-"):
        polarity, impact = "negative", impact[1:].strip()
    out: list[Event] = []
    indicator_id = None
    title = cells.get("indicator", "")
    ms = int(occurred.timestamp() * 1000)
    if title:
        key = title.casefold()
        indicator_id = ctx.indicators.get(key) or created.get(key)
        if indicator_id is None:
            indicator_id = stable_id(ms, ctx.person, "indicator", key)
            body: b.Body = b.IndicatorDefined(title=title, stages=IMPORTED_STAGES)
            out.append(_event(ctx, indicator_id, occurred, body, "indicator"))
            created[key] = indicator_id
    observation = b.ObservationRecorded(
        text=text,
        polarity=polarity,  # type: ignore[arg-type]
        indicator=indicator_id,
        impact=impact,
    )
    event_id = stable_id(ms, ctx.person, "observation", raw_date, title, text, impact, polarity)
    out.append(_event(ctx, event_id, occurred, observation, "observation"))
    return out


def _event(ctx: CsvContext, event_id: str, occurred: datetime, body: b.Body, what: str) -> Event:
    event = Event(
        id=event_id,
        actor=ctx.person,
        device=ctx.device,
        clock=ctx.next_clock(),
        recorded_at=ctx.now,
        occurred_at=occurred,
        body=body,  # type: ignore[arg-type]
    )
    try:
        return decode_event(encode(event))
    except (CodecError, ValueError, msgspec.ValidationError) as exc:
        from client.session import product_words

        if isinstance(exc, CodecError):
            raise InvalidValue(f"{what}: {product_words(exc.field, exc.reason)}") from None
        raise InvalidValue(f"{what}: {exc}".replace("`", "")) from None
