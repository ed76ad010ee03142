"""Shared parameter types and the bridge from sync commands to the async session."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Literal, TypeVar

from cyclopts import Parameter

from client import dates
from client.session import Session

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


def sharing(
    session: Session, visibility: str | None, partners: tuple[str, ...]
) -> tuple[str, tuple[str, ...]]:
    """Visibility and partners, defaulting to the configured visibility."""
    if partners and visibility is None:
        visibility = "partners"
    return (visibility or session.default_visibility), tuple(partners)
