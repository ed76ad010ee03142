"""Qualitative benchmarks: indicators with stages, observations, journal entries."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

from client.commands._common import At, Json, PartnerOpt, VisibilityOpt, sharing, with_session
from client.commands.goals import _record
from client.errors import InvalidValue
from client.session import Session, make
from events import bodies as b

Impact = Annotated[str, Parameter(help="What it changed (optional).")]
Negative = Annotated[bool, Parameter(negative=(), help="A lesson or setback, not a win.")]


def indicator(
    title: str,
    *,
    stage: Annotated[tuple[str, ...], Parameter(help="A stage, in order (repeat).")],
    objective: Annotated[str | None, Parameter(help="Objective it belongs to.")] = None,
    description: str = "",
    visibility: VisibilityOpt = None,
    partner: PartnerOpt = (),
    as_json: Json = False,
) -> None:
    """Name a capability and its ordered stages (a quiet milestone).

    Example: milepost indicator "Customer empathy" --stage "asks users" --stage "anticipates"
    """

    async def go(session: Session) -> None:
        parent = await session.resolve(objective, "objective") if objective else None
        shown, partners = sharing(session, visibility, partner)
        body = make(
            b.IndicatorDefined,
            title=title.strip(),
            stages=tuple(s.strip() for s in stage),
            objective=parent.id if parent else None,
            description=description,
            visibility=shown,
            partners=partners,
        )
        await _record(session, body, title, as_json)

    with_session(go)


async def _stage_index(session: Session, indicator_id: str, stage: str | None) -> int | None:
    if stage is None:
        return None
    from events import decode

    data = await session.store.scalar("SELECT data FROM events WHERE id = ?", (indicator_id,))
    body = decode(data).body  # type: ignore[union-attr]
    assert isinstance(body, b.IndicatorDefined)
    names = [s.casefold() for s in body.stages]
    if stage.isdigit() and int(stage) >= 1:
        index = int(stage) - 1
        if index < len(names):
            return index
    elif stage.casefold() in names:
        return names.index(stage.casefold())
    raise InvalidValue(
        f"invalid stage {stage!r}: give its number 1-{len(names)} or one of: "
        + ", ".join(body.stages)
    )


def observe(
    text: str,
    *,
    indicator: Annotated[str | None, Parameter(help="Indicator it is evidence for.")] = None,
    stage: Annotated[
        str | None, Parameter(help="Stage reached: number (1 = first) or name.")
    ] = None,
    negative: Negative = False,
    impact: Impact = "",
    visibility: VisibilityOpt = None,
    partner: PartnerOpt = (),
    at: At = None,
    as_json: Json = False,
) -> None:
    """Record an observation, optionally as evidence for an indicator's stage.

    Example: milepost observe "Team called users before the launch" --indicator i1 --stage 2
    """

    async def go(session: Session) -> None:
        ref = await session.resolve(indicator, "indicator") if indicator else None
        if stage is not None and ref is None:
            raise InvalidValue("a --stage needs an --indicator")
        index = await _stage_index(session, ref.id, stage) if ref else None
        shown, partners = sharing(session, visibility, partner)
        if ref is not None:
            shown, partners = "private", ()  # inherits the indicator's sharing
        body = make(
            b.ObservationRecorded,
            text=text.strip(),
            polarity="negative" if negative else "positive",
            indicator=ref.id if ref else None,
            stage=index,
            impact=impact,
            visibility=shown,
            partners=partners,
        )
        await _record(session, body, text, as_json, at)

    with_session(go)


def journal(
    text: str,
    *,
    negative: Negative = False,
    impact: Impact = "",
    visibility: VisibilityOpt = None,
    partner: PartnerOpt = (),
    at: At = None,
    as_json: Json = False,
) -> None:
    """Write a journal entry: this week's qualitative win or lesson.

    Example: milepost journal "Paired with support on the billing bug" --impact "fixed in a day"
    """
    observe(
        text,
        negative=negative,
        impact=impact,
        visibility=visibility,
        partner=partner,
        at=at,
        as_json=as_json,
    )
