"""Objectives, key results, milestones, tasks, check-ins, pauses, sharing and fixes."""

from __future__ import annotations

import sys
from typing import Annotated, Literal

import msgspec
from cyclopts import App, Parameter

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
from client.session import Session, check_fields, make, product_words, short_ref
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


# --- milestones ---------------------------------------------------------------------------

milestone_app = App(
    name="milestone",
    help="""Plan and track milestones (deliveries with a due date).

For example:
    milepost milestone add "Improve SEO in the site" --kr k1 --due 2026-02-28
    milepost milestone reschedule m1 2026-03-15 --reason "waiting on design"
    milepost milestone done m1 --did "Rewrote titles" --outcome "+30% visits"
    milepost milestone link m1 --objective o2
""",
    help_format="plaintext",
)


@milestone_app.command
def add(
    title: str,
    *,
    due: Annotated[str | None, Parameter(help="Due date: YYYY-MM-DD, today...")] = None,
    kr: Annotated[str | None, Parameter(name="--kr", help="Key result it serves.")] = None,
    objective: Annotated[str | None, Parameter(help="Objective it serves (no KR).")] = None,
    description: str = "",
    visibility: VisibilityOpt = None,
    partner: PartnerOpt = (),
    at: At = None,
    as_json: Json = False,
) -> None:
    """Plan a milestone, linked to a key result, an objective, or standalone.

    Example: milepost milestone add "Improve SEO in the site" --kr k1 --due 2026-02-28
    """

    async def go(session: Session) -> None:
        if kr is not None and objective is not None:
            raise UsageError("give --kr or --objective, not both")
        key_result = await session.resolve(kr, "key result") if kr else None
        parent = await session.resolve(objective, "objective") if objective else None
        due_on = dates.parse_date(due, session.now.date(), what="due date") if due else None
        shown, partners = sharing(session, visibility, partner)
        body = make(
            b.MilestonePlanned,
            title=title.strip(),
            due_on=due_on,
            key_result=key_result.id if key_result else None,
            objective=parent.id if parent else None,
            description=description,
            visibility=shown,
            partners=partners,
        )
        await _record(session, body, title, as_json, at)

    with_session(go)


@milestone_app.command
def reschedule(
    milestone: str,
    due: Annotated[str, Parameter(help="New due date, or 'none' to clear it.")],
    *,
    reason: Reason = "",
    as_json: Json = False,
) -> None:
    """Move a milestone's due date.

    Example: milepost milestone reschedule m1 2026-03-15 --reason "waiting on design"
    """

    async def go(session: Session) -> None:
        ref = await session.resolve(milestone, "milestone")
        due_on = (
            None if due.lower() == "none" else dates.parse_date(due, session.now.date(), what="due")
        )
        body = make(b.MilestoneRescheduled, milestone=ref.id, due_on=due_on, reason=reason)
        await _record(session, body, f"{ref.title} → {due_on or 'no due date'}", as_json)

    with_session(go)


QUESTIONS = (
    ("did", "What did you do?"),
    ("why", "Why did it matter?"),
    ("outcome", "What was the outcome?"),
)


def _ask(answers: dict[str, str | None]) -> dict[str, str]:
    """Ask the missing questions when stdin is a terminal; otherwise leave them empty."""
    interactive = sys.stdin.isatty()
    out: dict[str, str] = {}
    for key, question in QUESTIONS:
        given = answers[key]
        if given is None and interactive:
            try:
                given = input(f"{question} ")
            except EOFError:
                given = ""
        out[key] = (given or "").strip()
    return out


@milestone_app.command(name="done")
def milestone_done(
    milestone: str,
    *,
    did: Annotated[str | None, Parameter(help="What you did.")] = None,
    why: Annotated[str | None, Parameter(help="Why it mattered.")] = None,
    outcome: Annotated[str | None, Parameter(help="What the outcome was.")] = None,
    at: At = None,
    as_json: Json = False,
) -> None:
    """Complete a milestone with three sentences: what you did, why, the outcome.

    In a terminal without --did/--why/--outcome it asks them; without a
    terminal and without the flags it records empty answers (add them later
    with `milepost correct COMPLETION --did ...`).

    Example: milepost done m1 --did "Set up profiles" --why "Reach" --outcome "120 fans"
    """

    async def go(session: Session) -> None:
        ref = await session.resolve(milestone, "milestone")
        view = await node_view(session, ref.id)
        if view is not None and getattr(view, "state", None) == "completed":
            completion = await session.store.scalar(
                "SELECT id FROM refs WHERE type = 'milestone.completed' AND parent = ?"
                " AND retracted = 0 ORDER BY id DESC LIMIT 1",
                (ref.id,),
            )
            label = "COMPLETION"
            if completion:
                label = (await session.short_refs([completion])).get(completion) or short_ref(
                    completion
                )
            raise InvalidValue(
                f"milestone {ref.label} ({ref.title}) is already completed;"
                f" to change its answers: milepost correct {label} --did ...;"
                f" to complete it again, first: milepost milestone reopen {ref.label}"
            )
        moment_at = moment(session, at)
        await check_after_creation(session, ref, moment_at)
        answers = _ask({"did": did, "why": why, "outcome": outcome})
        body = make(b.MilestoneCompleted, milestone=ref.id, **answers)
        event = await session.record(body, moment_at)
        await announce(session, event, ref.title, as_json)

    with_session(go)


def done(
    milestone: str,
    *,
    did: Annotated[str | None, Parameter(help="What you did.")] = None,
    why: Annotated[str | None, Parameter(help="Why it mattered.")] = None,
    outcome: Annotated[str | None, Parameter(help="What the outcome was.")] = None,
    at: At = None,
    as_json: Json = False,
) -> None:
    """Complete a milestone (same as `milestone done`), asking the three questions.

    Example: milepost done m1 --did "..." --why "..." --outcome "..."
    """
    milestone_done(milestone, did=did, why=why, outcome=outcome, at=at, as_json=as_json)


def _milestone_change(
    kind: str, milestone: str, reason: str, as_json: bool, at: str | None
) -> None:
    async def go(session: Session) -> None:
        ref = await session.resolve(milestone, "milestone")
        body: b.Body
        if kind == "reopen":
            body = make(b.MilestoneReopened, milestone=ref.id, reason=reason)
        elif kind == "drop":
            body = make(b.MilestoneDropped, milestone=ref.id, reason=reason)
        else:
            body = make(b.MilestoneRestored, milestone=ref.id)
        await _record(session, body, ref.title, as_json, at)

    with_session(go)


@milestone_app.command
def reopen(milestone: str, *, reason: Reason = "", at: At = None, as_json: Json = False) -> None:
    """Reopen a completed milestone.

    Example: milepost milestone reopen m1 --reason "the fix regressed"
    """
    _milestone_change("reopen", milestone, reason, as_json, at)


@milestone_app.command
def drop(milestone: str, *, reason: Reason = "", at: At = None, as_json: Json = False) -> None:
    """Drop a milestone (it stays in the log; `restore` brings it back).

    Example: milepost milestone drop m1 --reason "out of scope"
    """
    _milestone_change("drop", milestone, reason, as_json, at)


@milestone_app.command
def restore(milestone: str, *, at: At = None, as_json: Json = False) -> None:
    """Restore a dropped milestone.

    Example: milepost milestone restore m1
    """
    _milestone_change("restore", milestone, "", as_json, at)


@milestone_app.command
def link(
    milestone: str,
    *,
    kr: Annotated[str | None, Parameter(name="--kr", help="Key result to serve.")] = None,
    objective: Annotated[str | None, Parameter(help="Objective to serve.")] = None,
    none: Annotated[bool, Parameter(negative=(), help="Unlink: make it standalone.")] = False,
    as_json: Json = False,
) -> None:
    """Link a milestone to another key result or objective (or --none).

    Example: milepost milestone link m1 --kr k1
    """

    async def go(session: Session) -> None:
        if sum(x is not None for x in (kr, objective)) + none != 1:
            raise UsageError("give exactly one of --kr, --objective, --none")
        ref = await session.resolve(milestone, "milestone")
        key_result = await session.resolve(kr, "key result") if kr else None
        parent = await session.resolve(objective, "objective") if objective else None
        body = make(
            b.MilestoneRelinked,
            milestone=ref.id,
            key_result=key_result.id if key_result else None,
            objective=parent.id if parent else None,
        )
        await _record(session, body, ref.title, as_json)

    with_session(go)


# --- tasks -------------------------------------------------------------------------------

task_app = App(
    name="task",
    help="""The checklist inside a milestone.

For example:
    milepost task add m1 "Create a LinkedIn profile"
    milepost task done t1
    milepost task reopen t1
""",
    help_format="plaintext",
)


@task_app.command(name="add")
def task_add(milestone: str, title: str, *, at: At = None, as_json: Json = False) -> None:
    """Add a task to a milestone.

    Example: milepost task add m1 "Create a LinkedIn profile"
    """

    async def go(session: Session) -> None:
        ref = await session.resolve(milestone, "milestone")
        await _record(
            session, make(b.TaskAdded, milestone=ref.id, title=title.strip()), title, as_json, at
        )

    with_session(go)


@task_app.command(name="done")
def task_done(task: str, *, at: At = None, as_json: Json = False) -> None:
    """Tick a task off.

    Example: milepost task done t1
    """

    async def go(session: Session) -> None:
        ref = await session.resolve(task, "task")
        await _record(session, make(b.TaskCompleted, task=ref.id), ref.title, as_json, at)

    with_session(go)


@task_app.command(name="reopen")
def task_reopen(task: str, *, at: At = None, as_json: Json = False) -> None:
    """Untick a task.

    Example: milepost task reopen t1
    """

    async def go(session: Session) -> None:
        ref = await session.resolve(task, "task")
        await _record(session, make(b.TaskReopened, task=ref.id), ref.title, as_json, at)

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
