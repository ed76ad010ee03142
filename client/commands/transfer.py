"""``export`` (JSON Lines) and ``import`` (JSON Lines or a CSV journal)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

from cyclopts import Parameter

from client import dates, render
from client.commands._common import Json, with_session
from client.errors import ImportRejected, InvalidValue
from client.session import Session


def export(
    *,
    since: Annotated[str | None, Parameter(help="Only events recorded on or after DATE.")] = None,
    output: Annotated[Path | None, Parameter(help="Write to FILE instead of stdout.")] = None,
) -> None:
    """Write events as JSON Lines, exactly as stored (all, or --since DATE).

    Example: milepost export --since 2026-01-01 --output backup.jsonl
    """

    async def go(session: Session) -> None:
        since_ms = None
        if since is not None:
            day = dates.parse_date(since, session.now.date(), what="--since date")
            start = dates.end_of_day(day, session.now).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
            since_ms = int(start.timestamp() * 1000)
        rows = await session.store.read_events(recorded_since_ms=since_ms)
        data = b"".join(bytes(blob) + b"\n" for _, blob in rows)
        if output is None:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            return
        try:
            output.write_bytes(data)
        except OSError as exc:
            raise InvalidValue(f"cannot write {output}: {exc.strerror}") from None
        render.out(f"exported {len(rows)} events to {output}")

    with_session(go)


def import_(
    file: Annotated[Path, Parameter(help="A .jsonl export or a .csv journal.")],
    *,
    format: Annotated[
        Literal["auto", "jsonl", "csv"], Parameter(help="File format (default: by extension).")
    ] = "auto",
    skip_bad: Annotated[
        bool, Parameter(negative=(), help="Import the good rows and report the bad ones.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Import events (JSON Lines) or a CSV journal (date, indicator, observation, impact).

    Importing the same file twice changes nothing. A file with bad rows is
    rejected whole, every bad row listed by line number, unless --skip-bad.

    Example: milepost import journal.csv
    """
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InvalidValue(f"cannot read {file}: {exc.strerror}") from None
    kind = format
    if kind == "auto":
        kind = "csv" if file.suffix.lower() == ".csv" else "jsonl"

    async def go(session: Session) -> None:
        from client.importing import CsvContext, parse_csv, parse_jsonl
        from client.views import rebuild_views
        from events import HybridLogicalClock

        store = session.store
        async with store.write():
            if kind == "csv":
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
                parsed = parse_csv(data, ctx)
                await store.set_meta("clock", str(clock.last))
            else:
                parsed = parse_jsonl(data)
            details = [f"{file}:{bad.line}: {bad.reason}" for bad in parsed.bad]
            if parsed.bad and not skip_bad:
                raise ImportRejected(
                    f"{file}: {len(parsed.bad)} bad of {parsed.rows} rows; nothing imported"
                    " (fix them, or use --skip-bad)",
                    details=details,
                )
            added = await store.append_many(parsed.events)
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

    with_session(go)
