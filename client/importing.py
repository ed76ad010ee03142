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
from datetime import date, datetime, time

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
            from client.session import product_words

            parsed.bad.append(BadRow(number, product_words(exc.field, exc.reason)))
    return parsed


@dataclass
class CsvContext:
    """Who imports, from which device, and the indicators they already have (title → id)."""

    person: str
    device: str
    now: datetime
    indicators: dict[str, str]
    next_clock: Callable[[], int]


class Table(msgspec.Struct):
    """A sheet: its header and its rows, each with the line (or row) number it came from."""

    header: list[str]
    rows: list[tuple[int, list[str]]]


def read_csv(data: bytes) -> Table:
    """A CSV file (UTF-8, with or without a BOM) as a table; blank rows skipped."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidValue("the CSV file is not UTF-8 text") from None
    # No field limit in the reader (it would end the whole import at the first big
    # cell): each cell's length is checked per row and reported as a row error.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidValue("the CSV file is empty: expected a header row") from None
    except csv.Error as exc:
        raise InvalidValue(f"the CSV header cannot be read: {exc}") from None
    rows: list[tuple[int, list[str]]] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InvalidValue(f"line {reader.line_num}: the CSV cannot be read: {exc}") from None
        if any(cell.strip() for cell in row):
            rows.append((reader.line_num, row))
    return Table([h.strip() for h in header], rows)


def read_xlsx(data: bytes) -> Table:
    """The first worksheet of an .xlsx workbook as a table (dates as YYYY-MM-DD)."""
    from datetime import date

    try:
        import openpyxl
    except ImportError:  # pragma: no cover - a declared dependency
        raise InvalidValue("reading .xlsx needs openpyxl: pip install openpyxl") from None
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # zipfile, XML and openpyxl errors alike
        raise InvalidValue(f"not a readable .xlsx workbook ({type(exc).__name__})") from None
    sheet = book.worksheets[0]

    def cell(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            return value.date().isoformat()
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    rows_iter = sheet.iter_rows(values_only=True)
    header_row = next(rows_iter, None)
    if header_row is None:
        raise InvalidValue("the workbook's first sheet is empty: expected a header row")
    header = [cell(v).strip() for v in header_row]
    rows = []
    for number, values in enumerate(rows_iter, start=2):
        cells = [cell(v) for v in values][: len(header)]
        cells += [""] * (len(header) - len(cells))
        if any(c.strip() for c in cells):
            rows.append((number, cells))
    book.close()
    return Table(header, rows)


# --- column mappings and dates ------------------------------------------------------------


def parse_columns(text: str) -> dict[str, str]:
    """``date=Week,observation="What happened"`` → {field: header}; quotes are optional."""
    out: dict[str, str] = {}
    parts: list[str] = []
    current, quoted = "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    for part in parts:
        if not part.strip():
            continue
        field_name, sep, header = part.partition("=")
        field_name = field_name.strip().lower()
        if not sep or not header.strip():
            raise InvalidValue(f"--columns: expected FIELD=HEADER, got {part.strip()!r}")
        out[field_name] = header.strip().strip('"').strip()
    return out


DATE_FORMATS = {
    "YYYY-MM-DD": "%Y-%m-%d",
    "YYYY/MM/DD": "%Y/%m/%d",
    "DD/MM/YYYY": "%d/%m/%Y",
    "MM/DD/YYYY": "%m/%d/%Y",
    "DD.MM.YYYY": "%d.%m.%Y",
    "DD-MM-YYYY": "%d-%m-%Y",
    "MM-DD-YYYY": "%m-%d-%Y",
}
"""The date forms recognised in sheets (named as people write them)."""


def date_format(text: str) -> str:
    """A ``--date-format``: one of ``DATE_FORMATS``' names, or a strptime pattern."""
    named = DATE_FORMATS.get(text.strip().upper())
    if named is not None:
        return named
    if "%" in text:
        return text
    raise InvalidValue(
        f"unknown --date-format {text!r}: give one of {', '.join(DATE_FORMATS)}"
        " (or a strptime pattern such as %d/%m/%y)"
    )


def _parse_day(text: str, pattern: str) -> date | None:
    try:
        return datetime.strptime(text.strip(), pattern).date()
    except ValueError:
        return None


def detect_date_format(values: list[str]) -> str:
    """The one known date form every value is written in; InvalidValue when none fits or
    when several do (3/2/2026: the 3rd of February or March the 2nd?)."""
    present = [v.strip() for v in values if v.strip()]
    if not present:
        return "%Y-%m-%d"
    fitting = [
        name
        for name, pattern in DATE_FORMATS.items()
        if all(_parse_day(v, pattern) is not None for v in present)
    ]
    if len(fitting) == 1:
        return DATE_FORMATS[fitting[0]]
    if not fitting:
        best = max(
            DATE_FORMATS.items(),
            key=lambda item: sum(_parse_day(v, item[1]) is not None for v in present),
        )
        if any(_parse_day(v, best[1]) is not None for v in present):
            return best[1]  # the rows it cannot read become row errors
        raise InvalidValue(
            f"dates such as {present[0]!r} are in no known form: give --date-format"
            f" (one of {', '.join(DATE_FORMATS)})"
        )
    example = next(
        (v for v in present if len({_parse_day(v, DATE_FORMATS[n]) for n in fitting}) > 1),
        present[0],
    )
    raise InvalidValue(
        f"dates such as {example!r} can be read as {' or '.join(fitting)}:"
        f" give --date-format {fitting[0]} (or {fitting[1]})"
    )


def _day_of(text: str, pattern: str) -> date:
    day = _parse_day(text, pattern)
    if day is None:
        shown = next((name for name, p in DATE_FORMATS.items() if p == pattern), pattern)
        raise InvalidValue(f"date {text!r} is not a real {shown} date")
    return day


class SheetOptions(msgspec.Struct):
    """How to read a sheet: which header holds which field, and how dates are written."""

    columns: dict[str, str] = msgspec.field(default_factory=dict)
    date_format: str | None = None


JOURNAL_FIELDS = ("date", "indicator", "observation", "impact")


SYNONYMS = {
    "date": ("day", "week", "when", "week of", "date of"),
    "observation": ("what happened", "entry", "text", "note", "notes", "what", "event"),
    "indicator": ("capability", "skill", "area"),
    "impact": ("positive/negative", "polarity", "+/-", "win/lesson", "effect", "result"),
}
"""Headers people give these columns in their own sheets, recognised without --columns."""


def _column_index(
    header: list[str], field_name: str, columns: dict[str, str], required: bool
) -> int | None:
    wanted = columns.get(field_name, field_name)
    folded = [h.casefold() for h in header]
    if wanted.casefold() in folded:
        return folded.index(wanted.casefold())
    if field_name not in columns:
        for synonym in SYNONYMS.get(field_name, ()):
            if synonym in folded:
                return folded.index(synonym)
    if field_name in columns:
        raise InvalidValue(
            f"--columns {field_name}={wanted!r}: the sheet has no such column"
            f" (its columns: {', '.join(header)})"
        )
    if required:
        raise InvalidValue(
            f"the sheet has no {field_name!r} column (its columns: {', '.join(header)});"
            f" map one with --columns {field_name}=HEADER"
        )
    return None


def _dates(table: Table, index: int, options: SheetOptions) -> str:
    if options.date_format is not None:
        return date_format(options.date_format)
    return detect_date_format(
        [cells[index] if index < len(cells) else "" for _, cells in table.rows]
    )


def parse_csv(data: bytes, ctx: CsvContext, options: SheetOptions | None = None) -> Parsed:
    """A CSV journal (date, indicator, observation, impact) as observations, creating
    indicators that do not exist yet."""
    return parse_journal(read_csv(data), ctx, options or SheetOptions())


def parse_journal(table: Table, ctx: CsvContext, options: SheetOptions) -> Parsed:
    """Journal rows as observations (indicators created as needed); unknown fields in
    ``--columns`` are refused."""
    unknown = [f for f in options.columns if f not in JOURNAL_FIELDS]
    if unknown:
        raise InvalidValue(
            f"--columns: unknown field {unknown[0]!r}; a journal has {', '.join(JOURNAL_FIELDS)}"
        )
    header = table.header
    index = {
        name: _column_index(header, name, options.columns, name in ("date", "observation"))
        for name in JOURNAL_FIELDS
    }
    pattern = _dates(table, index["date"] or 0, options)
    parsed = Parsed()
    created: dict[str, str] = {}
    for number, row in table.rows:
        parsed.rows += 1
        if len(row) != len(header):
            parsed.bad.append(BadRow(number, f"expected {len(header)} columns, got {len(row)}"))
            continue
        cells = {
            name: row[position].strip() for name, position in index.items() if position is not None
        }
        too_long = [
            f"{name} is {len(cell):,} characters long (at most {limit:,})"
            for name, cell in cells.items()
            if len(cell) > (limit := CELL_LIMITS.get(name, MAX_CELL))
        ]
        if too_long:
            parsed.bad.append(BadRow(number, "; ".join(too_long)))
            continue
        try:
            parsed.events.extend(_csv_row(cells, ctx, created, pattern))
        except InvalidValue as exc:
            parsed.bad.append(BadRow(number, exc.message))
    return parsed


def _csv_row(
    cells: dict[str, str], ctx: CsvContext, created: dict[str, str], pattern: str
) -> list[Event]:
    raw_date = cells.get("date", "")
    day = _day_of(raw_date, pattern)
    occurred = datetime.combine(day, time(12, 0), tzinfo=ctx.now.tzinfo)
    if occurred.date() > ctx.now.date():
        raise InvalidValue(f"date {raw_date} is in the future")
    raw_date = day.isoformat()  # ids derive from the day, however it was written
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


# --- weekly key-result values ----------------------------------------------------------------


class KeyResultRef(msgspec.Struct, frozen=True):
    """A key result a values sheet may name, by title or short reference."""

    id: str
    title: str
    short: str | None
    confidence: str


def parse_values(
    table: Table, ctx: CsvContext, options: SheetOptions, key_results: list[KeyResultRef]
) -> Parsed:
    """A sheet of weekly key-result values — a row per week, a column per key result
    (its title or short ref, or ``--columns k1=Header``) — as check-ins."""
    header = table.header
    date_index = _column_index(header, "date", options.columns, False)
    if date_index is None:
        date_index = 0  # the first column holds the weeks
    by_name: dict[str, KeyResultRef] = {}
    for kr in key_results:
        by_name[kr.title.casefold()] = kr
        if kr.short:
            by_name[kr.short.casefold()] = kr
    mapped = {h.casefold(): f for f, h in options.columns.items() if f != "date"}
    columns: dict[int, KeyResultRef] = {}
    for position, name in enumerate(header):
        if position == date_index or not name:
            continue
        wanted = mapped.get(name.casefold(), name).casefold()
        found = by_name.get(wanted)
        if found is None:
            raise InvalidValue(
                f"column {name!r} names no key result of yours: use its title or short ref"
                f" as the header, or map it with --columns k1={name!r}"
            )
        columns[position] = found
    if not columns:
        raise InvalidValue("the sheet has no key-result column besides the dates")
    pattern = _dates(table, date_index, options)
    parsed = Parsed()
    for number, row in table.rows:
        parsed.rows += 1
        try:
            raw_date = row[date_index].strip() if date_index < len(row) else ""
            day = _day_of(raw_date, pattern)
            if day > ctx.now.date():
                raise InvalidValue(f"date {raw_date} is in the future")
            occurred = datetime.combine(day, time(12, 0), tzinfo=ctx.now.tzinfo)
            ms = int(occurred.timestamp() * 1000)
            for position, kr in columns.items():
                cell = row[position].strip() if position < len(row) else ""
                if not cell:
                    continue
                value = _measure(cell, header[position])
                body = b.CheckInRecorded(
                    subject=kr.id,
                    confidence=kr.confidence,  # type: ignore[arg-type]
                    value=value,
                    note="imported from a sheet",
                )
                event_id = stable_id(ms, ctx.person, "checkin", kr.id, day.isoformat(), repr(value))
                parsed.events.append(_event(ctx, event_id, occurred, body, "check-in"))
        except InvalidValue as exc:
            parsed.bad.append(BadRow(number, exc.message))
    return parsed


def _measure(cell: str, column: str) -> float:
    import math

    text = cell.replace(",", "").replace("%", "").replace("\u00a0", "").strip()
    try:
        value = float(text)
    except ValueError:
        raise InvalidValue(f"{column}: {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidValue(f"{column}: {cell} is not a finite number")
    return value


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
