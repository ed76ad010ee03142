"""Milestones and the tasks inside them: plan, reschedule, complete, reopen, drop,
restore and relink a milestone; add, tick and untick its tasks."""

from __future__ import annotations

import sys
from typing import Annotated

from cyclopts import App, Parameter

from client import dates
from client.commands._common import (
    At,
    Json,
    PartnerOpt,
    VisibilityOpt,
    check_after_creation,
    moment,
    node_view,
    sharing,
    with_session,
)
from client.commands.goals import Reason, _record, announce
from client.errors import InvalidValue, UsageError
from client.session import Session, make, short_ref
from events import bodies as b

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
