"""The team page's pages: board, feed, drift, charts, a person's page, and their JSON twins.

Every page reads the same cached view objects as the JSON API (the same
``ctx.cached`` keys, so the bytes are literally shared) and has a JSON twin
(``….json``) over the page's data. Reading works without JavaScript.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import msgspec
from litestar import Response, get
from litestar.params import FromPath, FromQuery

from projections.goals import GoalTree, KeyResultView, ObjectiveView, checkins_for, goal_tree
from projections.health import Health, tree_health
from projections.review import Review, review, review_markdown
from projections.team import (
    FeedPage,
    InvalidCursor,
    TeamBoard,
    person_drift,
    team_board,
    team_drift,
    team_feed,
)
from projections.visibility import can_see_item
from server.http.context import ServerContext, context_of
from server.http.controllers.teams import TeamDrift
from server.http.errors import InvalidParameter, NotVisible
from server.http.services import check_cycle, require_member, require_person, review_period
from server.web import charts
from server.web.plumbing import (
    SECURITY_HEADERS,
    AnyRequest,
    cached_page,
    common_context,
    html_response,
    json_response,
    render_template,
    require_signed_in,
)
from server.web.sessions import (
    SignedIn,
)
from server.web.views import (
    BoardFilters,
    BoardPage,
    DriftPage,
    FeedPageView,
    IndicatorView,
    board_page,
    drift_page,
    person_indicators,
)

_decode_board = msgspec.json.Decoder(TeamBoard).decode
_decode_feed = msgspec.json.Decoder(FeedPage).decode
_decode_drift = msgspec.json.Decoder(TeamDrift).decode
_decode_review = msgspec.json.Decoder(Review).decode
_decode_tree = msgspec.json.Decoder(GoalTree).decode


# --- the board --------------------------------------------------------------------------


async def _board(ctx: ServerContext, viewer: str, team: str, cycle: str) -> TeamBoard:
    """The API's board for the viewer (the very same cached bytes as GET /teams/…/board)."""
    state, now, settings = await ctx.team_state(team), ctx.clock(), ctx.settings
    payload = await ctx.cached(
        ("board", viewer, team, cycle),
        lambda: team_board(state, team, viewer, now, cycle=cycle, settings=settings),
    )
    return _decode_board(payload)


def _filters(person: str | None, cycle: str | None, health: str | None) -> BoardFilters:
    check_cycle(cycle or "current")
    if health is not None and health not in ("on-track", "at-risk", "off-track", "done", "dropped"):
        raise InvalidParameter("health", "one of on-track, at-risk, off-track, done, dropped")
    return BoardFilters(person or None, cycle or "current", health or None)


async def _board_page(
    request: AnyRequest, team: str, filters: BoardFilters
) -> tuple[SignedIn, BoardPage]:
    me = await require_signed_in(request)
    ctx = context_of(request)
    require_member(ctx.directory, team, me.person)
    board = await _board(ctx, me.person, team, filters.cycle)
    return me, board_page(board, filters)


@get("/t/{team:str}", include_in_schema=False)
async def board(
    request: AnyRequest,
    team: FromPath[str],
    person: FromQuery[str | None] = None,
    cycle: FromQuery[str | None] = None,
    health: FromQuery[str | None] = None,
) -> Response[Any]:
    """The team board: each member's objectives, key results and milestones with health."""
    filters = _filters(person, cycle, health)
    me = await require_signed_in(request)
    ctx = context_of(request)
    require_member(ctx.directory, team, me.person)

    async def render() -> str:
        page = board_page(await _board(ctx, me.person, team, filters.cycle), filters)
        common = common_context(me, ctx)
        return await asyncio.to_thread(
            render_template, request, "board.html", page=page, team=team, **common
        )

    return await cached_page(request, ("board", me.session_hash, team, filters), render)


@get("/t/{team:str}/board.json", include_in_schema=False)
async def board_json(
    request: AnyRequest,
    team: FromPath[str],
    person: FromQuery[str | None] = None,
    cycle: FromQuery[str | None] = None,
    health: FromQuery[str | None] = None,
) -> Response[Any]:
    """The board page's data."""
    _, page = await _board_page(request, team, _filters(person, cycle, health))
    return json_response(page)


# --- the feed ---------------------------------------------------------------------------


async def _feed_page(
    request: AnyRequest, team: str, cursor: str | None, me: SignedIn | None = None
) -> tuple[SignedIn, FeedPageView]:
    me = me or await require_signed_in(request)
    ctx = context_of(request)
    require_member(ctx.directory, team, me.person)
    state, viewer = await ctx.team_state(team), me.person
    position = ctx.follower.position  # the state's: no await in between
    try:
        payload = await ctx.cached(
            ("feed", viewer, team, cursor, 50),
            lambda: team_feed(state, team, viewer, cursor=cursor, limit=50),
            uses_clock=False,
        )
    except InvalidCursor:
        raise InvalidParameter("cursor", "not a cursor returned by this feed") from None
    return me, FeedPageView(team, viewer, _decode_feed(payload), position)


@get("/t/{team:str}/feed", include_in_schema=False)
async def feed(
    request: AnyRequest, team: FromPath[str], cursor: FromQuery[str | None] = None
) -> Response[Any]:
    """The team feed, newest first; the script keeps it live over server-sent events."""
    me = await require_signed_in(request)
    ctx = context_of(request)
    require_member(ctx.directory, team, me.person)

    async def render() -> str:
        _, view = await _feed_page(request, team, cursor, me)
        common = common_context(me, ctx)
        return await asyncio.to_thread(
            render_template, request, "feed.html", view=view, team=team, cursor=cursor, **common
        )

    return await cached_page(request, ("feed", me.session_hash, team, cursor), render)


@get("/t/{team:str}/feed.json", include_in_schema=False)
async def feed_json(
    request: AnyRequest, team: FromPath[str], cursor: FromQuery[str | None] = None
) -> Response[Any]:
    """The feed page's data."""
    _, view = await _feed_page(request, team, cursor)
    return json_response(view)


# --- drift ------------------------------------------------------------------------------


async def _drift_page(
    request: AnyRequest, team: str, me: SignedIn | None = None
) -> tuple[SignedIn, DriftPage]:
    me = me or await require_signed_in(request)
    ctx = context_of(request)
    require_member(ctx.directory, team, me.person)
    state, viewer, settings, now = await ctx.team_state(team), me.person, ctx.settings, ctx.clock()
    payload = await ctx.cached(
        ("drift", viewer, team),
        lambda: TeamDrift(team, now, team_drift(state, team, viewer, now, settings)),
    )
    return me, drift_page(team, viewer, _decode_drift(payload).signals)


@get("/t/{team:str}/drift", include_in_schema=False)
async def drift(request: AnyRequest, team: FromPath[str]) -> Response[Any]:
    """The team's drift grouped by item: each signal's rule, numbers and events."""
    me = await require_signed_in(request)
    ctx = context_of(request)
    require_member(ctx.directory, team, me.person)

    async def render() -> str:
        _, page = await _drift_page(request, team, me)
        common = common_context(me, ctx)
        return await asyncio.to_thread(
            render_template, request, "drift.html", page=page, team=team, **common
        )

    return await cached_page(request, ("drift", me.session_hash, team), render)


@get("/t/{team:str}/drift.json", include_in_schema=False)
async def drift_json(request: AnyRequest, team: FromPath[str]) -> Response[Any]:
    """The drift page's data."""
    _, page = await _drift_page(request, team)
    return json_response(page)


# --- charts -----------------------------------------------------------------------------


def _find_key_result(
    board: TeamBoard, key_result: str
) -> tuple[ObjectiveView, KeyResultView] | None:
    for member in board.members:
        for objective in member.objectives:
            for kr in objective.key_results:
                if kr.id == key_result:
                    return objective, kr
    return None


async def _burnup(
    request: AnyRequest, team: str, key_result: str
) -> tuple[SignedIn, charts.BurnUp]:
    me = await require_signed_in(request)
    ctx = context_of(request)
    require_member(ctx.directory, team, me.person)
    found = _find_key_result(await _board(ctx, me.person, team, "all"), key_result)
    state = await ctx.team_state(team)
    if found is None or not can_see_item(state, me.person, key_result):
        raise NotVisible()
    objective, kr = found
    checkins = checkins_for(state, key_result)
    return me, charts.burn_up(state, objective, kr, checkins, ctx.clock(), me.person)


@get("/t/{team:str}/kr/{key_result:str}", include_in_schema=False)
async def key_result_page(
    request: AnyRequest, team: FromPath[str], key_result: FromPath[str]
) -> Response[Any]:
    """One key result: its burn-up chart and its check-ins."""
    me, chart = await _burnup(request, team, key_result)
    ctx = context_of(request)
    body = render_template(
        request,
        "key_result.html",
        chart=chart,
        svg=charts.burn_up_svg(chart),
        team=team,
        **common_context(me, ctx),
    )
    return html_response(body)


@get("/t/{team:str}/kr/{key_result:str}/burnup.svg", include_in_schema=False)
async def burnup_svg(
    request: AnyRequest, team: FromPath[str], key_result: FromPath[str]
) -> Response[Any]:
    """The burn-up chart alone, as SVG."""
    _, chart = await _burnup(request, team, key_result)
    return Response(charts.burn_up_svg(chart), media_type="image/svg+xml", headers=SECURITY_HEADERS)


@get("/t/{team:str}/kr/{key_result:str}/chart.json", include_in_schema=False)
async def burnup_json(
    request: AnyRequest, team: FromPath[str], key_result: FromPath[str]
) -> Response[Any]:
    """The burn-up chart's data."""
    _, chart = await _burnup(request, team, key_result)
    return json_response(chart)


# --- a person's page --------------------------------------------------------------------


class PersonPage(msgspec.Struct, frozen=True):
    """A person's page: their goals (as the API's goal tree), indicators, journal and review."""

    person: str
    viewer: str
    goals: GoalTree
    health: dict[str, Health]
    team: str | None  # a team the viewer shares with the person (for the charts' links)
    indicators: list[IndicatorView]
    review: Review
    year: charts.YearStrip


async def _person_page(
    request: AnyRequest, person: str, start: date | None, end: date | None
) -> tuple[SignedIn, PersonPage]:
    me = await require_signed_in(request)
    ctx = context_of(request)
    now = ctx.clock()
    first, last = review_period(start, end, now.date())
    state, viewer, settings = await ctx.person_state(person), me.person, ctx.settings
    require_person(state, viewer, person, now)
    goals = _decode_tree(
        await ctx.cached(
            ("goals", viewer, person, None, "current"),
            lambda: goal_tree(state, person, now, viewer=viewer, cycle="current"),
        )
    )
    shown = _decode_review(
        await ctx.cached(
            ("review", viewer, person, first, last),
            lambda: review(state, person, first, last, now, viewer, settings),
        )
    )
    year = charts.year_strip(shown)
    indicators = person_indicators(state, person, viewer, shown)
    signals = person_drift(state, person, viewer, now, settings)
    health = tree_health(
        goals.objectives, goals.standalone_milestones, now.date(), signals, settings=settings
    )
    shared = sorted(state.teams_of(viewer) & state.teams_of(person))
    team = shared[0] if shared else None
    return me, PersonPage(person, viewer, goals, health, team, indicators, shown, year)


@get("/p/{person:str}", include_in_schema=False)
async def person_page(
    request: AnyRequest,
    person: FromPath[str],
    start: FromQuery[date | None] = None,
    end: FromQuery[date | None] = None,
) -> Response[Any]:
    """A person's indicators and journal (± marked), year strip and review (printable)."""
    me, page = await _person_page(request, person, start, end)
    ctx = context_of(request)
    journal = _journal(page.review)
    body = render_template(
        request,
        "person.html",
        page=page,
        journal=journal,
        strip=charts.year_strip_svg(page.year),
        **common_context(me, ctx),
    )
    return html_response(body)


def _journal(shown: Review) -> dict[str, list[Any]]:
    """Observations grouped by indicator title ('' for bare journal entries), newest first."""
    grouped: dict[str, list[Any]] = {}
    for seen in sorted(shown.observations, key=lambda o: o.occurred_at, reverse=True):
        grouped.setdefault(seen.indicator_title or "", []).append(seen)
    return grouped


@get("/p/{person:str}/review.json", include_in_schema=False)
async def person_review_json(
    request: AnyRequest,
    person: FromPath[str],
    start: FromQuery[date | None] = None,
    end: FromQuery[date | None] = None,
) -> Response[Any]:
    """The review as JSON (a download)."""
    _, page = await _person_page(request, person, start, end)
    response = json_response(page.review)
    name = f"review-{person}-{page.review.start}-{page.review.end}.json"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@get("/p/{person:str}/review.md", include_in_schema=False)
async def person_review_markdown(
    request: AnyRequest,
    person: FromPath[str],
    start: FromQuery[date | None] = None,
    end: FromQuery[date | None] = None,
) -> Response[Any]:
    """The review as Markdown (a download)."""
    _, page = await _person_page(request, person, start, end)
    name = f"review-{person}-{page.review.start}-{page.review.end}.md"
    return Response(
        review_markdown(page.review),
        media_type="text/markdown; charset=utf-8",
        headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
    )


@get("/p/{person:str}/page.json", include_in_schema=False)
async def person_json(
    request: AnyRequest,
    person: FromPath[str],
    start: FromQuery[date | None] = None,
    end: FromQuery[date | None] = None,
) -> Response[Any]:
    """The person page's data."""
    _, page = await _person_page(request, person, start, end)
    return json_response(page)
