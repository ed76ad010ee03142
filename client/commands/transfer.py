"""``export`` (JSON Lines) and ``import`` (JSON Lines or a CSV journal)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from cyclopts import Parameter

from client import dates, render
from client.commands._common import Json, with_session
from client.errors import ImportRejected, InvalidValue
from client.session import Session
from events import bodies as b


def export(
    *,
    format: Annotated[
        Literal["jsonl", "csv"],
        Parameter(help="jsonl: every event as stored; csv: a sheet (see --sheet)."),
    ] = "jsonl",
    sheet: Annotated[
        Literal["journal", "values"],
        Parameter(
            help="With --format csv: journal (date, indicator, observation, impact) or"
            " values (a row per check-in day, a column per key result)."
        ),
    ] = "journal",
    since: Annotated[str | None, Parameter(help="Only events recorded on or after DATE.")] = None,
    output: Annotated[Path | None, Parameter(help="Write to FILE instead of stdout.")] = None,
) -> None:
    """Write events as JSON Lines, exactly as stored, or your journal or key-result values
    as a CSV sheet (what `milepost import` reads back).

    For example:
        milepost export --since 2026-01-01 --output backup.jsonl
        milepost export --format csv --output journal.csv
        milepost export --format csv --sheet values --output weekly.csv
    """

    async def go(session: Session) -> None:
        since_ms = None
        if since is not None:
            day = dates.parse_date(since, session.now.date(), what="--since date")
            start = dates.end_of_day(day, session.now).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
            since_ms = int(start.timestamp() * 1000)
        if format == "csv":
            from client.views import load_all

            state = (await load_all(session.store)).state
            table = (journal_sheet if sheet == "journal" else values_sheet)(
                state, session.person, since_ms
            )
            data = _csv_bytes(table)
            count = len(table) - 1
            what = "rows"
        else:
            rows = await session.store.read_events(recorded_since_ms=since_ms)
            data = b"".join(bytes(blob) + b"\n" for _, blob in rows)
            count, what = len(rows), "events"
        if output is None:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            return
        try:
            output.write_bytes(data)
        except OSError as exc:
            raise InvalidValue(f"cannot write {output}: {exc.strerror}") from None
        render.out(f"exported {count} {what} to {output}")

    with_session(go)


def _csv_bytes(table: list[list[str]]) -> bytes:
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(table)
    return buffer.getvalue().encode()


def _recorded_since(event: Any, since_ms: int | None) -> bool:
    return since_ms is None or event.recorded_at.timestamp() * 1000 >= since_ms


def journal_sheet(state: Any, person: str, since_ms: int | None) -> list[list[str]]:
    """The person's live journal entries and observations as rows (oldest first):
    date, indicator, observation, impact (``-text`` or ``negative`` for a lesson)."""
    out = [["date", "indicator", "observation", "impact"]]
    feed = state.feeds.get(person)
    for event in feed.events if feed is not None else ():
        event_id = event.id
        if event.type != "observation.recorded" or state.is_retracted(event_id):
            continue
        if not _recorded_since(event, since_ms):
            continue
        body = state.body(event_id)
        indicator = ""
        if body.indicator is not None and body.indicator in state.events:
            indicator = state.body(body.indicator).title
        if body.polarity == "negative":
            impact = f"-{body.impact}" if body.impact else "negative"
        else:
            impact = body.impact or "positive"
        out.append([event.occurred_at.date().isoformat(), indicator, body.text, impact])
    return out


def values_sheet(state: Any, person: str, since_ms: int | None) -> list[list[str]]:
    """The person's key-result check-ins: a row per day, a column per key result
    (the day's last value)."""
    from projections.goals import checkins_for

    key_results = []
    for objective_id in state.person(person).objectives:
        if state.is_retracted(objective_id):
            continue
        for kr_id in state.objectives[objective_id].key_results:
            node = state.key_results.get(kr_id)
            if node is None or node.event.actor != person or state.is_retracted(kr_id):
                continue
            key_results.append((kr_id, state.body(kr_id).title))
    days: dict[str, dict[str, float]] = {}
    for kr_id, _ in key_results:
        for checkin in checkins_for(state, kr_id):
            if checkin.value is None:
                continue
            if not _recorded_since(state.events[checkin.id], since_ms):
                continue
            days.setdefault(checkin.occurred_at.date().isoformat(), {})[kr_id] = checkin.value
    out = [["date", *(title for _, title in key_results)]]
    for day in sorted(days):
        values = days[day]
        out.append([day, *(f"{values[k]:g}" if k in values else "" for k, _ in key_results)])
    return out


def import_(
    file: Annotated[Path, Parameter(help="A .jsonl export, or a sheet: .csv or .xlsx.")],
    *,
    format: Annotated[
        Literal["auto", "jsonl", "csv", "xlsx"],
        Parameter(help="File format (default: by extension)."),
    ] = "auto",
    sheet: Annotated[
        Literal["journal", "values"] | None,
        Parameter(
            help="journal: a row per entry (date, indicator, observation, impact);"
            " values: a row per week, a column per key result (its title or short ref)."
            " Default: as remembered for this file name, else journal."
        ),
    ] = None,
    columns: Annotated[
        str | None,
        Parameter(
            help='Which header holds which field: date=Week,observation="What happened",'
            "indicator=Indicator,impact=Impact (values: date=Week,k1=Visitors)."
            " Remembered for this file name."
        ),
    ] = None,
    date_format: Annotated[
        str | None,
        Parameter(
            name="--date-format",
            help="How the sheet writes dates: DD/MM/YYYY, MM/DD/YYYY, YYYY-MM-DD,"
            " DD.MM.YYYY... (default: detected; ambiguous ones must be given).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        Parameter(negative=(), help="Show the first rows as they would be stored; store nothing."),
    ] = False,
    skip_bad: Annotated[
        bool, Parameter(negative=(), help="Import the good rows and report the bad ones.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Import events (JSON Lines), a journal sheet or a sheet of weekly key-result values.

    Importing the same file twice changes nothing. A file with bad rows is
    rejected whole, every bad row listed by line number, unless --skip-bad.
    The column mapping and date format used for a file name are remembered.

    For example:
        milepost import journal.csv
        milepost import sheet.csv --dry-run --date-format MM/DD/YYYY \\
            --columns 'date=Week,observation="What happened",impact=Positive/Negative'
        milepost import weekly.xlsx --sheet values --columns date=Week,k1=Visitors
    """
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InvalidValue(f"cannot read {file}: {exc.strerror}") from None
    kind: str = format
    if kind == "auto":
        suffix = file.suffix.lower()
        kind = {".csv": "csv", ".xlsx": "xlsx"}.get(suffix, "jsonl")

    async def go(session: Session) -> None:
        from client.importing import parse_jsonl
        from client.views import rebuild_views

        store = session.store
        async with store.write():
            if kind in ("csv", "xlsx"):
                parsed, chosen, options = await _parse_sheet(
                    session, file, data, kind, sheet, columns, date_format
                )
            else:
                parsed, chosen, options = parse_jsonl(data), "events", None
            details = [f"{file}:{bad.line}: {bad.reason}" for bad in parsed.bad]
            if dry_run:
                names = await _names(session, parsed.events)
                _preview(parsed, chosen, details, names)
                raise _DryRun
            if parsed.bad and not skip_bad:
                raise ImportRejected(
                    f"{file}: {len(parsed.bad)} bad of {parsed.rows} rows; nothing imported"
                    " (fix them, or use --skip-bad)",
                    details=details,
                )
            added = await store.append_many(parsed.events)
            if options is not None:
                await store.set_meta(_memory_key(file), msgspec.json.encode(options).decode())
            if added:
                await rebuild_views(store, session.now)
        for line in details:
            sys.stderr.write(f"skipped {line}\n")
        summary = {
            "rows": parsed.rows,
            "added": len(added),
            "unchanged": len(parsed.events) - len(added),
            "skipped": len(parsed.bad),
        }
        if as_json:
            render.emit_json(summary)
        else:
            render.out(
                f"imported {summary['added']} new events from {file}"
                f" ({summary['unchanged']} already present, {summary['skipped']} bad rows skipped)"
            )

    with contextlib.suppress(_DryRun):
        with_session(go)


class _DryRun(Exception):
    """Leaves the write transaction without storing anything (it rolls back)."""


class Remembered(msgspec.Struct):
    """What ``import`` used for a file name: the sheet kind, columns and date format."""

    sheet: str
    columns: dict[str, str] = msgspec.field(default_factory=dict)
    date_format: str | None = None


def _memory_key(file: Path) -> str:
    return f"import.{file.name}"


async def _parse_sheet(
    session: Session,
    file: Path,
    data: bytes,
    kind: str,
    sheet: str | None,
    columns: str | None,
    date_format: str | None,
) -> tuple[Any, str, Remembered]:
    from client.importing import (
        CsvContext,
        SheetOptions,
        parse_columns,
        parse_journal,
        parse_values,
        read_csv,
        read_xlsx,
    )
    from events import HybridLogicalClock

    store = session.store
    raw = await store.scalar("SELECT value FROM meta WHERE key = ?", (_memory_key(file),))
    memory = msgspec.json.decode(raw, type=Remembered) if raw else None
    chosen = sheet or (memory.sheet if memory else "journal")
    same_kind = memory is not None and memory.sheet == chosen
    mapping = (
        parse_columns(columns) if columns else (memory.columns if same_kind and memory else {})
    )
    dates_as = date_format or (memory.date_format if same_kind and memory else None)
    options = SheetOptions(mapping, dates_as)
    table = read_xlsx(data) if kind == "xlsx" else read_csv(data)
    rows = await store.fetchall(
        "SELECT title, id FROM refs WHERE type = 'indicator.defined'"
        " AND actor = ? AND retracted = 0 ORDER BY id",
        (session.person,),
    )
    last = await store.scalar("SELECT value FROM meta WHERE key = 'clock'")
    wall = int(session.now.timestamp() * 1000)
    clock = HybridLogicalClock(int(last or 0), wall=lambda: wall)
    ctx = CsvContext(
        session.person,
        session.device,
        session.now,
        {str(t).casefold(): str(i) for t, i in rows},
        clock.now,
    )
    if chosen == "values":
        parsed = parse_values(table, ctx, options, await _key_results(session))
    else:
        parsed = parse_journal(table, ctx, options)
    await store.set_meta("clock", str(clock.last))
    return parsed, chosen, Remembered(chosen, mapping, dates_as)


async def _key_results(session: Session) -> list[Any]:
    from client.importing import KeyResultRef
    from client.views import stored_tree

    tree = await stored_tree(session.store, session.person, session.now)
    krs = [kr for objective in tree.objectives for kr in objective.key_results]
    shorts = await session.short_refs(kr.id for kr in krs)
    return [
        KeyResultRef(kr.id, kr.title, shorts.get(kr.id), kr.confidence or "on-track") for kr in krs
    ]


PREVIEW_ROWS = 5


async def _names(session: Session, events: list[Any]) -> dict[str, str]:
    """``k1 Visitors`` for the key results check-ins of a preview name."""
    subjects = list({getattr(e.body, "subject", "") for e in events if hasattr(e, "body")} - {""})
    if not subjects:
        return {}
    marks = ",".join("?" * len(subjects))
    rows = await session.store.fetchall(
        f"SELECT id, title FROM refs WHERE id IN ({marks})", subjects
    )
    shorts = await session.short_refs(subjects)
    return {str(i): f"{shorts.get(str(i), '')} {t}".strip() for i, t in rows}


def _preview(parsed: Any, chosen: str, details: list[str], names: dict[str, str]) -> None:
    """``--dry-run``: the first events as they would be stored, and the bad rows."""
    from events import Event

    shown = 0
    titles: dict[str, str] = {}
    for event in parsed.events:
        if not isinstance(event, Event):
            continue
        body = event.body
        day = event.occurred_at.date()
        if isinstance(body, b.IndicatorDefined):
            titles[event.id] = body.title
            render.out(f"{day}  new indicator {body.title!r}")
            continue
        if shown >= PREVIEW_ROWS:
            continue
        shown += 1
        if isinstance(body, b.ObservationRecorded):
            mark = "+ win" if body.polarity == "positive" else "- lesson"
            about = f" [{titles.get(body.indicator or '', 'indicator')}]" if body.indicator else ""
            impact = f" (impact: {body.impact})" if body.impact else ""
            render.out(f"{day}  {mark}{about}: {render.one_line(body.text, 80)}{impact}")
        elif isinstance(body, b.CheckInRecorded) and body.value is not None:
            render.out(f"{day}  check-in {render.number(body.value)} ({body.confidence})"
                       f" on {names.get(body.subject, body.subject[-8:])}")  # fmt: skip
        else:
            render.out(f"{day}  {event.type}")
    for line in details:
        render.out(f"bad row {line}")
    render.out(
        f"dry run ({chosen}): {parsed.rows} rows would give {len(parsed.events)} events,"
        f" {len(parsed.bad)} bad rows; nothing was stored"
    )
