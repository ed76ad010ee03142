"""Objectives, key results, check-ins, pauses, sharing and fixes (milestones and tasks:
``client.commands.milestones``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from cyclopts import Parameter

from client import dates, render
from client.commands._common import (
    At,
    Confidence,
    Json,
    PartnerOpt,
    VisibilityOpt,
    check_after_creation,
    moment,
    node_view,
    sharing,
    with_session,
)
from client.errors import InvalidValue, UsageError
from client.session import Session, check_fields, make, product_words
from events import Event
from events import bodies as b
from projections.state import InvalidCorrection, corrected

Cadence = Literal["weekly", "biweekly", "monthly"]
Reason = Annotated[str, Parameter(help="Why (kept in the log).")]


async def _record(
    session: Session, body: b.Body, title: str, as_json: bool, at: str | None = None
) -> Event:
    event = await session.record(body, moment(session, at))
    await announce(session, event, title, as_json)
    return event


async def announce(session: Session, event: Event, title: str, as_json: bool) -> None:
    """Print what was recorded, with its short reference."""
    short = (await session.short_refs([event.id])).get(event.id)
    render.created(event, title, as_json, short)


def _current_cycle(session: Session) -> str:
    today = session.now.date()
    return f"{today.year}-Q{(today.month - 1) // 3 + 1}"


def objective(
    title: str,
    *,
    cycle: Annotated[str | None, Parameter(help="2026, 2026-H1, 2026-Q1 or 2026-03.")] = None,
    description: str = "",
    cadence: Cadence = "weekly",
    visibility: VisibilityOpt = None,
    partner: PartnerOpt = (),
    at: At = None,
    as_json: Json = False,
) -> None:
    """Set an objective for a cycle (default: the current quarter).

    Example: milepost objective "Show people how Roads works" --cycle 2026-Q1
    """

    async def go(session: Session) -> None:
        shown, partners = sharing(session, visibility, partner)
        body = make(
            b.ObjectiveCreated,
            title=title.strip(),
            cycle=cycle or _current_cycle(session),
            description=description,
            cadence=cadence,
            visibility=shown,
            partners=partners,
        )
        await _record(session, body, title, as_json, at)

    with_session(go)


def kr(
    objective: Annotated[str, Parameter(help="The objective (id or short ref).")],
    title: str,
    *,
    kind: Literal["increase", "decrease", "stay-above", "stay-below"] = "increase",
    start: float | None = None,
    target: float | None = None,
    unit: str = "",
    weight: float = 1.0,
    cadence: Cadence | None = None,
    at: At = None,
    as_json: Json = False,
) -> None:
    """Add a key result to an objective: from --start to --target, or a threshold.

    Example: milepost kr o1 "Reach 3,000 visitors to the site" --start 0 --target 3000
    """

    async def go(session: Session) -> None:
        parent = await session.resolve(objective, "objective")
        if kind in ("increase", "decrease") and target is not None and start is None:
            start_value: float | None = 0.0
        else:
            start_value = start
        body = make(
            b.KeyResultAdded,
            objective=parent.id,
            title=title.strip(),
            kind=kind,
            start=start_value,
            target=target,
            unit=unit,
            weight=weight,
            cadence=cadence,
        )
        await _record(session, body, title, as_json, at)

    with_session(go)


# --- check-ins -----------------------------------------------------------------------------


def checkin(
    subject: Annotated[str, Parameter(help="A key result or milestone (id or short ref).")],
    amount: Annotated[
        float | None,
        Parameter(help="The key result's value, or the milestone's percent done."),
    ] = None,
    *,
    confidence: Annotated[
        Confidence | None,
        Parameter(help="on-track, at-risk or off-track (default: as at the last check-in)."),
    ] = None,
    note: str = "",
    at: At = None,
    as_json: Json = False,
) -> None:
    """Record progress: a value for a key result, a percent for a milestone.

    Without --confidence the check-in keeps the confidence of the last one
    (on-track for the first).

    Example: milepost checkin k1 1200 --confidence at-risk --note "slow week"
    """

    async def go(session: Session) -> None:
        ref = await session.resolve(subject, "check-in subject")
        is_kr = ref.type == "key_result.added"
        moment_at = moment(session, at)
        await check_after_creation(session, ref, moment_at)
        chosen = confidence
        if chosen is None:
            view = await node_view(session, ref.id)
            chosen = getattr(view, "confidence", None) or "on-track"
        body = make(
            b.CheckInRecorded,
            subject=ref.id,
            confidence=chosen,
            value=amount if is_kr else None,
            percent=None if is_kr else amount,
            note=note,
        )
        shown = "" if amount is None else (f" {amount:g}" if is_kr else f" {amount:g}%")
        event = await session.record(body, moment_at)
        await announce(session, event, f"{ref.title}:{shown} {chosen}", as_json)

    with_session(go)


def pause(
    start: Annotated[str, Parameter(help="First day (YYYY-MM-DD, today...).")],
    end: Annotated[str, Parameter(help="Last day, inclusive.")],
    *,
    reason: Reason = "",
    as_json: Json = False,
) -> None:
    """Declare leave or travel: pace and staleness do not count in between.

    Example: milepost pause 2026-07-01 2026-07-14 --reason "summer leave"
    """

    async def go(session: Session) -> None:
        today = session.now.date()
        body = make(
            b.PauseDeclared,
            starts_on=dates.parse_date(start, today, what="start"),
            ends_on=dates.parse_date(end, today, what="end"),
            reason=reason,
        )
        await _record(session, body, f"pause {body.starts_on}..{body.ends_on}", as_json)

    with_session(go)


def share(
    item: Annotated[str, Parameter(help="An objective, standalone milestone, indicator or entry.")],
    visibility: Literal["private", "partners", "team"],
    *,
    partner: PartnerOpt = (),
    as_json: Json = False,
) -> None:
    """Change who may see an item (and what hangs from it).

    Example: milepost share o1 partners --partner mentor-bo
    """

    async def go(session: Session) -> None:
        ref = await session.resolve(item, "shareable item")
        body = make(
            b.SharingChanged, subject=ref.id, visibility=visibility, partners=tuple(partner)
        )
        await _record(session, body, f"{ref.title} → {visibility}", as_json)

    with_session(go)


def correct(
    event: Annotated[str, Parameter(help="The event to fix (id or short ref).")],
    *,
    title: str | None = None,
    description: str | None = None,
    note: str | None = None,
    value: float | None = None,
    percent: float | None = None,
    confidence: Confidence | None = None,
    start: float | None = None,
    target: float | None = None,
    unit: str | None = None,
    weight: float | None = None,
    cadence: Cadence | None = None,
    text: str | None = None,
    polarity: Literal["positive", "negative"] | None = None,
    stage: int | None = None,
    impact: str | None = None,
    did: str | None = None,
    why: str | None = None,
    outcome: str | None = None,
    reason: Reason = "",
    as_json: Json = False,
) -> None:
    """Fix fields of an earlier event; the original stays in the log.

    Example: milepost correct c1 --value 1250 --reason "typo"
    """
    fields: dict[str, object] = {
        "title": title, "description": description, "note": note, "value": value,
        "percent": percent, "confidence": confidence, "start": start, "target": target,
        "unit": unit, "weight": weight, "cadence": cadence, "text": text,
        "polarity": polarity, "stage": stage, "impact": impact, "did": did, "why": why,
        "outcome": outcome,
    }  # fmt: skip
    changes = {k: v for k, v in fields.items() if v is not None}
    if not changes:
        raise UsageError("name at least one field to correct, e.g. --title or --value")

    async def go(session: Session) -> None:
        ref = await session.resolve(event, "event")
        target_body = await _body_of(session, ref.id)
        body = make(b.Corrected, target=ref.id, changes=_changes(changes), reason=reason)
        try:
            corrected(target_body, body.changes)  # the fold's rule: it would be ignored
        except InvalidCorrection as exc:
            raise InvalidValue(str(exc)) from None
        await _record(session, body, f"correct {ref.label} {ref.title}", as_json)

    with_session(go)


def _changes(changes: dict[str, object]) -> b.Changes:
    check_fields(changes)
    try:
        return msgspec.convert(changes, b.Changes)
    except msgspec.ValidationError as exc:
        raise _validation(exc) from None


def _validation(exc: msgspec.ValidationError) -> InvalidValue:
    """A msgspec validation error in the product's words."""
    text = str(exc)
    reason, _, where = text.partition(" - at `$")
    return InvalidValue(f"invalid {product_words(where.strip('.`'), reason)}")


async def _body_of(session: Session, event_id: str) -> object:
    from events import decode

    data = await session.store.scalar("SELECT data FROM events WHERE id = ?", (event_id,))
    return decode(data).body  # type: ignore[union-attr]


def retract(
    event: Annotated[str, Parameter(help="The event to withdraw (id or short ref).")],
    *,
    reason: Reason = "",
    as_json: Json = False,
) -> None:
    """Withdraw an event (a check-in logged by mistake, an item never meant).

    Example: milepost retract c1 --reason "logged twice"
    """

    async def go(session: Session) -> None:
        ref = await session.resolve(event, "event")
        body = make(b.Retracted, target=ref.id, reason=reason)
        await _record(session, body, f"retract {ref.label} {ref.title}", as_json)

    with_session(go)
