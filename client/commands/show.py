"""Views: status, drift, feed, review, prompt, log. Every one takes --json and --as-of."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import msgspec
from cyclopts import Parameter

from client import dates, render
from client.commands._common import AsOf, Json, as_of_moment, with_session
from client.errors import InvalidValue
from client.session import Session, short_ref


async def _state_at(session: Session, moment: datetime | None) -> Any:
    """The folded log (as known at ``moment``): the slow path for full-state views."""
    from client.views import load_all

    until = None if moment is None else int(moment.timestamp() * 1000)
    return (await load_all(session.store, recorded_until_ms=until)).state


def status(
    *,
    as_of: AsOf = None,
    cycle: Annotated[str | None, Parameter(help="Only this cycle, e.g. 2026-Q1.")] = None,
    as_json: Json = False,
) -> None:
    """Your goals: progress against what is expected by now, health and your confidence.

    Health is what the facts say (drift, due dates, pace, the cycle's end), as on
    the team page;
    confidence is what you said at your last check-in. Indicators show their
    current stage and latest observations.

    Example: milepost status --cycle 2026-Q1
    """

    async def go(session: Session) -> None:
        from client.health import health_of, stored_health

        moment = as_of_moment(session, as_of)
        now = moment or session.now
        if moment is None:
            from client.views import stored_tree

            tree = await stored_tree(session.store, session.person, session.now)
            indicators = await _stored_indicators(session)
        else:
            from projections.goals import goal_tree
            from projections.indicators import indicator_views

            state = await _state_at(session, moment)
            tree = goal_tree(state, session.person, moment)
            indicators = indicator_views(state, session.person)
        if cycle is not None:
            tree = msgspec.structs.replace(
                tree, objectives=[o for o in tree.objectives if o.cycle == cycle]
            )
        # The one health rule of the board and the page: drift about the person's own
        # items (read from the stored slices of their goals: no replay), due dates, pace,
        # ended cycles.
        if moment is None:
            healths = await stored_health(
                session.store, session.person, tree, now, session.settings
            )
        else:
            healths = health_of(state, session.person, tree, now, session.settings)
        refs = await session.short_refs([*healths, *(indicator.id for indicator in indicators)])
        from client.sync import SyncLog

        counts = await SyncLog(session.store, session.person).counts()
        if as_json:
            data = msgspec.to_builtins(tree)
            _annotate(data, healths, refs, now.date())
            data["indicators"] = [
                {**msgspec.to_builtins(v), "short": refs.get(v.id)} for v in indicators
            ]
            render.emit_json({**data, "sync": counts})
            return
        lines = render.status_lines(tree, healths, refs, indicators, now.date())
        unsynced = counts.pending + counts.pushed
        lines.append(
            render.Line(
                0,
                f"sync: {unsynced} unsynced ({counts.pending} pending, {counts.pushed} pushed),"
                f" last sync {counts.last_sync_at or 'never'}",
            )
        )
        render.print_lines(lines)

    with_session(go)


def _annotate(node: Any, healths: dict[str, Any], refs: dict[str, str], today: date) -> None:
    """Add ``health`` ({level, reason, signals}) and ``short`` to every goal node of a tree dict."""
    if isinstance(node, list):
        for item in node:
            _annotate(item, healths, refs, today)
        return
    if not isinstance(node, dict):
        return
    node_id = node.get("id")
    if isinstance(node_id, str) and node_id in healths:
        found = healths[node_id]
        node["health"] = msgspec.to_builtins(found)  # as the board API shows it
        node["short"] = refs.get(node_id)
        if "ends_on" in node:
            node["ended"] = date.fromisoformat(node["ends_on"]) < today
    for key in ("objectives", "key_results", "milestones", "standalone_milestones"):
        if key in node:
            _annotate(node[key], healths, refs, today)


async def _stored_indicators(session: Session) -> list[Any]:
    """The person's indicators from the refs index: each indicator's event, its latest
    observations and the latest one naming a stage (no replay of the log).

    Observations are read newest first by id (arrival order, through the index);
    a batch is sorted by the day they happened before the latest are shown."""
    from events import decode
    from projections.indicators import indicator_views
    from projections.state import rebuild

    store = session.store
    rows = await store.fetchall(
        # Indicators through short_refs' (kind, number) index: no scan of refs.
        "SELECT r.id, e.data FROM short_refs s JOIN refs r ON r.id = s.id"
        " JOIN events e ON e.id = r.id"
        " WHERE s.kind = 'i' AND r.actor = ? AND r.retracted = 0",
        (session.person,),
    )
    if not rows:
        return []
    data: dict[str, bytes] = {}
    batch = 50
    for indicator_id, blob in rows:
        data[indicator_id] = blob
        below = "~"  # above every id
        staged = False
        while True:
            ids = [
                str(r[0])
                for r in await store.fetchall(
                    "SELECT id FROM refs WHERE parent = ? AND type = 'observation.recorded'"
                    " AND id < ? ORDER BY id DESC LIMIT ?",
                    (indicator_id, below, batch),
                )
            ]
            if not ids:
                break
            marks = ",".join("?" * len(ids))
            for event_id, event_data in await store.fetchall(
                f"SELECT e.id, e.data FROM events e JOIN refs r ON r.id = e.id"
                f" WHERE e.id IN ({marks}) AND r.retracted = 0 AND r.actor = ?",
                [*ids, session.person],
            ):
                data[event_id] = event_data
                body = msgspec.json.decode(event_data).get("body", {})
                staged = staged or (
                    body.get("stage") is not None and body.get("polarity") == "positive"
                )
            if staged or len(ids) < batch:
                break
            below = ids[-1]
    shown = list(data)  # and the corrections of what is shown
    for start in range(0, len(shown), 500):
        chunk = shown[start : start + 500]
        for event_id, event_data in await store.fetchall(
            "SELECT e.id, e.data FROM refs r JOIN events e ON e.id = r.id"
            f" WHERE r.type = 'correction' AND r.parent IN ({','.join('?' * len(chunk))})",
            chunk,
        ):
            data[event_id] = event_data
    state = rebuild(decode(blob) for blob in data.values())
    return indicator_views(state, session.person)


class DriftReport(msgspec.Struct, frozen=True):
    """``drift --json``: the signals at a moment."""

    person: str
    as_of: datetime
    signals: list[Any]


def drift(
    *,
    as_of: AsOf = None,
    exit_code: Annotated[
        bool,
        Parameter(
            name="--exit-code",
            negative=(),
            help="Exit with status 1 when there is an alert (for scripts and CI).",
        ),
    ] = False,
    as_json: Json = False,
) -> int:
    """Goals that are drifting: stale, behind pace, overdue, overload, quiet...

    One group per item, one line per signal: severity, kind, what the numbers
    say, and what to do.

    For example:
        milepost drift
        milepost drift --exit-code --json
    """
    from projections.drift import drift_signals

    async def go(session: Session) -> int:
        moment = as_of_moment(session, as_of) or session.now
        state = await _state_at(session, None if as_of is None else moment)
        signals = drift_signals(state, session.person, moment, session.settings)
        alerts = any(s.severity == "alert" for s in signals)
        status = 1 if exit_code and alerts else 0
        if as_json:
            render.emit_json(DriftReport(session.person, moment, signals))
            return status
        if not signals:
            ended = "" if as_of is not None else await _ended_note(session)
            render.out(f"No drift. Keep checking in.{ended}")
            return status
        refs = await session.short_refs(s.subject for s in signals)
        groups: dict[str, list[Any]] = {}
        for signal in signals:
            groups.setdefault(signal.subject, []).append(signal)
        lines: list[render.Line] = []
        for subject, found in groups.items():
            head = found[0].subject_title
            if subject in refs or _is_id(subject):
                head = f"{refs.get(subject) or short_ref(subject)} {head}"
            lines.append(render.Line(0, head, bold=True))
            for signal in found:
                lines.append(
                    render.Line(
                        1,
                        "",
                        signal.severity,
                        f"  {signal.kind}: {signal.explanation} → {signal.action}",
                        wrap=True,
                    )
                )
        render.print_lines(lines)
        return status

    return with_session(go)


def _is_id(text: str) -> bool:
    return len(text) == 36 and text.count("-") == 4


async def _ended_note(session: Session) -> str:
    """Drift reads only current cycles: say so when every objective's cycle has ended."""
    from client.views import stored_tree

    tree = await stored_tree(session.store, session.person, session.now)
    today = session.now.date()
    if tree.objectives and all(o.ends_on < today for o in tree.objectives):
        return " (every objective's cycle has ended: see milepost status)"
    return ""


def feed(
    *,
    limit: Annotated[int, Parameter(help="Items per page (1-500).")] = 50,
    cursor: Annotated[str | None, Parameter(help="Continue after this cursor.")] = None,
    as_of: AsOf = None,
    as_json: Json = False,
) -> None:
    """What you may see: milestones planned and reached, check-ins, shared entries.

    Example: milepost feed --limit 20
    """
    from projections.team import InvalidCursor, viewer_feed

    async def go(session: Session) -> None:
        state = await _state_at(session, as_of_moment(session, as_of))
        try:
            page = viewer_feed(state, session.person, cursor=cursor, limit=limit)
        except InvalidCursor as exc:
            raise InvalidValue(f"invalid cursor: {exc}") from None
        except ValueError as exc:
            raise InvalidValue(str(exc)) from None
        if as_json:
            render.emit_json(page)
            return
        shorts = await session.short_refs(item.id for item in page.items)
        for item in page.items:
            # The summary starts with the actor's name: say it once, "you" for yourself.
            summary = item.summary.removeprefix(f"{item.actor} ")
            who = "you" if item.actor == session.person else item.actor
            ref = shorts.get(item.id) or short_ref(item.id)
            render.out(f"{item.occurred_at:%Y-%m-%d} {ref:6} {who} {render.one_line(summary, 200)}")
        if page.next_cursor:
            render.out(f"more: milepost feed --cursor {page.next_cursor}")

    with_session(go)


def review(
    *,
    from_: Annotated[
        str | None, Parameter(name="--from", help="First day (default Jan 1).")
    ] = None,
    to: Annotated[str | None, Parameter(help="Last day (default Dec 31).")] = None,
    output: Annotated[Path | None, Parameter(help="Write Markdown to this file.")] = None,
    as_of: AsOf = None,
    as_json: Json = False,
) -> None:
    """Your record over a period (default: this calendar year), as Markdown or JSON.

    Example: milepost review --from 2026-01-01 --to 2026-06-30 --output review.md
    """
    from projections.review import review as build_review
    from projections.review import review_markdown

    async def go(session: Session) -> None:
        moment = as_of_moment(session, as_of) or session.now
        today = moment.date()
        start = dates.parse_date(from_, today, what="--from") if from_ else date(today.year, 1, 1)
        end = dates.parse_date(to, today, what="--to") if to else date(start.year, 12, 31)
        if end < start:
            raise InvalidValue(f"--to {end} is before --from {start}")
        state = await _state_at(session, None if as_of is None else moment)
        result = build_review(state, session.person, start, end, moment, settings=session.settings)
        if as_json:
            data = msgspec.json.encode(result) + b"\n"
            if output is not None:
                _write(output, data)
            else:
                render.emit_json(result)
            return
        text = review_markdown(result)
        if output is not None:
            _write(output, text.encode())
            render.out(f"review written to {output}")
        else:
            render.out(text.rstrip("\n"))

    with_session(go)


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InvalidValue(f"cannot write {path}: {exc.strerror}") from None


class PromptItem(msgspec.Struct, frozen=True):
    """One goal due for a check-in."""

    id: str
    ref: str
    kind: str
    title: str
    reason: str
    due_on: date | None
    last_checkin: date | None
    short: str | None = None  # the short reference on this device (``k3``)


class PromptReport(msgspec.Struct, frozen=True):
    """``prompt --json``."""

    as_of: datetime
    items: list[PromptItem]
    questions: list[str]


QUESTIONS = ["What did you do?", "Why did it matter?", "What was the outcome?"]


def prompt(*, as_of: AsOf = None, as_json: Json = False) -> None:
    """What is due for a check-in (stale, due soon), with the three questions.

    Example: milepost prompt
    """

    async def go(session: Session) -> None:
        moment = as_of_moment(session, as_of)
        now = moment or session.now
        if moment is None:
            from client.views import stored_tree

            tree = await stored_tree(session.store, session.person, now)
        else:
            from projections.goals import goal_tree

            tree = goal_tree(await _state_at(session, moment), session.person, now)
        items = prompt_items(tree, now.date(), session.settings.due_soon_days)
        shorts = await session.short_refs(item.id for item in items)
        items = [msgspec.structs.replace(item, short=shorts.get(item.id)) for item in items]
        if as_json:
            render.emit_json(PromptReport(now, items, QUESTIONS))
            return
        if not items:
            render.out("Nothing is due for a check-in.")
            return
        for item in items:
            render.out(f"{item.short or item.ref:8} {item.kind:10} {item.title} — {item.reason}")
        render.out("")
        render.out(
            "For each: milepost checkin REF [VALUE|PERCENT] --confidence on-track|at-risk|off-track"
        )
        render.out("Finished one? milepost done REF, and answer:")
        for question in QUESTIONS:
            render.out(f"  - {question}")

    with_session(go)


_CADENCE_DAYS = {"weekly": 7, "biweekly": 14, "monthly": 30}


def prompt_items(tree: Any, today: date, due_soon_days: int) -> list[PromptItem]:
    """Open key results and milestones not checked in for a cadence period, or due soon."""
    items: list[PromptItem] = []
    for objective in tree.objectives:
        if not objective.starts_on <= today <= objective.ends_on:
            continue
        period = timedelta(days=_CADENCE_DAYS.get(objective.cadence, 7))
        for kr in objective.key_results:
            if kr.status in ("done", "dropped"):
                continue
            if kr.last_checkin is None or today - kr.last_checkin >= period:
                since = kr.last_checkin or objective.starts_on
                items.append(
                    PromptItem(kr.id, short_ref(kr.id), "key result", kr.title,
                               f"no check-in since {since}", None, kr.last_checkin)
                )  # fmt: skip
        milestones = [m for kr in objective.key_results for m in kr.milestones]
        items.extend(
            _milestone_items(milestones + objective.milestones, today, period, due_soon_days)
        )
    items.extend(
        _milestone_items(tree.standalone_milestones, today, timedelta(days=7), due_soon_days)
    )
    return items


def _milestone_items(
    milestones: list[Any], today: date, period: timedelta, due_soon_days: int
) -> list[PromptItem]:
    out: list[PromptItem] = []
    for m in milestones:
        if m.state != "open":
            continue
        reason = None
        if m.due_on is not None and m.due_on < today:
            reason = f"overdue since {m.due_on}"
        elif m.due_on is not None and (m.due_on - today).days <= due_soon_days:
            reason = f"due {m.due_on}"
        elif m.last_checkin is not None and today - m.last_checkin >= period:
            reason = f"no check-in since {m.last_checkin}"
        if reason is not None:
            out.append(
                PromptItem(m.id, short_ref(m.id), "milestone", m.title, reason, m.due_on,
                           m.last_checkin)
            )  # fmt: skip
    return out


class LogEntry(msgspec.Struct, frozen=True):
    """``log --json``: an event with its local position and sync state."""

    seq: int
    sync: str
    event: msgspec.Raw
    reason: str | None = None  # why the server refused it (``sync`` is then "rejected")


def log(
    *,
    limit: Annotated[int, Parameter(help="Most recent N events (0 = all).")] = 50,
    type_: Annotated[str | None, Parameter(name="--type", help="Only this type.")] = None,
    as_of: AsOf = None,
    as_json: Json = False,
) -> None:
    """The raw events, newest last, with their sync state.

    Example: milepost log --limit 10 --type checkin.recorded --json
    """

    async def go(session: Session) -> None:
        moment = as_of_moment(session, as_of)
        sql = (
            "SELECT e.seq, CASE WHEN s.state != 'confirmed' AND r.event_id IS NOT NULL"
            " THEN 'rejected' ELSE s.state END,"
            " e.data, e.type, e.id, r.reason FROM events e"
            " LEFT JOIN sync_state s ON s.event_id = e.id"
            " LEFT JOIN sync_refusals r ON r.event_id = e.id WHERE 1 = 1"
        )
        params: list[Any] = []
        if moment is not None:
            sql += " AND e.recorded_ms <= ?"
            params.append(int(moment.timestamp() * 1000))
        if type_ is not None:
            sql += " AND e.type = ?"
            params.append(type_)
        sql += " ORDER BY e.seq DESC"
        if limit > 0:
            sql += " LIMIT ?"
            params.append(limit)
        rows = list(reversed(await session.store.fetchall(sql, params)))
        if as_json:
            render.emit_json(
                [LogEntry(r[0], r[1] or "pending", msgspec.Raw(r[2]), r[5]) for r in rows]
            )
            return
        refs = await session.short_refs(r[4] for r in rows)
        for seq, sync, data, kind, event_id, reason in rows:
            head = msgspec.json.decode(data)
            ref = refs.get(event_id, "")
            why = f" ({reason})" if reason else ""
            render.out(
                f"{seq:6} {short_ref(event_id)} {ref:6} {str(head.get('occurred_at', ''))[:16]} "
                f"{kind:22} {sync or 'pending'}{why}"
            )

    with_session(go)
