"""Shared parameter types and the bridge from sync commands to the async session."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from cyclopts import Parameter

from client import dates
from client.errors import InvalidValue
from client.session import Ref, Session

T = TypeVar("T")

Json = Annotated[bool, Parameter(name="--json", negative=(), help="Print JSON (stable fields).")]
At = Annotated[
    str | None,
    Parameter(name="--at", help="When it happened: YYYY-MM-DD, today, yesterday, or ISO time."),
]
AsOf = Annotated[
    str | None, Parameter(name="--as-of", help="Show what was known at the end of DATE.")
]
VisibilityOpt = Annotated[
    Literal["private", "partners", "team"] | None,
    Parameter(name="--visibility", help="private, partners or team (default: config)."),
]
PartnerOpt = Annotated[
    tuple[str, ...],
    Parameter(name="--partner", help="A person who may see it (repeat; needs partners)."),
]
Confidence = Literal["on-track", "at-risk", "off-track"]


def with_session(action: Callable[[Session], Awaitable[T]]) -> T:
    """Open the current profile, run ``action``, close it."""

    async def go() -> T:
        session = await Session.open()
        try:
            return await action(session)
        finally:
            await session.close()

    return asyncio.run(go())


def moment(session: Session, at: str | None) -> datetime | None:
    """The ``--at`` instant, or None for now."""
    return None if at is None else dates.parse_moment(at, session.now)


def as_of_moment(session: Session, as_of: str | None) -> datetime | None:
    """End of the ``--as-of`` day, or None for now."""
    if as_of is None:
        return None
    day = dates.parse_date(as_of, session.now.date(), what="--as-of date")
    return dates.end_of_day(day, session.now)


async def node_view(session: Session, node_id: str) -> Any:
    """The stored view of one key result or milestone of the person (None if not shown),
    read from the parts of its roots only."""
    from projections.snapshot import RootPart, assemble_tree

    rows = await session.store.fetchall(
        "SELECT p.part FROM goal_roots r JOIN goal_parts p ON p.root = r.root WHERE r.node = ?",
        (node_id,),
    )
    decoder = msgspec.msgpack.Decoder(RootPart)
    tree = assemble_tree(session.person, session.now, [decoder.decode(row[0]) for row in rows])
    for objective in tree.objectives:
        for kr in objective.key_results:
            if kr.id == node_id:
                return kr
            for m in kr.milestones:
                if m.id == node_id:
                    return m
        for m in objective.milestones:
            if m.id == node_id:
                return m
    for m in tree.standalone_milestones:
        if m.id == node_id:
            return m
    return None


async def check_after_creation(session: Session, ref: Ref, when: datetime | None) -> None:
    """Refuse an ``--at`` earlier than the day the item was created."""
    if when is None:
        return
    from events import decode

    data = await session.store.scalar("SELECT data FROM events WHERE id = ?", (ref.id,))
    if data is None:
        return
    created = decode(data).occurred_at
    if when.date() < created.date():
        raise InvalidValue(
            f"invalid --at {when.date()}: {ref.title!r} was created on {created.date()},"
            " nothing can be recorded for it before then"
        )


def sharing(
    session: Session, visibility: str | None, partners: tuple[str, ...]
) -> tuple[str, tuple[str, ...]]:
    """Visibility and partners, defaulting to the configured visibility."""
    if partners and visibility is None:
        visibility = "partners"
    return (visibility or session.default_visibility), tuple(partners)
